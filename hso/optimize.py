"""`hso.optimize`: the HSO bi-level search as one call (spec §3-§7)."""
from __future__ import annotations

import inspect
import math
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import fast
from .baselines import MethodNotApplicable, baseline_schedule
from .fast.registry import get_backend
from .fast.search_de import PAPER_BOUNDS, SearchSpec
from .inits import INIT_FAMILIES
from .measured import UNMEASURED_FIRST, SearchRule, blend_pair, blend_weight, measured_pick
from .methods import PORTED, SCHEDULE_METHODS, SEARCH_SETTINGS, ported_applies
from .result import ScheduleResult, sampler_sigmas
from .schedules import KIND_VE, NoiseSchedule, as_schedule
from .solvers import get_solver, sampler_options

__all__ = ["optimize", "optimize_many", "plan", "Plan", "d_min", "max_nfe", "MAX_NFE", "MAX_P", "MAX_GAMMA", "SPACINGS", "METHODS", "AUTO_RULE", "SEARCH_ARGS", "resolve_method",
           "method_schedule", "blend_points"]

SPACINGS = ("rank", "constrain")
# the most network evaluations `optimize` plans for (no sampler in use spends more; continuous models would
# otherwise allow about a million intervals)
MAX_NFE = 1000
# the largest node-weight exponent p: the weights grow like sigma^p, and an EDM schedule's overflow float64 near
# p = 160 (the paper uses 2, the measured settings 1)
MAX_P = 10.0
# the largest spacing-penalty weight gamma (the paper's is 1e9): gamma * N * gap^2 must stay finite in float64
MAX_GAMMA = 1e100
METHODS = ("auto", "hso", "paper")
# optimize's arguments that only an HSO search uses: passing any of them (or a callback) asks for a search, so
# method="auto" then takes method "hso"'s settings (never a baseline that would ignore them)
SEARCH_ARGS = ("objective", "spacing", "p", "trunc_num", "init", "bounds", "popsize", "maxiter", "tol", "mutation",
               "recombination", "polish", "gamma")

# method="hso" (and "auto" where it searches without a measured pick): per (solver, convention, lambda space of
# the noise schedule), the HSO setting measured best in the committed sample-quality results, among the paper's
# MEP p=2 "rank", spacing "constrain", MEP p=1 and the DM-NonUniform objective (`hso.measured.SearchRule`, read from
# measured_rule.json, which benchmarks/quality/run.py derives and a test re-derives). Keys without measurements
# (other solvers) keep the paper's settings.
AUTO_RULE: Mapping[tuple[str, str, str], dict[str, Any]] = SearchRule()


# the largest number of intervals at which a measured rule may choose the DM-NonUniform objective by itself: its
# dense quasi-Newton lower level grows like N^3 (35-50 s per search at N = 49 on 2 cores), and no rule was
# measured beyond NFE 50; there the rule's other settings stand and the objective is MEP (asked for explicitly,
# DM-NonUniform runs at any N)
DMN_RULE_MAX = 50


