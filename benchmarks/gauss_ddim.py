"""Does a closed-form Gaussian objective choose better DDIM schedules? (issue 19, item 5: verified, not adopted)

For data x0 ~ N(0, diag(s_k)) the exact denoiser is linear, and DDIM's output is the unit noise z at its first
point scaled per direction by a product of per-step gains. With r = sigma / alpha = e^-lambda:

    G_k = (c_0 / alpha_0) * prod_i (s_k + r_i r_{i+1}) / (s_k + r_i^2)  *  [s_k / (s_k + r_N^2)  for "jump"]

(c_0: the state's scale at the first point, 1 for VP; the "stop" output is x_N / alpha_N). The converged sample
from unit noise at t_max is E_k z_k with E_k = sqrt(s_k) / (alpha_max sqrt(s_k + r_max^2)), so the expected squared
error per dimension is mean_k (G_k - E_k)^2: a closed form in the schedule. This script minimises it over
schedules (scipy Nelder-Mead then BFGS from four baselines, the first point free in [t_min, t_max], the last at
t_min; integer timesteps made unique on discrete models), for two spectra:

* ``gauss_data``: the eigenvalues of the test bed's data second moment (digits or photograph patches);
* ``gauss_generic``: s_k proportional to 1 / (1 + k), with the data's total second moment;

and samples the schedules with DDIM on the committed test beds (same noises, same converged references), scoring
each as its RMSE ratio to the best schedule of the committed results in that cell (below 1: better than every
committed schedule).

    python -m benchmarks.gauss_ddim            # about 10 min on one core; writes benchmarks/results/gauss_ddim.md
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

import hso
from hso.baselines import MethodNotApplicable, baseline_schedule
from hso.evaluation import Evaluation, evaluate
from hso.evaluation.methods import METHODS, register_method
from hso.evaluation.report import valid_row
from hso.measured import CANDIDATE_ORDER

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "gauss_ddim.md"
CONFIGS = (("gmm", "sd21"), ("net", "sd21"), ("patches", "sd21"), ("epsnet", "sd21"), ("gmm", "ddpm"),
           ("net", "ddpm"), ("patches", "ddpm"), ("epsnet", "ddpm"))
INITS = ("time_uniform", "trailing", "leading", "logSNR")


def data_spectrum(bed: str) -> np.ndarray:
    """Eigenvalues (descending) of the second moment of the bed's data (40000 draws of its fitted mixture)."""
    from hso.testbeds.gmm import GaussianMixtureDenoiser

    g = GaussianMixtureDenoiser.load(data="patches" if bed == "patches" else "digits")
    x = g.sample(40000, np.random.default_rng(0))
    return np.sort(np.linalg.eigvalsh(x.T @ x / len(x)))[::-1]


def generic_spectrum(total: float, dim: int) -> np.ndarray:
    s = 1.0 / (1.0 + np.arange(dim))
    return s * (total / s.sum())


def closed_form_error(sched: hso.NoiseSchedule, t: np.ndarray, s: np.ndarray, convention: str) -> float:
    """Mean squared error per dimension of DDIM on N(0, diag(s)) data, unit noise at t[0] (VP), against the
    converged sample from unit noise at t_max."""
    a, sg = sched.alpha(t)[:, None], sched.sigma(t)[:, None]
    r = sg / a
    gain = np.prod((s + r[:-1] * r[1:]) / (s + r[:-1] ** 2), axis=0) / a[0]
    gain = gain * s / (s + r[-1] ** 2) if convention == "jump" else gain
    a_max, s_max = float(sched.alpha(sched.t_max)), float(sched.sigma(sched.t_max))
    exact = np.sqrt(s) / (a_max * np.sqrt(s + (s_max / a_max) ** 2))
    return float(np.mean((gain - exact) ** 2))


