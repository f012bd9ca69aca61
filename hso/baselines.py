"""The usual model-free schedules, as schedule points ``t  # [N+1]`` (descending) for N intervals.

They span the family's whole time domain ``[t_min, t_max]`` (for SD: timesteps 999 -> 0), as their reference
implementations do:

* ``time_uniform``, ``logSNR``, ``time_quadratic`` (dpm-solver's skip types), ``edm_rho7`` (Karras et al.);
* ``leading`` / ``trailing``: diffusers' integer timestep spacings (discrete models; ``steps_offset=1`` for
  leading, as in the Stable Diffusion configs);
* ``ays``: Align Your Steps' 10-step Stable Diffusion / SDXL timesteps (as diffusers ships them), log-linearly
  interpolated in sigma to other step counts as the AYS authors recommend; only for the SD noise schedule.

`hso.optimize`'s measured default returns one of these where it measured better than every HSO setting, and
`hso.evaluation` compares against them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .inits import init_schedule
from .schedules import NoiseSchedule, betas_for

__all__ = ["BASELINES", "baseline_schedule", "MethodNotApplicable"]


class MethodNotApplicable(ValueError):
    """The method does not apply to this noise schedule (e.g. integer spacings on a continuous model)."""


BaselineFn = Callable[[NoiseSchedule, int], np.ndarray]


def _init_family(family: str, **kw: float) -> BaselineFn:
    def fn(schedule: NoiseSchedule, n: int) -> np.ndarray:
        return init_schedule(schedule, n, schedule.t_max, schedule.t_min, family=family, **kw)[0]
    return fn


def _discrete_steps(schedule: NoiseSchedule, method: str) -> int:
    n = schedule.num_train_timesteps
    if n is None:
        raise MethodNotApplicable(f"{method} spacing needs a discrete model (integer timesteps); "
                                  f"{schedule.family} is continuous")
    return n


def _leading(schedule: NoiseSchedule, n: int) -> np.ndarray:
    big_t = _discrete_steps(schedule, "leading")
    ts = np.arange(n + 1)[::-1] * (big_t // (n + 1)) + 1
    return schedule.t_of_timesteps(np.minimum(ts, big_t - 1))


def _trailing(schedule: NoiseSchedule, n: int) -> np.ndarray:
    big_t = _discrete_steps(schedule, "trailing")
    ts = np.round(np.arange(big_t, 0, -big_t / (n + 1))).astype(np.int64) - 1
    return schedule.t_of_timesteps(ts)


_AYS_KEYS = {"sd": "StableDiffusionTimesteps", "sdxl": "StableDiffusionXLTimesteps"}


def _ays_key(schedule: NoiseSchedule) -> str:
    if schedule.family != "vp_discrete" or schedule.num_train_timesteps != 1000:
        raise MethodNotApplicable("AYS schedules exist for the Stable Diffusion noise schedule only")
    sd = 0.5 * np.log(np.cumprod(1 - betas_for("scaled_linear", 1000, 0.00085, 0.012)))
    if not np.allclose(schedule.log_alpha_table, sd, rtol=0, atol=1e-12):
        raise MethodNotApplicable("AYS schedules exist for the Stable Diffusion noise schedule only")
    return _AYS_KEYS["sdxl" if schedule.name == "sdxl" else "sd"]


def _ays(schedule: NoiseSchedule, n: int) -> np.ndarray:
    key = _ays_key(schedule)
    try:
        from diffusers.schedulers import AysSchedules  # deferred: diffusers is optional
    except ImportError as e:
        raise MethodNotApplicable(f"the AYS timesteps are read from diffusers, which is not installed ({e})") from None
    base = schedule.t_of_timesteps(np.asarray(AysSchedules[key], dtype=np.float64))
    if n + 1 == base.size:
        return base
    # AYS's recipe for other step counts: interpolate log sigma linearly over the normalised step index
    log_sig = -schedule.lambda_(base)
    new = np.interp(np.linspace(0, 1, n + 1), np.linspace(0, 1, base.size), log_sig)
    return schedule.t_of_lambda(-new)


BASELINES: dict[str, BaselineFn] = {
    "time_uniform": _init_family("time_uniform"),
    "logSNR": _init_family("logSNR"),
    "edm_rho7": _init_family("edm_rho", rho=7.0),
    "time_quadratic": _init_family("time_quadratic"),
    "leading": _leading,
    "trailing": _trailing,
    "ays": _ays,
}


def baseline_schedule(name: str, schedule: NoiseSchedule, n_intervals: int) -> np.ndarray:
    """Points ``t  # [n_intervals + 1]`` (descending) of the baseline ``name`` for a noise schedule.

    Raises:
        ValueError: an unknown baseline (listing the known ones).
        MethodNotApplicable: the baseline does not apply to this noise schedule, or cannot place
            ``n_intervals`` distinct points on it.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    t = np.asarray(BASELINES[name](schedule, int(n_intervals)), dtype=np.float64)
    if t.shape != (n_intervals + 1,) or np.any(np.diff(t) >= 0):
        raise MethodNotApplicable(f"{name} cannot place {n_intervals + 1} distinct points on {schedule.family}")
    return t