def resolve_method(method: str, solver: str, convention: str, objective: str | None, spacing: str | None,
                   p: float | None, space: str, n_intervals: int | None = None) -> tuple[str, str, float | None]:
    """(objective, spacing, p) of an HSO search for a method; arguments given explicitly win over its choices.

    ``"paper"``: MEP, spacing "rank", p = 2 (1 for VE), the paper's procedure. ``"hso"``: the paper's except where
    `AUTO_RULE` measured something better for this solver, convention and lambda space (``space``: "vp", "ve" or
    "flow", `NoiseSchedule.kind_name`). ``"auto"`` searches with the same settings as "hso" where it searches (its
    measured picks are made by `optimize`). An explicit objective other than the rule's drops the rule; beyond
    `DMN_RULE_MAX` intervals (``n_intervals``) a rule's DM-NonUniform objective gives way to MEP.

    Raises:
        ValueError: an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    rule = AUTO_RULE.get((solver, convention, space), {}) if method != "paper" else {}
    if objective is not None and objective != rule.get("objective", "mep"):
        rule = {}
    if objective is None and rule.get("objective") == "dmn" and (n_intervals or 0) > DMN_RULE_MAX:
        rule = {k: v for k, v in rule.items() if k != "objective"}
    objective = objective or rule.get("objective", "mep")
    return objective, spacing or rule.get("spacing", "rank"), p if p is not None else rule.get("p")


def _setting_evidence(pick: Any, method: str, setting: tuple[str, str, float | None], space: str
                      ) -> dict[str, Any]:
    """What the measured ranking says of the search ``method`` runs with ``setting`` (objective, spacing, p): the
    row of `SEARCH_SETTINGS` it is, with that row's worst ratio to the best schedule over the test beds (None where
    the cell did not rank it)."""
    # each row's setting in resolved form (method "paper" applies no rule, so solver and convention play no part)
    name = next((n for n, v in SEARCH_SETTINGS.items()
                 if resolve_method("paper", "", "", v.get("objective"), v.get("spacing"), v.get("p"), space)
                 == setting), None)
    ratio = dict(pick.ranking).get(name) if name else None
    return {"pick": name or f"method {method!r}", "nfe": pick.nfe, "noise": pick.noise,
            "noise_measured": pick.noise_measured, "sampler": pick.sampler,
            "worst_ratio": ratio, "supported": ratio is not None and pick.supported(name)}


def max_nfe(schedule: NoiseSchedule | str, solver: str = "unipc", convention: str | None = None) -> int:
    """The largest NFE `optimize` serves for this model, solver and convention: at most `MAX_NFE`, and no more
    intervals than fit in the paper's box at the model's time resolution (one training step for a discrete model:
    989 intervals for T = 1000: a 0.99 range, one step plus a 1e-9 margin each).

    Raises:
        ValueError: an unknown solver or convention, or a model too coarse for even one interval.
    """
    sched = as_schedule(schedule)
    spec = get_solver(solver)
    (_, _), (e0, _), (_, m1) = _checked_bounds(None, sched)
    widest, gap = m1 - e0, sched.time_resolution
    n_fit = int(widest // gap)  # then exactly `plan`'s test, n * gap <= widest, in spite of rounding
    while n_fit * gap > widest:
        n_fit -= 1
    while (n_fit + 1) * gap <= widest:
        n_fit += 1
    for nfe in range(MAX_NFE, 0, -1):
        try:
            if spec.n_intervals(nfe, convention) <= n_fit:
                return nfe
        except ValueError as e:  # an NFE this solver cannot spend exactly (Heun "stop": even NFEs only)
            if "unknown convention" in str(e):
                raise
    raise ValueError(f"the noise schedule {sched.name!r} is too coarse for one interval of {solver}")


def d_min(nfe: int) -> float:
    """The NFE-adaptive minimum gap of the SPF penalty: ``clip(0.15 - 0.00875 (NFE - 4), 0.01, 0.15)``."""
    return float(np.clip(0.15 - 0.00875 * (nfe - 4), 0.01, 0.15))


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _check_number(name: str, v: Any, what: str) -> float:
    """A real number (not a bool), finite; ``what`` (e.g. "a positive number") names its range in the error, which
    the caller checks."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {what}, got {type(v).__name__}")
    if not math.isfinite(v):
        raise ValueError(f"{name} must be {what}, got {v!r}")
    return float(v)


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
             backend: str = "auto", callback: Callable[..., Any] | None = None,
             solver_options: Mapping[str, Any] | None = None) -> ScheduleResult:
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
        solver_options: the sampler's variant, e.g. ``{"order": 2, "variant": "bh2"}`` (diffusers' stock UniPC) or
            ``{"order": 3}`` (DPM-Solver++ 3M); see `hso.solvers.sampler_options`. Default: the solver's
            (`hso.solvers.SAMPLER_DEFAULTS`: UniPC bh1 order 3, DPM-Solver++ 2M). ``method="auto"`` takes the
            measured ranking of this variant where it was measured, else of the nearest measured one (then not
            ``supported``); the result records the options.

    Returns:
        A `ScheduleResult`.

    Raises:
        TypeError: non-integer NFE, wrong argument types.
        ValueError: NFE < 1 or too large for the model, unknown solver / objective / convention / spacing / init /
            preset, inverted or out-of-domain bounds.
    """
    t_start = time.perf_counter()
    return plan(schedule, nfe, solver, objective, method=method, convention=convention, spacing=spacing, p=p,
                trunc_num=trunc_num, init=init, bounds=bounds, popsize=popsize, maxiter=maxiter, tol=tol,
                mutation=mutation, recombination=recombination, polish=polish, seed=seed, gamma=gamma,
                backend=backend, callback=callback, solver_options=solver_options).run(callback, t_start=t_start)


@dataclass(frozen=True)
class Plan:
    """What `optimize` will run for a request, validated: a search with its engine specs, or a measured baseline's
    points (``baseline``), and the labels the result reports. Made by `plan`; `run` carries it out.

    Attributes:
        schedule, solver, convention, nfe, spacing, backend: the resolved request.
        lower, objective, search: the engine's specs (`hso.fast.LowerSpec`, `ObjectiveSpec`, `SearchSpec`).
        settings: what the result records in ``settings`` (``settings["measured"]``: the measured pick, and the
            candidates passed over because they are not valid here, with the reason).
        source: "hso" (a search), "hso_stop_ported" (the "stop" search, last point dropped), a baseline's name or
            "blend".
        baseline: the baseline's points ``t  # [N+1]``; None for a search or a blend.
        solver_options: the sampler's options, its defaults filled in (`hso.solvers.sampler_options`).
        blend: for a blend, its measured pair (`hso.measured.blend_pair`): planning stays cheap, `run` makes the
            points (a partner that is a search runs then) and, where they are not a valid schedule here (colliding
            integer timesteps), runs ``fallback`` instead, the plan the ranking gives without the blend, with the
            blend named among the candidates passed over.
    """

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
    source: str = "hso"
    baseline: np.ndarray | None = None
    solver_options: dict[str, Any] = field(default_factory=dict)
    blend: tuple[str, ...] = ()
    fallback: "Plan | None" = None

    @property
    def is_search(self) -> bool:
        """True when running the plan runs its own search (False: a measured baseline's points or a blend)."""
        return self.baseline is None and not self.blend

    @property
    def search_key(self) -> tuple:
        """What a search's result depends on (equal keys, equal bytes): the engine's specs, the backend and the noise
        schedule, not the solver or NFE beyond them; and the source (the ported search's result drops a point)."""
        return (self.source, self.lower, self.objective, self.search, self.backend, self.schedule.content_key())

    def run(self, callback: Callable[..., Any] | None = None, *, t_start: float | None = None) -> ScheduleResult:
        """Carry the plan out: the search (``callback`` as in `optimize`), the baseline's result, or the blend's
        (its partners made, searches included)."""
        t_start = time.perf_counter() if t_start is None else t_start
        if self.blend:
            return self.run_blend({}, callback, t_start=t_start)
        if not self.is_search:
            return _baseline_result(self, time.perf_counter() - t_start)
        out = fast.search(self.schedule, self.lower, self.objective, self.search, backend=self.backend,
                          callback=callback)
        return _result(self, out, time.perf_counter() - t_start)

    def run_blend(self, made: Mapping[str, np.ndarray], callback: Callable[..., Any] | None = None, *,
                  t_start: float) -> ScheduleResult:
        """A blend plan's result, with partners' points already ``made`` (name -> points; the others made here);
        where the points are not a valid schedule here, the fallback's result."""
        try:
            points = _checked_points(_blend_of(self.schedule, self.solver, self.nfe, self.convention, self.backend,
                                               made)[0],
                                     self.schedule, get_solver(self.solver).n_intervals(self.nfe, self.convention))
        except (MethodNotApplicable, _Infeasible) as e:
            fb = self.fallback
            passed = [f"{self.source}: {e}"] + list(fb.settings.get("passed_over", []))
            return replace(fb, settings={**fb.settings, "passed_over": passed}).run(callback, t_start=t_start)
        return _baseline_result(replace(self, baseline=points), time.perf_counter() - t_start)

    def partner_searches(self) -> dict[str, "Plan"]:
        """A blend plan's partners that are searches: name -> the search's plan (`method_schedule` runs the same
        plan); a partner whose search cannot be planned here is left out (the blend's run reports it)."""
        out = {}
        for name in self.blend:
            if SCHEDULE_METHODS[name].kind not in ("search", "ported"):
                continue
            try:
                job = _row_plan(name, self.schedule, self.solver, self.nfe, self.convention, self.backend)
            except ValueError:
                continue
            if job.is_search:
                out[name] = job
        return out


class _Infeasible(ValueError):
    """A candidate that cannot serve this request: a search whose spacing does not fit the box, or a baseline whose
    points are not a valid schedule here (colliding integer timesteps, an integer spacing on a continuous model).
    For a search the user asked for it is the error they see; for the measured default the next candidate is used."""


def _baseline_points(name: str, sched: NoiseSchedule, n_int: int) -> np.ndarray:
    """A baseline's points for N intervals, checked (`_checked_points`).

    Raises:
        _Infeasible: the baseline does not apply, or its points are not a valid schedule for this model and N.
    """
    try:
        t = np.asarray(baseline_schedule(name, sched, n_int), dtype=np.float64)
    except MethodNotApplicable as e:
        raise _Infeasible(str(e)) from None
    return _checked_points(t, sched, n_int)


def _checked_points(t: np.ndarray, sched: NoiseSchedule, n_int: int) -> np.ndarray:
    """Points checked as every returned schedule is: finite, strictly decreasing, inside the time domain and, for a
    discrete model, unique strictly decreasing integer timesteps.

    Raises:
        _Infeasible: they are not a valid schedule for this model and N.
    """
    if t.shape != (n_int + 1,) or not np.all(np.isfinite(t)) or np.any(np.diff(t) >= 0):
        raise _Infeasible(f"its {n_int + 1} points are not strictly decreasing")
    if t[-1] < sched.t_min or t[0] > sched.t_max:
        raise _Infeasible("its points leave the time domain")
    if sched.is_discrete and np.any(np.diff(sched.timesteps_of_t(t)) >= 0):
        raise _Infeasible(f"its integer timesteps collide at N = {n_int} intervals")
    return t


def blend_points(schedule: NoiseSchedule | str, t_a: Any, t_b: Any, weight: float = 0.5) -> np.ndarray:
    """The blend of two schedules of the same length (`hso.methods.BLEND`): each point between the two in lambda
    (half log-SNR), ``t_i = t((1 - w) lambda(t_a_i) + w lambda(t_b_i))`` with ``w = weight`` (0.5, the default:
    the midpoint; the measured default's weight per cell is `hso.measured.blend_weight`); a point the two share is
    kept exactly. Strictly decreasing inputs give a strictly decreasing result (lambda is monotone in t).

    Raises:
        ValueError: the two differ in length or are not finite points of the time domain, or a weight outside
            (0, 1).
    """
    sched = as_schedule(schedule)
    a, b = np.asarray(t_a, dtype=np.float64), np.asarray(t_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a blend needs two schedules of the same length, got shapes {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a blend needs finite points")
    w = float(weight)
    if not 0.0 < w < 1.0:
        raise ValueError(f"a blend's weight must lie in (0, 1), got {weight!r}")
    with np.errstate(invalid="ignore"):
        la, lb = sched.lambda_(a), sched.lambda_(b)
        lam = 0.5 * (la + lb) if w == 0.5 else (1.0 - w) * la + w * lb
        mid = sched.t_of_lambda(lam)
    return np.clip(np.where(a == b, a, mid), sched.t_min, sched.t_max)


def _checked_pair(sched: NoiseSchedule, solver: str, nfe: int, conv: str) -> tuple[str, str]:
    """The blend's measured pair for a request, checked as far as planning can without a search: a measured pair
    exists, each partner applies to this lambda space, solver and convention, a DM-NonUniform partner stays within
    `DMN_RULE_MAX` intervals, a baseline partner applies to this model.

    Raises:
        MethodNotApplicable: one of those fails (the reason says which).
    """
    found = blend_pair(solver, conv, sched, nfe)
    if found is None:
        raise MethodNotApplicable(f"no blend was measured for {solver} / {conv} in the {sched.kind_name} space")
    pair = found[0]
    n_int = get_solver(solver).n_intervals(nfe, conv)
    for name in pair:
        row = SCHEDULE_METHODS[name]
        reason = row.not_applicable(sched.kind_name, solver, conv)
        if not reason and row.options.get("objective") == "dmn" and n_int > DMN_RULE_MAX:
            reason = (f"a DM-NonUniform search at N = {n_int} intervals (beyond {DMN_RULE_MAX}: minutes, not "
                      "measured there)")
        if not reason and row.kind == "baseline":
            try:
                baseline_schedule(name, sched, n_int)
            except MethodNotApplicable as e:
                reason = str(e)
        if reason:
            raise MethodNotApplicable(f"its partner {name} does not apply: {reason}")
    return pair


def _blend_of(sched: NoiseSchedule, solver: str, nfe: int, conv: str, backend: str = "auto",
              made: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, tuple[str, str]]:
    """The blend's points for a request (`hso.measured.blend_pair`, checked by `_checked_pair`, then each
    partner's points: from ``made`` where given, else by `method_schedule`, searches included, on ``backend``) and
    its pair.

    Raises:
        MethodNotApplicable: no pair was measured for this solver and convention in this lambda space, or a partner
            does not apply here (among them a DM-NonUniform search beyond `DMN_RULE_MAX` intervals).
    """
    pair = _checked_pair(sched, solver, nfe, conv)  # every partner applies here, so method_schedule makes it
    points = [made[name] if made and name in made else method_schedule(name, sched, solver, nfe, conv, backend=backend)
              for name in pair]
    return blend_points(sched, *points, blend_weight(solver, conv, sched, nfe)), pair


def plan(schedule: NoiseSchedule | str = "sd21", nfe: int = 5, solver: str = "unipc", objective: str | None = None,
         *, method: str = "auto", convention: str | None = None, spacing: str | None = None, p: float | None = None,
         trunc_num: int | None = None,
         init: str = "edm_rho", bounds: Sequence[Sequence[float]] | None = None, popsize: int = 20,
         maxiter: int = 60, tol: float = 0.01, mutation: float | tuple[float, float] = (0.5, 1.0),
         recombination: float = 0.7, polish: bool = True, seed: int | None = 66, gamma: float = 1e9,
         backend: str = "auto", callback: Callable[..., Any] | None = None,
         solver_options: Mapping[str, Any] | None = None) -> Plan:
    """What `optimize` would run for these arguments (the same arguments), without running it: every argument
    validated (raising before any kernel runs) and the engine's specs built. ``callback`` only marks the request as
    a search (pass it to `Plan.run`).

    ``method="auto"`` without search arguments walks the measured ranking for this request (`hso.measured`) and
    takes the first candidate that is valid here, then method "hso"'s search, then the paper's (whose lower level
    needs only one training step per gap); ``method="hso"`` takes the last two. A candidate is not valid when its
    integer timesteps would collide or its spacing does not fit the box at this NFE; those passed over are named,
    with the reason, in ``settings["passed_over"]`` and the result's message. A blend ranked above that candidate
    is planned with it as its ``fallback``: its points (and any partner search) are made by `Plan.run`, which falls
    back where they are not valid. Searches asked for explicitly (``method="paper"`` or any search argument) run
    as asked, or raise.

    Raises:
        ValueError, TypeError: as `optimize`, among them an NFE above `max_nfe` for this model.
    """
    sched = as_schedule(schedule)
    nfe = _check_int("nfe", nfe, 1)
    spec_solver = get_solver(solver)
    options = sampler_options(spec_solver.name, solver_options)
    conv = convention or spec_solver.default_convention
    n_int = spec_solver.n_intervals(nfe, conv)
    if nfe > MAX_NFE:
        raise ValueError(f"NFE={nfe} is too large: hso plans at most {MAX_NFE} network evaluations "
                         f"(hso.optimize.MAX_NFE)")
    top = max_nfe(sched, spec_solver.name, conv)
    if nfe > top:
        raise ValueError(f"NFE={nfe} is too large for this model: with {spec_solver.name} / {conv} it allows at most "
                         f"NFE {top} ({n_int} intervals of at least one time step "
                         f"{sched.time_resolution:g} do not fit in the paper's box; hso.max_nfe)")
    if objective is not None and objective not in fast.OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known objectives: {', '.join(fast.OBJECTIVES)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if spacing is not None and spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; known: {', '.join(SPACINGS)}")
    if init not in INIT_FAMILIES:
        raise ValueError(f"unknown init family {init!r}; known: {', '.join(INIT_FAMILIES)}")
    if p is not None and not 0 < _check_number("p", p, "a positive number") <= MAX_P:
        raise ValueError(f"p must be a positive number <= {MAX_P:g} (hso.optimize.MAX_P), got {p!r}")
    if not 0 <= _check_number("gamma", gamma, "a non-negative number") <= MAX_GAMMA:
        raise ValueError(f"gamma must be a non-negative number <= {MAX_GAMMA:g} (hso.optimize.MAX_GAMMA), "
                         f"got {gamma!r}")
    box = _checked_bounds(bounds, sched)
    popsize = _check_int("popsize", popsize, 1)
    maxiter = _check_int("maxiter", maxiter, 0)
    mut = np.atleast_1d(np.asarray(mutation, dtype=np.float64)) if not isinstance(mutation, str) else np.array([])
    if mut.size not in (1, 2) or not np.all((mut >= 0) & (mut <= 2)) or (mut.size == 2 and mut[0] > mut[1]):
        raise ValueError(f"mutation must be a number in [0, 2] or a (low, high) dithering range inside it, "
                         f"got {mutation!r}")
    if not 0 <= _check_number("recombination", recombination, "a number in [0, 1]") <= 1:
        raise ValueError(f"recombination must lie in [0, 1], got {recombination!r}")
    if not _check_number("tol", tol, "a non-negative number") >= 0:
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    if seed is not None:
        seed = _check_int("seed", seed, 0)
    engine = get_backend(backend)
    de = SearchSpec(bounds=box, popsize=popsize, maxiter=maxiter, tol=float(tol),
                    mutation=tuple(float(m) for m in mut) if mut.size == 2 else float(mut[0]),
                    recombination=float(recombination), polish=bool(polish), seed=seed)

    def build(search_conv: str, objective: str, spacing: str, p: float | None, source: str = "hso",
              baseline: np.ndarray | None = None, measured: dict[str, Any] | None = None,
              passed_over: Sequence[str] = ()) -> Plan:
        """The job for one candidate (a search with these settings, or a baseline's points)."""
        n_search = spec_solver.n_intervals(nfe, search_conv)
        if p is None:
            p = 1.0 if sched.kind == KIND_VE else 2.0
        if objective == "mep" and sched.kind == KIND_VE and p == 2.0:
            raise ValueError("MEP with p=2 is constant for VE/EDM schedules (it telescopes to e^-lambda_0 - "
                             "e^-lambda_N), so it cannot rank schedules; use p=1 (the default there) or "
                             "objective='dmn'")
        dmin = d_min(nfe)
        gap = sched.time_resolution
        if spacing == "constrain":
            gap = max(gap, dmin * (1 + 1e-12))  # the margin keeps the penalty exactly 0 in spite of rounding
        widest = box[2][1] - box[1][0]
        if baseline is None and n_search * gap > widest:
            what = (f"d_min={dmin:g}" if spacing == "constrain"
                    else f"one training step ({1 / sched.num_train_timesteps:g})" if sched.num_train_timesteps
                    else f"the time resolution {gap:g}")
            raise _Infeasible(f"NFE={nfe} is too large: {n_search} intervals of at least {what} do not fit in the "
                              f"widest range T_max - t_eps = {widest:g} of the box")
        lower = fast.LowerSpec(n_intervals=n_search, gap=gap, d_min=dmin, gamma=float(gamma), objective=objective,
                               p=float(p), trunc_num=trunc_num, init=init,
                               # the DM-NonUniform bound is non-smooth (sums of |.|): quasi-Newton stalls rather
                               # than converges, so cap it lower than MEP's Newton (which stops in ~6 iterations)
                               maxiter=100 if objective == "mep" else 40)
        settings = {"method": method, "init": init, "p": float(p), "trunc_num": trunc_num,
                    "bounds": [list(b) for b in box],
                    "popsize": popsize, "maxiter": maxiter, "tol": float(tol), "mutation": de.mutation,
                    "recombination": float(recombination), "polish": bool(polish), "seed": seed,
                    "gamma": float(gamma), "n_intervals": n_int, "min_gap": gap, "measured": measured,
                    "search_convention": search_conv}
        if passed_over:  # only then: results that pass nothing over keep the settings they always had
            settings["passed_over"] = list(passed_over)
        # the engine a search runs on: `auto` by the size of one generation (a GPU backend only past its crossover)
        runs_on = engine if baseline is not None else fast.resolve_backend(
            backend, "lower_solve", objective, n_search, fast.population_size(de))
        return Plan(sched, lower, fast.objective_spec(lower, sched.kind), de, runs_on.name,
                    spec_solver.name, conv, nfe, spacing, settings, source=source, baseline=baseline,
                    solver_options=options)

    given = dict(objective=objective, spacing=spacing, p=p, trunc_num=trunc_num, init=init, bounds=bounds,
                 popsize=popsize, maxiter=maxiter, tol=tol, mutation=mutation, recombination=recombination,
                 polish=polish, gamma=gamma)
    defaults = _defaults()
    searching = callback is not None or any(not _same(given[k], defaults[k]) for k in SEARCH_ARGS)
    if method == "paper" or searching:  # exactly the search asked for; an infeasible one is the user's error
        return build(conv, *resolve_method(method, spec_solver.name, conv, objective, spacing, p, sched.kind_name,
                                           n_int))

    # the measured ranking (method "auto"), then method "hso"'s search, then the paper's: the first valid here
    # method "auto" walks the ranking; method "hso" reports its own setting's place in it
    pick = measured_pick(spec_solver.name, conv, sched, nfe, options) if method in ("auto", "hso") else None
    passed_over: list[str] = []
    blend = None  # (name, measured, passed over before it): a blend ranked above the first valid candidate
    chosen = None
    for name, ratio in pick.order() if pick is not None and method == "auto" else ():
        measured = {"pick": name, "nfe": pick.nfe, "noise": pick.noise, "noise_measured": pick.noise_measured,
                    "sampler": pick.sampler, "worst_ratio": ratio, "supported": pick.supported(name)}
        try:
            row = SCHEDULE_METHODS[name]
            if row.kind == "search":  # one of hso's settings, relative to the paper's
                v = row.setting
                if v.get("objective") == "dmn" and n_int > DMN_RULE_MAX:
                    raise _Infeasible(f"a DM-NonUniform search at N = {n_int} intervals (beyond {DMN_RULE_MAX}) takes "
                                      "minutes and was not measured there")
                chosen = build(conv, *resolve_method(row.options["method"], spec_solver.name, conv, v.get("objective"),
                                                     v.get("spacing"), v.get("p"), sched.kind_name),
                               measured=measured, passed_over=passed_over)
            elif row.kind == "ported":  # method "hso"'s "stop" search for this NFE; the result drops its last point
                if not ported_applies(spec_solver.name, conv):
                    raise _Infeasible("it needs one network evaluation per step")
                chosen = build("stop", *resolve_method(row.options["method"], spec_solver.name, "stop", None, None,
                                                       None, sched.kind_name, n_int + 1), source=PORTED,
                               measured=measured, passed_over=passed_over)
            elif row.kind == "blend":  # made when run, with the first valid candidate after it as the fallback
                if blend is None:
                    pair = _checked_pair(sched, spec_solver.name, nfe, conv)
                    blend = (name, pair, {**measured, "blend": list(pair),
                                          "blend_weight": blend_weight(spec_solver.name, conv, sched, nfe)},
                             list(passed_over))
            else:
                points = _baseline_points(name, sched, n_int)
                # the baseline's objective value is reported with method "hso"'s objective and p
                chosen = build(conv, *resolve_method("auto", spec_solver.name, conv, None, None, None,
                                                     sched.kind_name, n_int),
                               source=name, baseline=points, measured=measured, passed_over=passed_over)
        except (_Infeasible, MethodNotApplicable) as e:
            passed_over.append(f"{name}: {e}")
        if chosen is not None:
            break
    for fallback in ("hso", "paper") if chosen is None else ():
        setting = resolve_method(fallback, spec_solver.name, conv, None, None, None, sched.kind_name, n_int)
        measured = None if pick is None else _setting_evidence(pick, fallback, setting, sched.kind_name)
        try:
            chosen = build(conv, *setting, measured=measured, passed_over=passed_over)
            break
        except _Infeasible as e:
            passed_over.append(f"method {fallback!r}: {e}")
    if chosen is None:  # not reached: the NFE check above admits only what the paper's search fits
        raise ValueError(f"no schedule fits NFE={nfe} for this model: {'; '.join(passed_over)}")
    if blend is None:
        return chosen
    name, pair, measured, before = blend
    # the blend's objective value is reported with method "hso"'s objective and p (the paper's where its spacing
    # does not fit: no search runs under these specs)
    for how in ("auto", "paper"):
        try:
            job = build(conv, *resolve_method(how, spec_solver.name, conv, None, None, None, sched.kind_name, n_int),
                        source=name, measured=measured, passed_over=before)
            return replace(job, blend=pair, fallback=chosen)
        except _Infeasible:
            continue
    return chosen  # not reached: the paper's specs fit every NFE the check above admits


# `method_schedule`'s searches, by plan: they are deterministic (seeded), and the methods of one request often
# resolve to the same search (the default and method "hso"; solvers with equal specs)
_SEARCHED: OrderedDict[tuple, np.ndarray] = OrderedDict()
_SEARCHED_MAX = 512


def method_schedule(name: str, schedule: NoiseSchedule | str, solver: str, nfe: int, convention: str | None = None,
                    *, backend: str = "auto") -> np.ndarray:
    """The points ``t  # [N+1]`` (descending) of a schedule method of `hso.methods` for a request: its search
    (`plan` with the row's arguments, run once per distinct plan), the ported "stop" search, the blend of its
    measured pair (`blend_points`), or the baseline's points over the family's whole time domain (not checked for
    colliding integer timesteps: the evaluation reports those, `plan` passes them over). Searches run on
    ``backend`` (a blend's partners too).

    Raises:
        ValueError: an unknown method (listing the known ones), or a request `plan` refuses.
        MethodNotApplicable: the method does not apply to this noise schedule, solver or convention.
    """
    if name not in SCHEDULE_METHODS:
        raise ValueError(f"unknown schedule method {name!r}; known: {', '.join(SCHEDULE_METHODS)}")
    row = SCHEDULE_METHODS[name]
    sched = as_schedule(schedule)
    spec = get_solver(solver)
    conv = convention or spec.default_convention
    reason = row.not_applicable(sched.kind_name, spec.name, conv)
    if reason:
        raise MethodNotApplicable(reason)
    if row.kind == "baseline":
        return baseline_schedule(name, sched, spec.n_intervals(nfe, conv))
    if row.kind == "blend":
        return _blend_of(sched, spec.name, nfe, conv, backend)[0]
    job = _row_plan(name, sched, spec.name, nfe, conv, backend)
    if not job.is_search:  # the default's measured baseline or blend: points of this very request, not cached
        return job.run().t.copy()
    key = job.search_key
    if key not in _SEARCHED:
        _SEARCHED[key] = job.run().t
        if len(_SEARCHED) > _SEARCHED_MAX:
            _SEARCHED.popitem(last=False)
    return _row_points(name, _SEARCHED[key]).copy()


def _row_plan(name: str, sched: NoiseSchedule, solver: str, nfe: int, conv: str, backend: str) -> Plan:
    """The plan `method_schedule` runs for a row that is not a baseline or the blend: `plan` with the row's
    arguments, for the ported row the "stop" search of the same NFE (`_row_points` then drops its last point)."""
    row = SCHEDULE_METHODS[name]
    return plan(sched, nfe, solver, convention="stop" if row.kind == "ported" else conv, backend=backend,
                **row.options)


def _row_points(name: str, t: np.ndarray) -> np.ndarray:
    """A row's points from its plan's result: the ported row's "stop" search without its last point."""
    return t[:-1] if SCHEDULE_METHODS[name].kind == "ported" else t


def _same(a: Any, b: Any) -> bool:
    """An argument equal to its default (numbers compared as numbers, sequences element-wise)."""
    try:
        return bool(np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object)))
    except (TypeError, ValueError):
        return a is b


def _make_result(job: Plan, t: np.ndarray, lam: np.ndarray, wall_time: float, **fields: Any) -> ScheduleResult:
    """The public result for points ``t`` (lambdas ``lam``): sigmas for the convention, integer timesteps for
    discrete models (checked: never returned silently wrong), and the job's labels; ``fields`` are the rest."""
    sched = job.schedule
    sig = sampler_sigmas(lam, job.convention)
    timesteps = None
    if sched.is_discrete:
        timesteps = sched.timesteps_of_t(t)
        if np.any(np.diff(timesteps) >= 0):  # cannot happen with gap >= one step (or a measured baseline)
            raise RuntimeError(f"internal error: the {job.source} schedule's integer timesteps "
                               f"{timesteps.tolist()} are not strictly decreasing")
    values = [fields.get(k) for k in ("fitness", "mep", "penalty")]
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(lam)) and all(math.isfinite(v) for v in values)):
        raise ValueError(f"the {job.objective.name} objective of this schedule is not finite in float64 (objective "
                         f"{values[1]!r}, penalty {values[2]!r}): the noise schedule's sigmas are too extreme for "
                         f"p = {job.objective.p:g}; use a smaller p")
    return ScheduleResult(
        t=t, lambdas=lam, sigmas=sig, timesteps=timesteps, wall_time=wall_time, backend=job.backend,
        convention=job.convention, solver=job.solver, nfe=job.nfe, objective=job.objective.name, spacing=job.spacing,
        d_min=job.lower.d_min, schedule=sched.describe(), settings=dict(job.settings), source=job.source,
        solver_options=dict(job.solver_options), **fields)


