"""Sample-quality metrics: RMSE against the reference solution and Frechet distances to the data.

* ``rmse(a, b)``: root mean square over every sample and pixel, in data units ([-1, 1] pixels). The evaluation's
  primary metric is the RMSE of the final samples against the reference solution's clean samples from the same
  noise (what the user gets vs what the model's ODE gives); ``rmse_end`` compares instead with the reference at the
  schedule's own last point (pure integration error, blind to the residual noise a "stop" sampler leaves at t_eps).
* ``frechet_distance``: ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^{1/2})`` between Gaussian fits, in pixel space
  and in the feature space of the shipped digits classifier (its last hidden layer), against all 1797 digits.
  Deterministic (no sampling inside); biased for small sample counts, so compare numbers at equal counts only.
* ``variance_ratio`` and ``out_of_range``: the checks to make before believing a Frechet win (a coarse schedule can
  lower a Frechet distance by adding contrast that cancels a network's own bias).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..testbeds.classifier import DigitsClassifier
from ..testbeds.data import load_digits

__all__ = ["rmse", "GaussianStats", "frechet_distance", "data_stats", "sample_metrics"]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean square difference over all entries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.sqrt(np.mean((a - b) ** 2)))


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a set of vectors."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> GaussianStats:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"need [n >= 2, d] vectors, got {x.shape}")
        return cls(x.mean(axis=0), np.cov(x, rowvar=False))


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Frechet distance between two Gaussians (the FID formula)."""
    # tr (C_a C_b)^{1/2} = sum of sqrt(eig(S C_b S)) with S = C_a^{1/2}: symmetric, exact for singular covariances
    # (the digits have constant border pixels), no complex round-off as with a general matrix square root
    w, v = np.linalg.eigh(a.cov)
    s = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = np.linalg.eigvalsh(s @ b.cov @ s)
    tr_covmean = float(np.sum(np.sqrt(np.clip(m, 0.0, None))))
    d = float(np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov) - 2.0 * tr_covmean)
    return max(d, 0.0)


@functools.lru_cache(maxsize=1)
def data_stats() -> tuple[GaussianStats, GaussianStats, float]:
    """(pixel stats, classifier-feature stats, pixel variance) of the 1797 digits."""
    x = load_digits()
    clf = _classifier()
    return GaussianStats.of(x), GaussianStats.of(clf.features(x)), float(x.var())


@functools.lru_cache(maxsize=1)
def _classifier():
    return DigitsClassifier.load()


def sample_metrics(y: np.ndarray) -> dict[str, float]:
    """Distribution metrics of final samples ``y  # [B, 64]`` in data units: Frechet distances (pixels, classifier
    features), variance ratio to the data and the fraction of pixels outside [-1.1, 1.1]."""
    pix, feat, var = data_stats()
    return {"fd_pixel": frechet_distance(GaussianStats.of(y), pix),
            "fd_feature": frechet_distance(GaussianStats.of(_classifier().features(y)), feat),
            "variance_ratio": float(np.var(y) / var),
            "out_of_range": float(np.mean(np.abs(y) > 1.1))}
