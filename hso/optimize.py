"""`hso.optimize`: the HSO bi-level search as one call (spec §3-§7)."""
from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import fast
from .baselines import MethodNotApplicable, baseline_schedule
from .fast.reference import spacing_penalty_and_grad
from .fast.registry import get_backend
from .fast.search_de import PAPER_BOUNDS, SearchSpec
from .inits import INIT_FAMILIES
from .measured import PORTED, VARIANTS, Pick, measured_pick, ported_applies
from .result import ScheduleResult
from .schedules import KIND_VE, NoiseSchedule, as_schedule
from .solvers import get_solver

__all__ = ["optimize", "optimize_many", "d_min", "SPACINGS", "METHODS", "AUTO_RULE", "SEARCH_ARGS", "resolve_method"]

SPACINGS = ("rank", "constrain")
METHODS = ("auto", "hso", "paper")
# optimize's arguments that only an HSO search uses: passing any of them (or a callback) asks for a search, so
# method="auto" then takes method "hso"'s settings (never a baseline that would ignore them)
SEARCH_ARGS = ("objective", "spacing", "p", "trunc_num", "init", "bounds", "popsize", "maxiter", "tol", "mutation",
               "recombination", "polish", "gamma")

# method="hso" (and "auto" where it searches without a measured pick): per (solver, convention, lambda space of
# the noise schedule), the HSO setting measured best in the committed sample-quality results (benchmarks/quality:
# three test beds x SD 2.1 (VP), EDM (VE) and shift-3 flow matching noise, NFE 4-10, RMSE against the converged
# sample), among the paper's MEP p=2 "rank", spacing "constrain", MEP p=1 and the DM-NonUniform objective: the
# lowest geometric-mean ratio to each cell's best setting, where a later setting replaces an earlier one only when
# it is more than 2% better
# (hso.evaluation.report.derive_auto_rule; a test re-derives this table from those results). Keys without
# measurements (other solvers) keep the paper's settings. Euler is DDIM (the same step in other coordinates), so it
# follows DDIM.
AUTO_RULE: dict[tuple[str, str, str], dict[str, Any]] = {
    ("unipc", "jump", "vp"): {"p": 1.0},
    ("dpmsolver++", "jump", "vp"): {"p": 1.0},
    ("ddim", "jump", "vp"): {"spacing": "constrain"},
    ("euler", "jump", "vp"): {"spacing": "constrain"},
    ("unipc", "stop", "ve"): {"objective": "dmn"},
    ("ddim", "stop", "ve"): {"objective": "dmn"},
    ("ddim", "jump", "ve"): {"objective": "dmn"},
    ("euler", "jump", "ve"): {"objective": "dmn"},
    ("unipc", "stop", "flow"): {"spacing": "constrain"},
    ("unipc", "jump", "flow"): {"p": 1.0},
    ("dpmsolver++", "stop", "flow"): {"p": 1.0},
    ("dpmsolver++", "jump", "flow"): {"p": 1.0},
    ("ddim", "stop", "flow"): {"spacing": "constrain"},
    ("ddim", "jump", "flow"): {"spacing": "constrain"},
    ("euler", "jump", "flow"): {"spacing": "constrain"},
}