def _result(job: Plan, out: fast.SearchOutcome, wall_time: float) -> ScheduleResult:
    """Turn a search outcome into the public result, checking the guarantees it promises."""
    t = out.lower.t[0]
    lam = out.lower.lambdas[0]
    if job.source == PORTED:  # the "stop" search's points up to its last, for convention "jump"
        t, lam = t[:-1], lam[:-1]
    if job.spacing == "constrain" and out.lower.penalty[0] > 0:
        raise RuntimeError("internal error: the constrained search returned an infeasible schedule")
    if out.backend and out.backend != job.backend:  # optimize_many ran its group where a larger batch pays
        job = replace(job, backend=out.backend)
    return _make_result(job, t, lam, wall_time, psi=out.psi, fitness=out.fitness,
                        mep=float(out.lower.objective[0]), penalty=float(out.lower.penalty[0]), nit=out.nit,
                        nfev=out.nfev, success=out.success,
                        message=out.message + _passed_over_note(job.settings))


def _passed_over_note(settings: dict[str, Any]) -> str:
    """The candidates passed over for this request, for the result's message ("" when none)."""
    skipped = settings.get("passed_over")
    return f"; passed over (not valid here): {'; '.join(skipped)}" if skipped else ""


def blend_weight_words(weight: float) -> str:
    """How a blend's weight reads: "midpoint", or where between its pair (``weight`` 0: the first, 1: the second)."""
    return "midpoint" if weight == 0.5 else f"weight {weight:g} towards the second"


