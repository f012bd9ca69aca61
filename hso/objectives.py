"""Public objective functions (value and analytic gradient for a batch of schedules), on the `hso.fast` engine."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import fast
from .schedules import NoiseSchedule, as_schedule

__all__ = ["mep", "dmn", "spacing_penalty"]


def _one_or_batch(fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], x: Any) -> tuple[Any, Any]:
    """Apply a batched ``[B, N+1] -> (value [B], grad [B, N+1])`` function to one row ``[N+1]`` or a batch."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        v, g = fn(arr[None])
        return v[0], g[0]
    return fn(arr)


def mep(lambdas: Any, schedule: NoiseSchedule | str = "sd21", p: float = 2.0, *,
        backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Midpoint Error Proxy (spec §4) of ``lambdas  # [B, N+1]`` (or one schedule ``[N+1]``): (value, gradient)."""
    spec = fast.ObjectiveSpec("mep", as_schedule(schedule).kind, p)
    return _one_or_batch(lambda lam: fast.objective_and_grad(lam, spec, backend=backend), lambdas)


def dmn(lambdas: Any, schedule: NoiseSchedule | str = "sd21", p: float = 2.0, trunc_num: int | None = None, *,
        backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """DM-NonUniform solver bound (spec §10) of ``lambdas  # [B, N+1]`` (or ``[N+1]``): (value, gradient)."""
    spec = fast.ObjectiveSpec("dmn", as_schedule(schedule).kind, p, trunc_num)
    return _one_or_batch(lambda lam: fast.objective_and_grad(lam, spec, backend=backend), lambdas)


def spacing_penalty(t: Any, d_min: float, gamma: float = 1e9) -> tuple[np.ndarray, np.ndarray]:
    """SPF spacing penalty (spec §6) of ``t  # [B, N+1]`` (or ``[N+1]``): (value, gradient in t)."""
    return _one_or_batch(lambda tt: fast.spacing_penalty_and_grad(tt, float(d_min), float(gamma)), t)
