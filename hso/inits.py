"""Initialisation families: start schedules between two end points (t descending from T_max to t_eps).

Names follow dpm-solver's ``skip_type`` where one exists (``logSNR``, ``time_uniform``, ``time_quadratic``); the
paper's start is ``edm_rho`` (spec §5): ``sigma_k = (a^{1/rho} (1 - s_k) + b^{1/rho} s_k)^rho`` in EDM sigma with
``a = sigma(T_max)``, ``b = sigma(t_eps)``, ``s_k = k / N``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .schedules import NoiseSchedule

__all__ = ["INIT_FAMILIES", "init_schedule"]


def _edm_rho(sched: NoiseSchedule, t_hi: np.ndarray, t_lo: np.ndarray, s: np.ndarray, rho: np.ndarray) -> np.ndarray:
    # in log space: log sigma_k = rho * log((1-s) a^{1/rho} + s b^{1/rho}), stable for large sigma ranges
    lam_hi, lam_lo = sched.lambda_(t_hi)[:, None], sched.lambda_(t_lo)[:, None]
    r = rho[:, None]
    la, lb = -lam_hi / r, -lam_lo / r  # log a^{1/rho}, log b^{1/rho}
    mx = np.maximum(la, lb)
    log_sig = r * (mx + np.log((1 - s) * np.exp(la - mx) + s * np.exp(lb - mx)))
    return sched.t_of_lambda(-log_sig)


def _logsnr(sched: NoiseSchedule, t_hi: np.ndarray, t_lo: np.ndarray, s: np.ndarray, rho: np.ndarray) -> np.ndarray:
    lam_hi, lam_lo = sched.lambda_(t_hi)[:, None], sched.lambda_(t_lo)[:, None]
    return sched.t_of_lambda(lam_hi + s * (lam_lo - lam_hi))


def _time_uniform(sched: NoiseSchedule, t_hi: np.ndarray, t_lo: np.ndarray, s: np.ndarray,
                  rho: np.ndarray) -> np.ndarray:
    return t_hi[:, None] + s * (t_lo - t_hi)[:, None]


def _time_quadratic(sched: NoiseSchedule, t_hi: np.ndarray, t_lo: np.ndarray, s: np.ndarray,
                    rho: np.ndarray) -> np.ndarray:
    a, b = np.sqrt(t_hi)[:, None], np.sqrt(t_lo)[:, None]
    return (a + s * (b - a)) ** 2


INIT_FAMILIES: dict[str, Callable[..., np.ndarray]] = {
    "edm_rho": _edm_rho,
    "logSNR": _logsnr,
    "time_uniform": _time_uniform,
    "time_quadratic": _time_quadratic,
}


def init_schedule(schedule: NoiseSchedule, n_intervals: int, t_max: Any, t_eps: Any, *, family: str = "edm_rho",
                  rho: Any = 7.0) -> np.ndarray:
    """Start schedule ``t  # [B, N+1]`` (descending, exact end points) of an init family.

    Args:
        schedule: the model's noise schedule.
        n_intervals: N, the number of intervals.
        t_max, t_eps: end points (scalars or [B] arrays).
        family: one of `INIT_FAMILIES`.
        rho: EDM exponent (``edm_rho`` only; scalar or [B]).

    Raises:
        ValueError: unknown family, N < 1 or t_eps >= t_max.
    """
    if family not in INIT_FAMILIES:
        raise ValueError(f"unknown init family {family!r}; known: {', '.join(INIT_FAMILIES)}")
    if int(n_intervals) < 1:
        raise ValueError(f"need at least one interval, got N={n_intervals}")
    t_hi, t_lo, rho = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=np.float64))
                                            for v in (t_max, t_eps, rho)))
    if np.any(t_lo >= t_hi):
        raise ValueError("t_eps must be smaller than T_max")
    s = np.linspace(0.0, 1.0, int(n_intervals) + 1)[None, :]
    t = INIT_FAMILIES[family](schedule, t_hi, t_lo, s, rho)
    t = np.array(t, dtype=np.float64)
    t[:, 0], t[:, -1] = t_hi, t_lo  # exact end points whatever the round trip through lambda did
    return t