def _baseline_result(job: Plan, wall_time: float) -> ScheduleResult:
    """The result for a baseline the measured rule picked: its points, with the HSO objective and spacing penalty
    of that schedule reported for comparison (no search ran: ``psi`` is empty, ``nit = nfev = 0``)."""
    t = job.baseline
    lam = job.schedule.lambda_(t)
    value = float(fast.objective_and_grad(lam[None, :], job.objective, backend=job.backend)[0][0])
    penalty = float(fast.spacing_penalty_and_grad(t[None, :], job.lower.d_min, job.lower.gamma)[0][0])
    m = job.settings["measured"]
    rank = ("taken first as the hedge for unmeasured noise schedules (hso.measured.UNMEASURED_FIRST)"
            if not m.get("noise_measured", True) and job.source == UNMEASURED_FIRST
            else "ranked best of those valid here" if job.settings.get("passed_over") else "ranked first")
    where = blend_weight_words(m.get("blend_weight", 0.5))
    what = (f"the blend of {m['blend'][0]!r} and {m['blend'][1]!r} ({where} in lambda)" if "blend" in m
            else f"baseline {job.source!r}")
    noise = (f"{m['noise']}-like" if m.get("noise_measured", True)
             else f"{m['noise']}, the nearest measured noise schedule: this one was not measured")
    msg = (f"measured default: {what} {rank} "
           f"for {job.solver} / {job.convention} / {job.schedule.kind_name} ({noise}) at NFE {m['nfe']} "
           f"(worst RMSE ratio to the best schedule over the test beds {m['worst_ratio']:.3g}); "
           f"{'no search of its own' if 'blend' in m else 'no search ran'}"
           f"{_passed_over_note(job.settings)}")
    return _make_result(job, t, lam, wall_time, psi=np.zeros(0), fitness=value + penalty, mep=value,
                        penalty=penalty, nit=0, nfev=0, success=True, message=msg)


