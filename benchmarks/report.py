"""Benchmark report: `hso.optimize` per backend against the authors' procedure (scipy), measured in one run.

    .venv/bin/python -m benchmarks.report [--quick] [--with-paper] [--repeats 5]

For SD 2.1 x {unipc, ddim} x NFE {4, 5, 6, 8, 10} (``--quick``: NFE 4 and 5) it times the full search of every
available backend (median over ``--repeats`` runs after one warm-up) and, with ``--with-paper``, the scipy
re-implementation of the paper's procedure (`benchmarks.paper_scipy`, once per cell: minutes in total). It prints a
markdown table with the ratio baseline / hso, both fitnesses (hso's must be <= the baseline's, or within 1e-6
relative) and the timesteps each found, writes it to ``benchmarks/results/search.md`` and appends a JSON record
(machine, commit, config, results) to ``benchmarks/results/search.jsonl``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy

import hso
from hso import fast

RESULTS = Path(__file__).resolve().parent / "results"
SOLVERS = ("unipc", "ddim")
NFES = (4, 5, 6, 8, 10)
QUICK_NFES = (4, 5)
REL_TOL = 1e-6


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                             check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def machine_info() -> dict[str, Any]:
    status = _git("status", "--porcelain")
    diff = _git("diff", "HEAD")
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "hso": hso.__version__,
        "backends": fast.available_backends(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        # identifies the uncommitted state of tracked files the numbers were measured with
        "git_diff_sha256": None if not diff else hashlib.sha256(diff.encode()).hexdigest(),
        "loadavg_start": _load(),
    }


def time_hso(preset: str, nfe: int, solver: str, backend: str, repeats: int) -> dict[str, Any]:
    """Median wall time of `hso.optimize` over `repeats` runs (after one warm-up), and what it found."""
    hso.optimize(preset, nfe, solver, backend=backend)  # warm-up: lazy loads, caches
    walls, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = hso.optimize(preset, nfe, solver, backend=backend)
        walls.append(time.perf_counter() - t0)
    assert res is not None
    return {"wall_median": statistics.median(walls), "walls": walls, "fitness": res.fitness, "mep": res.mep,
            "penalty": res.penalty, "psi": res.psi.tolist(), "t": res.t.tolist(),
            "timesteps": None if res.timesteps is None else res.timesteps.tolist(), "nfev": res.nfev,
            "nit": res.nit}


def exact_at(preset: str, nfe: int, solver: str, psi: list[float]) -> dict[str, Any]:
    """hso's (exact) lower level at a given psi, with the settings `hso.optimize` uses (spacing "rank")."""
    sched = hso.NoiseSchedule.preset(preset)
    lower = fast.LowerSpec(n_intervals=hso.get_solver(solver).n_intervals(nfe), gap=sched.time_resolution,
                           d_min=hso.d_min(nfe))
    r = fast.lower_solve(np.asarray([psi], dtype=np.float64), sched, lower, fast.ObjectiveSpec("mep", sched.kind))
    return {"fitness": float(r.fitness[0]), "mep": float(r.objective[0]), "penalty": float(r.penalty[0])}


def verdict(hso_fit: float, paper: dict[str, Any]) -> str:
    """"ok"; "inexact" when the baseline is lower only because its lower level is inexact (hso's exact lower level
    at the baseline's psi is no better than hso's result); else "baseline lower"."""
    if fitness_ok(hso_fit, paper["fitness"]):
        return "ok"
    if fitness_ok(hso_fit, paper["exact_at_psi"]["fitness"]):
        return "inexact"
    return "baseline lower"


def fitness_ok(hso_fit: float, paper_fit: float) -> bool:
    """hso's fitness is no worse than the baseline's (up to REL_TOL relative)."""
    return hso_fit <= paper_fit or abs(hso_fit - paper_fit) <= REL_TOL * abs(paper_fit)


def _fmt_fit(x: float) -> str:
    return f"{x:.7g}"


def _fmt_psi(psi: list[float]) -> str:
    return "(" + ", ".join(f"{v:.5g}" for v in psi) + ")"


def _fmt_ts(ts: list[int] | None) -> str:
    return "-" if ts is None else "[" + ", ".join(map(str, ts)) + "]"