def resolve_method(method: str, solver: str, convention: str, objective: str | None, spacing: str | None,
                   p: float | None, space: str) -> tuple[str, str, float | None]:
    """(objective, spacing, p) of an HSO search for a method; arguments given explicitly win over its choices.

    ``"paper"``: MEP, spacing "rank", p = 2 (1 for VE), the paper's procedure. ``"hso"``: the paper's except where
    `AUTO_RULE` measured something better for this solver, convention and lambda space (``space``: "vp", "ve" or
    "flow", `NoiseSchedule.kind_name`). ``"auto"`` searches with the same settings as "hso" where it searches (its
    measured picks are made by `optimize`). An explicit objective other than the rule's drops the rule.

    Raises:
        ValueError: an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    rule = AUTO_RULE.get((solver, convention, space), {}) if method != "paper" else {}
    if objective is not None and objective != rule.get("objective", "mep"):
        rule = {}
    objective = objective or rule.get("objective", "mep")
    return objective, spacing or rule.get("spacing", "rank"), p if p is not None else rule.get("p")


def d_min(nfe: int) -> float:
    """The NFE-adaptive minimum gap of the SPF penalty: ``clip(0.15 - 0.00875 (NFE - 4), 0.01, 0.15)``."""
    return float(np.clip(0.15 - 0.00875 * (nfe - 4), 0.01, 0.15))


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _checked_bounds(bounds: Sequence[Sequence[float]] | None, schedule: NoiseSchedule) -> tuple:
    if bounds is None:
        # the paper's box, clipped to the schedule's domain (flow and cosine models end below t = 1)
        (r0, r1), (e0, e1), (m0, m1) = PAPER_BOUNDS
        bounds = ((r0, r1), (max(e0, schedule.t_min), e1), (min(m0, schedule.t_max), min(m1, schedule.t_max)))
    try:
        b = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("bounds must be three (low, high) pairs for rho, t_eps and T_max") from None
    if b.shape != (3, 2):
        raise ValueError(f"bounds must be three (low, high) pairs for rho, t_eps and T_max, got shape {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("bounds contain NaN or inf")
    for name, (lo, hi) in zip(("rho", "t_eps", "T_max"), b):
        if lo > hi:
            raise ValueError(f"inverted bounds for {name}: low {lo} > high {hi}")
    if b[0, 0] <= 0:
        raise ValueError(f"rho must be positive, got lower bound {b[0, 0]}")
    if b[1, 1] >= b[2, 0]:
        raise ValueError(f"t_eps must stay below T_max: t_eps upper bound {b[1, 1]} >= T_max lower bound {b[2, 0]}")
    if b[1, 0] < schedule.t_min or b[2, 1] > schedule.t_max:
        raise ValueError(f"t_eps and T_max bounds must lie in the schedule's time domain "
                         f"[{schedule.t_min}, {schedule.t_max}], got t_eps >= {b[1, 0]}, T_max <= {b[2, 1]}")
    return tuple(map(tuple, b.tolist()))


def optimize(schedule: NoiseSchedule | str = "sd21", nfe: int = 5, solver: str = "unipc", objective: str | None = None,
             *, method: str = "auto", convention: str | None = None, spacing: str | None = None, p: float | None = None,
             trunc_num: int | None = None,
             init: str = "edm_rho", bounds: Sequence[Sequence[float]] | None = None, popsize: int = 20,
             maxiter: int = 60, tol: float = 0.01, mutation: float | tuple[float, float] = (0.5, 1.0),
             recombination: float = 0.7, polish: bool = True, seed: int | None = 66, gamma: float = 1e9,
             backend: str = "auto", callback: Callable[..., Any] | None = None) -> ScheduleResult:
    """Find the best schedule for a model's noise schedule, a solver and an NFE (by default the measured best; the
    HSO search with ``method="hso"`` or ``"paper"``).

    Args:
        schedule: a `NoiseSchedule` or a preset name (``"sd21"``, ``"sdxl"``, ``"edm"``, ``"flow"``, ...).
        nfe: number of network evaluations the sampler may spend.
        solver: ``"unipc"``, ``"dpmsolver++"``, ``"ddim"``, ``"euler"``, ``"heun"``, ``"deis"``, ``"ipndm"``.
        objective: ``"mep"`` (the paper's Midpoint Error Proxy, the default) or ``"dmn"`` (the DM-NonUniform solver
            bound).
        method: ``"auto"`` (default): the schedule that sampled best in the committed quality results for this
            solver, convention, lambda space and NFE (`hso.measured`): the HSO search under the setting ranked
            first, or, where one of the usual baselines (`hso.baselines`) measured better than every HSO setting,
            that baseline's points (``source`` names it; no search runs). Passing any search argument
            (`SEARCH_ARGS` with a non-default value, or a callback) asks for a search: "auto" then behaves as
            "hso". ``"hso"``: the HSO search with the paper's settings, except where the quality results measured
            a better setting for this solver, convention and lambda space (`AUTO_RULE`). ``"paper"``: exactly the
            paper's procedure (MEP, p = 2, spacing "rank"). Explicit ``objective`` / ``spacing`` / ``p`` always
            win.
        convention: ``"stop"`` (N = NFE intervals, the sampler stops at t_eps) or ``"jump"`` (NFE evaluation points,
            then a jump to sigma 0, as diffusers' schedulers do); default: the solver's (stop for UniPC /
            DPM-Solver++, jump for DDIM / Euler / Heun), as in the paper.
        spacing: ``"rank"`` (the paper: the SPF penalty only ranks upper-level candidates) or ``"constrain"`` (the
            lower level keeps every gap >= d_min, so the result is always feasible). Default: the method's.
        p: node-weight exponent of the objective (eps = sigma^p / alpha). Default: the paper's 2, except 1 for
            VE/EDM schedules, where MEP with p = 2 telescopes to the constant e^{-lambda_0} - e^{-lambda_N} and
            ranks every schedule equal (so p = 2 with objective "mep" is refused there).
        trunc_num: DM-NonUniform truncation (None: 3 for NFE <= 7 else 0).
        init: start family of the lower level (``"edm_rho"`` in the paper).
        bounds: ((rho), (t_eps), (T_max)) box; default the paper's [3, 16] x [0.01, 0.03] x [0.96, 1.0].
        popsize, maxiter, tol, mutation, recombination, polish, seed: differential-evolution settings (scipy names;
            population = 3 * popsize).
        gamma: SPF penalty weight.
        backend: engine name or ``"auto"``.
        callback: ``callback(psi_best, fitness_best, generation)``; return True to stop.

    Returns:
        A `ScheduleResult`.

    Raises:
        TypeError: non-integer NFE, wrong argument types.
        ValueError: NFE < 1 or too large for the model, unknown solver / objective / convention / spacing / init /
            preset, inverted or out-of-domain bounds.
    """
    t_start = time.perf_counter()
    job = _prepare(schedule, nfe, solver, objective, method=method, convention=convention, spacing=spacing, p=p,
                   trunc_num=trunc_num, init=init, bounds=bounds, popsize=popsize, maxiter=maxiter, tol=tol,
                   mutation=mutation, recombination=recombination, polish=polish, seed=seed, gamma=gamma,
                   backend=backend, search_requested=callback is not None)
    if job.baseline is not None:
        return _baseline_result(job, time.perf_counter() - t_start)
    out = fast.search(job.schedule, job.lower, job.objective, job.search, backend=job.backend, callback=callback)
    return _result(job, out, time.perf_counter() - t_start)


@dataclass(frozen=True)
class _Job:
    """One validated search: what the engine needs, plus what the result reports."""

    schedule: NoiseSchedule
    lower: fast.LowerSpec
    objective: fast.ObjectiveSpec
    search: SearchSpec
    backend: str
    solver: str
    convention: str
    nfe: int
    spacing: str
    settings: dict[str, Any]
    source: str = "hso"  # "hso" (a search), PORTED (a "stop" search, last point dropped) or a measured baseline
    baseline: np.ndarray | None = None  # that baseline's schedule points


def _measured_choice(sched: NoiseSchedule, solver: str, conv: str, nfe: int, n_int: int
                     ) -> tuple[str, Pick, np.ndarray | None] | None:
    """method="auto": the best-ranked measured candidate that applies to this noise schedule, as (name, pick,
    baseline points or None for one of hso's settings); None where nothing was measured."""
    pick = measured_pick(solver, conv, sched.kind_name, nfe)
    if pick is None:
        return None
    for name, _ in pick.ranking:
        if name in VARIANTS:
            return name, pick, None
        if name == PORTED:
            if ported_applies(solver, conv):
                return name, pick, None
            continue
        try:
            return name, pick, baseline_schedule(name, sched, n_int)
        except MethodNotApplicable:  # e.g. integer spacings on a continuous model: the next one
            continue
    return None


def _prepare(schedule: NoiseSchedule | str, nfe: int, solver: str, objective: str | None, *, method: str = "auto",
             convention: str | None, spacing: str | None, p: float | None, trunc_num: int | None, init: str,
             bounds: Any, popsize: int,
             maxiter: int, tol: float, mutation: Any, recombination: float, polish: bool, seed: int | None,
             gamma: float, backend: str, search_requested: bool = False) -> _Job:
    """Validate every argument (raising before any kernel runs) and build the engine's specs."""
    sched = as_schedule(schedule)
    nfe = _check_int("nfe", nfe, 1)
    spec_solver = get_solver(solver)
    conv = convention or spec_solver.default_convention
    n_int = n_out = spec_solver.n_intervals(nfe, conv)
    if objective is not None and objective not in fast.OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known objectives: {', '.join(fast.OBJECTIVES)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    given = dict(objective=objective, spacing=spacing, p=p, trunc_num=trunc_num, init=init, bounds=bounds,
                 popsize=popsize, maxiter=maxiter, tol=tol, mutation=mutation, recombination=recombination,
                 polish=polish, gamma=gamma)
    defaults = _defaults()
    searching = search_requested or any(not _same(given[k], defaults[k]) for k in SEARCH_ARGS)
    choice = _measured_choice(sched, spec_solver.name, conv, nfe, n_int) if method == "auto" and not searching \
        else None
    measured = None
    search_conv = conv
    if choice is not None:
        name, pick, _ = choice
        measured = {"pick": name, "nfe": pick.nfe, "worst_ratio": dict(pick.ranking)[name],
                    "supported": pick.supported(name)}
        if name in VARIANTS:  # one of hso's settings, relative to the paper's
            objective, spacing, p = resolve_method("paper", spec_solver.name, conv, VARIANTS[name].get("objective"),
                                                   VARIANTS[name].get("spacing"), VARIANTS[name].get("p"),
                                                   sched.kind_name)
        elif name == PORTED:  # method "hso"'s "stop" search for this NFE; the result drops its last point
            search_conv = "stop"
            n_int = spec_solver.n_intervals(nfe, search_conv)
            objective, spacing, p = resolve_method("hso", spec_solver.name, search_conv, None, None, None,
                                                   sched.kind_name)
    if choice is None or choice[2] is not None:
        # a search with the "hso" settings, or a baseline (whose objective value the result reports)
        objective, spacing, p = resolve_method(method, spec_solver.name, conv, objective, spacing, p,
                                               sched.kind_name)
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; known: {', '.join(SPACINGS)}")
    if init not in INIT_FAMILIES:
        raise ValueError(f"unknown init family {init!r}; known: {', '.join(INIT_FAMILIES)}")
    if p is None:
        p = 1.0 if sched.kind == KIND_VE else 2.0
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not math.isfinite(p) \
            or p <= 0:
        raise ValueError(f"p must be a positive number, got {p!r}")
    if objective == "mep" and sched.kind == KIND_VE and p == 2.0:
        raise ValueError("MEP with p=2 is constant for VE/EDM schedules (it telescopes to e^-lambda_0 - e^-lambda_N), "
                         "so it cannot rank schedules; use p=1 (the default there) or objective='dmn'")
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a non-negative number, got {gamma!r}")
    obj = fast.ObjectiveSpec(objective, sched.kind, float(p), trunc_num)
    box = _checked_bounds(bounds, sched)
    popsize = _check_int("popsize", popsize, 1)
    maxiter = _check_int("maxiter", maxiter, 0)
    mut = np.atleast_1d(np.asarray(mutation, dtype=np.float64)) if not isinstance(mutation, str) else np.array([])
    if mut.size not in (1, 2) or not np.all((mut >= 0) & (mut <= 2)) or (mut.size == 2 and mut[0] > mut[1]):
        raise ValueError(f"mutation must be a number in [0, 2] or a (low, high) dithering range inside it, "
                         f"got {mutation!r}")
    if not 0 <= recombination <= 1:
        raise ValueError(f"recombination must lie in [0, 1], got {recombination!r}")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    if seed is not None:
        seed = _check_int("seed", seed, 0)
    engine = get_backend(backend)

    dmin = d_min(nfe)
    gap = sched.time_resolution
    if spacing == "constrain":
        gap = max(gap, dmin * (1 + 1e-12))  # the margin keeps the penalty exactly 0 in spite of rounding
    widest = box[2][1] - box[1][0]
    if n_int * gap > widest:
        what = (f"d_min={dmin:g}" if spacing == "constrain"
                else f"one training step ({1 / sched.num_train_timesteps:g})" if sched.num_train_timesteps
                else f"the time resolution {gap:g}")
        raise ValueError(f"NFE={nfe} is too large: {n_int} intervals of at least {what} do not fit in the widest "
                         f"range T_max - t_eps = {widest:g} of the box")
    lower = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=dmin, gamma=float(gamma), objective=objective,
                           p=float(p), trunc_num=trunc_num, init=init,
                           # the DM-NonUniform bound is non-smooth (sums of |.|): quasi-Newton stalls rather than
                           # converges, so cap it lower than MEP's Newton (which stops in ~6 iterations)
                           maxiter=100 if objective == "mep" else 40)
    mutation = tuple(float(m) for m in mut) if mut.size == 2 else float(mut[0])
    de = SearchSpec(bounds=box, popsize=popsize, maxiter=maxiter, tol=float(tol), mutation=mutation,
                    recombination=float(recombination), polish=bool(polish), seed=seed)
    settings = {"method": method, "init": init, "p": float(p), "trunc_num": trunc_num,
                "bounds": [list(b) for b in box],
                "popsize": popsize, "maxiter": maxiter, "tol": float(tol), "mutation": mutation,
                "recombination": float(recombination), "polish": bool(polish), "seed": seed, "gamma": float(gamma),
                "n_intervals": n_out, "min_gap": gap, "measured": measured, "search_convention": search_conv}
    baseline = choice[2] if choice is not None else None
    source = "hso" if choice is None or choice[0] in VARIANTS else choice[0]
    return _Job(sched, lower, obj, de, engine.name, spec_solver.name, conv, nfe, spacing, settings,
                source=source, baseline=baseline)


def _same(a: Any, b: Any) -> bool:
    """An argument equal to its default (numbers compared as numbers, sequences element-wise)."""
    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))
    except (TypeError, ValueError):
        return a is b