def _defaults() -> dict[str, Any]:
    """`plan`'s (and `optimize`'s) arguments with their defaults."""
    return {k: v.default for k, v in inspect.signature(plan).parameters.items() if k != "callback"}


def optimize_many(configs: Iterable[Mapping[str, Any]], *, progress: bool = False, backend: str = "auto",
                  **defaults: Any) -> list[ScheduleResult]:
    """Many `optimize` calls in one batched pass (e.g. every NFE 3-20 x solver for a model).

    The searches run in lockstep: each round, the populations of all pending searches, whatever their noise
    schedules, N and objectives, are solved in one lower-level call (`hso.fast.search_many`). Results equal those of
    `optimize` called one by one with the same arguments and the backend each result reports (same seeds, same
    bytes).

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
            jobs.append(plan(**{**base, **defaults, **cfg, "backend": backend}))
        except (ValueError, TypeError) as e:
            raise type(e)(f"config {i} ({dict(cfg)}): {e}") from None

    def report(done: int, total: int) -> None:
        print(f"\rhso: {done}/{total} searches", end="", file=sys.stderr, flush=True)

    searches = [j for j in jobs if j.is_search]
    # blends' partner searches join the batch (each distinct one once; the same plans `method_schedule` runs)
    partners: dict[tuple, Plan] = {}
    wants: list[tuple[int, str, tuple]] = []
    for i, j in enumerate(jobs):
        for name, pj in j.partner_searches().items():
            partners.setdefault(pj.search_key, pj)
            wants.append((i, name, pj.search_key))
    batch = searches + list(partners.values())
    outs = fast.search_many([(j.schedule, j.lower, j.objective, j.search) for j in batch], backend=backend,
                            progress=report if progress else None)
    found = {key: out.lower.t[0] for key, out in zip(partners, outs[len(searches):])}
    made: dict[int, dict[str, np.ndarray]] = {}
    for i, name, key in wants:
        made.setdefault(i, {})[name] = _row_points(name, found[key])
    # measured baselines and blends (their partner searches done above) after the batched searches
    others = {i: j.run_blend(made.get(i, {}), t_start=t_start) if j.blend else j.run()
              for i, j in enumerate(jobs) if not j.is_search}
    wall = time.perf_counter() - t_start
    if progress:
        print(f"\rhso: {len(jobs)} schedules: {len(searches)} searches (and {len(partners)} for blends), "
              f"{len(others)} measured baselines or blends", file=sys.stderr, flush=True)
    own = iter(outs[:len(searches)])
    return [replace(others[i], wall_time=wall) if i in others else _result(j, next(own), wall)
            for i, j in enumerate(jobs)]
