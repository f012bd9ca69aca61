"""Noise schedules: the model's (alpha_t, sigma_t) as float64 maps between time t and half log-SNR lambda.

Every family exposes the same vectorised interface (`lambda_`, `t_of_lambda`, `alpha`, `sigma`, `edm_sigma`,
`lambda_derivs`) on a normalised time axis where 1.0 spans the model's whole training range, so the spacing
penalty's `d_min` means the same thing for every model (spec §2, §6).

Families and their time axes:

* ``vp_discrete`` (Stable Diffusion, DDPM): ``t_n = (n + 1) / T`` for table entry ``n``; ``log alpha`` is the
  piecewise-linear interpolation of ``0.5 * log(alphas_cumprod)`` over ``t_n`` and the inverse map interpolates
  the same table the other way (the DPM-Solver convention, spec §2).
* ``vp_linear`` / ``vp_cosine``: the continuous VP SDEs of DPM-Solver (beta_0 = 0.1, beta_1 = 20; cosine s = 0.008,
  T = 0.9946).
* ``edm`` (EDM / VE): alpha = 1 and ``log sigma`` linear in t from ``sigma_min`` (t = 0) to ``sigma_max`` (t = 1).
* ``flow`` (rectified flow, SD3 / Flux): ``sigma = s t / (1 + (s - 1) t)``, ``alpha = 1 - sigma``; t is the
  unshifted time, so uniform t is the stock shifted schedule. t stays inside [1e-3, 0.999] where lambda is finite.

In lambda-space only the family's *kind* matters (spec §4): VP ``sigma = (1 + e^{2 lambda})^{-1/2}``,
VE ``sigma = e^{-lambda}`` and flow ``sigma = 1 / (1 + e^{lambda})``; ``alpha = sigma * e^{lambda}`` in all three.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["NoiseSchedule", "PRESETS", "betas_for", "as_schedule", "diffusers_config"]

# lambda-space kinds: how sigma depends on lambda (spec §4).
KIND_VP, KIND_VE, KIND_FLOW = 0, 1, 2
_KIND_NAMES = {KIND_VP: "vp", KIND_VE: "ve", KIND_FLOW: "flow"}


def kind_of_family(family: str) -> int:
    """The lambda-space kind of a noise family: VE for "edm", flow for "flow", VP for the rest."""
    return {"edm": KIND_VE, "flow": KIND_FLOW}.get(family, KIND_VP)


def kind_name_of_family(family: str) -> str:
    """"vp", "ve" or "flow" for a noise family (`NoiseSchedule.kind_name` without building one)."""
    return _KIND_NAMES[kind_of_family(family)]


_COSINE_S = 0.008
_COSINE_T_MAX = 0.9946
_ZERO_SNR_TERMINAL = 2.0**-24  # diffusers' replacement for a zero terminal alphas_cumprod


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


# Ranges of the constructors' numbers. Beyond them a schedule is still computable in places but not usable: its
# ends lose all signal or all noise in float64, or its squares over/underflow (what each bound protects is named).
MAX_TRAIN_TIMESTEPS = 1_000_000
FLOW_SHIFT_RANGE = (1e-12, 1e12)  # the shifted flow sigma at t = 0.999 / 1e-3 rounds to 1 / 0 in float64 beyond it
MU_RANGE = (-27.63, 27.63)  # exponential time shift: exp(mu) inside FLOW_SHIFT_RANGE
EDM_SIGMA_RANGE = (1e-100, 1e100)  # sigma^2 (and 1 / sigma^2) stay finite in float64
VP_LINEAR_MAX_BETA_SUM = 1000.0  # alpha(1)^2 = exp(-(beta_0 + beta_1) / 2) underflows float64 near 1400


def _g(x: float) -> str:
    """A bound as people write it: 0.0001, 1e-12, 1e12 (not 1e+12)."""
    return f"{x:g}".replace("e+", "e")


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if hi is None:
        return f"{'>' if lo_open else '>='} {_g(lo)}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {_g(hi)}"
    return f"in {'(' if lo_open else '['}{_g(lo)}, {_g(hi)}{')' if hi_open else ']'}"


def _show(v: Any) -> str:
    """repr of a bad value, cut to a readable length."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _real(name: str, v: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
          hi_open: bool = False) -> float:
    """``v`` as a float, checked: a real number (not a bool or a string), finite, inside the interval.

    Raises:
        TypeError: not a real number.
        ValueError: NaN, infinite or outside the interval (the message names ``name`` and the allowed range).
    """
    rng = "" if lo is None and hi is None else " " + _interval(lo, hi, lo_open, hi_open)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number{rng}, got {_show(v)} ({type(v).__name__})")
    try:
        x = float(v)
    except OverflowError:  # an int beyond float64
        x = math.inf if v > 0 else -math.inf
    if not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo)) \
            or (hi is not None and (x >= hi if hi_open else x > hi)):
        raise ValueError(f"{name} must be a {'finite ' if not rng else ''}number{rng}, got {_show(v)}")
    return x