def markdown(record: dict[str, Any]) -> str:
    m, c = record["machine"], record["config"]
    lines = [
        f"# HSO search benchmark ({c['preset']})",
        "",
        f"{record['date']} | commit `{m['git_commit']}`{' (dirty tree)' if m['git_dirty'] else ''} | "
        f"{m['platform']}, {m['cpu_count']} CPUs (load avg {m['loadavg_start']} at start, {m['loadavg_end']} at end) | "
        f"Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}",
        "",
        f"hso: median of {c['repeats']} runs after one warm-up (paper settings: popsize 20, maxiter 60, seed 66, "
        f"spacing=\"rank\"). Baseline: `benchmarks.paper_scipy` (the authors' procedure with scipy trust-constr + "
        f"differential_evolution), {'one run per cell' if c['with_paper'] else 'not run (--with-paper to add it)'}.",
        "Ratio = baseline wall / hso wall. Fitness check: hso <= baseline, or within 1e-6 relative. "
        "(n): noisy, the slowest of the repeats took over twice the fastest (every run is in the JSON record).",
        "",
    ]
    with_paper = c["with_paper"]
    head = ["solver", "NFE", "backend", "hso [ms]"]
    if with_paper:
        head += ["baseline [s]", "ratio", "hso fitness", "baseline fitness", "check", "hso timesteps",
                 "baseline timesteps"]
    else:
        head += ["hso fitness", "hso timesteps"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in record["results"]:
        paper = cell.get("paper")
        for b, h in cell["hso"].items():
            noisy = max(h["walls"]) > 2 * min(h["walls"])  # another process took a core during some runs
            row = [cell["solver"], str(cell["nfe"]), b, f"{1e3 * h['wall_median']:.1f}" + (" (n)" if noisy else "")]
            if with_paper and paper is not None:
                v = verdict(h["fitness"], paper)
                row += [f"{paper['wall_time']:.2f}", f"{paper['wall_time'] / h['wall_median']:.0f}x",
                        _fmt_fit(h["fitness"]), _fmt_fit(paper["fitness"]),
                        {"ok": "ok", "inexact": "inexact (a)"}.get(v, "**baseline lower**"),
                        _fmt_ts(h["timesteps"]), _fmt_ts(paper["timesteps"])]
            else:
                row += [_fmt_fit(h["fitness"]), _fmt_ts(h["timesteps"])]
            lines.append("| " + " | ".join(row) + " |")
    if with_paper:
        walls_p = [cell["paper"]["wall_time"] for cell in record["results"]]
        lines += ["", "Total baseline wall time: " + f"{sum(walls_p):.1f} s; total hso wall time (median runs): "
                  + ", ".join(f"{b} {sum(cell['hso'][b]['wall_median'] for cell in record['results']):.2f} s"
                              for b in m["backends"]) + "."]
        flagged = [(cell, b, h, verdict(h["fitness"], cell["paper"])) for cell in record["results"]
                   for b, h in cell["hso"].items() if verdict(h["fitness"], cell["paper"]) != "ok"]
        if not flagged:
            lines.append("Fitness check: hso <= baseline (within 1e-6 relative) in every cell.")
        else:
            if any(v == "inexact" for *_, v in flagged):
                lines += [
                    "",
                    "(a) The baseline's fitness is lower only because its lower level is inexact: trust-constr "
                    "with finite differences stops early (MEP 1e-9 to 1e-7 above the optimum), and where the 1e9 "
                    "spacing penalty is active the t-gaps of that unconverged, rho-dependent result change the "
                    "fitness by 1e2-1e4, which the DE then exploits. Re-solved exactly (hso's lower level) at the baseline's "
                    "psi, its fitness is no better than hso's. \"baseline lower\" marks a cell where even the exact "
                    "re-solve beats hso (the upper level found a better psi).",
                ]
            lines += [
                "",
                "Flagged cells (MEP / penalty of each; \"exact at baseline psi\" = hso's lower level at the baseline's "
                "psi):",
                "",
                "| solver | NFE | backend | verdict | hso fitness | hso MEP | hso penalty | hso psi | baseline fitness "
                "| baseline MEP | baseline psi | exact at baseline psi: fitness | MEP |",
                "|" + "---|" * 13,
            ]
            for cell, b, h, v in flagged:
                p = cell["paper"]
                e = p["exact_at_psi"]
                lines.append("| " + " | ".join([
                    cell["solver"], str(cell["nfe"]), b, v, _fmt_fit(h["fitness"]), f"{h['mep']:.10g}",
                    _fmt_fit(h["penalty"]), _fmt_psi(h["psi"]), _fmt_fit(p["fitness"]), f"{p['mep']:.10g}",
                    _fmt_psi(p["psi"]), _fmt_fit(e["fitness"]), f"{e['mep']:.10g}"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="NFE 4 and 5 only")
    ap.add_argument("--with-paper", action="store_true", help="also run the scipy paper-procedure baseline (slow)")
    ap.add_argument("--repeats", type=int, default=5, help="hso runs per cell and backend (median reported)")
    ap.add_argument("--preset", default="sd21")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")

    nfes = QUICK_NFES if args.quick else NFES
    backends = fast.available_backends()
    record: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {"preset": args.preset, "solvers": list(SOLVERS), "nfes": list(nfes), "repeats": args.repeats,
                   "with_paper": bool(args.with_paper), "quick": bool(args.quick), "backends": backends,
                   "hso_settings": "hso.optimize defaults (paper: popsize 20, maxiter 60, tol 0.01, seed 66, "
                                   "spacing rank)",
                   "paper_settings": "benchmarks.paper_scipy.paper_search defaults" if args.with_paper else None},
        "results": [],
    }
    for solver in SOLVERS:
        for nfe in nfes:
            cell: dict[str, Any] = {"solver": solver, "nfe": nfe, "hso": {}}
            for b in backends:
                cell["hso"][b] = time_hso(args.preset, nfe, solver, b, args.repeats)
                print(f"[hso] {solver} nfe={nfe} {b}: {1e3 * cell['hso'][b]['wall_median']:.1f} ms, "
                      f"fitness {cell['hso'][b]['fitness']:.7g}, {cell['hso'][b]['timesteps']}", file=sys.stderr,
                      flush=True)
            if args.with_paper:
                from .paper_scipy import paper_search
                cell["paper"] = paper_search(args.preset, nfe, solver)
                cell["paper"]["exact_at_psi"] = exact_at(args.preset, nfe, solver, cell["paper"]["psi"])
                print(f"[paper] {solver} nfe={nfe}: {cell['paper']['wall_time']:.2f} s, "
                      f"fitness {cell['paper']['fitness']:.7g}, {cell['paper']['timesteps']}", file=sys.stderr,
                      flush=True)
            record["results"].append(cell)

    record["machine"]["loadavg_end"] = _load()
    text = markdown(record)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "search.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    (args.out / "search.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