def minimise(sched: hso.NoiseSchedule, n_int: int, s: np.ndarray, convention: str) -> np.ndarray:
    """The schedule minimising `closed_form_error` (first point free, last at t_min)."""
    lo, hi = sched.t_min, sched.t_max

    def points(u: np.ndarray) -> np.ndarray:
        w = np.exp(u[1:] - u[1:].max())
        top = lo + (hi - lo) / (1.0 + np.exp(-u[0]))
        return top - (top - lo) * np.concatenate([[0.0], np.cumsum(w / w.sum())])

    best = None
    for init in INITS:
        try:
            t0 = baseline_schedule(init, sched, n_int)
        except MethodNotApplicable:
            continue
        d = np.maximum(-np.diff(t0), 1e-4)
        top = min(max(float(t0[0]), lo + 1e-3), hi - 1e-6)
        u = np.concatenate([[np.log((top - lo) / (hi - top))], np.log(d / d.sum())])
        f = lambda v: closed_form_error(sched, points(v), s, convention)  # noqa: E731
        u = minimize(f, u, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-12}).x
        res = minimize(f, u, method="BFGS")
        if best is None or res.fun < best[0]:
            best = (float(res.fun), points(res.x))
    t = best[1]
    if sched.is_discrete:
        ts = sched.timesteps_of_t(t)
        for i in range(1, ts.size):
            ts[i] = min(ts[i], ts[i - 1] - 1)
        t = sched.t_of_timesteps(ts)
    return t


def _method(spectra: dict[str, np.ndarray], which: str):
    def fn(schedule: hso.NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
        return minimise(schedule, hso.get_solver(solver).n_intervals(nfe, convention), spectra[which], convention)
    return fn


def run(bed: str, preset: str) -> list[dict]:
    base = Evaluation.from_json((HERE / "quality" / f"{bed}_{preset}" / "results.json").read_text())
    s_data = data_spectrum(bed)
    spectra = {"data": s_data, "generic": generic_spectrum(float(s_data.sum()), s_data.size)}
    for which in spectra:
        METHODS.pop(f"gauss_{which}", None)
        register_method(f"gauss_{which}")(_method(spectra, which))
    ev = evaluate(bed, preset, solvers=("ddim",), nfes=base.meta["nfes"], methods=("gauss_data", "gauss_generic"),
                  conventions=("stop", "jump"), n_samples=base.meta["n_samples"], seed=base.meta["seed"],
                  reference_cache=HERE / "quality" / ".reference_cache")
    out = []
    for cell in ev.cells():
        rows = {r["method"]: r["rmse"] for r in base.rows
                if (r["solver"], r["convention"], r["nfe"]) == cell and valid_row(r) and r["method"] in CANDIDATE_ORDER}
        best = min(rows, key=rows.get)
        mine = {r["method"]: r["rmse"] / rows[best] for r in ev.rows
                if (r["solver"], r["convention"], r["nfe"]) == cell}
        default = next(r["rmse"] for r in base.rows if (r["solver"], r["convention"], r["nfe"]) == cell
                       and r["method"] == "hso") / rows[best]
        out.append({"config": f"{bed}_{preset}", "convention": cell[1], "nfe": cell[2], "best": best,
                    "default": default, **mine})
    return out


def markdown(rows: list[dict], seconds: float) -> str:
    lines = ["# A closed-form Gaussian objective for DDIM (generated by `python -m benchmarks.gauss_ddim`)", "",
             f"{len(rows)} DDIM cells, {seconds:.0f} s. RMSE ratio to the best schedule of the committed results in "
             "the cell (below 1: better than every committed schedule); `default` is hso's default there.", "",
             "| configuration | convention | NFE | best committed | default | gauss_data | gauss_generic |",
             "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['convention']} | {r['nfe']} | {r['best']} | {r['default']:.3f} | "
                     f"{r['gauss_data']:.3f} | {r['gauss_generic']:.3f} |")
    lines += ["", "| configuration | gauss_data range | gauss_generic range |", "|---|---|---|"]
    for c in dict.fromkeys(r["config"] for r in rows):
        sub = [r for r in rows if r["config"] == c]
        lines.append(f"| {c} | " + " | ".join(f"{min(r[m] for r in sub):.2f}-{max(r[m] for r in sub):.2f}"
                                               for m in ("gauss_data", "gauss_generic")) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gauss_ddim", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help="comma-separated configurations, e.g. gmm_sd21,patches_sd21")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    t0, rows = time.perf_counter(), []
    for bed, preset in CONFIGS:
        if only and f"{bed}_{preset}" not in only:
            continue
        print(f"== {bed}_{preset}", file=sys.stderr, flush=True)
        rows += run(bed, preset)
    OUT.write_text(markdown(rows, time.perf_counter() - t0))
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
