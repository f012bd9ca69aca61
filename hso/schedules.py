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

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["NoiseSchedule", "PRESETS", "betas_for", "as_schedule"]

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


def betas_for(beta_schedule: str, num_train_timesteps: int = 1000, beta_start: float = 0.0001,
              beta_end: float = 0.02, *, rescale_betas_zero_snr: bool = False) -> np.ndarray:
    """Betas exactly as diffusers builds them for `beta_schedule` (float64).

    Raises:
        ValueError: unknown schedule name or bad sizes.
    """
    n = int(num_train_timesteps)
    if n < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
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
    if rescale_betas_zero_snr:
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
                is not strictly decreasing.
        """
        given = [x is not None for x in (alphas_cumprod, betas, beta_schedule)]
        if sum(given) != 1:
            raise ValueError("give exactly one of alphas_cumprod=, betas= or beta_schedule=")
        if beta_schedule is not None:
            betas = betas_for(beta_schedule, num_train_timesteps, beta_start, beta_end,
                              rescale_betas_zero_snr=rescale_betas_zero_snr)
        elif betas is not None and rescale_betas_zero_snr:
            betas = _rescale_zero_terminal_snr(_as_1d("betas", betas))
        if betas is not None:
            b = _as_1d("betas", betas)
            if np.any((b < 0) | (b > 1)):
                raise ValueError("betas must lie in [0, 1]")
            abar = np.cumprod(1.0 - b)
        else:
            abar = _as_1d("alphas_cumprod", alphas_cumprod).copy()
        if abar.size < 2:
            raise ValueError(f"alphas_cumprod needs at least 2 entries, got {abar.size}")
        if abar[-1] == 0.0 and abar.size >= 2 and abar[-2] > 0:
            # diffusers' value, kept below the previous entry for extreme tables so the map stays monotone
            abar[-1] = min(_ZERO_SNR_TERMINAL, 0.5 * abar[-2])
        if np.any(abar <= 0) or np.any(abar > 1):
            bad = int(np.flatnonzero((abar <= 0) | (abar > 1))[0])
            raise ValueError(f"alphas_cumprod must lie in (0, 1]; entry {bad} is {abar[bad]!r}")
        if np.any(np.diff(abar) >= 0):
            bad = int(np.flatnonzero(np.diff(abar) >= 0)[0])
            raise ValueError(
                f"alphas_cumprod must be strictly decreasing; entries {bad} and {bad + 1} are "
                f"{abar[bad]!r} and {abar[bad + 1]!r}")
        n = abar.size
        table = 0.5 * np.log(abar)
        table.setflags(write=False)
        return cls("vp_discrete", name, 1.0 / n, 1.0, {"num_train_timesteps": float(n)}, table,
                   prediction_type)

    @classmethod
    def vp_linear(cls, beta_0: float = 0.1, beta_1: float = 20.0, *, name: str = "vp_linear") -> NoiseSchedule:
        """Continuous VP SDE with linear beta(t) from `beta_0` to `beta_1` on t in [1e-4, 1]."""
        if not (np.isfinite(beta_0) and np.isfinite(beta_1)) or beta_0 < 0 or beta_1 <= beta_0:
            raise ValueError(f"need 0 <= beta_0 < beta_1 (finite), got beta_0={beta_0}, beta_1={beta_1}")
        return cls("vp_linear", name, 1e-4, 1.0, {"beta_0": float(beta_0), "beta_1": float(beta_1)})

    @classmethod
    def vp_cosine(cls, *, name: str = "vp_cosine") -> NoiseSchedule:
        """Continuous cosine VP schedule (Nichol & Dhariwal, s = 0.008) on t in [1e-4, 0.9946]."""
        return cls("vp_cosine", name, 1e-4, _COSINE_T_MAX, {"s": _COSINE_S})

    @classmethod
    def edm(cls, sigma_min: float = 0.002, sigma_max: float = 80.0, *, name: str = "edm") -> NoiseSchedule:
        """EDM / VE: alpha = 1, sigma from `sigma_min` (t = 0) to `sigma_max` (t = 1), log-linear in t."""
        if not (np.isfinite(sigma_min) and np.isfinite(sigma_max)) or not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        return cls("edm", name, 0.0, 1.0, {"sigma_min": float(sigma_min), "sigma_max": float(sigma_max)})

    @classmethod
    def flow(cls, shift: float = 1.0, *, name: str = "flow") -> NoiseSchedule:
        """Rectified flow x_t = (1 - sigma) x_0 + sigma eps with sigma = shift t / (1 + (shift - 1) t)."""
        if not np.isfinite(shift) or shift <= 0:
            raise ValueError(f"flow shift must be a positive number, got {shift}")
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

        Raises:
            ValueError: a configuration hso cannot represent, naming the field (an unknown beta schedule, dynamic
                shifting without ``mu``, a shift terminal, continuous-time VP configs, ...).
            FileNotFoundError: a config path that does not exist.
        """
        cfg, cls_name = _diffusers_config(scheduler_or_config)
        pred = cfg.get("prediction_type")
        if cfg.get("shift_terminal"):
            raise ValueError("diffusers config field 'shift_terminal' (stretched flow sigmas) is not supported")
        if cls_name.startswith("FlowMatch") or cfg.get("use_flow_sigmas"):
            shift = float(cfg.get("flow_shift" if cfg.get("use_flow_sigmas") else "shift", 1.0) or 1.0)
            if cfg.get("use_dynamic_shifting"):
                if mu is None:
                    raise ValueError("diffusers config field 'use_dynamic_shifting' is set: the shift depends on the "
                                     "image size; pass mu= (the value the pipeline computes for your resolution)")
                kind = cfg.get("time_shift_type", "exponential")
                if kind == "exponential":
                    shift = math.exp(mu)
                elif kind == "linear":
                    shift = float(mu)
                else:
                    raise ValueError(f"diffusers config field 'time_shift_type' = {kind!r} is not supported")
            elif mu is not None:
                raise ValueError("mu= applies only to schedulers with use_dynamic_shifting")
            return cls.flow(shift, name=f"flow(shift={shift:g})")
        if mu is not None:
            raise ValueError("mu= applies only to flow-matching schedulers with use_dynamic_shifting")
        if cls_name.startswith("EDM"):
            if cfg.get("sigma_schedule", "karras") not in ("karras", "exponential"):
                raise ValueError(f"diffusers config field 'sigma_schedule' = {cfg['sigma_schedule']!r} is not "
                                 "supported")
            return cls.edm(float(cfg.get("sigma_min", 0.002)), float(cfg.get("sigma_max", 80.0)),
                           name=f"edm({cfg.get('sigma_min', 0.002)}, {cfg.get('sigma_max', 80.0)})")
        if cfg.get("timestep_type", "discrete") != "discrete":
            raise ValueError(f"diffusers config field 'timestep_type' = {cfg['timestep_type']!r} (continuous-time "
                             "conditioning) is not supported")
        n = int(cfg.get("num_train_timesteps", 1000))
        zero_snr = bool(cfg.get("rescale_betas_zero_snr", False))
        if cfg.get("trained_betas") is not None:
            return cls.vp_discrete(betas=np.asarray(cfg["trained_betas"], dtype=np.float64),
                                   rescale_betas_zero_snr=zero_snr, name="diffusers(trained_betas)",
                                   prediction_type=pred)
        schedule = cfg.get("beta_schedule", "linear")
        if schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
            raise ValueError(f"diffusers config field 'beta_schedule' = {schedule!r} is not supported; known: "
                             "'linear', 'scaled_linear', 'squaredcos_cap_v2' (or give trained_betas)")
        start, end = float(cfg.get("beta_start", 0.0001)), float(cfg.get("beta_end", 0.02))
        return cls.vp_discrete(beta_schedule=schedule, num_train_timesteps=n, beta_start=start, beta_end=end,
                               rescale_betas_zero_snr=zero_snr, prediction_type=pred,
                               name=f"diffusers({schedule}, {start:g}-{end:g}{', zero-SNR' if zero_snr else ''})")

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


def _diffusers_config(obj: Any) -> tuple[dict[str, Any], str]:
    """(config dict, scheduler class name) from a scheduler, a config mapping or a local JSON path."""
    if isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        import json
        from pathlib import Path

        path = Path(obj)
        if path.is_dir():
            path = path / "scheduler_config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no diffusers scheduler config at {path}")
        try:
            obj = json.loads(path.read_text())
        except ValueError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
    if isinstance(obj, Mapping):
        cfg = dict(obj)
        return cfg, str(cfg.get("_class_name", ""))
    config = getattr(obj, "config", None)
    if isinstance(config, Mapping):
        return dict(config), type(obj).__name__
    raise TypeError(f"expected a diffusers scheduler, its config or a config path, got {type(obj).__name__}")


def _as_1d(what: str, x: Any) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be a 1-D array of numbers: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{what} contains a non-finite value at index {bad}: {a[bad]!r}")
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
