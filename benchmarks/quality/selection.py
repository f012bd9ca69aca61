"""How well does `hso.calibrate` choose? Its selection replayed on recorded errors, many times per cell.

For every configuration (test bed x noise family) and cell (solver x convention x NFE), every candidate that
`hso.calibrate` considers is run once with the real sampler on ``--noises`` noises, and each noise's squared error
is recorded twice: against calibrate's own teacher (what calibration sees) and against the converged reference
(the truth the quality benchmark scores). `hso.calibration.select` is then replayed ``--draws`` times per cell, each
time on fresh random noises from that pool with its budget accounting, and its pick is scored on the noises that
draw did not use. Rules compared, at 307 and 1000 network evaluations:

* ``calibrate``: what `hso.calibrate` does (the default is the incumbent: a challenger needs a 2% margin and a lead
  of more than one standard error of the per-noise differences; ranked first round);
* ``lowest error``: plain successive halving, the lowest measured error wins (calibrate before the incumbent rule);
* ``default only``: no measurement, `hso.optimize`'s model-free pick;
* ``ceiling``: the lowest error on half of the pool (256 noises by default, tens of times the budget's worth),
  scored on the other half, to show how much of the 2% criterion is noise in the scoring itself.

    python -m benchmarks.quality.selection                      # every configuration of `run.CONFIGS` (24: their
                                                                # recorded wall times sum to 24 min)
    python -m benchmarks.quality.selection --only gmm_sd21      # one

Writes ``benchmarks/quality/<config>/selection.json`` per configuration and ``benchmarks/quality/selection.md``
from all of them; the README's quality section summarises them (`benchmarks.quality.run`).
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from hso import testbeds
from hso.calibration import candidate_schedules, EvaluationCounter, default_objectives, first_round, select, teacher_solution
from hso.evaluation.reference import conditioning, reference_solution
from hso.evaluation.runner import BedSampler
from hso.solvers import SAMPLER_DEFAULTS

from .run import CONFIGS, REFERENCE_CACHE

HERE = Path(__file__).parent
OUT = HERE / "selection.md"
BUDGETS = (307, 1000)
TEACHER_STEPS = 32  # calibrate's default
WITHIN = 1.02


def record(bed: str, preset: str, n_noise: int, seed: int, cache: Path | None = None) -> dict:
    """Per cell: candidate names, per-noise squared errors vs the teacher and vs the reference; the teacher's cost;
    which noises are well-conditioned (`hso.evaluation.conditioning`, for ``--well-conditioned``).
    With ``cache`` (a folder), a recording of the same configuration, noises and seed is read from there, or written
    there (a pickle; rules can then be replayed without re-running the candidates). The key is only the
    configuration, noise count and seed: clear the folder when the candidates or the engine change."""
    key = cache / f"{bed}_{preset}_{n_noise}_{seed}.pkl" if cache is not None else None
    if key is not None and key.exists():
        with key.open("rb") as fh:
            return pickle.load(fh)
    den = testbeds.load(bed)
    sampler = BedSampler(den, preset, n_noise, seed)
    sched, pred, model, z = sampler.schedule, sampler.prediction, sampler.model, sampler.z
    reference = reference_solution(den, sched, z, [], cache_dir=REFERENCE_CACHE)
    ref = reference.clean
    counter = EvaluationCounter(model)
    teacher = teacher_solution(counter, sched, z, pred, TEACHER_STEPS)
    teach_cost = counter.spent // n_noise
    objectives = default_objectives()
    cells = {}
    for solver in ("unipc", "dpmsolver++", "ddim"):
        for conv in ("stop", "jump"):
            for nfe in (4, 5, 6, 8, 10):
                names, e_teacher, e_ref = [], [], []
                for name, t in candidate_schedules(sched, solver, nfe, conv, objectives, 3):
                    y = sampler.run(t, solver, conv, SAMPLER_DEFAULTS[solver])[0]
                    names.append(name)
                    e_teacher.append(np.mean((y - teacher) ** 2, axis=1))
                    e_ref.append(np.mean((y - ref) ** 2, axis=1))
                cells[(solver, conv, nfe)] = (names, np.array(e_teacher), np.array(e_ref))
    well = conditioning(den, sched, z, cache_dir=REFERENCE_CACHE, rtol=reference.rtol, base=ref).well
    out = {"cells": cells, "teach_cost": teach_cost, "well": well}
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        with key.open("wb") as fh:
            pickle.dump(out, fh)
    return out


def replay(e_teacher: np.ndarray, nfe: int, budget: int, teach_cost: int, rng: np.random.Generator,
           rule: str) -> tuple[int, np.ndarray]:
    """One calibration on random noises of the pool: (pick, noises used)."""
    n_cand, n_noise = e_teacher.shape
    order = rng.permutation(n_noise)
    used = 0
    spent = 1  # the probe

    def run_round(alive: list[int], k: int) -> np.ndarray:
        nonlocal used, spent
        idx = order[used:used + k]
        used += k
        spent += k * (teach_cost + len(alive) * nfe)
        return e_teacher[np.ix_(alive, idx)]

    # calibrate plans with the nominal teacher cost, as `hso.calibrate` does; "lowest error" runs every candidate
    # the budget affords in a first round of two noises, and no incumbent
    calib = rule == "calibrate"
    plan = TEACHER_STEPS + 1
    n = first_round(n_cand, budget, plan, nfe, share=0.5 if calib else 1.0)
    sel = select(n, run_round, lambda: budget - spent, plan, nfe, incumbent=calib)
    return sel.winner, order[:used]


def score(data: dict, draws: int, seed: int, well_conditioned: bool = False) -> dict:
    """Per rule and budget: share of (cell, draw) picks within 2% of the best candidate on the unused noises, the
    number of cells where that share is at least one half, and the mean / worst-cell mean ratio to the best.
    ``well_conditioned``: score on the unused noises that `hso.evaluation.conditioning` does not flag (the
    selection itself still sees every noise it draws, as `hso.calibrate` would)."""
    out = {}
    rules = [(r, b) for b in BUDGETS for r in ("calibrate", "lowest error")] + [("default only", 0), ("ceiling", None)]
    for rule, budget in rules:
        shares, means = [], []
        for (solver, conv, nfe), (names, e_t, e_r) in data["cells"].items():
            rng = np.random.default_rng(seed)
            ratios = []
            for _ in range(draws):
                if rule == "ceiling":
                    perm = rng.permutation(e_t.shape[1])
                    half = e_t.shape[1] // 2
                    pick, used = int(np.argmin(e_t[:, perm[:half]].sum(axis=1))), perm[:half]
                elif rule == "default only":
                    pick, used = 0, np.array([], dtype=int)
                else:
                    pick, used = replay(e_t, nfe, budget, data["teach_cost"], rng, rule)
                mask = np.array(data["well"]) if well_conditioned else np.ones(e_r.shape[1], dtype=bool)
                mask[used] = False
                held = np.sqrt(e_r[:, mask].mean(axis=1))
                ratios.append(held[pick] / held.min())
                if rule == "default only":
                    break  # deterministic
            ratios = np.array(ratios)
            shares.append(float(np.mean(ratios <= WITHIN)))
            means.append(float(np.mean(ratios)))
        out[f"{rule}|{budget}"] = {"rule": rule, "budget": budget, "within": float(np.mean(shares)),
                                   "cells_half": int(sum(s >= 0.5 for s in shares)), "cells": len(shares),
                                   "mean_ratio": float(np.mean(means)), "worst_cell_ratio": float(max(means))}
    return out


def tails(data: dict, top: float = 0.05) -> dict:
    """Why a few noises cannot settle it: in how many cells the default is more than 2% worse (RMSE against the
    reference on the whole pool) than the best candidate, in how many of those the best candidate has the lower
    error on fewer than half of the noises (its lead comes from a few noises where the default fails badly), and
    the share of the default's summed squared error carried by its worst ``top`` fraction of noises (median and
    maximum over cells)."""
    lose = rare = 0
    share = []
    for names, _, e_r in data["cells"].values():
        rmse = np.sqrt(e_r.mean(axis=1))
        best = int(np.argmin(rmse))
        worst = np.sort(e_r[0])[::-1]
        share.append(float(worst[:max(1, round(top * worst.size))].sum() / worst.sum()))
        if rmse[0] > WITHIN * rmse[best]:
            lose += 1
            rare += int(np.mean(e_r[best] < e_r[0]) < 0.5)
    return {"cells": len(share), "default_loses": lose, "won_on_few_noises": rare, "top": top,
            "top_share_median": float(np.median(share)), "top_share_max": float(max(share))}


def load_selection() -> dict[str, dict]:
    """The committed replay results per configuration (``{"meta": ..., "rules": ...}``), in `CONFIGS` order."""
    out = {}
    for bed, preset in CONFIGS:
        p = HERE / f"{bed}_{preset}" / "selection.json"
        if p.exists():
            out[f"{bed}_{preset}"] = json.loads(p.read_text())
    return out


def section(name: str, res: dict, meta: dict) -> str:
    lines = [f"## {name}", "",
             f"{meta['noises']} noises per cell (seed {meta['seed']}), {meta['draws']} replays per cell, teacher "
             f"{meta['teach_cost']} evaluations per noise; {meta['wall_time_s']} s.", "",
             "| rule | budget | picks within 2% | cells within 2% in at least half the replays | mean ratio | "
             "worst cell (mean ratio) |", "|---|---:|---:|---:|---:|---:|"]
    for r in res.values():
        budget = f"{meta['noises'] // 2} noises" if r["budget"] is None else r["budget"]
        lines.append(f"| {r['rule']} | {budget} | {r['within']:.2f} | {r['cells_half']} / {r['cells']} | "
                     f"{r['mean_ratio']:.3f} | {r['worst_cell_ratio']:.3f} |")
    t = meta.get("tails")
    if t:
        lines += ["", f"The default is more than 2% worse than the best candidate (whole pool) in {t['default_loses']} "
                  f"of {t['cells']} cells; in {t['won_on_few_noises']} of those the best candidate has the lower error "
                  f"on fewer than half of the noises. The worst {t['top']:.0%} of noises carry "
                  f"{t['top_share_median']:.0%} of the default's squared error (median cell; at most "
                  f"{t['top_share_max']:.0%})."]
    return "\n".join(lines) + "\n"


HEADER = """# How well `hso.calibrate` chooses (generated by `python -m benchmarks.quality.selection`)

