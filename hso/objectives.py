"""Public objective functions (value and analytic gradient for a batch of schedules), on the `hso.fast` engine."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import fast
from .fast.reference import spacing_penalty_and_grad
from .schedules import NoiseSchedule, as_schedule

__all__ = ["mep", "dmn", "spacing_penalty"]


def _kind(schedule: NoiseSchedule | str) -> int:
    return as_schedule(schedule).kind


def mep(lambdas: Any, schedule: NoiseSchedule | str = "sd21", p: float = 2.0, *,
        backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Midpoint Error Proxy (spec §4) of ``lambdas  # [B, N+1]`` (or one schedule ``[N+1]``): (value, gradient)."""
    lam = np.asarray(lambdas, dtype=np.float64)
    one = lam.ndim == 1
    v, g = fast.objective_and_grad(lam[None] if one else lam, fast.ObjectiveSpec("mep", _kind(schedule), p),
                                   backend=backend)
    return (v[0], g[0]) if one else (v, g)


def dmn(lambdas: Any, schedule: NoiseSchedule | str = "sd21", p: float = 2.0, trunc_num: int | None = None, *,
        backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """DM-NonUniform solver bound (spec §10) of ``lambdas  # [B, N+1]`` (or ``[N+1]``): (value, gradient)."""
    lam = np.asarray(lambdas, dtype=np.float64)
    one = lam.ndim == 1
    v, g = fast.objective_and_grad(lam[None] if one else lam,
                                   fast.ObjectiveSpec("dmn", _kind(schedule), p, trunc_num), backend=backend)
    return (v[0], g[0]) if one else (v, g)


def spacing_penalty(t: Any, d_min: float, gamma: float = 1e9) -> tuple[np.ndarray, np.ndarray]:
    """SPF spacing penalty (spec §6) of ``t  # [B, N+1]`` (or ``[N+1]``): (value, gradient in t)."""
    tt = np.asarray(t, dtype=np.float64)
    one = tt.ndim == 1
    v, g = spacing_penalty_and_grad(tt[None] if one else tt, float(d_min), float(gamma))
    return (v[0], g[0]) if one else (v, g)