def _make_result(job: _Job, t: np.ndarray, lam: np.ndarray, wall_time: float, **fields: Any) -> ScheduleResult:
    """The public result for points ``t`` (lambdas ``lam``): sigmas for the convention, integer timesteps for
    discrete models (checked: never returned silently wrong), and the job's labels; ``fields`` are the rest."""
    sched = job.schedule
    sig = np.exp(-lam)
    if job.convention == "jump":
        sig = np.append(sig, 0.0)
    timesteps = None
    if sched.is_discrete:
        timesteps = sched.timesteps_of_t(t)
        if np.any(np.diff(timesteps) >= 0):  # cannot happen with gap >= one step (or a measured baseline)
            raise RuntimeError(f"internal error: the {job.source} schedule's integer timesteps "
                               f"{timesteps.tolist()} are not strictly decreasing")
    return ScheduleResult(
        t=t, lambdas=lam, sigmas=sig, timesteps=timesteps, wall_time=wall_time, backend=job.backend,
        convention=job.convention, solver=job.solver, nfe=job.nfe, objective=job.objective.name, spacing=job.spacing,
        d_min=job.lower.d_min, schedule=sched.describe(), settings=dict(job.settings), source=job.source, **fields)


def _result(job: _Job, out: fast.SearchOutcome, wall_time: float) -> ScheduleResult:
    """Turn a search outcome into the public result, checking the guarantees it promises."""
    t = out.lower.t[0]
    lam = out.lower.lambdas[0]
    if job.source == PORTED:  # the "stop" search's points up to its last, for convention "jump"
        t, lam = t[:-1], lam[:-1]
    if job.spacing == "constrain" and out.lower.penalty[0] > 0:
        raise RuntimeError("internal error: the constrained search returned an infeasible schedule")
    return _make_result(job, t, lam, wall_time, psi=out.psi, fitness=out.fitness,
                        mep=float(out.lower.objective[0]), penalty=float(out.lower.penalty[0]), nit=out.nit,
                        nfev=out.nfev, success=out.success, message=out.message)