Each candidate calibration considers, run once on a pool of noises; `hso.calibration.select` replayed on random
draws from the pool with its budget accounting; its pick scored by RMSE against the converged reference on the
noises the draw did not use, as a ratio to the best candidate there. "picks within 2%": the share of (cell, replay)
pairs within 2% of the best; "ceiling": the lowest error on half the pool, scored on the other half. The line
under each table says how much of the error a few noises carry: where a candidate beats the default on most noises,
a few noises can show it; where its lead comes from the few noises on which the default fails badly, only many can.

"""


def markdown() -> str:
    """selection.md from the committed per-configuration replays."""
    return HEADER + "\n".join(section(n, d["rules"], d["meta"]) for n, d in load_selection().items())


def write_markdown() -> None:
    OUT.write_text(markdown())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help="comma-separated configs, e.g. gmm_sd21,net_edm")
    ap.add_argument("--noises", type=int, default=512)
    ap.add_argument("--draws", type=int, default=60)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--well-conditioned", action="store_true",
                    help="a measurement only: score the picks on the well-conditioned held-out noises too and print "
                         "both per configuration (the committed files are not written)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep (or reuse) each configuration's recorded errors in this folder (clear it when the "
                         "candidates or the engine change)")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    for bed, preset in CONFIGS:
        name = f"{bed}_{preset}"
        if only and name not in only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        data = record(bed, preset, args.noises, args.seed, args.cache)
        res = score(data, args.draws, args.seed)
        if args.well_conditioned:
            wc = score(data, args.draws, args.seed, well_conditioned=True)
            print(f"{name}: ill-conditioned noises {int(np.sum(~np.asarray(data['well'])))} of {args.noises}; mean "
                  "ratio to the best candidate, all held-out noises / well-conditioned ones: " + ", ".join(
                      f"{k} {res[k]['mean_ratio']:.3f} / {wc[k]['mean_ratio']:.3f}" for k in res), flush=True)
            continue
        meta = {"noises": args.noises, "seed": args.seed, "draws": args.draws, "teach_cost": data["teach_cost"],
                "wall_time_s": round(time.perf_counter() - t0, 1), "tails": tails(data)}
        (HERE / name / "selection.json").write_text(json.dumps({"meta": meta, "rules": res}, indent=1) + "\n")
        print(json.dumps({k: round(v["within"], 3) for k, v in res.items()}), file=sys.stderr, flush=True)
        write_markdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
