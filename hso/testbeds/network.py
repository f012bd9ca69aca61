"""Test bed 2, "a trained network": a small EDM-preconditioned MLP denoiser for the 8x8 digits, NumPy inference.

The network is trained by ``python -m hso.testbeds.train`` (PyTorch, CPU) and shipped as float32 weights in
``hso/testbeds/weights/digits_net.npz``; inference here is pure NumPy in float64, so evaluating schedules never
needs torch and the denoiser is a deterministic, smooth function of ``(y, sigma)``.

Denoiser (Karras et al. 2022, "EDM" preconditioning), with ``sd = sigma_data`` the data's standard deviation::

    D(y, s) = c_skip(s) y + c_out(s) F(c_in(s) y, c_noise(s))
    c_skip = sd^2 / (s^2 + sd^2),  c_out = s sd / sqrt(s^2 + sd^2),  c_in = 1 / sqrt(s^2 + sd^2),  c_noise = log(s) / 4

``F`` is an MLP: random Fourier features of ``c_noise`` -> SiLU embedding layer, concatenated with ``c_in y``; an
input layer; residual SiLU layers ``h <- h + silu(h W + b)``; a linear output layer. Every activation is SiLU, so
``D`` is smooth (C-infinity) in ``y`` and ``sigma``, as high-order ODE solvers assume.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hso.testbeds.data import DIM, read_npz

__all__ = ["DigitsNet", "DEFAULT_WEIGHTS", "silu", "read_mlp", "float64_params"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_net.npz"


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU ``x * sigmoid(x)`` in the overflow-free form ``x (1 + tanh(x / 2)) / 2``."""
    return 0.5 * x * (1.0 + np.tanh(0.5 * x))


def float64_params(params: dict[str, np.ndarray], extra: tuple[str, ...], name: str) -> dict[str, np.ndarray]:
    """The npz arrays as float64, after checking the MLP's layers and the ``extra`` keys are there.

    Raises:
        ValueError: a parameter is missing (named).
    """
    missing = [k for k in extra + ("emb_w", "emb_b", "in_w", "in_b", "out_w", "out_b") if k not in params]
    if missing:
        raise ValueError(f"{name} weights lack {missing}")
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def read_mlp(f64: dict[str, np.ndarray], n_features: int, name: str) -> tuple:
    """The layers of the test beds' residual MLPs from their npz layout: ``(emb_w, emb_b, in_w, in_b, [(res_w,
    res_b), ...], out_w, out_b)``, weights as ``[n_in, n_out]``.

    Raises:
        ValueError: the shapes do not chain (``n_features`` inputs to the embedding, the data and the embedding into
            the input layer, square residual layers, the data dimension out).
    """
    emb_w, emb_b, in_w, in_b = f64["emb_w"], f64["emb_b"], f64["in_w"], f64["in_b"]
    res = []
    while f"res{len(res)}_w" in f64:
        res.append((f64[f"res{len(res)}_w"], f64[f"res{len(res)}_b"]))
    out_w, out_b = f64["out_w"], f64["out_b"]
    width = in_w.shape[1]
    if (emb_w.shape[0] != n_features or in_w.shape[0] != DIM + emb_w.shape[1]
            or any(w.shape != (width, width) for w, _ in res) or out_w.shape != (width, DIM)):
        raise ValueError(f"{name} weights have inconsistent shapes")
    return emb_w, emb_b, in_w, in_b, res, out_w, out_b


