"""Is the acceptance of issue 19 reachable at all? A schedule optimised directly against every rule bed, in the
cells where no candidate is safe.

Issue 19 asks for a default within 1.25x of the best schedule's RMSE on every rule bed in every cell. In some cells
no measured candidate gets there (`UNSAFE`): the beds want different schedules. This asks whether *any* schedule
does, or whether the candidate families are only too narrow. In every such cell of the default samplers (UniPC bh1
order 3, DPM-Solver++ 2M, DDIM; both conventions; both NFE grids), it starts from the candidate with the lowest
worst ratio and minimises the worst ratio over the rule beds directly, with Nelder-Mead, on the sampler itself:

* the schedule's end points stay the start's; its interior moves in lambda. Up to `FREE_MAX` intervals every gap
  is free (log gaps, renormalised to the span); beyond, the log gaps move by `SMOOTH_TERMS` cosine terms over the
  schedule (a smooth warp: N free points at NFE 50 would need far more evaluations than this affords);
* the ratio on each bed is to the best committed candidate of that cell on that bed (the acceptance's "best
  schedule"), both measured on the same noises;
* it is optimised on the first half of each bed's noises (the committed noises, seed 0) and scored on the other
  half, held out;
* with ``--leave-one-out``, also once per bed without that bed, scored on it: does the schedule carry over to a
  model it was not fitted to (the situation of a model-free default)?

Nothing here changes the default: it measures what a richer candidate could reach.

    python -m benchmarks.quality.minimax                          # every unsafe cell; writes the results below
    python -m benchmarks.quality.minimax --grid low --partial /tmp/a.json     # a share of the cells
    python -m benchmarks.quality.minimax --combine /tmp/a.json,/tmp/b.json    # the shares together

writes ``benchmarks/quality/minimax.json`` and ``minimax.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from hso import testbeds
from hso.evaluation.metrics import rmse
from hso.evaluation.reference import reference_solution
from hso.evaluation.report import valid_row
from hso.evaluation.runner import BedSampler
from hso.solvers import SAMPLER_DEFAULTS

from .run import GRIDS, REFERENCE_CACHE, UNSAFE, derives_rule, load_results

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "minimax.json"
OUT_MD = HERE / "minimax.md"
FREE_MAX = 11          # up to this many intervals, every lambda gap is a variable
SMOOTH_TERMS = 6       # beyond: this many cosine terms warp the log gaps
MAXFEV = {"low": 240, "high": 150}   # Nelder-Mead evaluations per optimisation (one evaluation: every bed)
STEP = 0.25            # the initial simplex's step in log gap / cosine coefficient
# what a row takes from its cell (`unsafe_cells`, from the committed results) rather than from the optimisation
DERIVED = ("solver", "convention", "noise", "nfe", "grid", "beds", "start", "start_worst", "candidate_loo")


def unsafe_cells(results=None) -> list[dict]:
    """The default samplers' cells where no committed candidate is within `UNSAFE` of the best on every rule bed:
    per cell, each bed's committed RMSE of every candidate (calibrate left out), the best, and the start (the
    candidate with the lowest worst ratio)."""
    results = load_results(variants=False) if results is None else results
    cells: dict[tuple, dict] = {}
    for name, ev in results:
        if not derives_rule(ev):
            continue
        bed = ev.meta["testbed"]
        config = name.split(" ")[0]
        noise = ev.meta["schedule"]["name"]
        grid = "high" if config.endswith("_nfe12-50") else "low"
        for r in ev.rows:
            if r["method"].startswith("calibrate") or not valid_row(r):
                continue
            key = (r["solver"], r["convention"], noise, r["nfe"])
            c = cells.setdefault(key, {"grid": grid, "beds": {}, "t": {}})
            c["beds"].setdefault(bed, {})[r["method"]] = r["rmse"]
            c["t"].setdefault(r["method"], r["t"])
    out = []
    for (solver, conv, noise, nfe), c in sorted(cells.items()):
        beds = c["beds"]
        common = set.intersection(*(set(v) for v in beds.values()))
        best = {b: min(v.values()) for b, v in beds.items()}
        worst = {m: max(beds[b][m] / best[b] for b in beds) for m in common}
        start = min(sorted(worst), key=worst.get)
        if worst[start] > UNSAFE:
            out.append({"solver": solver, "convention": conv, "noise": noise, "nfe": nfe, "grid": c["grid"],
                        "beds": sorted(beds), "start": start, "start_worst": worst[start],
                        "candidate_loo": _candidate_loo(beds, best, sorted(common)),
                        "candidates": {m: c["t"][m] for m in sorted(common)}})
    return out


def _candidate_loo(beds: dict[str, dict[str, float]], best: dict[str, float], common: list[str]) -> dict:
    """Per bed: the committed candidate with the lowest worst ratio over the *other* beds, and its ratio on this one
    (all the committed noises): what choosing among candidates without a bed gives on it."""
    out = {}
    for b in sorted(beds):
        others = [x for x in beds if x != b]
        pick = min(common, key=lambda m: (max(beds[x][m] / best[x] for x in others), m))
        out[b] = {"pick": pick, "ratio": beds[b][pick] / best[b]}
    return out


class Bed(BedSampler):
    """One rule bed under one noise schedule, sampled from the committed noises (seed 0), with their converged
    reference (from the harness's cache): the RMSE of a schedule on a subset of the noises."""

    def __init__(self, bed: str, noise: str, n_samples: int, cache_dir: Path | None = REFERENCE_CACHE):
        super().__init__(testbeds.load(bed), noise, n_samples)
        self.clean = reference_solution(self.denoiser, self.schedule, self.z, (), cache_dir=cache_dir).clean

    def rmse(self, t: np.ndarray, solver: str, conv: str, rows: slice) -> float:
        return rmse(self.run(t, solver, conv, SAMPLER_DEFAULTS.get(solver, {}), rows)[0], self.clean[rows])


class Warp:
    """The schedules the optimiser reaches from a start: its end points fixed, the interior moved in lambda through
    the log gaps (free up to `FREE_MAX` intervals, else `SMOOTH_TERMS` cosine terms), renormalised to the span so
    every point stays ordered."""

    def __init__(self, sched, t0: np.ndarray):
        self.sched = sched
        self.lam0 = sched.lambda_(np.asarray(t0, dtype=np.float64))
        self.span = self.lam0[-1] - self.lam0[0]
        self.log_gaps = np.log(np.diff(self.lam0))
        n = self.log_gaps.size
        self.basis = None if n <= FREE_MAX else np.cos(np.pi * np.outer((np.arange(n) + 0.5) / n,
                                                                         np.arange(1, SMOOTH_TERMS + 1)))
        self.dim = n if self.basis is None else SMOOTH_TERMS

    def t(self, x: np.ndarray) -> np.ndarray:
        lg = self.log_gaps + (x if self.basis is None else self.basis @ x)
        w = np.exp(lg - lg.max())
        lam = self.lam0[0] + np.concatenate([[0.0], np.cumsum(w / w.sum())]) * self.span
        lam[-1] = self.lam0[-1]
        t = self.sched.t_of_lambda(lam)
        t[0], t[-1] = self.sched.t_of_lambda(self.lam0[[0, -1]])
        return t


def halves(beds: dict[str, Bed]) -> dict[str, slice]:
    """The noises a fit is made on ("fit": the first half) and scored on ("held": the second)."""
    n = next(iter(beds.values())).z.shape[0]
    return {"fit": slice(0, n // 2), "held": slice(n // 2, n)}


def baselines(cell: dict, beds: dict[str, Bed]) -> tuple[dict[tuple[str, str], float], dict[str, dict[str, float]]]:
    """What every fit of a cell is measured against, sampled once per cell: the best committed candidate's RMSE
    per (bed, half), and the start's ratios to it."""
    solver, conv = cell["solver"], cell["convention"]
    best = {(b, h): min(bed.rmse(np.asarray(t), solver, conv, rows) for t in cell["candidates"].values())
            for b, bed in beds.items() for h, rows in halves(beds).items()}
    start_t = np.asarray(cell["candidates"][cell["start"]], dtype=np.float64)
    start = {h: {b: beds[b].rmse(start_t, solver, conv, rows) / best[b, h] for b in beds}
             for h, rows in halves(beds).items()}
    return best, start


def optimise(cell: dict, beds: dict[str, Bed], fit: list[str], maxfev: int,
             best: dict[tuple[str, str], float], start: dict[str, dict[str, float]]) -> dict:
    """Minimise the worst ratio over the beds ``fit`` on the first half of the noises; score every bed's ratio on
    both halves. Ratios are to the best committed candidate of the cell on that bed and those noises (``best``,
    ``start``: `baselines`)."""
    solver, conv = cell["solver"], cell["convention"]
    parts = halves(beds)
    start_t = np.asarray(cell["candidates"][cell["start"]], dtype=np.float64)
    warp = Warp(beds[fit[0]].schedule, start_t)

    def worst(x: np.ndarray) -> float:
        t = warp.t(x)
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) >= 0):
            return np.inf
        return max(beds[b].rmse(t, solver, conv, parts["fit"]) / best[b, "fit"] for b in fit)

    x0 = np.zeros(warp.dim)
    simplex = np.vstack([x0, x0 + STEP * np.eye(warp.dim)])
    res = minimize(worst, x0, method="Nelder-Mead",
                   options={"maxfev": maxfev, "initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-4,
                            "adaptive": True})
    t = warp.t(res.x)
    ratios = {h: {b: beds[b].rmse(t, solver, conv, rows) / best[b, h] for b in beds} for h, rows in parts.items()}
    return {"fit_beds": fit, "nfev": int(res.nfev), "t": t.tolist(), "ratios": ratios, "start_ratios": start}


def run(cells: list[dict], leave_one_out: bool, progress: bool) -> list[dict]:
    out = []
    cache: dict[tuple[str, str, str], Bed] = {}
    for i, cell in enumerate(cells):
        t0 = time.perf_counter()
        n_samples = GRIDS["" if cell["grid"] == "low" else "_nfe12-50"]["n_samples"]
        beds = {}
        for b in cell["beds"]:
            key = (b, cell["noise"], cell["grid"])
            if key not in cache:
                cache[key] = Bed(b, cell["noise"], n_samples)
            beds[b] = cache[key]
        row = {k: cell[k] for k in DERIVED}
        base = baselines(cell, beds)
        row["all"] = optimise(cell, beds, list(cell["beds"]), MAXFEV[cell["grid"]], *base)
        if leave_one_out:
            row["leave_one_out"] = {b: optimise(cell, beds, [x for x in cell["beds"] if x != b],
                                                MAXFEV[cell["grid"]], *base) for b in cell["beds"]}
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        out.append(row)
        if progress:
            w = max(row["all"]["ratios"]["held"].values())
            print(f"minimax {i + 1}/{len(cells)} {cell['solver']} {cell['convention']} {cell['noise']} NFE "
                  f"{cell['nfe']}: start {cell['start_worst']:.3f}, held-out worst {w:.3f} ({row['wall_s']} s)",
                  file=sys.stderr, flush=True)
    return out


def _loo_fitted(r: dict) -> float | None:
    """The worst, over the beds, of the schedule fitted without that bed, scored on it (held-out noises)."""
    lo = r.get("leave_one_out")
    return None if lo is None else max(v["ratios"]["held"][b] for b, v in lo.items())


def _loo_candidate(r: dict) -> float:
    """The worst, over the beds, of the committed candidate chosen without that bed, scored on it."""
    return max(v["ratio"] for v in r["candidate_loo"].values())


def markdown(rows: list[dict], meta: dict) -> str:
    def worst(r: dict, half: str) -> float:
        return max(r[half].values())

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = ["# A schedule optimised against every rule bed, in the unsafe cells (generated by "
             "`python -m benchmarks.quality.minimax`)", "",
             f"The {len(rows)} cells of the default samplers (UniPC bh1 order 3, DPM-Solver++ 2M, DDIM) where no "
             f"committed candidate is within {UNSAFE}x of the best schedule's RMSE on every rule bed. Per cell: the "
             "start (the candidate with the lowest worst ratio, on all the committed noises), then Nelder-Mead on "
             "the worst ratio over the beds, fitted on the first half of each bed's noises "
             f"({MAXFEV['low']} evaluations at NFE 4-10, {MAXFEV['high']} at 12-50; the interior moves in lambda, "
             f"every gap free up to {FREE_MAX} intervals, else {SMOOTH_TERMS} cosine terms). Ratios are to the best "
             "committed candidate on the same bed and noises. Fit: the half it was optimised on; held out: the "
             "other half.", "",
             "Leave one bed out (is the schedule safe on a model it was not made for, as a model-free default must "
             "be?): *fitted*: per bed, the schedule fitted on the other beds, scored on that bed (held-out noises); "
             "*candidates*: per bed, the committed candidate with the lowest worst ratio over the other beds, scored "
             "on that bed (all the committed noises). Each column is the worst over the beds left out; '-': not run "
             f"(`--leave-one-out`). {meta['wall_time_s']} s of computation, summed over the processes.", "",
             "| solver | convention | noise | NFE | start | start, worst (held out) | optimised, worst (fit) | "
             "optimised, worst (held out) | per bed (held out) | leave one out: fitted | leave one out: "
             "candidates |",
             "|---|---|---|---:|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        a = r["all"]
        per_bed = ", ".join(f"{b} {v:.2f}" for b, v in a["ratios"]["held"].items())
        lines.append(f"| {r['solver']} | {r['convention']} | {r['noise']} | {r['nfe']} | {r['start']} | "
                     f"{max(a['start_ratios']['held'].values()):.3f} | {worst(a['ratios'], 'fit'):.3f} | "
                     f"{worst(a['ratios'], 'held'):.3f} | {per_bed} | {fmt(_loo_fitted(r))} | "
                     f"{_loo_candidate(r):.3f} |")

    def count(xs: list[float]) -> str:
        return f"{sum(x <= UNSAFE for x in xs)} of {len(xs)}"

    lines.append("")
    for grid, label in (("low", "NFE 4-10"), ("high", "NFE 12-50")):
        rs = [r for r in rows if r["grid"] == grid]
        if not rs:
            continue
        held = [worst(r["all"]["ratios"], "held") for r in rs]
        start = [max(r["all"]["start_ratios"]["held"].values()) for r in rs]
        line = (f"- {label}: within {UNSAFE}x on every bed (held-out noises): the start in {count(start)} cells, "
                f"the optimised schedule in {count(held)} (worst held-out ratio {min(held):.3f}-{max(held):.3f}, "
                f"median {float(np.median(held)):.3f}).")
        lo = [(x, _loo_candidate(r)) for r in rs if (x := _loo_fitted(r)) is not None]
        if lo:
            pairs = [(r["leave_one_out"][b]["ratios"]["held"][b], v["ratio"]) for r in rs if "leave_one_out" in r
                     for b, v in r["candidate_loo"].items()]
            fit, cand = (np.array(x) for x in zip(*pairs))
            line += (f" Leaving each bed out, within {UNSAFE}x on every left-out bed: the fitted schedule in "
                     f"{count([x for x, _ in lo])} cells, the candidates' choice in {count([y for _, y in lo])}. "
                     f"Per left-out bed ({len(pairs)} cell x bed pairs): the fitted schedule at or below the "
                     f"candidates' choice in {int(np.sum(fit <= cand))}; geometric mean ratio "
                     f"{np.exp(np.mean(np.log(fit))):.3f} against {np.exp(np.mean(np.log(cand))):.3f}; worst "
                     f"{fit.max():.2f} against {cand.max():.2f}.")
        else:
            line += (f" Leaving each bed out, the candidates' choice is within {UNSAFE}x on every left-out bed in "
                     f"{count([_loo_candidate(r) for r in rs])} cells (the fitted schedule was not run so).")
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality.minimax", description=__doc__.split("\n")[0])
    ap.add_argument("--grid", choices=("low", "high"), help="only the cells of one NFE grid")
    ap.add_argument("--nfe-max", type=int, help="only cells up to this NFE")
    ap.add_argument("--leave-one-out", action="store_true", help="also fit without each bed and score on it")
    ap.add_argument("--partial", type=Path, help="write this share's rows here instead of the results")
    ap.add_argument("--share", default="0/1", help="k/n: the k-th of n interleaved shares of the cells")
    ap.add_argument("--combine", help="comma-separated partial files to combine into the results")
    args = ap.parse_args(argv)
    try:
        k, n = (int(x) for x in args.share.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        ap.error(f"--share must be k/n with 0 <= k < n, got {args.share!r}")
    if args.combine:
        try:
            parts = [json.loads(Path(p).read_text()) for p in args.combine.split(",")]
        except (OSError, ValueError) as e:
            ap.error(f"--combine: cannot read a partial file: {e}")
        rows = sorted((r for p in parts for r in p["rows"]),
                      key=lambda r: (r["solver"], r["convention"], r["noise"], r["nfe"]))
        cells = {(c["solver"], c["convention"], c["noise"], c["nfe"]): c for c in unsafe_cells()}
        rows = [{**r, **{k: cells[r["solver"], r["convention"], r["noise"], r["nfe"]][k] for k in DERIVED}}
                for r in rows]
        meta = {"wall_time_s": round(sum(p["meta"]["wall_time_s"] for p in parts), 1)}
    else:
        t0 = time.perf_counter()
        cells = [c for c in unsafe_cells() if (args.grid is None or c["grid"] == args.grid)
                 and (args.nfe_max is None or c["nfe"] <= args.nfe_max)]
        cells = cells[k::n]
        rows = run(cells, args.leave_one_out, progress=True)
        meta = {"wall_time_s": round(time.perf_counter() - t0, 1)}
        if args.partial:
            args.partial.write_text(json.dumps({"rows": rows, "meta": meta}))
            return 0
    OUT_JSON.write_text(json.dumps({"rows": rows, "meta": meta}, indent=1) + "\n")
    OUT_MD.write_text(markdown(rows, meta))
    print(f"wrote {OUT_JSON} and {OUT_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
