"""Schedule methods compared by the evaluation: hso's own and the usual baselines, one registry.

A method maps (noise schedule, solver, NFE, convention) to schedule points ``t  # [N+1]``, descending, where N is
the solver's number of intervals for that NFE and convention (spec §3). Model-free baselines span the family's
whole time domain ``[t_min, t_max]`` (for SD: timesteps 999 -> 0), as their reference implementations do.

* ``hso``: `hso.optimize` with its defaults (``method="auto"``: the measured best of hso's settings and the
  baselines); ``hso_search``: ``method="hso"`` (the measured best of hso's settings); ``hso_paper``:
  ``method="paper"`` (MEP, p = 2 (1 for VE), spacing "rank"); relative to the paper's: ``hso_dmn`` the
  DM-NonUniform objective, ``hso_constrain`` ``spacing="constrain"``, ``hso_p1`` MEP with p = 1 (recommended for
  pixel-space models; VP and flow only, it is the VE default); ``hso_stop_ported`` (convention "jump" only):
  ``hso_search``'s "stop" schedule for the same NFE with its last point dropped (evaluate at its first NFE points,
  then jump to sigma 0);
* the baselines of `hso.baselines`: ``time_uniform``, ``logSNR``, ``edm_rho7``, ``time_quadratic``, ``leading``,
  ``trailing``, ``ays``.

Extend with `register_method`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..baselines import BASELINES, MethodNotApplicable, baseline_schedule
from ..measured import ported_applies
from ..schedules import KIND_VE, NoiseSchedule
from ..solvers import get_solver

__all__ = ["METHODS", "DEFAULT_METHODS", "register_method", "make_schedule", "MethodNotApplicable"]


MethodFn = Callable[[NoiseSchedule, str, int, str], np.ndarray]
METHODS: dict[str, MethodFn] = {}


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    """Decorator adding a schedule method to `METHODS` under ``name``."""
    def deco(fn: MethodFn) -> MethodFn:
        METHODS[name] = fn
        return fn
    return deco


def _n_points(solver: str, nfe: int, convention: str) -> int:
    return get_solver(solver).n_intervals(nfe, convention) + 1


def make_schedule(method: str, schedule: NoiseSchedule, solver: str, nfe: int, convention: str | None = None
                  ) -> np.ndarray:
    """Schedule points ``t  # [N+1]`` (descending) of a method.

    Raises:
        ValueError: unknown method (listing the known ones), or an NFE the solver cannot spend.
        MethodNotApplicable: the method does not apply to this noise schedule.
    """
    if method not in METHODS:
        raise ValueError(f"unknown schedule method {method!r}; known: {', '.join(METHODS)}")
    conv = convention or get_solver(solver).default_convention
    t = np.asarray(METHODS[method](schedule, solver, nfe, conv), dtype=np.float64)
    n1 = _n_points(solver, nfe, conv)
    if t.shape != (n1,) or np.any(np.diff(t) >= 0):
        raise AssertionError(f"method {method} returned an invalid schedule {t.tolist()} (want {n1} points)")
    return t


_HSO_CACHE: dict[tuple, np.ndarray] = {}


def _hso(objective: str | None = None, **options: Any) -> MethodFn:
    def fn(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
        from ..optimize import plan
        if options.get("p") == 1.0 and schedule.kind == KIND_VE:
            raise MethodNotApplicable("MEP with p = 1 is already hso's default for VE/EDM schedules")
        # a search depends on the solver and convention only through its resolved specs (N, objective, spacing,
        # d_min); searches are deterministic (seeded) and the DM-NonUniform one takes seconds, so equal ones are
        # made once
        name = get_solver(solver).name
        job = plan(schedule, nfe, name, objective, convention=convention, **options)
        key = (job.source, job.lower, job.objective, job.search, schedule.content_key())
        if key not in _HSO_CACHE:
            _HSO_CACHE[key] = job.run().t
        return _HSO_CACHE[key].copy()
    return fn


register_method("hso")(_hso())
register_method("hso_search")(_hso(method="hso"))
register_method("hso_paper")(_hso(method="paper"))
register_method("hso_dmn")(_hso("dmn", method="paper"))
register_method("hso_constrain")(_hso(method="paper", spacing="constrain"))
register_method("hso_p1")(_hso(method="paper", p=1.0))


@register_method("hso_stop_ported")
def _stop_ported(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
    if not ported_applies(solver, convention):
        raise MethodNotApplicable("hso_stop_ported is a schedule for convention 'jump' of a solver with one "
                                  "evaluation per step (a 'stop' schedule ported)")
    return METHODS["hso_search"](schedule, solver, nfe, "stop")[:-1]


def _baseline(name: str) -> MethodFn:
    def fn(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
        return baseline_schedule(name, schedule, _n_points(solver, nfe, convention) - 1)
    return fn


for _name in BASELINES:
    register_method(_name)(_baseline(_name))


DEFAULT_METHODS = ("hso", "hso_search", "hso_paper", "hso_dmn", "hso_constrain", "hso_p1", "hso_stop_ported",
                   "time_uniform", "logSNR", "edm_rho7", "time_quadratic", "leading", "trailing", "ays")
