"""The blend's weight, measured where no other candidate is safe (issue 19)

The blend (`hso.methods.BLEND`) puts each point between the two schedules of its measured pair, in lambda. Where
no other candidate is within 1.25x of the best on every rule bed (an "unsafe" cell), the beds often want opposite
ends of the pair, and a point nearer one end serves them better than the midpoint. This re-samples, in every
unsafe cell (solver x convention x noise schedule x NFE, unsafe for any sampler variant of the solver; both
grids), the blend of that cell's committed pair at the weights `WEIGHTS` (`hso.optimize.blend_points(...,
weight)` of the partners' committed points) on every rule bed of the noise schedule, under every sampler variant
of the solver, with the same noises and converged references as the committed results. Each row is the blend's
RMSE ratio to the best other candidate of that bed, variant and cell; weight 0.5 is the committed blend row
itself. `hso.evaluation.report.derive_blend_weights` then chooses each cell's weight (the measured rule stores it
with the pair; 0.5 elsewhere), and the committed blend rows are then re-measured at it
(`python -m benchmarks.quality.run --methods blend`, then with `--variants`).

    python -m benchmarks.quality.blend_weights                # about 20 min on one core
    python -m benchmarks.quality.blend_weights --noises ddpm,edm --partial /tmp/a.json   # a share of the cells
    python -m benchmarks.quality.blend_weights --combine /tmp/a.json,/tmp/b.json          # the shares together

writes ``benchmarks/quality/blend_weights.json`` (rows and per-cell summary) and ``blend_weights.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hso.baselines import MethodNotApplicable
from hso.evaluation import evaluate
from hso.evaluation.methods import METHODS
from hso.evaluation.report import (RULE_METRIC, _cell_ratios, derive_blend_pairs, derive_blend_weights, sampler_of,
                                   valid_row)
from hso.methods import BLEND_PARTNERS
from hso.optimize import blend_points
from hso.schedules import as_schedule
from hso.solvers import sampler_label, sampler_options

from .run import (GRIDS, REFERENCE_CACHE, RULE_BEDS, SAMPLER_VARIANTS, UNSAFE, config_dir, load_results,
                  rule_evaluations, variant_path)

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "blend_weights.json"
OUT_MD = HERE / "blend_weights.md"
WEIGHTS = (0.2, 0.35, 0.5, 0.65, 0.8)


def unsafe_cells() -> list[dict]:
    """The cells to sweep, from the committed results of every candidate but the blend (so that re-measured blend
    rows do not move them): per (solver, convention, noise, NFE) with a blend pair, each sampler variant's best
    other candidate's worst ratio over the rule beds (to the best of the others); a cell is swept where that
    exceeds `UNSAFE` for some variant."""
    evs = rule_evaluations(load_results())
    labels: dict[str, str] = {}

    def label(ev, solver: str) -> str:
        name = sampler_of(ev, solver)[0]
        labels[name] = solver
        return name

    cells, _ = _cell_ratios(evs, BLEND_PARTNERS, label)
    pairs = {(p["solver"], p["convention"], p["noise"], p["nfe"]): p["pair"] for p in derive_blend_pairs(evs)}
    best: dict[tuple, dict[str, float]] = {}
    for (sampler, conv, _space, noise, nfe), per_bed in cells.items():
        common = [m for m in BLEND_PARTNERS if all(m in bed for bed in per_bed)]
        if common:
            key = (labels[sampler], conv, noise, nfe)
            best.setdefault(key, {})[sampler] = min(max(bed[m] for bed in per_bed) for m in common)
    return [{"solver": k[0], "convention": k[1], "noise": k[2], "nfe": k[3], "pair": list(pairs[k]),
             "best_other": dict(sorted(v.items()))}
            for k, v in sorted(best.items()) if k in pairs and max(v.values()) > UNSAFE]


def _grid(nfe: int) -> str:
    return next(g for g, spec in GRIDS.items() if nfe in spec["nfes"])


def _samplers(bed: str, noise: str, grid: str, solver: str) -> list[tuple[str, dict, Path]]:
    """(label, options, committed results) of every measured sampler of ``solver`` on a configuration."""
    out = [(solver, sampler_options(solver), config_dir(bed, noise, grid) / "results.json")]
    for s, opts in SAMPLER_VARIANTS:
        if s == solver:
            out.append((sampler_label(s, opts), sampler_options(s, opts), variant_path(bed, noise, grid, s, opts)))
    return [x for x in out if x[2].exists()]


def _cell_rows(path: Path) -> dict[tuple, dict[str, dict]]:
    """(solver, convention, NFE) -> method -> row, the committed rows of one results file (calibrate left out)."""
    out: dict[tuple, dict[str, dict]] = {}
    for r in json.loads(path.read_text())["rows"]:
        if not r["method"].startswith("calibrate"):
            out.setdefault((r["solver"], r["convention"], r["nfe"]), {})[r["method"]] = r
    return out


def measure(cells: list[dict], progress: bool = False) -> list[dict]:
    """Every weight's blend in every cell, on every rule bed and sampler variant: its RMSE ratio to the best other
    candidate there; weight 0.5 is the committed blend row."""
    out = []
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["noise"], _grid(c["nfe"]), c["solver"]), []).append(c)
    for (noise, grid, solver), group in groups.items():
        sched = as_schedule(noise)
        want = {(c["convention"], c["nfe"]): c for c in group}
        for bed in RULE_BEDS:
            base = config_dir(bed, noise, grid) / "results.json"
            if not base.exists():
                continue
            points = _cell_rows(base)  # the partners' points: every variant re-samples the base schedules

            def weighted(w: float):
                def fn(schedule, solver_, nfe, conv):
                    c = want.get((conv, nfe))
                    by = points.get((solver_, conv, nfe), {})
                    if c is None or not all(p in by for p in c["pair"]):
                        raise MethodNotApplicable("not a swept cell")
                    return blend_points(schedule, by[c["pair"][0]]["t"], by[c["pair"][1]]["t"], w)
                return fn

            for label, opts, path in _samplers(bed, noise, grid, solver):
                committed = _cell_rows(path)
                swept = [w for w in WEIGHTS if w != 0.5]  # the midpoint is the committed blend row
                names = [f"_blend_weight_{w}" for w in swept]
                for name, w in zip(names, swept):
                    METHODS[name] = weighted(w)
                try:
                    ev = evaluate(bed, sched, solvers=[solver], solver_options={solver: opts},
                                  nfes=sorted({c["nfe"] for c in group}), conventions=("stop", "jump"),
                                  methods=names, n_samples=GRIDS[grid]["n_samples"],
                                  reference_cache=REFERENCE_CACHE, progress=progress,
                                  well_conditioned=RULE_METRIC == "rmse_wc")
                finally:
                    for name in names:
                        METHODS.pop(name, None)
                for r in ev.rows:
                    rows = committed.get((r["solver"], r["convention"], r["nfe"]), {})
                    others = [x[RULE_METRIC] for m, x in rows.items() if m in BLEND_PARTNERS and valid_row(x)]
                    if not others:
                        continue
                    best = min(others)
                    cell = {"solver": solver, "sampler": label, "convention": r["convention"], "noise": noise,
                            "nfe": r["nfe"], "bed": bed}
                    out.append({**cell, "weight": float(r["method"].rsplit("_", 1)[1]),
                                "ratio": r[RULE_METRIC] / best})
                    if r["method"] == names[0] and "blend" in rows and valid_row(rows["blend"]):
                        out.append({**cell, "weight": 0.5, "ratio": rows["blend"][RULE_METRIC] / best})
    return out


def summarise(cells: list[dict], rows: list[dict]) -> list[dict]:
    """Per cell and sampler variant: each weight's worst ratio over the beds (`WEIGHTS` order) and the best other
    candidate's; then the weight `derive_blend_weights` chooses."""
    out = []
    for c in cells:
        key = (c["solver"], c["convention"], c["noise"], c["nfe"])
        mine = [r for r in rows if (r["solver"], r["convention"], r["noise"], r["nfe"]) == key]
        samplers = {}
        for s, best_other in c["best_other"].items():
            rs = [r for r in mine if r["sampler"] == s]
            if all(any(r["weight"] == w for r in rs) for w in WEIGHTS):
                samplers[s] = {"worst": [max(r["ratio"] for r in rs if r["weight"] == w) for w in WEIGHTS],
                               "best_other": best_other}
        if samplers:
            out.append({**c, "samplers": samplers})
    for cell, chosen in zip(out, derive_blend_weights(out, WEIGHTS)):
        cell["weight"] = chosen["weight"]
    return out


