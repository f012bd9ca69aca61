"""`hso.fast`: the engine. Batched entry points over one backend registry.

* `objective_and_grad(lambdas, spec)` - objective value and gradient for a batch of schedules ``[B, N+1]``.
* `lower_solve(psi, schedule, spec)` - the HSO lower level for a batch of candidates ``psi  # [B, 3]``.
* `lower_solve_many(psi, rows, problems)` - the same for candidates of many problems at once (one launch on cpp
  and cuda; on triton one per objective, schedule family, lambda kind and padded width).
* `search(...)` - the bi-level search (differential evolution over psi, lower level per generation).

Inputs are validated, converted to contiguous float64 and outputs allocated here, once, not in each backend.
"""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..schedules import NoiseSchedule
from ..version import __version__
from . import reference_dmn
from .reference import spacing_penalty_and_grad
from .batching import Rendezvous
from .reference_lower import LowerResult, LowerSpec
from .reference_lower import lower_solve as _reference_lower_solve
from .reference_lower import lower_solve_many as _reference_lower_solve_many
from .reference_lower import padded_result, put_rows, take_rows
from .registry import BACKENDS, Backend, auto_rule, available_backends, backend_status, get_backend, resolve_backend
from .search_de import (PAPER_BOUNDS, SearchOutcome, SearchSpec, de_generations, differential_evolution, finish_search,
                        population_size)

__all__ = ["ObjectiveSpec", "objective_spec", "LowerSpec", "LowerResult", "objective_and_grad", "lower_solve",
           "lower_solve_many", "search",
           "spacing_penalty_and_grad", "search_many", "available_backends", "get_backend", "resolve_backend",
           "population_size", "show_config", "SearchSpec", "SearchOutcome", "PAPER_BOUNDS", "OBJECTIVES", "BACKENDS",
           "Backend"]

OBJECTIVES = ("mep", "dmn")


@dataclass(frozen=True)
class ObjectiveSpec:
    """Which objective: ``name`` ("mep" | "dmn"), the lambda-space ``kind`` of the noise schedule, the node-weight
    exponent ``p`` and, for "dmn", ``trunc_num`` (None = spec default from N)."""

    name: str = "mep"
    kind: int = 0
    p: float = 2.0
    trunc_num: int | None = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.name!r}; known objectives: {', '.join(OBJECTIVES)}")
        if not np.isfinite(self.p):
            raise ValueError(f"p must be finite, got {self.p}")
        if self.kind not in (0, 1, 2):
            raise ValueError(f"unknown lambda-space kind {self.kind}; known: 0 (VP), 1 (VE), 2 (flow)")


def objective_spec(lower: LowerSpec, kind: int) -> ObjectiveSpec:
    """The objective a lower-level spec minimises, for a noise schedule's lambda-space ``kind``: the one place the
    two specs' shared fields (objective, p, trunc_num) are tied together."""
    return ObjectiveSpec(lower.objective, int(kind), float(lower.p), lower.trunc_num)