def _integer(name: str, v: Any, lo: int, hi: int) -> int:
    """``v`` as an int in [lo, hi] (an integral float is accepted; bools, strings and fractions are not)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer in [{lo}, {hi}], got {_show(v)} ({type(v).__name__})")
    if not (lo <= v <= hi and float(v).is_integer()):  # NaN fails the comparison; a huge int fails the bound
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {_show(v)}")
    return int(v)


def _flag(name: str, v: Any) -> bool:
    """A true/false setting (None reads as False, as diffusers treats it)."""
    if v is None:
        return False
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be true or false, got {_show(v)} ({type(v).__name__})")
    return bool(v)


def betas_for(beta_schedule: str, num_train_timesteps: int = 1000, beta_start: float = 0.0001,
              beta_end: float = 0.02, *, rescale_betas_zero_snr: bool = False) -> np.ndarray:
    """Betas exactly as diffusers builds them for `beta_schedule` (float64).

    Raises:
        ValueError: unknown schedule name, num_train_timesteps not in [2, 1e6], beta_start / beta_end (linear and
            scaled_linear) not in (0, 1).
        TypeError: a value that is not a number.
    """
    n = _integer("num_train_timesteps", num_train_timesteps, 2, MAX_TRAIN_TIMESTEPS)
    if beta_schedule in ("linear", "scaled_linear"):
        beta_start = _real("beta_start", beta_start, 0.0, 1.0, lo_open=True, hi_open=True)
        beta_end = _real("beta_end", beta_end, 0.0, 1.0, lo_open=True, hi_open=True)
    if beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, n, dtype=np.float64)
    elif beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float64) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        def abar(x: np.ndarray) -> np.ndarray:
            return np.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2
        i = np.arange(n, dtype=np.float64)
        betas = np.minimum(1 - abar((i + 1) / n) / abar(i / n), 0.999)
    else:
        raise ValueError(
            f"unknown beta_schedule {beta_schedule!r}; known: 'linear', 'scaled_linear', 'squaredcos_cap_v2'")
    if _flag("rescale_betas_zero_snr", rescale_betas_zero_snr):
        betas = _rescale_zero_terminal_snr(betas)
    return betas


def _rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2023 (as in diffusers): shift/scale sqrt(alphas_cumprod) so the last entry is exactly 0."""
    abar_sqrt = np.sqrt(np.cumprod(1.0 - betas))
    first, last = abar_sqrt[0], abar_sqrt[-1]
    abar_sqrt = (abar_sqrt - last) * first / (first - last)
    abar = abar_sqrt**2
    alphas = np.concatenate([abar[:1], abar[1:] / abar[:-1]])
    return 1.0 - alphas


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A diffusion model's noise schedule as exact float64 maps between t and lambda.

    Build one with a constructor (`vp_discrete`, `vp_linear`, `vp_cosine`, `edm`, `flow`, `preset`); the fields are
    what the kernels need and are not meant to be set by hand.
    """

    family: str
    name: str
    t_min: float
    t_max: float
    params: Mapping[str, float] = field(default_factory=dict)
    log_alpha_table: np.ndarray | None = field(default=None, repr=False)  # [T] for vp_discrete
    prediction_type: str | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def vp_discrete(cls, *, alphas_cumprod: Any = None, betas: Any = None, beta_schedule: str | None = None,
                    num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                    rescale_betas_zero_snr: bool = False, name: str = "vp_discrete",
                    prediction_type: str | None = None) -> NoiseSchedule:
        """Discrete VP model from exactly one of `alphas_cumprod`, `betas` or a diffusers `beta_schedule` name.

        A zero terminal `alphas_cumprod` (zero-SNR models) is replaced by 2**-24, as diffusers' samplers do (or by
        half the previous entry if that is smaller), so that lambda stays finite on the whole table.

        Raises:
            ValueError: none or several sources given, NaN/inf entries, entries outside (0, 1], or a table that
                is not strictly decreasing; betas outside [0, 1] (0 only first, 1 only last); beta_start /
                beta_end outside (0, 1), num_train_timesteps not an integer in [2, 1e6].
            TypeError: a value that is not a number (or not a 1-D array of numbers).
        """
        given = [x is not None for x in (alphas_cumprod, betas, beta_schedule)]
        if sum(given) != 1:
            raise ValueError("give exactly one of alphas_cumprod=, betas= or beta_schedule=")
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        if prediction_type is not None and not isinstance(prediction_type, str):
            raise TypeError(f"prediction_type must be a string or None, got {type(prediction_type).__name__}")
        zero_snr = _flag("rescale_betas_zero_snr", rescale_betas_zero_snr)
        if beta_schedule is not None:
            betas = betas_for(beta_schedule, num_train_timesteps, beta_start, beta_end, rescale_betas_zero_snr=zero_snr)
            what = f"the {beta_schedule} betas"
        elif betas is not None:
            what = "the betas"
            b = _as_1d("betas", betas)
            if b.size < 2:
                raise ValueError(f"betas needs at least 2 entries, got {b.size}")
            bad = np.flatnonzero((b < 0) | (b > 1) | (b == 0) & (np.arange(b.size) > 0)
                                 | (b == 1) & (np.arange(b.size) < b.size - 1))
            if bad.size:
                raise ValueError(f"betas must lie in (0, 1) (the first may be 0, the last 1 for zero terminal SNR); "
                                 f"entry {int(bad[0])} is {float(b[int(bad[0])])!r}")
            betas = _rescale_zero_terminal_snr(b) if zero_snr else b
        if betas is not None:
            with np.errstate(under="ignore"):
                abar = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
            if abar.size >= 2 and np.any(abar[:-1] == 0):  # underflow: more than the terminal entry is 0
                raise ValueError(f"{what} are too large: alphas_cumprod (the product of 1 - beta) underflows to 0 "
                                 f"at entry {int(np.flatnonzero(abar == 0)[0])} of {abar.size}")
        else:
            abar = _as_1d("alphas_cumprod", alphas_cumprod).copy()
        if abar.size < 2:
            raise ValueError(f"alphas_cumprod needs at least 2 entries, got {abar.size}")
        if abar[-1] == 0.0 and abar.size >= 2 and abar[-2] > 0:
            # diffusers' value, kept below the previous entry for extreme tables so the map stays monotone
            abar[-1] = min(_ZERO_SNR_TERMINAL, 0.5 * abar[-2])
        if np.any(abar <= 0) or np.any(abar > 1):
            bad = int(np.flatnonzero((abar <= 0) | (abar > 1))[0])
            raise ValueError(f"alphas_cumprod must lie in (0, 1]; entry {bad} is {float(abar[bad])!r}")
        if np.any(np.diff(abar) >= 0):
            bad = int(np.flatnonzero(np.diff(abar) >= 0)[0])
            raise ValueError(
                f"alphas_cumprod must be strictly decreasing; entries {bad} and {bad + 1} are "
                f"{float(abar[bad])!r} and {float(abar[bad + 1])!r}")
        n = abar.size
        table = 0.5 * np.log(abar)
        table.setflags(write=False)
        return cls("vp_discrete", name, 1.0 / n, 1.0, {"num_train_timesteps": float(n)}, table,
                   prediction_type)

    @classmethod
    def vp_linear(cls, beta_0: float = 0.1, beta_1: float = 20.0, *, name: str = "vp_linear") -> NoiseSchedule:
        """Continuous VP SDE with linear beta(t) from `beta_0` to `beta_1` on t in [1e-4, 1].

        Raises:
            ValueError: unless 0 <= beta_0 < beta_1 and beta_0 + beta_1 <= 1000 (alpha(1)^2 = exp(-(beta_0 +
                beta_1) / 2) would underflow float64 soon beyond). TypeError: not numbers.
        """
        beta_0 = _real("beta_0", beta_0, 0.0)
        beta_1 = _real("beta_1", beta_1)
        if beta_1 <= beta_0:
            raise ValueError(f"need 0 <= beta_0 < beta_1, got beta_0={beta_0!r}, beta_1={beta_1!r}")
        if beta_0 + beta_1 > VP_LINEAR_MAX_BETA_SUM:
            raise ValueError(f"beta_0 + beta_1 must be <= {VP_LINEAR_MAX_BETA_SUM:g} (alpha(1)^2 = exp(-(beta_0 + "
                             f"beta_1) / 2) underflows float64 beyond ~1400), got {beta_0 + beta_1:g}")
        return cls("vp_linear", name, 1e-4, 1.0, {"beta_0": float(beta_0), "beta_1": float(beta_1)})

    @classmethod
    def vp_cosine(cls, *, name: str = "vp_cosine") -> NoiseSchedule:
        """Continuous cosine VP schedule (Nichol & Dhariwal, s = 0.008) on t in [1e-4, 0.9946]."""
        return cls("vp_cosine", name, 1e-4, _COSINE_T_MAX, {"s": _COSINE_S})

    @classmethod
    def edm(cls, sigma_min: float = 0.002, sigma_max: float = 80.0, *, name: str = "edm") -> NoiseSchedule:
        """EDM / VE: alpha = 1, sigma from `sigma_min` (t = 0) to `sigma_max` (t = 1), log-linear in t.

        Raises:
            ValueError: unless 0 < sigma_min < sigma_max, both in [1e-100, 1e100] (sigma^2 stays finite and
                non-zero in float64). TypeError: not numbers.
        """
        lo, hi = EDM_SIGMA_RANGE
        sigma_min = _real("sigma_min", sigma_min, lo, hi)
        sigma_max = _real("sigma_max", sigma_max, lo, hi)
        if not sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        return cls("edm", name, 0.0, 1.0, {"sigma_min": float(sigma_min), "sigma_max": float(sigma_max)})

    @classmethod
    def flow(cls, shift: float = 1.0, *, name: str = "flow") -> NoiseSchedule:
        """Rectified flow x_t = (1 - sigma) x_0 + sigma eps with sigma = shift t / (1 + (shift - 1) t).

        Raises:
            ValueError: shift outside [1e-12, 1e12] (beyond, the shifted sigma at t = 0.999 rounds to 1 or the one
                at t = 1e-3 to 0 in float64: the schedule would lose all signal or all noise). TypeError: not a
                number.
        """
        shift = _real("flow shift", shift, *FLOW_SHIFT_RANGE)
        return cls("flow", name, 1e-3, 0.999, {"shift": float(shift)})

    @classmethod
    def preset(cls, name: str) -> NoiseSchedule:
        """A built-in model's schedule by name; see `PRESETS`.

        Raises:
            ValueError: unknown name (the message lists the known ones).
        """
        key = str(name).lower().replace("-", "_")
        if key not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
        return PRESETS[key]()

    @classmethod
    def from_diffusers(cls, scheduler_or_config: Any, *, mu: float | None = None) -> NoiseSchedule:
        """The noise schedule a diffusers scheduler was trained with, from the scheduler or its config.

        Reads ``trained_betas`` or ``beta_schedule`` / ``beta_start`` / ``beta_end`` / ``num_train_timesteps`` /
        ``rescale_betas_zero_snr`` (rebuilt in float64, not from diffusers' float32 tensors), ``prediction_type``,
        flow matching (``FlowMatch*`` classes or ``use_flow_sigmas``) with ``shift`` / ``flow_shift`` and dynamic
        shifting, and EDM schedulers' ``sigma_min`` / ``sigma_max``. Settings that only change how diffusers spaces
        its own steps (Karras/exponential/beta sigmas, timestep_spacing) are irrelevant here: an hso schedule
        replaces them.

        Args:
            scheduler_or_config: a diffusers scheduler, its ``config``, a plain dict, or the path of a local
                ``scheduler_config.json``.
            mu: the resolution-dependent shift of schedulers with ``use_dynamic_shifting`` (Flux, SD3.5); the
                pipeline computes it from the image size. Required for them, refused otherwise.

        A config must be a scheduler's: a ``_class_name`` ending in ``Scheduler`` (a UNet's or a pipeline's config
        is refused), or, without one (a scheduler's own ``config`` mapping has none), beta fields (a VP model) or
        ``use_flow_sigmas``; a FlowMatch or EDM scheduler's config needs its ``_class_name`` (or pass the scheduler).
        A field the config lacks takes the scheduler class's diffusers default (e.g. Heun's and LCM's betas
        0.00085-0.012).

        Raises:
            ValueError: not a scheduler config, or a configuration hso cannot represent, naming the field and its
                allowed range (an unknown beta schedule, betas outside (0, 1), num_train_timesteps not an integer
                in [2, 1e6], a shift outside [1e-12, 1e12], dynamic shifting without ``mu`` or with ``mu``
                outside [-27.63, 27.63], a shift terminal, continuous-time VP configs, ...).
            TypeError: a field or ``mu`` that is not a number (or a flag that is not true/false); an object that is
                neither a scheduler, a mapping nor a path.
            FileNotFoundError: a config path that does not exist.
        """
        cfg, cls_name = diffusers_config(scheduler_or_config)
        if mu is not None:
            mu = _real("mu", mu)
        pred = cfg.get("prediction_type")
        if pred is not None and not isinstance(pred, str):
            raise TypeError(f"diffusers config field 'prediction_type' must be a string, got {pred!r}")
        family = _diffusers_family(cfg, cls_name)
        if cfg.get("shift_terminal"):
            raise ValueError("diffusers config field 'shift_terminal' (stretched flow sigmas) is not supported")
        if family == "flow":
            flow_sigmas = _flag("diffusers config field 'use_flow_sigmas'", cfg.get("use_flow_sigmas"))
            key = "flow_shift" if flow_sigmas and "flow_shift" in cfg else "shift"
            shift = _cfg_real(cfg, key, 1.0, *FLOW_SHIFT_RANGE)
            if _flag("diffusers config field 'use_dynamic_shifting'", cfg.get("use_dynamic_shifting")):
                if mu is None:
                    raise ValueError("diffusers config field 'use_dynamic_shifting' is set: the shift depends on the "
                                     "image size; pass mu= (the value the pipeline computes for your resolution)")
                kind = cfg.get("time_shift_type", "exponential")
                if kind == "exponential":
                    lo, hi = MU_RANGE
                    if not lo <= mu <= hi:
                        raise ValueError(f"mu must lie in [{_g(lo)}, {_g(hi)}] (time_shift_type 'exponential': the "
                                         f"flow shift exp(mu) must lie in [{_g(FLOW_SHIFT_RANGE[0])}, "
                                         f"{_g(FLOW_SHIFT_RANGE[1])}]; beyond, the shifted sigmas at the schedule's "
                                         f"ends round to 0 or 1 in float64), got {mu!r}")
                    shift = math.exp(mu)
                elif kind == "linear":
                    shift = _real("mu (time_shift_type 'linear': mu is the flow shift)", mu, *FLOW_SHIFT_RANGE)
                else:
                    raise ValueError(f"diffusers config field 'time_shift_type' = {kind!r} is not supported; known: "
                                     "'exponential', 'linear'")
            elif mu is not None:
                raise ValueError("mu= applies only to schedulers with use_dynamic_shifting")
            return cls.flow(shift, name=f"flow(shift={shift:g})")
        if mu is not None:
            raise ValueError("mu= applies only to flow-matching schedulers with use_dynamic_shifting")
        if family == "edm":
            if cfg.get("sigma_schedule", "karras") not in ("karras", "exponential"):
                raise ValueError(f"diffusers config field 'sigma_schedule' = {cfg['sigma_schedule']!r} is not "
                                 "supported; known: 'karras', 'exponential'")
            lo, hi = EDM_SIGMA_RANGE
            smin, smax = _cfg_real(cfg, "sigma_min", 0.002, lo, hi), _cfg_real(cfg, "sigma_max", 80.0, lo, hi)
            if not smin < smax:
                raise ValueError(f"diffusers config fields 'sigma_min' < 'sigma_max' needed, got {smin!r} and "
                                 f"{smax!r}")
            return cls.edm(smin, smax, name=f"edm({smin:g}, {smax:g})")
        zero_snr = _flag("diffusers config field 'rescale_betas_zero_snr'", cfg.get("rescale_betas_zero_snr"))
        if cfg.get("trained_betas") is not None:
            try:
                return cls.vp_discrete(betas=cfg["trained_betas"], rescale_betas_zero_snr=zero_snr,
                                       name="diffusers(trained_betas)", prediction_type=pred)
            except (TypeError, ValueError) as e:
                raise type(e)(f"diffusers config field 'trained_betas': {e}") from None
        default_schedule, default_start, default_end = _BETA_DEFAULTS.get(cls_name, ("linear", 0.0001, 0.02))
        schedule = cfg.get("beta_schedule", default_schedule)
        if schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(f"diffusers config field 'beta_schedule' = {schedule!r} is not supported; known: "
                             "'linear', 'scaled_linear', 'squaredcos_cap_v2' (or give trained_betas)")
        n = _cfg_integer(cfg, "num_train_timesteps", 1000, 2, MAX_TRAIN_TIMESTEPS)
        if schedule == "squaredcos_cap_v2":  # diffusers ignores beta_start / beta_end for it
            start, end, rng = default_start, default_end, ""
        else:
            start = _cfg_real(cfg, "beta_start", default_start, 0.0, 1.0, lo_open=True, hi_open=True)
            end = _cfg_real(cfg, "beta_end", default_end, 0.0, 1.0, lo_open=True, hi_open=True)
            rng = f", {start:g}-{end:g}"
        try:
            return cls.vp_discrete(beta_schedule=schedule, num_train_timesteps=n, beta_start=start, beta_end=end,
                                   rescale_betas_zero_snr=zero_snr, prediction_type=pred,
                                   name=f"diffusers({schedule}{rng}{', zero-SNR' if zero_snr else ''})")
        except ValueError as e:  # e.g. betas so large that alphas_cumprod underflows: name the config's fields
            raise ValueError(f"diffusers config fields 'beta_schedule' / 'beta_start' / 'beta_end' / "
                             f"'num_train_timesteps' ({schedule}, {start:g}, {end:g}, {n}): {e}") from None

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> int:
        """lambda-space kind: 0 VP, 1 VE, 2 flow."""
        return kind_of_family(self.family)

    @property
    def kind_name(self) -> str:
        """"vp", "ve" or "flow"."""
        return _KIND_NAMES[self.kind]

    @property
    def num_train_timesteps(self) -> int | None:
        """Number of training steps of a discrete model (None for continuous families)."""
        n = self.params.get("num_train_timesteps")
        return None if n is None else int(n)

    @property
    def is_discrete(self) -> bool:
        return self.family == "vp_discrete"

    # ------------------------------------------------------------------ t -> lambda
    def _vp_log_alpha(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log alpha, d/dt, d2/dt2) for the VP families."""
        if self.family == "vp_discrete":
            table = self.log_alpha_table
            n = table.size
            grid = (np.arange(n, dtype=np.float64) + 1.0) / n
            la = np.interp(t, grid, table)
            # slope of the cell holding t (right-continuous; the last cell for t = 1)
            k = np.clip(np.searchsorted(grid, t, side="right") - 1, 0, n - 2)
            slope = (table[k + 1] - table[k]) * n
            return la, slope, np.zeros_like(la)
        if self.family == "vp_linear":
            b0, b1 = self.params["beta_0"], self.params["beta_1"]
            la = -0.25 * t**2 * (b1 - b0) - 0.5 * t * b0
            return la, -0.5 * t * (b1 - b0) - 0.5 * b0, np.full_like(t, -0.5 * (b1 - b0))
        if self.family == "vp_cosine":
            s = self.params["s"]
            c = math.pi / (2 * (1 + s))
            u = (t + s) * c
            la = np.log(np.cos(u)) - math.log(math.cos(s * c))
            return la, -np.tan(u) * c, -(c / np.cos(u)) ** 2
        raise AssertionError(self.family)

    def lambda_derivs(self, t: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lambda, d lambda / dt, d2 lambda / dt2) at t, float64, vectorised."""
        t = np.asarray(t, dtype=np.float64)
        if self.kind == KIND_VP:
            la, d1, d2 = self._vp_log_alpha(t)
            sig2 = -np.expm1(2.0 * la)  # 1 - alpha^2
            lam = la - 0.5 * np.log(sig2)
            # lambda = L - log(1 - e^{2L}) / 2  =>  dlambda/dL = 1/sigma^2,  d2lambda/dL2 = 2 alpha^2 / sigma^4
            a2 = np.exp(2.0 * la)
            return lam, d1 / sig2, d2 / sig2 + d1**2 * 2.0 * a2 / sig2**2
        if self.family == "edm":
            lo, hi = math.log(self.params["sigma_min"]), math.log(self.params["sigma_max"])
            return -(lo + t * (hi - lo)), np.full_like(t, -(hi - lo)), np.zeros_like(t)
        if self.family == "flow":
            s = self.params["shift"]
            lam = np.log1p(-t) - np.log(s * t)
            return lam, -1.0 / (1.0 - t) - 1.0 / t, 1.0 / t**2 - 1.0 / (1.0 - t) ** 2
        raise AssertionError(self.family)

    def lambda_(self, t: Any) -> np.ndarray:
        """Half log-SNR lambda = log(alpha / sigma) at t (decreasing in t)."""
        return self.lambda_derivs(t)[0]

    def t_of_lambda(self, lam: Any) -> np.ndarray:
        """Inverse of `lambda_` (exact for every family; the discrete table is interpolated the other way)."""
        lam = np.asarray(lam, dtype=np.float64)
        if self.kind == KIND_VP:
            la = -0.5 * _softplus(-2.0 * lam)  # log alpha(lambda) for VP
            if self.family == "vp_discrete":
                table = self.log_alpha_table
                n = table.size
                grid = (np.arange(n, dtype=np.float64) + 1.0) / n
                return np.interp(la, table[::-1], grid[::-1])
            if self.family == "vp_linear":
                b0, b1 = self.params["beta_0"], self.params["beta_1"]
                # solve (b1-b0)/4 t^2 + b0/2 t + la = 0 for t >= 0, in the cancellation-free form
                m = -la
                return 2.0 * m / (0.5 * b0 + np.sqrt(0.25 * b0**2 + (b1 - b0) * m))
            if self.family == "vp_cosine":
                s = self.params["s"]
                c = math.pi / (2 * (1 + s))
                return np.arccos(np.exp(la + math.log(math.cos(s * c)))) / c - s
        if self.family == "edm":
            lo, hi = math.log(self.params["sigma_min"]), math.log(self.params["sigma_max"])
            return (-lam - lo) / (hi - lo)
        if self.family == "flow":
            return 1.0 / (1.0 + self.params["shift"] * np.exp(lam))
        raise AssertionError(self.family)

    def edm_sigma(self, t: Any) -> np.ndarray:
        """EDM / k-diffusion sigma = sigma_t / alpha_t = e^{-lambda}."""
        return np.exp(-self.lambda_(t))

    def sigma(self, t: Any) -> np.ndarray:
        """sigma_t of the forward process x_t = alpha_t x_0 + sigma_t eps."""
        return np.exp(log_sigma_of_lambda(self.lambda_(t), self.kind))

    def alpha(self, t: Any) -> np.ndarray:
        """alpha_t of the forward process."""
        lam = self.lambda_(t)
        return np.exp(log_sigma_of_lambda(lam, self.kind) + lam)

    # ------------------------------------------------------------------ integer timesteps
    def timesteps_of_t(self, t: Any) -> np.ndarray:
        """Model timestep indices ``round(T t) - 1`` (clamped to >= 0) of a discrete model.

        Raises:
            ValueError: for continuous families, which have no integer timesteps.
        """
        n = self.num_train_timesteps
        if n is None:
            raise ValueError(f"the {self.family} family has no integer timesteps")
        return np.maximum(np.rint(np.asarray(t, dtype=np.float64) * n).astype(np.int64) - 1, 0)

    def t_of_timesteps(self, timesteps: Any) -> np.ndarray:
        """Continuous t of integer model timesteps (inverse of `timesteps_of_t`)."""
        n = self.num_train_timesteps
        if n is None:
            raise ValueError(f"the {self.family} family has no integer timesteps")
        return (np.asarray(timesteps, dtype=np.float64) + 1.0) / n

    @property
    def time_resolution(self) -> float:
        """Smallest t-gap the schedule may have: one training step for discrete models, else 1e-6."""
        n = self.num_train_timesteps
        # the 1e-9 margin keeps round(T t) unique in spite of rounding error in the gaps
        return (1.0 + 1e-9) / n if n else 1e-6

    def content_key(self) -> tuple:
        """A hashable key equal for two schedules with the same family, parameters and table (for caches)."""
        table = self.log_alpha_table
        return (self.family, tuple(sorted(self.params.items())), None if table is None else table.tobytes())

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (family, name, parameters, domain)."""
        return {"family": self.family, "name": self.name, "t_min": self.t_min, "t_max": self.t_max,
                "params": dict(self.params)}