class DigitsNet:
    """EDM-preconditioned MLP denoiser for the 64-dimensional digits, ``D(y, sigma) -> x0_hat`` in float64.

    Attributes:
        dim: data dimension (64).
        name: ``"digits_net"``.
        sigma_data: the training data's standard deviation used by the preconditioning.
        meta: the training metadata stored with the weights.
    """

    dim: int = DIM
    name: str = "digits_net"

    def __init__(self, params: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Build from a parameter dict (as stored in the npz) and its metadata.

        Args:
            params: arrays ``fourier_freq``, ``emb_w``, ``emb_b``, ``in_w``, ``in_b``, ``res{i}_w``/``res{i}_b``
                (i = 0, 1, ...), ``out_w``, ``out_b``, and the scalar ``sigma_data``.
            meta: training metadata (architecture, settings, losses).

        Raises:
            ValueError: a parameter is missing or its shape does not chain.
        """
        f64 = float64_params(params, ("fourier_freq", "sigma_data"), "DigitsNet")
        self.sigma_data = float(f64["sigma_data"])
        self.freq = f64["fourier_freq"]
        (self.emb_w, self.emb_b, self.in_w, self.in_b, self.res, self.out_w,
         self.out_b) = read_mlp(f64, 2 * self.freq.size, "DigitsNet")
        self.meta = dict(meta)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DigitsNet":
        """Load the denoiser from an npz file.

        Args:
            path: the weights file; None loads the shipped ``hso/testbeds/weights/digits_net.npz``.

        Returns:
            The denoiser.

        Raises:
            FileNotFoundError: the file does not exist (train it with ``python -m hso.testbeds.train``).
        """
        return cls(*read_npz(path, DEFAULT_WEIGHTS.name, "python -m hso.testbeds.train"))

    @property
    def n_params(self) -> int:
        """Number of trainable parameters (the Fourier frequencies are fixed, not counted)."""
        arrays = [self.emb_w, self.emb_b, self.in_w, self.in_b, self.out_w, self.out_b]
        arrays += [a for pair in self.res for a in pair]
        return int(sum(a.size for a in arrays))

    def describe(self) -> dict[str, Any]:
        """Architecture, parameter count and training settings.

        Returns:
            A JSON-serialisable dict: ``name``, ``dim``, ``sigma_data``, ``architecture``, ``n_params`` and
            ``training`` (the metadata stored with the weights).
        """
        return {
            "name": self.name,
            "dim": self.dim,
            "sigma_data": self.sigma_data,
            "architecture": {
                "type": "EDM-preconditioned residual MLP, SiLU",
                "fourier_features": int(2 * self.freq.size),
                "noise_embedding": int(self.emb_w.shape[1]),
                "width": int(self.in_w.shape[1]),
                "hidden_layers": 1 + len(self.res),
            },
            "n_params": self.n_params,
            "training": dict(self.meta),
        }

    def _validate(self, y: Any, sigma: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        y = np.asarray(y, dtype=np.float64)
        single = y.ndim == 1
        if single:
            y = y[None, :]
        if y.ndim != 2 or y.shape[-1] != DIM:
            raise ValueError(f"y must have shape [B, {DIM}] (or [{DIM}]), got {np.shape(y)}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
        s = np.asarray(sigma, dtype=np.float64)
        if s.ndim == 0:
            s = np.full(y.shape[0], float(s))
        elif s.shape != (y.shape[0],):
            raise ValueError(f"sigma must be a scalar or have shape [B] = [{y.shape[0]}], got {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0.0):
            raise ValueError("sigma must be finite and > 0")
        return y, s, single

    def raw(self, x: np.ndarray, c_noise: np.ndarray) -> np.ndarray:
        """The unpreconditioned network ``F(x, c_noise)`` (no input checks).

        Args:
            x: scaled input ``c_in * y``, float64 ``[B, 64]``.
            c_noise: ``log(sigma) / 4``, float64 ``[B]``.

        Returns:
            ``F``, float64 ``[B, 64]``.
        """
        ang = 2.0 * np.pi * c_noise[:, None] * self.freq[None, :]
        emb = silu(np.concatenate([np.cos(ang), np.sin(ang)], axis=1) @ self.emb_w + self.emb_b)
        h = silu(np.concatenate([x, emb], axis=1) @ self.in_w + self.in_b)
        for w, b in self.res:
            h = h + silu(h @ w + b)
        return h @ self.out_w + self.out_b

    def __call__(self, y: Any, sigma: Any) -> np.ndarray:
        """Denoise: the estimate of ``x0`` from ``y = x0 + sigma z``.

        Args:
            y: noisy data, ``[B, 64]`` (or one row ``[64]``).
            sigma: noise level, a positive scalar or one per row ``[B]``.

        Returns:
            ``x0_hat``, float64, the shape of ``y``.

        Raises:
            ValueError: wrong shape, non-finite ``y``, or a non-positive / non-finite ``sigma``.
        """
        y, s, single = self._validate(y, sigma)
        sd2 = self.sigma_data**2
        s2 = s * s
        c_skip = sd2 / (s2 + sd2)
        c_out = s * self.sigma_data / np.sqrt(s2 + sd2)
        c_in = 1.0 / np.sqrt(s2 + sd2)
        f = self.raw(c_in[:, None] * y, np.log(s) / 4.0)
        out = c_skip[:, None] * y + c_out[:, None] * f
        return out[0] if single else out
