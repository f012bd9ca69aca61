"""Schedule methods compared by the evaluation: hso's own and the usual baselines, one registry.

A method maps (noise schedule, solver, NFE, convention) to schedule points ``t  # [N+1]``, descending, where N is
the solver's number of intervals for that NFE and convention (spec §3). Model-free baselines span the family's
whole time domain ``[t_min, t_max]`` (for SD: timesteps 999 -> 0), as their reference implementations do.

* ``hso``: `hso.optimize` with its defaults (``method="auto"``); ``hso_paper``: ``method="paper"`` (MEP, p = 2
  (1 for VE), spacing "rank"); relative to the paper's: ``hso_dmn`` the DM-NonUniform objective, ``hso_constrain``
  ``spacing="constrain"``, ``hso_p1`` MEP with p = 1 (recommended for pixel-space models; VP and flow only, it is
  the VE default);
* ``time_uniform``, ``logSNR``, ``time_quadratic`` (dpm-solver's skip types), ``edm_rho7`` (Karras et al.);
* ``leading`` / ``trailing``: diffusers' integer timestep spacings (discrete models; ``steps_offset=1`` for
  leading, as in the Stable Diffusion configs);
* ``ays``: Align Your Steps' 10-step Stable Diffusion / SDXL timesteps (as diffusers ships them), log-linearly
  interpolated in sigma to other step counts as the AYS authors recommend; only for the SD noise schedule.

Extend with `register_method`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..inits import init_schedule
from ..schedules import KIND_VE, NoiseSchedule, betas_for
from ..solvers import get_solver

__all__ = ["METHODS", "DEFAULT_METHODS", "register_method", "make_schedule", "MethodNotApplicable"]


class MethodNotApplicable(ValueError):
    """The method does not apply to this noise schedule (e.g. integer spacings on a continuous model)."""


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


def _schedule_key(schedule: NoiseSchedule) -> tuple:
    table = schedule.log_alpha_table
    return (schedule.family, tuple(sorted(schedule.params.items())),
            None if table is None else hash(table.tobytes()))


def _hso(objective: str | None = None, **options: Any) -> MethodFn:
    def fn(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
        from ..optimize import optimize, resolve_method
        if options.get("p") == 1.0 and schedule.kind == KIND_VE:
            raise MethodNotApplicable("MEP with p = 1 is already hso's default for VE/EDM schedules")
        # a search depends on the solver and convention only through N and its resolved settings (and on NFE
        # through d_min); searches are deterministic (seeded) and the DM-NonUniform one takes seconds, so equal
        # ones are made once
        name = get_solver(solver).name
        settings = resolve_method(options.get("method", "auto"), name, convention, objective,
                                  options.get("spacing"), options.get("p"), schedule.kind_name)
        n = get_solver(name).n_intervals(nfe, convention)
        key = (settings, _schedule_key(schedule), n, nfe)
        if key not in _HSO_CACHE:
            _HSO_CACHE[key] = optimize(schedule, nfe, name, objective, convention=convention, **options).t
        return _HSO_CACHE[key].copy()
    return fn


register_method("hso")(_hso())
register_method("hso_paper")(_hso(method="paper"))
register_method("hso_dmn")(_hso("dmn", method="paper"))
register_method("hso_constrain")(_hso(method="paper", spacing="constrain"))
register_method("hso_p1")(_hso(method="paper", p=1.0))


def _init_family(family: str, **kw: Any) -> MethodFn:
    def fn(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
        n = _n_points(solver, nfe, convention) - 1
        return init_schedule(schedule, n, schedule.t_max, schedule.t_min, family=family, **kw)[0]
    return fn


register_method("time_uniform")(_init_family("time_uniform"))
register_method("logSNR")(_init_family("logSNR"))
register_method("time_quadratic")(_init_family("time_quadratic"))
register_method("edm_rho7")(_init_family("edm_rho", rho=7.0))


def _discrete_steps(schedule: NoiseSchedule, method: str) -> int:
    n = schedule.num_train_timesteps
    if n is None:
        raise MethodNotApplicable(f"{method} spacing needs a discrete model (integer timesteps); "
                                  f"{schedule.family} is continuous")
    return n


@register_method("leading")
def _leading(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
    big_t = _discrete_steps(schedule, "leading")
    m = _n_points(solver, nfe, convention)
    ts = np.arange(m)[::-1] * (big_t // m) + 1
    return schedule.t_of_timesteps(np.minimum(ts, big_t - 1))


@register_method("trailing")
def _trailing(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
    big_t = _discrete_steps(schedule, "trailing")
    m = _n_points(solver, nfe, convention)
    ts = np.round(np.arange(big_t, 0, -big_t / m)).astype(np.int64) - 1
    return schedule.t_of_timesteps(ts)


_AYS_KEYS = {"sd": "StableDiffusionTimesteps", "sdxl": "StableDiffusionXLTimesteps"}


def _ays_key(schedule: NoiseSchedule) -> str:
    if schedule.family != "vp_discrete" or schedule.num_train_timesteps != 1000:
        raise MethodNotApplicable("AYS schedules exist for the Stable Diffusion noise schedule only")
    sd = 0.5 * np.log(np.cumprod(1 - betas_for("scaled_linear", 1000, 0.00085, 0.012)))
    if not np.allclose(schedule.log_alpha_table, sd, rtol=0, atol=1e-12):
        raise MethodNotApplicable("AYS schedules exist for the Stable Diffusion noise schedule only")
    return _AYS_KEYS["sdxl" if schedule.name == "sdxl" else "sd"]


@register_method("ays")
def _ays(schedule: NoiseSchedule, solver: str, nfe: int, convention: str) -> np.ndarray:
    key = _ays_key(schedule)
    try:
        from diffusers.schedulers import AysSchedules
    except ImportError as e:  # pragma: no cover - diffusers is a test dependency
        raise MethodNotApplicable(f"the AYS timesteps are read from diffusers, which is not installed ({e})") from None
    base = schedule.t_of_timesteps(np.asarray(AysSchedules[key], dtype=np.float64))
    m = _n_points(solver, nfe, convention)
    if m == base.size:
        return base
    # AYS's recipe for other step counts: interpolate log sigma linearly over the normalised step index
    log_sig = -schedule.lambda_(base)
    new = np.interp(np.linspace(0, 1, m), np.linspace(0, 1, base.size), log_sig)
    return schedule.t_of_lambda(-new)


DEFAULT_METHODS = ("hso", "hso_paper", "hso_dmn", "hso_constrain", "hso_p1", "time_uniform", "logSNR", "edm_rho7",
                   "time_quadratic", "leading", "trailing", "ays")