def log_sigma_of_lambda(lam: np.ndarray, kind: int) -> np.ndarray:
    """log sigma as a function of lambda for a lambda-space kind (VP, VE, flow)."""
    if kind == KIND_VP:
        return -0.5 * _softplus(2.0 * lam)
    if kind == KIND_VE:
        return -lam
    if kind == KIND_FLOW:
        return -_softplus(lam)
    raise ValueError(f"unknown kind {kind}")


# diffusers' beta defaults (beta_schedule, beta_start, beta_end) of the scheduler classes that differ from the common
# ("linear", 0.0001, 0.02), for configs that leave the fields out (diffusers 0.3x-0.4x)
_BETA_DEFAULTS: dict[str, tuple[str, float, float]] = {
    **dict.fromkeys(("HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"),
                    ("linear", 0.00085, 0.012)),
    **dict.fromkeys(("LCMScheduler", "TCDScheduler", "CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"),
                    ("scaled_linear", 0.00085, 0.012)),
    "UnCLIPScheduler": ("squaredcos_cap_v2", 0.0001, 0.02),
}
# scheduler classes whose noise schedule is the beta one (they take beta_schedule / trained_betas)
_BETA_CLASSES = frozenset((
    "DDIMScheduler", "DDIMInverseScheduler", "DDIMParallelScheduler", "DDPMScheduler", "DDPMParallelScheduler",
    "DEISMultistepScheduler", "DPMSolverMultistepScheduler", "DPMSolverMultistepInverseScheduler",
    "DPMSolverSinglestepScheduler", "DPMSolverSDEScheduler", "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler", "PNDMScheduler", "RePaintScheduler",
    "SASolverScheduler", "UniPCMultistepScheduler", *_BETA_DEFAULTS))