def markdown(summary: list[dict], meta: dict) -> str:
    mid = WEIGHTS.index(0.5)

    def default_worst(cell: dict, i: int) -> float:  # the worst variant's better of blend and best other
        return max(min(v["worst"][i], v["best_other"]) for v in cell["samplers"].values())

    lines = ["# The blend's weight in the unsafe cells (generated by `python -m benchmarks.quality.blend_weights`)", "",
             f"{meta['cells']} cells (solver, convention, noise, NFE) where, for some sampler variant, no candidate "
             f"but the blend is within {UNSAFE}x of the best on every rule bed. Per weight: over the variants, the "
             "worst of "
             "(the blend's worst RMSE ratio over the rule beds, or the best other candidate's where that is lower), "
             "ratios to the best other candidate; weight 0 is the pair's first schedule, 1 its second. The chosen "
             "weight is `hso.evaluation.report.derive_blend_weights`'s. "
             f"{meta['wall_time_s']} s of sampling.", "",
             "| solver | convention | noise | NFE | pair | variants | best other (worst variant) | "
             + " | ".join(f"w {w}" for w in WEIGHTS) + " | chosen |",
             "|---|---|---|---:|---|---:|---:|" + "---:|" * len(WEIGHTS) + "---:|"]
    for s in summary:
        other = max(v["best_other"] for v in s["samplers"].values())
        lines.append(f"| {s['solver']} | {s['convention']} | {s['noise']} | {s['nfe']} | {' + '.join(s['pair'])} | "
                     f"{len(s['samplers'])} | {other:.2f} | "
                     + " | ".join(f"{default_worst(s, i):.2f}" for i in range(len(WEIGHTS))) + f" | {s['weight']} |")
    n_var = sum(len(s["samplers"]) for s in summary)

    def safe(i_of):
        return sum(min(v["worst"][i_of(s)], v["best_other"]) <= UNSAFE for s in summary for v in s["samplers"].values())

    chosen = safe(lambda s: WEIGHTS.index(s["weight"]))
    at_mid = safe(lambda s: mid)
    moved = sum(s["weight"] != 0.5 for s in summary)
    lines += ["", f"Sampler-variant cells within {UNSAFE}x on every rule bed (blend or best other): {at_mid} of "
              f"{n_var} "
              f"with the midpoint, {chosen} with the chosen weights; a weight other than 0.5 is chosen in {moved} of "
              f"{len(summary)} cells. Weight 0.5 is the committed blend row (the default samplers' re-measured once "
              "with this sweep's points, commit f732e94: the same RMSE to a relative 1.8e-11)."]
    return "\n".join(lines) + "\n"


