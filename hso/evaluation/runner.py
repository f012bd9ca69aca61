"""`evaluate`: run real samplers on a test bed with every schedule method and score the samples."""
from __future__ import annotations

import platform
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from .. import testbeds
from ..calibration import calibrate
from ..schedules import KIND_FLOW, NoiseSchedule, as_schedule
from ..solvers import SAMPLER_DEFAULTS, get_solver, sample, sampler_options
from ..version import __version__
from .methods import DEFAULT_METHODS, METHODS, MethodNotApplicable, make_schedule
from .metrics import rmse, sample_metrics
from .reference import conditioning, final_data, initial_state, reference_solution
from .report import Evaluation

__all__ = ["evaluate", "BedSampler", "Evaluation", "DEFAULT_SOLVERS", "DEFAULT_NFES", "QUICK", "MODEL_METHODS",
           "default_prediction"]

# methods that need the model: `hso.calibrate` at a budget of network evaluations (307 = 2% of GITS's 15360;
# 1000 = `hso.calibration.DEFAULT_BUDGET`, the default)
MODEL_METHODS = {"calibrate": 307, "calibrate_1000": 1000}

DEFAULT_SOLVERS = ("unipc", "dpmsolver++", "ddim")
DEFAULT_NFES = (4, 5, 6, 8, 10)
# `--quick`: a smoke-sized run (CI): fewer samples, two NFEs, the cheap HSO objective only
QUICK = {"nfes": (4, 6), "n_samples": 128, "methods": ("hso", "time_uniform", "logSNR", "edm_rho7", "trailing")}


def default_prediction(schedule: NoiseSchedule) -> str:
    """The prediction type a model of this noise schedule gives: the schedule's own, else epsilon (flow for flow
    matching)."""
    if schedule.prediction_type:
        return schedule.prediction_type
    return "flow" if schedule.kind == KIND_FLOW else "epsilon"


class BedSampler:
    """A test bed under a noise schedule as the samplers see it: the denoiser ``D(y, s)`` as a model of the
    schedule's prediction type (`default_prediction`), and ``n_samples`` unit noises drawn from ``seed``. `run`
    samples a schedule from those noises (or the rows ``rows`` of them) and returns the clean data it ends at, with
    the sampler's output. `evaluate`, the calibration replay (`benchmarks/quality/selection.py`) and the fitted
    schedules (`benchmarks/quality/minimax.py`) sample through it."""

    def __init__(self, denoiser: Callable[..., np.ndarray], schedule: NoiseSchedule | str, n_samples: int,
                 seed: int = 0):
        self.denoiser = denoiser
        self.schedule = as_schedule(schedule)
        self.prediction = default_prediction(self.schedule)
        self.model = testbeds.as_model(denoiser, self.schedule, self.prediction)
        self.z = np.random.default_rng(seed).standard_normal((n_samples, getattr(denoiser, "dim", 64)))

    def run(self, t: np.ndarray, solver: str, convention: str, options: dict[str, Any] | None = None,
            rows: slice = slice(None)) -> tuple[np.ndarray, Any]:
        """Sample ``t`` (descending) with ``solver`` in ``convention``: (clean data  # [samples, dim], the
        sampler's `SampleOutput`)."""
        out = sample(self.model, initial_state(self.schedule, float(t[0]), self.z[rows]), self.schedule, t, solver,
                     prediction=self.prediction, convention=convention, return_trajectory=True, **(options or {}))
        return final_data(self.schedule, out.x, float(t[-1]), convention), out