def _baseline_result(job: _Job, wall_time: float) -> ScheduleResult:
    """The result for a baseline the measured rule picked: its points, with the HSO objective and spacing penalty
    of that schedule reported for comparison (no search ran: ``psi`` is empty, ``nit = nfev = 0``)."""
    t = job.baseline
    lam = job.schedule.lambda_(t)
    value = float(fast.objective_and_grad(lam[None, :], job.objective, backend=job.backend)[0][0])
    penalty = float(spacing_penalty_and_grad(t[None, :], job.lower.d_min, job.lower.gamma)[0][0])
    m = job.settings["measured"]
    msg = (f"measured default: baseline {job.source!r} ranked first for {job.solver} / {job.convention} / "
           f"{job.schedule.kind_name} at NFE {m['nfe']} (worst RMSE ratio to the best baseline over the test beds "
           f"{m['worst_ratio']:.3g}); no search ran")
    return _make_result(job, t, lam, wall_time, psi=np.zeros(0), fitness=value + penalty, mep=value,
                        penalty=penalty, nit=0, nfev=0, success=True, message=msg)


def _defaults() -> dict[str, Any]:
    """`optimize`'s arguments with their defaults (what `_prepare` takes)."""
    return {k: v.default for k, v in inspect.signature(optimize).parameters.items() if k != "callback"}


