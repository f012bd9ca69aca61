"""Would a blend weight other than the midpoint make the unsafe cells safe? (issue 19: measured, not adopted)

The blend (`hso.methods.BLEND`) puts each point at the midpoint in lambda of its measured pair. Where no candidate is
within 1.25x of the best on every rule bed (an "unsafe" cell of `hso/measured_rule.json`), the beds often want
opposite ends of the pair. This re-samples, in every unsafe cell of the default samplers (UniPC bh1 order 3,
DPM-Solver++ 2M, DDIM; both grids), the blend of that cell's committed pair at weights 0.2, 0.35, 0.5, 0.65 and
0.8 (`hso.optimize.blend_points(..., weight)`, made from the partners' committed points) on every rule bed of
the noise schedule, with the same noises and converged references as the committed results, and scores each as
its RMSE ratio to the best committed schedule of that bed and cell. Weight 0.5 re-measures the committed blend row
(a check: the same points, the same sampler, the same noises).

    python -m benchmarks.quality.blend_weights      # about 15 min on one core; writes blend_weights.{json,md}

Not adopted by the default: a weight chosen per cell must hold for every sampler variant (the pair is chosen over
all of them) and would need the blend and default rows, the library and the perturbation study re-measured.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hso.baselines import MethodNotApplicable
from hso.evaluation import evaluate
from hso.evaluation.methods import METHODS, register_method
from hso.measured import rule_table
from hso.optimize import blend_points
from hso.schedules import as_schedule

from .run import GRIDS, REFERENCE_CACHE, RULE_BEDS, config_dir

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "blend_weights.json"
OUT_MD = HERE / "blend_weights.md"
WEIGHTS = (0.2, 0.35, 0.5, 0.65, 0.8)
UNSAFE = 1.25  # the acceptance's bound: within 1.25x of the best on every bed
DEFAULT_SAMPLERS = ("unipc", "dpmsolver++", "ddim")


def unsafe_cells() -> list[dict]:
    """The default samplers' rule cells whose best candidate is beyond `UNSAFE` on some rule bed, with the pair
    the committed blend mixes there."""
    table = rule_table()
    pairs = {(p["solver"], p["convention"], p["noise"], p["nfe"]): tuple(p["pair"]) for p in table["blend_pairs"]}
    out = []
    for r in table["rules"]:
        if r["sampler"] != r["solver"] or r["sampler"] not in DEFAULT_SAMPLERS:
            continue
        key = (r["solver"], r["convention"], r["noise"], r["nfe"])
        if r["ranking"][0][1] > UNSAFE and key in pairs:
            out.append({"solver": key[0], "convention": key[1], "noise": key[2], "nfe": key[3], "pair": pairs[key],
                        "best": r["ranking"][0][0], "best_worst": r["ranking"][0][1]})
    return out


def _grid(nfe: int) -> str:
    return next(g for g, spec in GRIDS.items() if nfe in spec["nfes"])


def _committed(bed: str, noise: str, grid: str) -> list[dict] | None:
    path = config_dir(bed, noise, grid) / "results.json"
    if not path.exists():
        return None
    return [r for r in json.loads(path.read_text())["rows"] if not r["method"].startswith("calibrate")]


def measure(cells: list[dict], progress: bool = False) -> list[dict]:
    """Per cell and rule bed: each weight's RMSE ratio to the bed's best committed schedule in that cell."""
    out = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["noise"], _grid(c["nfe"])), []).append(c)
    for (noise, grid), group in groups.items():
        sched = as_schedule(noise)
        for bed in RULE_BEDS:
            rows = _committed(bed, noise, grid)
            if rows is None:
                continue
            cell_rows = {}
            for c in group:
                rr = [r for r in rows if (r["solver"], r["convention"], r["nfe"]) ==
                      (c["solver"], c["convention"], c["nfe"])]
                if rr:
                    cell_rows[(c["solver"], c["convention"], c["nfe"])] = {r["method"]: r for r in rr}

            def weighted(w: float):
                def fn(schedule, solver, nfe, conv):
                    by = cell_rows.get((solver, conv, nfe))
                    c = next((c for c in group if (c["solver"], c["convention"], c["nfe"]) == (solver, conv, nfe)),
                             None)
                    if by is None or c is None or not all(p in by for p in c["pair"]):
                        raise MethodNotApplicable("not an unsafe cell of this sweep")
                    return blend_points(schedule, by[c["pair"][0]]["t"], by[c["pair"][1]]["t"], w)
                return fn

            names = []
            for w in WEIGHTS:
                name = f"_blend_weight_{w}"
                METHODS.pop(name, None)
                register_method(name)(weighted(w))
                names.append(name)
            try:
                ev = evaluate(bed, sched, solvers=sorted({c["solver"] for c in group}),
                              nfes=sorted({c["nfe"] for c in group}), conventions=("stop", "jump"), methods=names,
                              n_samples=GRIDS[grid]["n_samples"], reference_cache=REFERENCE_CACHE, progress=progress)
            finally:
                for name in names:
                    METHODS.pop(name, None)
            for r in ev.rows:
                key = (r["solver"], r["convention"], r["nfe"])
                best = min(x["rmse"] for x in cell_rows[key].values())
                committed_blend = cell_rows[key].get("blend", {}).get("rmse")
                out.append({"solver": key[0], "convention": key[1], "noise": noise, "nfe": key[2], "bed": bed,
                            "weight": float(r["method"].rsplit("_", 1)[1]), "ratio": r["rmse"] / best,
                            "committed_blend_ratio": None if committed_blend is None else committed_blend / best})
    return out


def summarise(cells: list[dict], rows: list[dict]) -> list[dict]:
    """Per cell: each weight's worst ratio over the beds, the best weight, and the committed best candidate."""
    out = []
    for c in cells:
        mine = [r for r in rows if (r["solver"], r["convention"], r["noise"], r["nfe"]) ==
                (c["solver"], c["convention"], c["noise"], c["nfe"])]
        if not mine:
            continue
        worst = [max(r["ratio"] for r in mine if r["weight"] == w) for w in WEIGHTS]  # in `WEIGHTS` order
        i_best = min(range(len(WEIGHTS)), key=lambda i: (worst[i], abs(WEIGHTS[i] - 0.5)))
        out.append({**c, "pair": list(c["pair"]), "worst": worst, "best_weight": WEIGHTS[i_best],
                    "beds": len({r["bed"] for r in mine})})
    return out