_BETA_FIELDS = ("beta_schedule", "beta_start", "beta_end", "trained_betas")
# any of them marks a mapping without _class_name as a scheduler config
_SCHEDULE_FIELDS = (*_BETA_FIELDS, "num_train_timesteps", "rescale_betas_zero_snr", "timestep_type", "use_flow_sigmas",
                    "flow_shift", "shift", "use_dynamic_shifting", "base_shift", "max_shift", "sigma_min",
                    "sigma_max", "sigma_schedule", "sigma_data")


def _diffusers_family(cfg: dict[str, Any], cls_name: str) -> str:
    """"flow", "edm" or "vp_discrete" for a scheduler config, or ValueError for one that is not a scheduler's or
    whose noise schedule hso cannot read."""
    beta = any(cfg.get(k) is not None for k in _BETA_FIELDS)
    if cls_name and not cls_name.endswith("Scheduler"):
        raise ValueError(f"not a diffusers scheduler config: its _class_name is {cls_name!r} (a scheduler's ends in "
                         "'Scheduler'); give the pipeline's scheduler/scheduler_config.json")
    if not cls_name and not any(k in cfg for k in _SCHEDULE_FIELDS):
        raise ValueError("not a diffusers scheduler config: no _class_name ending in 'Scheduler' and none of the "
                         f"noise-schedule fields ({', '.join(_SCHEDULE_FIELDS[:5])}, ...)")
    # a scheduler's own `config` mapping carries no class name: its fields tell the family (FlowMatch schedulers
    # have a shift and dynamic shifting and no betas; EDM schedulers sigma_min / sigma_max / sigma_data)
    flow_fields = not cls_name and not beta and "shift" in cfg and "use_dynamic_shifting" in cfg
    edm_fields = not cls_name and not beta and all(k in cfg for k in ("sigma_min", "sigma_max", "sigma_data"))
    if cls_name.startswith("FlowMatch") or cfg.get("use_flow_sigmas") or flow_fields:
        return "flow"
    if cls_name.startswith("EDM") or edm_fields:
        return "edm"
    if cfg.get("timestep_type", "discrete") != "discrete":
        raise ValueError(f"diffusers config field 'timestep_type' = {cfg['timestep_type']!r} (continuous-time "
                         "conditioning) is not supported")
    if beta or cls_name in _BETA_CLASSES:
        return "vp_discrete"
    if not cls_name:  # e.g. a scheduler's own config mapping: it carries no class name
        raise ValueError("this scheduler config has no _class_name and none of the fields that tell its noise "
                         "schedule (beta_schedule / beta_start / beta_end / trained_betas, use_flow_sigmas, a "
                         "FlowMatch scheduler's shift and use_dynamic_shifting, an EDM scheduler's sigma_min / "
                         "sigma_max / sigma_data); pass the scheduler itself or add the config's _class_name")
    raise ValueError(f"scheduler class {cls_name!r}: hso cannot read its noise schedule (it has no beta fields and "
                     "is neither a FlowMatch nor an EDM scheduler)")