def optimize_many(configs: Iterable[Mapping[str, Any]], *, progress: bool = False, backend: str = "auto",
                  **defaults: Any) -> list[ScheduleResult]:
    """Many `optimize` calls in one batched pass (e.g. every NFE 3-20 x solver for a model).

    The searches run in lockstep: each round, the populations of all searches that share a noise schedule and a
    lower-level spec are solved in one lower-level call. Results equal those of `optimize` called one by one
    with the same arguments (same seeds, same bytes).

    Args:
        configs: one mapping of `optimize` keyword arguments per search (``schedule``, ``nfe``, ``solver``, ...).
        progress: print a progress line to stderr.
        backend: engine for every search.
        **defaults: `optimize` keyword arguments shared by every config (a config's own value wins).

    Returns:
        One `ScheduleResult` per config, in order; each ``wall_time`` is the whole batch's.

    Raises:
        ValueError / TypeError: as `optimize`, for the first bad config, before any search runs.
    """
    t_start = time.perf_counter()
    base = _defaults()
    jobs = []
    for i, cfg in enumerate(configs):
        unknown = set(cfg) - set(base)
        if unknown:
            raise TypeError(f"config {i}: unknown argument(s) {sorted(unknown)}")
        try:
            jobs.append(_prepare(**{**base, **defaults, **cfg, "backend": backend}))
        except (ValueError, TypeError) as e:
            raise type(e)(f"config {i} ({dict(cfg)}): {e}") from None

    def report(done: int, total: int) -> None:
        print(f"\rhso: {done}/{total} searches", end="", file=sys.stderr, flush=True)

    searches = [j for j in jobs if j.baseline is None]
    outs = iter(fast.search_many([(j.schedule, j.lower, j.objective, j.search) for j in searches], backend=backend,
                                 progress=report if progress else None))
    wall = time.perf_counter() - t_start
    if progress:
        print(f"\rhso: {len(jobs)} schedules: {len(searches)} searches, {len(jobs) - len(searches)} measured "
              "baselines (no search)", file=sys.stderr, flush=True)
    return [_baseline_result(j, wall) if j.baseline is not None else _result(j, next(outs), wall) for j in jobs]