def markdown(summary: list[dict], meta: dict) -> str:
    lines = ["# A blend weight other than the midpoint, in the unsafe cells (generated by "
             "`python -m benchmarks.quality.blend_weights`)", "",
             f"{meta['cells']} cells of the default samplers where no committed candidate is within {UNSAFE}x of the "
             "best on every rule bed. Each weight's blend of the cell's committed pair, worst RMSE ratio over the rule "
             "beds to the best committed schedule (weight 0 = the pair's first, 1 = its second). "
             f"{meta['wall_time_s']} s.", "",
             "| solver | convention | noise | NFE | pair | best candidate (worst) | "
             + " | ".join(f"w {w}" for w in WEIGHTS) + " | best weight |",
             "|---|---|---|---:|---|---|" + "---:|" * len(WEIGHTS) + "---:|"]
    for s in summary:
        lines.append(f"| {s['solver']} | {s['convention']} | {s['noise']} | {s['nfe']} | {' + '.join(s['pair'])} | "
                     f"{s['best']} ({s['best_worst']:.2f}) | "
                     + " | ".join(f"{x:.2f}" for x in s["worst"]) + f" | {s['best_weight']} |")
    mid = WEIGHTS.index(0.5)
    safe_mid = sum(s["worst"][mid] <= UNSAFE for s in summary)
    safe_any = sum(min(s["worst"]) <= UNSAFE for s in summary)
    better = sum(min(s["worst"]) < s["best_worst"] / 1.02 for s in summary)
    lines += ["", f"Within {UNSAFE}x on every bed: {safe_mid} of {len(summary)} cells at the midpoint, {safe_any} at the "
              f"best weight of the cell. The best weight beats the cell's best committed candidate by more than 2% in "
              f"{better} of {len(summary)} cells. Weight 0.5 re-measured the committed blend rows to a relative "
              f"{meta['midpoint_check']:.1e} at most (float32 networks differ between runs in the last bits)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noises", default=None, help="comma-separated noise schedules to sweep (default: all)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cells = unsafe_cells()
    if args.noises:
        cells = [c for c in cells if c["noise"] in args.noises.split(",")]
    rows = measure(cells, args.progress)
    summary = summarise(cells, rows)
    check = [abs(r["ratio"] / r["committed_blend_ratio"] - 1) for r in rows
             if r["weight"] == 0.5 and r["committed_blend_ratio"]]
    meta = {"cells": len(summary), "weights": WEIGHTS, "unsafe": UNSAFE, "midpoint_check": max(check, default=0.0),
            "wall_time_s": round(time.perf_counter() - t0, 1)}
    OUT_JSON.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=1) + "\n")
    OUT_MD.write_text(markdown(summary, meta))
    print(OUT_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
