"""How well the DM-NonUniform lower level minimises its objective: the cpp kernel against scipy's trust-constr on the
same problem (same end points, same gap constraints in t, exact gradient), per candidate.

    python -m benchmarks.dmn_lower            # writes benchmarks/results/dmn_lower.md (about 2 minutes here)

For each preset, NFE (UniPC, "stop") and spacing, 6 candidates psi drawn in the paper's box (seed 0) are solved by
`hso.fast.lower_solve` (backend cpp, the production settings: maxiter 40) and by trust-constr (xtol 1e-12, gtol
1e-11, maxiter 3000) from two starts, the cpp result and the uniform-in-t schedule, keeping the better. The table
reports the objective ratio cpp / trust-constr (above 1: cpp stopped higher than scipy reached) and wall time per
candidate of each. This measures the optimiser, not sample quality. The last columns solve the same candidates
with cpp again without the production cap (maxiter `UNCAPPED`): the ratio of the capped objective to that one
(above 1: the cap stops the solver short of where it converges) and the iterations it then takes.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.optimize import LinearConstraint, minimize

from hso import fast
from hso.optimize import plan

OUT = Path(__file__).resolve().parent / "results" / "dmn_lower.md"
UNCAPPED = 4000  # iterations: 100x the production cap (a few candidates still reach it: the last column says)
GRID = [(preset, nfe, spacing) for preset in ("sd21", "edm", "flow") for nfe in (5, 8, 10)
        for spacing in ("rank", "constrain")]


def trust_constr(schedule, lower, fn, t_row: np.ndarray, starts: list[np.ndarray]) -> tuple[float, float]:
    """Best objective trust-constr reaches over the interior of ``t_row`` (end points fixed), and seconds taken."""
    n, top, bot = lower.n_intervals, t_row[0], t_row[-1]

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        lam, d1, _ = schedule.lambda_derivs(np.concatenate([[top], x, [bot]])[None])
        v, g = fn(lam, hessian=False)[:2]
        return float(v[0]), (g * d1)[0, 1:-1]

    a = np.eye(n, n - 1, -1) - np.eye(n, n - 1)
    const = np.zeros(n)
    const[0], const[-1] = top, -bot
    best, t0 = np.inf, time.perf_counter()
    for x0 in starts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                r = minimize(f, x0, jac=True, method="trust-constr",
                             constraints=LinearConstraint(a, lower.gap - const, np.inf),
                             options={"xtol": 1e-12, "gtol": 1e-11, "maxiter": 3000})
            except (ValueError, np.linalg.LinAlgError):  # a trial point where the objective is not finite
                continue
        if np.isfinite(r.fun) and np.all(a @ r.x + const >= lower.gap * (1 - 1e-9)):  # only feasible answers count
            best = min(best, r.fun)
    return best, time.perf_counter() - t0


def run(rows_per_cell: int = 6) -> list[dict]:
    out = []
    for preset, nfe, spacing in GRID:
        pl = plan(preset, nfe, "unipc", objective="dmn", spacing=spacing, convention="stop")
        sched, lower = pl.schedule, pl.lower
        obj = fast.objective_spec(lower, sched.kind)
        box = np.array(pl.search.bounds)
        psi = box[:, 0] + np.random.default_rng(0).random((rows_per_cell, 3)) * (box[:, 1] - box[:, 0])
        t0 = time.perf_counter()
        got = fast.lower_solve(psi, sched, lower, obj, backend="cpp")
        cpp_s = (time.perf_counter() - t0) / rows_per_cell
        free = fast.lower_solve(psi, sched, replace(lower, maxiter=UNCAPPED), obj, backend="cpp")
        fn = fast._objective_fn(obj, fast.get_backend("cpp"))
        ratios, sc_s, capped, iters = [], 0.0, [], []
        for i in range(rows_per_cell):
            if not got.feasible[i]:
                continue
            capped.append(got.objective[i] / free.objective[i])
            iters.append(int(free.iters[i]))
            t = got.t[i]
            uni = np.linspace(t[0], t[-1], lower.n_intervals + 1)[1:-1]
            ref, sec = trust_constr(sched, lower, fn, t, [t[1:-1], uni])
            sc_s += sec
            if np.isfinite(ref):  # scipy failed from both starts: no comparison
                ratios.append(got.objective[i] / ref)
        r = np.array(ratios)
        if r.size == 0:  # no feasible candidate in this draw (or scipy failed on each): nothing to compare
            out.append({"preset": preset, "nfe": nfe, "spacing": spacing, "n": 0})
            continue
        out.append({"preset": preset, "nfe": nfe, "spacing": spacing, "n": r.size, "median": float(np.median(r)),
                    "max": float(r.max()), "worse": int((r > 1 + 1e-6).sum()), "cpp_ms": cpp_s * 1e3,
                    "scipy_ms": sc_s / r.size * 1e3, "capped_median": float(np.median(capped)),
                    "capped_max": float(np.max(capped)), "iters_median": float(np.median(iters)),
                    "iters_max": int(np.max(iters))})
        print(f"{preset} NFE {nfe} {spacing}: cpp/trust-constr median {np.median(r):.4f} max {r.max():.4f}, "
              f"worse in {(r > 1 + 1e-6).sum()}/{r.size}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dmn_lower", description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=6, help="candidates per cell")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    rows = run(args.rows)
    lines = ["# DM-NonUniform lower level: cpp kernel vs scipy trust-constr on the same problem", "",
             f"{time.strftime('%Y-%m-%d')}, `python -m benchmarks.dmn_lower` (UniPC, convention \"stop\", "
             f"{args.rows} candidates per cell drawn in the paper's box, seed 0). Ratio = cpp objective / the best "
             "feasible trust-constr objective from two starts (the cpp result, uniform in t); above 1: cpp stopped "
             "higher. Times per candidate. Capped / uncapped: the production solve's objective over the same "
             f"cpp solve with maxiter {UNCAPPED} (median, max), and the iterations that one took (median, max).",
             "", "| preset | NFE | spacing | candidates | ratio median | ratio max | cpp higher (> 1e-6) | cpp ms | "
             "trust-constr ms | capped / uncapped | uncapped iterations |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["n"] == 0:
            lines.append(f"| {r['preset']} | {r['nfe']} | {r['spacing']} | 0 | - | - | - | - | - | - | - |")
            continue
        lines.append(f"| {r['preset']} | {r['nfe']} | {r['spacing']} | {r['n']} | {r['median']:.4f} | "
                     f"{r['max']:.4f} | {r['worse']} | {r['cpp_ms']:.3f} | {r['scipy_ms']:.0f} | "
                     f"{r['capped_median']:.3f}, {r['capped_max']:.3f} | {r['iters_median']:.0f}, "
                     f"{r['iters_max']} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