def _cfg_real(cfg: Mapping[str, Any], key: str, default: float, lo: float, hi: float, **kw: bool) -> float:
    return _real(f"diffusers config field {key!r}", cfg.get(key, default), lo, hi, **kw)


def _cfg_integer(cfg: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    return _integer(f"diffusers config field {key!r}", cfg.get(key, default), lo, hi)


def _scheduler_class_name(obj: Any) -> str:
    """The scheduler class an object is: the first class of its MRO named ``...Scheduler`` (a subclass keeps its
    stock scheduler's noise schedule), else its own class name."""
    for klass in type(obj).__mro__:
        if klass.__name__.endswith("Scheduler"):
            return klass.__name__
    return type(obj).__name__


def diffusers_config(obj: Any) -> tuple[dict[str, Any], str]:
    """(config dict, scheduler class name) from a scheduler, a config mapping or a local JSON path.

    Raises:
        FileNotFoundError: no such file (or no scheduler_config.json in the folder).
        ValueError: an unreadable file, invalid JSON, JSON that is not an object, a _class_name that is not a string.
        TypeError: an object that is neither a path, a mapping nor a scheduler.
    """
    if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        path = Path(obj.decode() if isinstance(obj, bytes) else obj)
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.is_file():
            hint = " (for a pipeline folder, give its scheduler/ subfolder)" \
                if (path.parent / "scheduler" / "scheduler_config.json").is_file() else ""
            raise FileNotFoundError(f"no diffusers scheduler config at {path}{hint}")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a JSON text file (not UTF-8)") from None
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path} is not a diffusers scheduler config: its JSON is a {type(obj).__name__}, "
                             "not an object")
    if isinstance(obj, Mapping):
        cfg = dict(obj)
        cls_name = cfg.get("_class_name", "")
        if not isinstance(cls_name, str):
            raise ValueError(f"diffusers config field '_class_name' must be a string, got {cls_name!r}")
        return cfg, cls_name
    config = getattr(obj, "config", None)
    if isinstance(config, Mapping):
        return dict(config), _scheduler_class_name(obj)
    raise TypeError(f"expected a diffusers scheduler, its config or a config path, got {type(obj).__name__}")