def write(cells: list[dict], rows: list[dict], wall: float) -> None:
    summary = summarise(cells, rows)
    meta = {"cells": len(summary), "weights": list(WEIGHTS), "unsafe": UNSAFE, "wall_time_s": round(wall, 1)}
    # one row per line (thousands of them), the small meta and summary first
    OUT_JSON.write_text('{"meta": ' + json.dumps(meta) + ',\n"summary": [\n' + ",\n".join(map(json.dumps, summary))
                        + '],\n"rows": [\n' + ",\n".join(map(json.dumps, rows)) + "]}\n")
    OUT_MD.write_text(markdown(summary, meta))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noises", default=None, help="comma-separated noise schedules to sweep (default: all)")
    ap.add_argument("--partial", type=Path, default=None, help="write only the measured rows here")
    ap.add_argument("--combine", default=None, help="comma-separated --partial files: write the outputs from them")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    cells = unsafe_cells()
    if args.combine:
        parts = [json.loads(Path(p).read_text()) for p in args.combine.split(",")]
        write(cells, [r for p in parts for r in p["rows"]], sum(p["wall_time_s"] for p in parts))
        print(OUT_MD.read_text())
        return 0
    if args.noises:
        cells = [c for c in cells if c["noise"] in args.noises.split(",")]
    t0 = time.perf_counter()
    rows = measure(cells, args.progress)
    if args.partial:
        args.partial.write_text(json.dumps({"rows": rows, "wall_time_s": round(time.perf_counter() - t0, 1)}))
        return 0
    write(cells, rows, time.perf_counter() - t0)
    print(OUT_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
