"""Test beds for measuring schedules on real samplers, offline: models with known behaviour on real data.

* ``"gmm"``: the exact posterior-mean denoiser of a Gaussian mixture fitted to sklearn's digits (`gmm.py`): zero
  network error, so a sampler's error is pure discretisation error;
* ``"net"``: a small denoiser network trained on the digits by ``python -m hso.testbeds.train`` (`network.py`),
  weights shipped in ``weights/``;
* ``"patches"``: the exact denoiser of a Gaussian mixture fitted to 8x8 grayscale patches of sklearn's two sample
  photographs (`gmm.py`): natural-image statistics instead of digits;
* ``"epsnet"``: a plain epsilon-prediction network on DDPM's linear betas, no preconditioning (`epsnet.py`), the
  most common kind of model in the wild; weights shipped in ``weights/``. VP noise schedules only (its training
  range of noise levels).
* ``"vnet"``: the same network trained to predict v on SD's scaled-linear betas (`epsnet.py`, `DigitsVNet`), as SD
  2.x-v models are; noise schedules within SD's range of noise levels only.

All are EDM-form denoisers ``D(y, s)`` (``y = x0 + s z``). `as_model` turns one into the model callable of any
noise family and prediction type, ``model(x, t) -> prediction``, which is what the samplers (`hso.solvers.sample`),
the evaluation and `hso.calibrate`-style tools take.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..schedules import NoiseSchedule
from ..solvers import prediction_for
from .data import DIM, IMAGE_SHAPE, load_digits
from .epsnet import DigitsEpsNet, DigitsVNet
from .gmm import GaussianMixtureDenoiser
from .network import DigitsNet

__all__ = ["TESTBEDS", "load", "as_model", "load_digits", "DIM", "IMAGE_SHAPE"]

TESTBEDS = ("gmm", "net", "patches", "epsnet", "vnet")


def load(name: str) -> Any:
    """A test bed's denoiser by name (``"gmm"``, ``"net"``, ``"patches"``, ``"epsnet"`` or ``"vnet"``).

    Raises:
        ValueError: unknown name.
    """
    if name == "gmm":
        return GaussianMixtureDenoiser.load()
    if name == "net":
        return DigitsNet.load()
    if name == "patches":
        return GaussianMixtureDenoiser.load(data="patches")
    if name == "epsnet":
        return DigitsEpsNet.load()
    if name == "vnet":
        return DigitsVNet.load()
    raise ValueError(f"unknown test bed {name!r}; known: {', '.join(TESTBEDS)}")


def as_model(denoiser: Callable[[np.ndarray, Any], np.ndarray], schedule: NoiseSchedule,
             prediction: str = "epsilon") -> Callable[[np.ndarray, float], np.ndarray]:
    """A model callable ``model(x, t) -> prediction`` for a noise schedule, from an EDM-form denoiser.

    At time t the family's state is ``x = alpha_t x0 + sigma_t eps``; the denoiser sees ``y = x / alpha_t`` at
    ``s = sigma_t / alpha_t`` and its data prediction is returned in the asked form: ``"epsilon"``, ``"sample"``,
    ``"v_prediction"`` (VP only) or ``"flow"`` (velocity eps - x0, flow matching only).

    Raises:
        ValueError: unknown prediction type or one the family does not define.
    """
    pred = prediction_for(prediction, schedule)

    def model(x: np.ndarray, t: float) -> np.ndarray:
        alpha, sigma = float(schedule.alpha(t)), float(schedule.sigma(t))
        x0 = denoiser(x / alpha, sigma / alpha)
        if pred == "sample":
            return x0
        eps = (x - alpha * x0) / sigma
        if pred == "epsilon":
            return eps
        if pred == "v_prediction":
            return alpha * eps - sigma * x0
        return eps - x0  # flow

    model.prediction = pred  # type: ignore[attr-defined]
    return model
