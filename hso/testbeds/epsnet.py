"""Test bed 4, "a plain epsilon network": the most common kind of model in the wild (DDPM, ADM, SD 1.x base), small.

A residual MLP that predicts the noise ``eps`` from ``(x_t, t)`` for DDPM's linear betas (1e-4 .. 0.02, T = 1000),
with no preconditioning: its data prediction ``x0 = (x_t - sigma_t eps) / alpha_t`` carries the network's error
times ``sigma_t / alpha_t``, about 156 at the last training step, where the exact-denoiser beds and the
EDM-preconditioned `DigitsNet` have none. It is trained by ``python -m hso.testbeds.train --only epsnet`` (PyTorch,
CPU) and shipped as float32 weights in ``weights/digits_epsnet.npz``; inference here is NumPy in float64::

    eps(x, t) = F(x, t)   with t in (0, 1] the model time (timestep index k = 1000 t - 1, continuous)

``F``: Fourier features of t (fixed log-spaced frequencies) -> SiLU embedding, concatenated with ``x``; an input
layer; residual SiLU layers; a linear output layer.

Like every test bed it is called in EDM form, ``D(y, s)`` with ``y = x0 + s z``: ``s`` is mapped to the model time
``t`` with the same noise-to-signal ratio on its own (DDPM) schedule, ``x = alpha_t y``, and ``D = y - s eps(x, t)``.
So it serves any VP noise schedule whose ratios lie in its training range (SD 2.1's do): the network is the same,
the sampler's schedule differs. A ratio outside that range is an error, never an extrapolation.

`DigitsVNet` is the same network trained to predict ``v = alpha_t eps - sigma_t x0`` on SD's scaled-linear betas
(0.00085 .. 0.012, T = 1000), as SD 2.x-v models are (``python -m hso.testbeds.train --only vnet``,
``weights/digits_vnet.npz``): its data prediction ``x0 = alpha_t x_t - sigma_t v`` carries the network's error
times ``sigma_t`` (at most 1), where the epsilon network's carries it times ``sigma_t / alpha_t``. Its training
range of noise-to-signal ratios ends at SD's 14.6, so DDPM's betas (156) are outside it.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..schedules import NoiseSchedule
from .data import DIM, read_npz
from .network import float64_params, read_mlp, silu

__all__ = ["DigitsEpsNet", "DigitsVNet", "NETWORKS", "DEFAULT_WEIGHTS", "TRAIN_SCHEDULE", "V_TRAIN_SCHEDULE",
           "time_features"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_epsnet.npz"
# the schedule the network is trained on: diffusers' DDPMScheduler defaults
TRAIN_SCHEDULE = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "num_train_timesteps": 1000}
# the v network's: SD 2.x's scaled-linear betas (diffusers' DDPMScheduler config of stable-diffusion-2-1)
V_TRAIN_SCHEDULE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                    "num_train_timesteps": 1000}


def time_features(t: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """``[cos(2 pi f t), sin(2 pi f t)]`` for each frequency: the network's time input, ``[B, 2 F]``."""
    ang = 2.0 * np.pi * np.asarray(t, dtype=np.float64)[:, None] * np.asarray(freq, dtype=np.float64)[None, :]
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=1)