def evaluate(testbed: str | Callable[..., np.ndarray] = "gmm", schedule: NoiseSchedule | str = "sd21", *,
             solvers: Sequence[str] = DEFAULT_SOLVERS, nfes: Sequence[int] = DEFAULT_NFES,
             methods: Sequence[str] = DEFAULT_METHODS, conventions: Sequence[str] | None = None,
             n_samples: int = 512, seed: int = 0, progress: bool = False,
             solver_options: dict[str, dict[str, Any]] | None = None, reference_cache: Any = None,
             replay: Evaluation | None = None, well_conditioned: bool = False) -> Evaluation:
    """Sample with every (solver, convention, NFE, schedule method) on a test bed and score against the reference.

    Args:
        testbed: ``"gmm"`` (exact denoiser), ``"net"`` (the trained network) or an EDM-form denoiser
            ``D(y, s)`` on 64-d digits.
        schedule: the model's noise schedule (a preset name or a `NoiseSchedule`).
        solvers: sampler names (options from ``solver_options`` or `SAMPLER_DEFAULTS`: UniPC bh1 order 3,
            DPM-Solver++ 2M).
        nfes: network evaluations per sample.
        methods: schedule methods (`hso.evaluation.METHODS`); a method that does not apply to the noise schedule
            is skipped and listed in ``skipped``.
        conventions: ``("stop", "jump")`` or a subset; default: each solver's own convention.
        n_samples: samples per run (the same noise for every run).
        seed: seed of the noise.
        progress: print progress to stderr.
        reference_cache: a folder where the converged reference solutions are kept between runs (None: none;
            see `reference_solution`).
        replay: another evaluation of the same test bed and noise schedule whose schedules are re-sampled instead
            of made (no search runs): each (solver, convention, NFE, method) of this call takes the points of
            that evaluation's row, and one it lacks is skipped. With ``solver_options``, this measures the
            same schedules under another sampler variant (UniPC bh2, DPM-Solver++ 3M).
        well_conditioned: also score every row on the well-conditioned samples only (``rmse_wc``; `conditioning`:
            one more reference solve from perturbed noise), and record the ill-conditioned samples in
            ``meta["conditioning"]``.

    Returns:
        An `Evaluation`.

    Raises:
        ValueError: unknown test bed / schedule / solver / method / convention, or an NFE a solver cannot spend
            (all raised before any sampling).
    """
    t_start = time.perf_counter()

    sched = as_schedule(schedule)
    if isinstance(testbed, str):
        den = testbeds.load(testbed)
        bed_name = testbed
    elif callable(testbed):
        den, bed_name = testbed, getattr(testbed, "name", type(testbed).__name__)
    else:
        raise TypeError(f"testbed must be a name or a denoiser callable, got {type(testbed).__name__}")
    lo_hi = getattr(den, "ratio_range", None)  # a network defined on a range of noise levels only (epsnet)
    if lo_hi is not None:
        ends = sched.edm_sigma(np.array([sched.t_min, sched.t_max]))
        if ends.min() < lo_hi[0] * (1 - 1e-9) or ends.max() > lo_hi[1] * (1 + 1e-9):
            raise ValueError(f"test bed {bed_name!r} covers noise-to-signal ratios [{lo_hi[0]:.4g}, {lo_hi[1]:.4g}]; "
                             f"the noise schedule {sched.name!r} spans [{ends.min():.4g}, {ends.max():.4g}]")
    unknown = [m for m in methods if m not in METHODS and m not in MODEL_METHODS]
    if unknown:
        raise ValueError(f"unknown schedule method(s) {unknown}; known: {', '.join(METHODS)}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    opts_all = {k: dict(v) for k, v in SAMPLER_DEFAULTS.items()}
    for k, v in (solver_options or {}).items():
        opts_all[get_solver(k).name] = sampler_options(k, v)
    given: dict[tuple[str, str, int, str], np.ndarray] = {}
    if replay is not None:
        if replay.meta["schedule"] != sched.describe():
            raise ValueError("replay: the evaluation to re-sample ran on another noise schedule")
        given = {(r["solver"], r["convention"], r["nfe"], r["method"]): np.asarray(r["t"], dtype=np.float64)
                 for r in replay.rows}
    jobs = []
    for s in solvers:
        spec = get_solver(s)
        if spec.name not in SAMPLER_DEFAULTS:
            raise ValueError(f"no sampler for solver {s!r}; samplers: {', '.join(SAMPLER_DEFAULTS)}")
        for conv in (conventions or (spec.default_convention,)):
            for nfe in nfes:
                spec.n_intervals(int(nfe), conv)  # raises for an NFE this solver cannot spend
                jobs.append((spec.name, conv, int(nfe)))
    bed = BedSampler(den, sched, int(n_samples), seed)
    prediction, model, z = bed.prediction, bed.model, bed.z
    dim = z.shape[1]

    def say(msg: str) -> None:
        if progress:
            print(f"hso evaluate: {msg}", file=sys.stderr, flush=True)

    # every schedule first (hso searches take milliseconds, except the DM-NonUniform objective)
    plans, skipped, calibrations = [], [], {}
    for solver, conv, nfe in jobs:
        for m in methods:
            if replay is not None:
                if (solver, conv, nfe, m) in given:
                    plans.append((solver, conv, nfe, m, given[(solver, conv, nfe, m)]))
                continue
            if m in MODEL_METHODS:
                # its own noises (another seed): the evaluation's noises are held out from the selection
                cal = calibrate(model, sched, solver, nfe, sample_shape=(dim,), budget=MODEL_METHODS[m],
                                prediction=prediction, convention=conv, solver_options=opts_all.get(solver),
                                seed=seed + 7919)
                calibrations[(solver, conv, nfe, m)] = cal
                plans.append((solver, conv, nfe, m, cal.t))
                continue
            try:
                t = make_schedule(m, sched, solver, nfe, conv)
            except MethodNotApplicable as e:
                if not any(s["method"] == m for s in skipped):
                    skipped.append({"method": m, "reason": str(e)})
                continue
            plans.append((solver, conv, nfe, m, t))
        say(f"schedules for {solver}/{conv}/NFE {nfe} ready")
    ends = sorted({float(t[-1]) for solver, conv, nfe, m, t in plans if conv == "stop"})
    say(f"reference solution for {n_samples} samples ({len(ends)} end points)")
    ref = reference_solution(den, sched, z, ends, cache_dir=reference_cache)
    teacher = sample_metrics(ref.clean)
    cond = conditioning(den, sched, z, cache_dir=reference_cache, rtol=ref.rtol, base=ref.clean) \
        if well_conditioned else None

    def run(solver: str, conv: str, t: np.ndarray) -> tuple[np.ndarray, Any]:
        return bed.run(t, solver, conv, opts_all.get(solver, {}))

    rows = []
    for k, (solver, conv, nfe, m, t) in enumerate(plans):
        opts = opts_all.get(solver, {})
        y, out = run(solver, conv, t)
        target = ref.at(float(t[-1])) if conv == "stop" else ref.clean
        row = {"method": m, "solver": solver, "solver_options": opts, "convention": conv, "nfe": nfe,
               "nfe_spent": out.nfe, "t": t.tolist(),
               "timesteps": sched.timesteps_of_t(t).tolist() if sched.is_discrete else None,
               "rmse": rmse(y, ref.clean), "rmse_end": rmse(y, target), **sample_metrics(y)}
        if cond is not None:
            row["rmse_wc"] = rmse(y[cond.well], ref.clean[cond.well])
        cal = calibrations.get((solver, conv, nfe, m))
        if cal is not None:
            # held-out check: every candidate calibration saw, scored on the evaluation's noises
            held = {c["name"]: rmse(run(solver, conv, np.asarray(c["t"]))[0], ref.clean) for c in cal.candidates}
            best = min(held, key=held.get)
            row.update({"nfe_calibration": cal.nfe_spent, "calibration_noises": cal.n_noise,
                        "calibrate_pick": cal.method, "best_candidate": best, "best_candidate_rmse": held[best],
                        "ratio_to_best_candidate": row["rmse"] / held[best]})
        rows.append(row)
        if (k + 1) % 10 == 0 or k + 1 == len(plans):
            say(f"{k + 1}/{len(plans)} sampler runs")
    meta = {"testbed": bed_name,
            "testbed_info": den.describe() if hasattr(den, "describe") else {"name": bed_name},
            "schedule": sched.describe(), "prediction": prediction, "n_samples": int(n_samples), "seed": seed,
            "solvers": list(dict.fromkeys(j[0] for j in jobs)), "nfes": [int(n) for n in nfes],
            "methods": list(methods),
            "solver_options": {j[0]: opts_all.get(j[0], {}) for j in jobs},
            "schedules": "replayed" if replay is not None else "made",
            "reference": {"method": "scipy DOP853 in lambda", "rtol": ref.rtol, "nfev": ref.nfev,
                          "max_change_vs_rtol_1e-7": ref.max_change},
            **({"conditioning": cond.describe()} if cond is not None else {}),
            "teacher_metrics": teacher, "hso_version": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "wall_time_s": round(time.perf_counter() - t_start, 2)}
    return Evaluation(rows, meta, skipped)
