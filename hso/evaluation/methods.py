"""Schedule methods compared by the evaluation: the rows of `hso.methods` (hso's own and the usual baselines), made
by `hso.optimize.method_schedule`, plus any registered with `register_method`.

A method maps (noise schedule, solver, NFE, convention) to schedule points ``t  # [N+1]``, descending, where N is
the solver's number of intervals for that NFE and convention (spec §3). Model-free baselines span the family's
whole time domain ``[t_min, t_max]`` (for SD: timesteps 999 -> 0), as their reference implementations do.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from ..baselines import MethodNotApplicable
from ..methods import DEFAULT_METHODS, SCHEDULE_METHODS
from ..optimize import method_schedule
from ..schedules import NoiseSchedule
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


for _name in SCHEDULE_METHODS:
    register_method(_name)(partial(method_schedule, _name))
