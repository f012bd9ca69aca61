"""How far the shipped library's schedules move when the inputs move by a few ulps: the evidence behind the
tolerance at which a machine that did not build `hso/library/schedules.json` must reproduce it.

Another CPU, libm or compiler changes the last bits of exp/log and of fused multiply-adds; the bi-level search
(a differential evolution over psi, a Newton or quasi-Newton lower level below it) can amplify such differences.
This study stands in for another machine by perturbing the noise schedule itself: every parameter (EDM sigmas,
flow shift, VP betas) and every entry of a discrete model's log-alpha table is multiplied by ``1 + k u eps`` with
``eps = 2**-52``, ``u`` a fixed random sign per entry and ``k`` in `ULPS`. It then re-runs the library's whole grid
(every preset x solver x convention x NFE 3-20 with `hso.optimize`'s defaults) and records, per entry, the largest
change of ``t`` and of the fitness over the perturbations, and whether the integer timesteps or the source moved.

    python -m benchmarks.perturbation [--presets flow,sd21] [--backend auto]

writes ``benchmarks/results/perturbation.json`` (per entry) and ``perturbation.md`` (summary), which
``tests/test_library.py`` reads: it holds the shipped library to ``SAFETY`` times the largest change measured here.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import hso
from hso.library.build import DEFAULTS, NFES, SOLVER_NAMES
from hso.methods import BLEND, PORTED
from hso.solvers import CONVENTIONS

RESULTS = Path(__file__).resolve().parent / "results"
ULPS = (-4, -1, 1, 4)
SEED = 0
# the library test allows SAFETY times the largest change of t this study measured (another machine's libm differs
# by about as many ulps as perturbed here; the factor covers the study seeing only four such machines)
SAFETY = 10.0
# changes of t below this are round-off that every search shows (the study saw 1060 of 1071 MEP entries move by at most
# 8e-13); the library test allows at least SAFETY times it
FLOOR = 1e-11


def perturbed(sched: hso.NoiseSchedule, k: int, seed: int = SEED) -> hso.NoiseSchedule:
    """The noise schedule with every parameter and table entry moved by ``k`` ulps (random sign per entry)."""
    rng = np.random.default_rng([seed, k + 1000])
    eps = np.finfo(np.float64).eps
    params = {name: float(v * (1 + k * eps * rng.choice((-1.0, 1.0)))) for name, v in sched.params.items()
              if name != "num_train_timesteps"}
    params = {**sched.params, **params}
    table = sched.log_alpha_table
    if table is not None:
        table = table * (1 + k * eps * rng.choice((-1.0, 1.0), size=table.shape))
        table.setflags(write=False)
    return dataclasses.replace(sched, params=params, log_alpha_table=table)


def grid() -> list[tuple[str, str, int]]:
    return [(s, c, n) for s in SOLVER_NAMES for c in CONVENTIONS for n in NFES]


def study(presets: Sequence[str], backend: str = "auto", ulps: Sequence[int] = ULPS,
          log: Any = sys.stderr) -> dict[str, Any]:
    """Per entry ``"preset/solver/convention/nfe"``: the largest |delta t|, relative |delta fitness|, and whether
    timesteps or source changed, over the perturbations."""
    entries: dict[str, dict[str, Any]] = {}
    cells = grid()
    for name in presets:
        t0 = time.perf_counter()
        base_sched = hso.NoiseSchedule.preset(name)
        configs = [dict(solver=s, convention=c, nfe=n) for s, c, n in cells]
        base = hso.optimize_many(configs, schedule=base_sched, backend=backend, **DEFAULTS)
        for k in ulps:
            out = hso.optimize_many(configs, schedule=perturbed(base_sched, k), backend=backend, **DEFAULTS)
            for (s, c, n), a, b in zip(cells, base, out):
                e = entries.setdefault(f"{name}/{s}/{c}/{n}", {
                    "source": a.source, "objective": a.objective, "n_intervals": int(a.t.size - 1),
                    "dt": 0.0, "dfitness_rel": 0.0, "timesteps_moved": False, "source_moved": False})
                same_shape = a.t.shape == b.t.shape
                e["dt"] = max(e["dt"], float(np.max(np.abs(a.t - b.t))) if same_shape else float("inf"))
                e["dfitness_rel"] = max(e["dfitness_rel"], abs(a.fitness - b.fitness) / max(abs(a.fitness), 1e-300))
                if a.timesteps is not None:
                    e["timesteps_moved"] |= a.timesteps.tolist() != b.timesteps.tolist()
                e["source_moved"] |= a.source != b.source
        print(f"perturbation: {name}: {len(cells)} entries x {len(ulps)} perturbations in "
              f"{time.perf_counter() - t0:.1f} s", file=log, flush=True)
    return entries


def made_by(entry: dict[str, Any]) -> str:
    """What made a library entry: a search with its objective (hso's own, or the ported "stop" search), a blend of
    two candidates, or a baseline (the objective of the last two is only how the library reports them)."""
    if entry["source"] in ("hso", PORTED):
        return f"search ({entry['objective']})"
    return "blend" if entry["source"] == BLEND else "baseline"


def summary(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The largest changes over all entries, by what made them (`made_by`), and the tolerance the library test
    applies."""
    out: dict[str, Any] = {}
    for kind in sorted({made_by(e) for e in entries.values()}):
        es = [e for e in entries.values() if made_by(e) == kind]
        out[kind] = {"entries": len(es), "dt_max": max(e["dt"] for e in es),
                     "dfitness_rel_max": max(e["dfitness_rel"] for e in es),
                     "moved_over_floor": sum(e["dt"] > FLOOR for e in es),
                     "timesteps_moved": sum(e["timesteps_moved"] for e in es),
                     "source_moved": sum(e["source_moved"] for e in es)}
    return out


def tolerance(entry: dict[str, Any]) -> float:
    """The |delta t| the library test allows for an entry: SAFETY times what the study measured, at least FLOOR."""
    return SAFETY * max(entry["dt"], FLOOR)


def markdown(record: dict[str, Any]) -> str:
    lines = [f"# Library perturbation study ({record['date']})", "",
             f"`{record['command']}` on {record['machine']}; perturbations of {record['ulps']} ulps of every "
             "noise-schedule parameter and table entry; grid: every preset x solver x convention x NFE 3-20 with "
             "`hso.optimize`'s defaults. Per entry the largest change over the perturbations; the library test "
             f"allows {SAFETY:g}x an entry's measured |delta t| (at least {FLOOR:g}).", "",
             "| made by | entries | max abs delta t | max rel delta fitness | entries moved > 1e-12 | "
             "integer timesteps moved | source moved |", "|---|---|---|---|---|---|---|"]
    for kind, s in record["summary"].items():
        lines.append(f"| {kind} | {s['entries']} | {s['dt_max']:.3g} | {s['dfitness_rel_max']:.3g} | "
                     f"{s['moved_over_floor']} | {s['timesteps_moved']} | {s['source_moved']} |")
    worst = sorted(record["entries"].items(), key=lambda kv: -kv[1]["dt"])[:10]
    lines += ["", "Largest movers:", "", "| entry | source | objective | N | delta t | rel delta fitness | "
              "timesteps moved |", "|---|---|---|---|---|---|---|"]
    for key, e in worst:
        lines.append(f"| {key} | {e['source']} | {e['objective']} | {e['n_intervals']} | {e['dt']:.3g} | "
                     f"{e['dfitness_rel']:.3g} | {e['timesteps_moved']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.perturbation", description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=",".join(hso.PRESETS))
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--render", action="store_true",
                    help="re-write the summary and perturbation.md from the committed perturbation.json (no study)")
    args = ap.parse_args(argv)
    if args.render:
        record = json.loads((args.out / "perturbation.json").read_text(encoding="utf-8"))
        record["summary"] = summary(record["entries"])
        _write(args.out, record)
        return 0
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in hso.PRESETS]
    if unknown or not presets:
        print(f"python -m benchmarks.perturbation: error: unknown preset(s) {unknown}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    entries = study(presets, args.backend)
    record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "python -m benchmarks.perturbation" + (f" --presets {args.presets}" if argv else ""),
              "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}",
              "backend": hso.fast.get_backend(args.backend).name, "ulps": list(ULPS), "safety": SAFETY,
              "floor": FLOOR, "wall_s": round(time.perf_counter() - t0, 1), "summary": summary(entries),
              "entries": entries}
    _write(args.out, record)
    return 0


def _write(out: Path, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "perturbation.json").write_text(json.dumps(record, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    text = markdown(record)
    (out / "perturbation.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