class DigitsEpsNet:
    """Epsilon-prediction MLP for the 64-dimensional digits on DDPM's betas, called as ``D(y, sigma) -> x0_hat``.

    Attributes:
        dim: data dimension (64).
        name: ``"digits_epsnet"``.
        meta: the training metadata stored with the weights.
    """

    dim: int = DIM
    name: str = "digits_epsnet"
    # what the network predicts, on which betas (the library preset they are), from which weights file and training
    # command
    prediction: str = "epsilon"
    trained_on: dict[str, Any] = TRAIN_SCHEDULE
    preset: str = "ddpm"
    weights: Path = DEFAULT_WEIGHTS
    train_option: str = "epsnet"

    def __init__(self, params: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Build from a parameter dict (as stored in the npz) and its metadata.

        Args:
            params: arrays ``time_freq``, ``emb_w``/``emb_b``, ``in_w``/``in_b``, ``res{i}_w``/``res{i}_b``,
                ``out_w``/``out_b``.
            meta: training metadata.

        Raises:
            ValueError: a parameter is missing or the shapes do not chain.
        """
        f64 = float64_params(params, ("time_freq",), "DigitsEpsNet")
        self.freq = f64["time_freq"]
        (self.emb_w, self.emb_b, self.in_w, self.in_b, self.res, self.out_w,
         self.out_b) = read_mlp(f64, 2 * self.freq.size, "DigitsEpsNet")
        self.meta = dict(meta)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DigitsEpsNet":
        """Load from an npz file (None: the shipped weights, ``weights/digits_epsnet.npz`` or
        ``weights/digits_vnet.npz``).

        Raises:
            FileNotFoundError: no such file (the message names the command that makes it).
        """
        return cls(*read_npz(path, cls.weights.name, f"python -m hso.testbeds.train --only {cls.train_option}"))

    @classmethod
    def train_schedule(cls) -> NoiseSchedule:
        """The noise schedule the network is trained on (`trained_on`, in its prediction type)."""
        return NoiseSchedule.vp_discrete(**cls.trained_on, name=cls.preset, prediction_type=cls.prediction)

    @cached_property
    def schedule(self) -> NoiseSchedule:
        """The noise schedule the network was trained on."""
        return self.train_schedule()

    @cached_property
    def ratio_range(self) -> tuple[float, float]:
        """The noise-to-signal ratios ``sigma_t / alpha_t`` of its training range (timesteps 0 .. 999)."""
        s = self.schedule
        lo, hi = s.edm_sigma(np.array([s.t_min, s.t_max]))
        return float(lo), float(hi)

    @property
    def n_params(self) -> int:
        arrays = [self.emb_w, self.emb_b, self.in_w, self.in_b, self.out_w, self.out_b]
        return int(sum(a.size for a in arrays + [a for pair in self.res for a in pair]))

    def describe(self) -> dict[str, Any]:
        """Architecture, parameter count and training settings (JSON-serialisable)."""
        return {"name": self.name, "dim": self.dim,
                "architecture": {"type": f"{self.prediction}-prediction residual MLP, SiLU, no preconditioning",
                                 "time_features": int(2 * self.freq.size),
                                 "time_embedding": int(self.emb_w.shape[1]), "width": int(self.in_w.shape[1]),
                                 "hidden_layers": 1 + len(self.res)},
                "trained_on": dict(self.trained_on), "n_params": self.n_params, "training": dict(self.meta)}

    def eps(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The network: its prediction (the noise; v for `DigitsVNet`) for states ``x  # [B, 64]`` at model times
        ``t  # [B]`` (no checks)."""
        emb = silu(time_features(t, self.freq) @ self.emb_w + self.emb_b)
        h = silu(np.concatenate([x, emb], axis=1) @ self.in_w + self.in_b)
        for w, b in self.res:
            h = h + silu(h @ w + b)
        return h @ self.out_w + self.out_b

    def __call__(self, y: Any, sigma: Any) -> np.ndarray:
        """Denoise in EDM form: the estimate of ``x0`` from ``y = x0 + sigma z``.

        Args:
            y: ``[B, 64]`` (or one row ``[64]``).
            sigma: the noise-to-signal ratio, a scalar or one per row ``[B]``, within `ratio_range`.

        Raises:
            ValueError: wrong shape, non-finite input, or a ratio outside the training range.
        """
        y = np.asarray(y, dtype=np.float64)
        single = y.ndim == 1
        y2 = y[None, :] if single else y
        if y2.ndim != 2 or y2.shape[-1] != DIM:
            raise ValueError(f"y must have shape [B, {DIM}] (or [{DIM}]), got {np.shape(y)}")
        if not np.all(np.isfinite(y2)):
            raise ValueError("y contains NaN or inf")
        s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (y2.shape[0],))
        lo, hi = self.ratio_range
        # a relative margin of 1e-9 for the round trip t -> sigma/alpha -> t at the ends of the range
        if not np.all(np.isfinite(s)) or np.any(s < lo * (1 - 1e-9)) or np.any(s > hi * (1 + 1e-9)):
            raise ValueError(f"{self.name} was trained on noise-to-signal ratios in [{lo:.4g}, {hi:.4g}] "
                             f"({self.trained_on['beta_schedule']} betas, T = 1000); got sigma outside it")
        t = self.schedule.t_of_lambda(-np.log(np.clip(s, lo, hi)))
        alpha = self.schedule.alpha(t)
        x = alpha[:, None] * y2
        pred = self.eps(x, t)
        if self.prediction == "v_prediction":  # x0 = alpha x - sigma v, sigma = s alpha
            out = alpha[:, None] * x - (s * alpha)[:, None] * pred
        else:
            out = y2 - s[:, None] * pred
        return out[0] if single else out


class DigitsVNet(DigitsEpsNet):
    """The same MLP predicting v on SD's scaled-linear betas (see the module docstring), called as
    ``D(y, sigma) -> x0_hat``."""

    name: str = "digits_vnet"
    prediction: str = "v_prediction"
    trained_on: dict[str, Any] = V_TRAIN_SCHEDULE
    preset: str = "sd21"
    weights: Path = DEFAULT_WEIGHTS.with_name("digits_vnet.npz")
    train_option: str = "vnet"


# the plain digits networks by what they predict (`hso.testbeds.train` trains either)
NETWORKS: dict[str, type[DigitsEpsNet]] = {cls.prediction: cls for cls in (DigitsEpsNet, DigitsVNet)}