def _as_1d(what: str, x: Any) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{what} must be a 1-D array of numbers, got a string")
    try:
        raw = np.asarray(x)
        if raw.dtype.kind not in "iuf":  # strings, bools, objects (mixed lists), complex: not numbers
            raise TypeError(f"entries of type {raw.dtype} are not real numbers")
        a = raw.astype(np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be a 1-D array of numbers: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{what} contains a non-finite value at index {bad}: {float(a[bad])!r}")
    return a


PRESETS = {
    "sd15": lambda: NoiseSchedule.vp_discrete(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              name="sd15", prediction_type="epsilon"),
    "sd21": lambda: NoiseSchedule.vp_discrete(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              name="sd21", prediction_type="v_prediction"),
    "sdxl": lambda: NoiseSchedule.vp_discrete(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                              name="sdxl", prediction_type="epsilon"),
    "ddpm": lambda: NoiseSchedule.vp_discrete(beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
                                              name="ddpm", prediction_type="epsilon"),
    # improved DDPM's cosine betas as diffusers makes them (squaredcos_cap_v2, betas capped at 0.999)
    "iddpm": lambda: NoiseSchedule.vp_discrete(beta_schedule="squaredcos_cap_v2", name="iddpm",
                                               prediction_type="epsilon"),
    "vp_linear": lambda: NoiseSchedule.vp_linear(0.1, 20.0),
    "vp_cosine": lambda: NoiseSchedule.vp_cosine(),
    "edm": lambda: NoiseSchedule.edm(0.002, 80.0),
    "flow": lambda: NoiseSchedule.flow(3.0, name="flow"),
}


def as_schedule(schedule: NoiseSchedule | str) -> NoiseSchedule:
    """Accept a `NoiseSchedule` or a preset name."""
    if isinstance(schedule, NoiseSchedule):
        return schedule
    if isinstance(schedule, str):
        return NoiseSchedule.preset(schedule)
    raise TypeError(f"expected a NoiseSchedule or a preset name, got {type(schedule).__name__}")