def _checked_lambdas(lambdas: Any) -> np.ndarray:
    lam = np.ascontiguousarray(lambdas, dtype=np.float64)
    if lam.ndim != 2 or lam.shape[1] < 2:
        raise ValueError(f"lambdas must have shape [B, N+1] with N >= 1, got {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise ValueError("lambdas contain NaN or inf")
    return lam


def _objective_fn(spec: ObjectiveSpec, backend: Backend) -> Callable[..., tuple]:
    """Bind a spec to a backend: ``fn(lambdas, hessian=False) -> (value, grad[, diag, off])``."""
    if spec.name == "mep":
        mep = backend.mep()
        return lambda lam, hessian=False: mep(lam, spec.kind, spec.p, hessian)
    # the numpy reference serves backends without their own
    dmn = backend.dmn() if backend.dmn is not None else reference_dmn.dmn_and_grad
    return lambda lam, hessian=False: dmn(lam, spec.kind, spec.p, spec.trunc_num)


def objective_and_grad(lambdas: Any, spec: ObjectiveSpec = ObjectiveSpec(), *, hessian: bool = False,
                       backend: str = "auto") -> tuple[np.ndarray, ...]:
    """Objective value ``[B]`` and gradient ``[B, N+1]`` in lambda for ``lambdas  # [B, N+1]``.

    With ``hessian=True`` (MEP only) also the tridiagonal Hessian as ``diag  # [B, N+1]``, ``off  # [B, N]``.

    Raises:
        ValueError: wrong shape, non-finite input, unknown objective, Hessian asked for "dmn".
    """
    lam = _checked_lambdas(lambdas)
    if hessian and spec.name != "mep":
        raise ValueError("the exact Hessian is available for 'mep' only")
    kernel = "objective_and_grad_hessian" if hessian else "objective_and_grad"
    engine = resolve_backend(backend, kernel, spec.name, lam.shape[1] - 1, lam.shape[0])
    return _objective_fn(spec, engine)(lam, hessian=hessian)


def _checked_psi(psi: Any) -> np.ndarray:
    p = np.ascontiguousarray(psi, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"psi must have shape [B, 3] (rho, t_eps, T_max), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("psi contains NaN or inf")
    if np.any(p[:, 1] >= p[:, 2]):
        raise ValueError("every candidate needs t_eps < T_max")
    if np.any(p[:, 0] <= 0):
        raise ValueError("rho must be positive")
    return p


def _check_domain(p: np.ndarray, schedule: NoiseSchedule) -> None:
    if np.any(p[:, 1] < schedule.t_min) or np.any(p[:, 2] > schedule.t_max):
        raise ValueError(f"end points must lie in the schedule's domain [{schedule.t_min}, {schedule.t_max}]")


def lower_solve(psi: Any, schedule: NoiseSchedule, lower: LowerSpec, objective: ObjectiveSpec, *,
                backend: str = "auto") -> LowerResult:
    """The HSO lower level for ``psi  # [B, 3] = (rho, t_eps, T_max)``; see `hso.fast.reference_lower`.

    Raises:
        ValueError: psi of the wrong shape, non-finite, t_eps >= T_max or outside the schedule's domain.
    """
    p = _checked_psi(psi)
    _check_domain(p, schedule)
    engine = resolve_backend(backend, "lower_solve", objective.name, lower.n_intervals, p.shape[0])
    return _lower_fn(schedule, lower, objective, engine)(p)


Problem = tuple[NoiseSchedule, LowerSpec, ObjectiveSpec]


def lower_solve_many(psi: Any, rows: Any, problems: list[Problem], *, backend: str = "auto") -> LowerResult:
    """The lower level for candidates of several problems in one call: ``rows  # [B]`` names, for each candidate of
    ``psi  # [B, 3]``, its problem in ``problems``, a list of ``(schedule, lower, objective)``. Problems may differ
    in everything: noise schedule, N, gap, d_min, objective, start family. Returns `lower_solve`'s result with ``t``
    and ``lambdas`` of shape ``[B, max N + 1]``, a candidate of a smaller N padded with NaN after its last point;
    each candidate's values equal `lower_solve`'s for its problem on the same backend, byte for byte.

    ``backend="auto"`` resolves each problem by its number of candidates (`resolve_backend`); the problems on one
    engine share one call, one kernel launch on cpp and cuda (contract `hso.fast.reference_lower.lower_solve_many`).

    Raises:
        ValueError: as `lower_solve`, for any candidate on its problem's schedule; rows not [B] integers naming
            problems; no problems.
    """
    p = _checked_psi(psi)
    if not problems:
        raise ValueError("problems is empty: give at least one (schedule, lower, objective)")
    r = np.asarray(rows)
    if r.shape != (p.shape[0],) or (r.size and not np.issubdtype(r.dtype, np.integer)):
        raise ValueError(f"rows must be [B] = [{p.shape[0]}] integers, got shape {r.shape} of {r.dtype}")
    r = r.astype(np.int64)
    if r.size and (r.min() < 0 or r.max() >= len(problems)):
        raise ValueError(f"rows must name problems 0..{len(problems) - 1}, got {r.min()}..{r.max()}")
    for k, (schedule, low, obj) in enumerate(problems):
        _check_domain(p[r == k], schedule)
        _check_objective(schedule, low, obj)
    engines = [resolve_backend(backend, "lower_solve", obj.name, low.n_intervals, int(np.sum(r == k)))
               for k, (_, low, obj) in enumerate(problems)]
    return _solve_many(p, r, problems, engines)


def _solve_many(psi: np.ndarray, rows: np.ndarray, problems: list[Problem], engines: list[Backend]) -> LowerResult:
    """`lower_solve_many` on validated input (callers check each problem's objective spec once), each problem on its
    engine: one call per engine, fused where the engine has a kernel for all its problems' objectives, else the
    twin's one call per problem."""
    out = padded_result(psi.shape[0], max(low.n_intervals for _, low, _ in problems) + 1)
    for name in dict.fromkeys(e.name for e in engines):
        mine = [k for k, e in enumerate(engines) if e.name == name]
        engine = engines[mine[0]]
        local = np.full(len(problems), -1, dtype=np.int64)
        local[mine] = np.arange(len(mine))
        at = np.flatnonzero(local[rows] >= 0)
        sub = [problems[k] for k in mine]
        if engine.lower_many is not None and all(obj.name in engine.lower_objectives for *_, obj in sub):
            res = engine.lower_many()(psi[at], local[rows[at]], [(schedule, low) for schedule, low, _ in sub])
        else:
            res = _reference_lower_solve_many(psi[at], local[rows[at]],
                                              [_lower_fn(*prob, engine) for prob in sub],
                                              [low.n_intervals for _, low, _ in sub])
        put_rows(out, at, res)
    return out


def _check_objective(schedule: NoiseSchedule, lower: LowerSpec, objective: ObjectiveSpec) -> None:
    want = objective_spec(lower, schedule.kind)
    if objective != want:
        raise ValueError(f"the objective spec ({objective.name}, kind {objective.kind}, p {objective.p}, trunc_num "
                         f"{objective.trunc_num}) must match the schedule (kind {schedule.kind}) and the lower spec "
                         f"({lower.objective}, p {lower.p}, trunc_num {lower.trunc_num}); "
                         "hso.fast.objective_spec(lower, kind) makes the one that does")


def _lower_fn(schedule: NoiseSchedule, lower: LowerSpec, objective: ObjectiveSpec,
              backend: Backend) -> Callable[[np.ndarray], LowerResult]:
    """Bind the lower level: the backend's fused kernel when it has one for this objective, else the numpy driver
    on the backend's objective."""
    _check_objective(schedule, lower, objective)
    if backend.lower is not None and objective.name in backend.lower_objectives:
        fused = backend.lower()
        return lambda psi: fused(psi, schedule, lower)
    fn = _objective_fn(objective, backend)
    return lambda psi: _reference_lower_solve(psi, schedule, lower, fn)


def search(schedule: NoiseSchedule, lower: LowerSpec, objective: ObjectiveSpec, spec: SearchSpec = SearchSpec(), *,
           backend: str = "auto", callback: Callable[..., Any] | None = None) -> SearchOutcome:
    """The bi-level search: differential evolution over psi with `lower_solve` once per generation.

    Returns a `SearchOutcome` (best psi, the lower-level result there, fitness, generations, solves, backend).
    ``backend="auto"`` picks by the size of one generation (`resolve_backend`).
    """
    engine = resolve_backend(backend, "lower_solve", objective.name, lower.n_intervals, population_size(spec))
    solve, repair = _lower_fn(schedule, lower, objective, engine), _repair(lower, spec)
    out = differential_evolution(lambda psi: solve(repair(psi)), spec, callback)
    return replace(out, psi=repair(out.psi[None])[0], backend=engine.name)


def _repair(lower: LowerSpec, spec: SearchSpec) -> Callable[[np.ndarray], np.ndarray]:
    """The map that widens end points where N gaps of the minimum size do not fit (the lower level is always called
    on repaired candidates)."""
    lo_eps, hi_max = spec.bounds[1][0], spec.bounds[2][1]
    return lambda psi: repair_end_points(psi, lower.n_intervals * lower.gap, lo_eps, hi_max)


def search_many(jobs: list[tuple[NoiseSchedule, LowerSpec, ObjectiveSpec, SearchSpec]], *, backend: str = "auto",
                progress: Callable[[int, int], None] | None = None) -> list[SearchOutcome]:
    """Many bi-level searches in lockstep: every round, the populations of all pending searches go to the lower
    level in one `lower_solve_many` call (one kernel launch per engine on cpp and cuda, one per objective, schedule
    family, lambda kind and padded width on triton), whatever their schedules, N and objectives. Each result equals
    `search`'s with the backend it reports: ``backend="auto"`` picks once per group of searches that share a
    schedule and a lower-level spec (`resolve_backend` at the group's N), with the first round's candidates of the
    group's objective, all groups together, as the batch: a sweep large enough for a GPU backend runs there, where
    `search` alone would run one generation on the CPU.

    ``progress(done, total)`` is called whenever a search finishes its generations.
    """
    # equal schedules by content: plans made one by one hold equal but distinct schedule objects
    keys = [(sched.content_key(), low, obj) for sched, low, obj, _ in jobs]
    group_of = keys.__getitem__
    members_of: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        members_of.setdefault(key, []).append(i)
    # a round is one call, so a group's batch for the rule is the first round's candidates of its objective
    first_round: dict[str, int] = {}
    for key, ms in members_of.items():
        first_round[key[2].name] = first_round.get(key[2].name, 0) + sum(population_size(jobs[i][3]) for i in ms)
    engine_of = {key: resolve_backend(backend, "lower_solve", key[2].name, key[1].n_intervals,
                                      first_round[key[2].name])
                 for key in members_of}
    repairs = [_repair(low, de) for _, low, _, de in jobs]
    for key in members_of:  # the objective spec must fit its schedule and lower spec (raises before any search)
        _check_objective(*jobs[members_of[key][0]][:3])
    # every round is one lower_solve_many call over all pending searches: one launch per engine (per kernel
    # configuration on triton)
    problem_of = {key: k for k, key in enumerate(members_of)}
    problems = [jobs[ms[0]][:3] for ms in members_of.values()]
    engines = [engine_of[key] for key in members_of]
    gens = [de_generations(de) for *_, de in jobs]
    pending: dict[int, np.ndarray] = {i: next(g) for i, g in enumerate(gens)}
    nfev = [0] * len(jobs)
    states: dict[int, Any] = {}
    while pending:
        order = list(pending)
        repaired = [repairs[i](pending[i]) for i in order]
        rows = np.concatenate([np.full(r.shape[0], problem_of[group_of(i)]) for i, r in zip(order, repaired)])
        fit = _solve_many(np.concatenate(repaired), rows, problems, engines).fitness
        offsets = np.cumsum([0] + [r.shape[0] for r in repaired])
        results = {i: fit[offsets[k]:offsets[k + 1]] for k, i in enumerate(order)}
        for i, fit in results.items():
            nfev[i] += fit.shape[0]
            try:
                pending[i] = gens[i].send(fit)
            except StopIteration as stop:
                states[i] = stop.value
                del pending[i]
                if progress is not None:
                    progress(len(states), len(jobs))

    # the polish of every search (sequential code: L-BFGS-B, then a compass search) runs on threads that meet at a
    # Rendezvous, so each of its rounds is one lower_solve_many call too
    def answer(requests: list[tuple[np.ndarray, int]]) -> list[LowerResult]:
        res = _solve_many(np.concatenate([psi for psi, _ in requests]),
                          np.concatenate([np.full(psi.shape[0], k) for psi, k in requests]), problems, engines)
        ends = np.cumsum([psi.shape[0] for psi, _ in requests])
        return [take_rows(res, slice(end - psi.shape[0], end), problems[k][1].n_intervals + 1)
                for (psi, k), end in zip(requests, ends)]

    def finish(i: int) -> Callable[[Callable[..., LowerResult]], SearchOutcome]:
        repair, k, de = repairs[i], problem_of[group_of(i)], jobs[i][3]

        def task(ask: Callable[..., LowerResult]) -> SearchOutcome:
            res = finish_search(states[i], lambda psi: ask((repair(psi), k)), de, nfev[i])
            return replace(res, psi=repair(res.psi[None])[0], backend=engine_of[group_of(i)].name)
        return task

    return Rendezvous(answer).run([finish(i) for i in range(len(jobs))], workers=_POLISH_THREADS)


_POLISH_THREADS = 256  # searches polished at once by search_many (threads; each round is one lower-level call)


def repair_end_points(psi: np.ndarray, span: float, lo_eps: float, hi_max: float) -> np.ndarray:
    """Widen ``T_max - t_eps`` to at least `span` where it is shorter, moving both ends outwards by equal amounts
    within ``[lo_eps, hi_max]`` (the rest on the side that still has room).

    Candidates whose end points cannot hold N gaps of the minimum size would otherwise have no feasible schedule;
    this maps them to the nearest end points that do (callers check that ``hi_max - lo_eps >= span``).
    """
    out = np.array(psi, dtype=np.float64, copy=True)
    short = np.maximum(0.0, span - (out[:, 2] - out[:, 1]))
    if not np.any(short > 0):
        return out
    up = np.minimum(0.5 * short, hi_max - out[:, 2])
    down = np.minimum(short - up, out[:, 1] - lo_eps)
    up = np.minimum(short - down, hi_max - out[:, 2])
    out[:, 2] += up
    out[:, 1] -= down
    return out


def show_config(file: Any = None) -> dict[str, Any]:
    """Print (and return) versions and which backends loaded, with the reason for each that did not."""
    import scipy  # deferred: only searches and this report need scipy, so `import hso` does not load it

    info = {"hso": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "numpy": np.__version__, "backends": backend_status(), "auto": available_backends()[0],
            "auto_gpu_rule": {"measured_on": auto_rule()["device"], "crossover_batches": auto_rule()["rules"]},
            "scipy": scipy.__version__}
    print(json.dumps(info, indent=2), file=file or sys.stdout)
    return info
