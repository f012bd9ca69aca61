"""Exact denoisers: Gaussian mixtures fitted to real data, whose posterior mean is closed-form.

For ``y = x0 + s z`` (EDM coordinates, any noise family maps to them by ``y = x / alpha``, ``s = sigma / alpha``)
and ``x0 ~ sum_k pi_k N(mu_k, C_k)``, with ``C_k = U_k diag(c_k) U_k^T``:

    p_s(y)      = sum_k pi_k N(y; mu_k, C_k + s^2 I)
    E[x0 | y]   = sum_k r_k(y) (mu_k + U_k diag(c_k / (c_k + s^2)) U_k^T (y - mu_k)),
    r_k(y)      = pi_k N(y; mu_k, C_k + s^2 I) / p_s(y)      (log-space, float64)

so the "network" has zero error and every sampler's error is pure discretisation error. Two mixtures are shipped,
each with K = 10 full-covariance components fitted by EM (sklearn ``GaussianMixture``, ``reg_covar=1e-3``, k-means
start, ``random_state=0``): ``weights/digits_gmm.npz`` on all 1797 digits (test bed "gmm") and
``weights/patches_gmm.npz`` on the 8x8 patches of sklearn's sample photographs (test bed "patches", natural-image
statistics); regenerate them with ``python -m hso.testbeds.gmm [digits|patches]``.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .data import load_digits, load_patches, weights_path

__all__ = ["GaussianMixtureDenoiser", "DEFAULT_GMM_PATH", "fit_digits_gmm", "fit_gmm", "MIXTURES"]

DEFAULT_GMM_PATH = Path(__file__).parent / "weights" / "digits_gmm.npz"
# data set -> (shipped file name, loader, description recorded in the file)
MIXTURES = {"digits": ("digits_gmm.npz", load_digits, "sklearn load_digits, 1797 x 64, x / 8 - 1"),
            "patches": ("patches_gmm.npz", load_patches,
                        "sklearn load_sample_images, 8x8 grayscale patches at stride 4, luminance / 127.5 - 1")}
GMM_SETTINGS = {"n_components": 10, "covariance_type": "full", "reg_covar": 1e-3, "random_state": 0,
                "init_params": "kmeans", "max_iter": 500}


def _check_input(y: Any, sigma: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != dim:
        raise ValueError(f"expected inputs of shape [B, {dim}], got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("input contains NaN or inf")
    s = np.asarray(sigma, dtype=np.float64)
    if s.ndim > 1 or (s.ndim == 1 and s.shape[0] != y.shape[0]):
        raise ValueError(f"sigma must be a scalar or have shape [{y.shape[0]}], got {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma!r}")
    return y, np.broadcast_to(s, (y.shape[0],))


class GaussianMixtureDenoiser:
    """The exact posterior-mean denoiser ``D(y, sigma) = E[x0 | x0 + sigma z = y]`` of a Gaussian mixture.

    Args:
        weights: mixture weights ``[K]`` (summing to 1).
        means: ``[K, D]``.
        covariances: ``[K, D, D]`` symmetric positive definite.
        name: a label for reports.

    Raises:
        ValueError: inconsistent shapes, weights that are not a distribution, covariances that are not SPD.
    """

    def __init__(self, weights: Any, means: Any, covariances: Any, *, name: str = "gmm") -> None:
        w = np.asarray(weights, dtype=np.float64)
        mu = np.asarray(means, dtype=np.float64)
        cov = np.asarray(covariances, dtype=np.float64)
        if w.ndim != 1 or mu.ndim != 2 or cov.ndim != 3 or mu.shape[0] != w.size or cov.shape != (
                w.size, mu.shape[1], mu.shape[1]):
            raise ValueError(f"shapes must be weights [K], means [K, D], covariances [K, D, D]; got {w.shape}, "
                             f"{mu.shape}, {cov.shape}")
        if np.any(w <= 0) or abs(w.sum() - 1.0) > 1e-8:
            raise ValueError("mixture weights must be positive and sum to 1")
        c, u = np.linalg.eigh(0.5 * (cov + np.swapaxes(cov, 1, 2)))
        if np.any(c <= 0):
            raise ValueError("covariances must be positive definite")
        self.name = name
        self.weights, self.means, self.covariances = w, mu, cov
        self._eigvals, self._eigvecs = c, u  # [K, D], [K, D, D]
        self._mu_rot = np.einsum("kd,kde->ke", mu, u)  # mu_k in component k's eigenbasis
        self.dim = mu.shape[1]

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, path: str | Path | None = None, *, data: str = "digits") -> GaussianMixtureDenoiser:
        """A shipped mixture (``data``: "digits" or "patches"), or one saved by `save` at ``path``.

        Raises:
            FileNotFoundError: no such file (the message says how to regenerate the shipped one).
            ValueError: an unknown data set.
        """
        p = weights_path(path, _mixture(data)[0], f"python -m hso.testbeds.gmm {data}")
        with np.load(p, allow_pickle=False) as z:
            return cls(z["weights"], z["means"], z["covariances"], name=str(z["name"]))

    def save(self, path: str | Path, **meta: Any) -> None:
        """Write the mixture (float64) and string metadata to an npz file."""
        np.savez_compressed(path, weights=self.weights, means=self.means, covariances=self.covariances,
                            name=np.array(self.name), **{k: np.array(str(v)) for k, v in meta.items()})

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "exact Gaussian-mixture posterior mean",
                "components": int(self.weights.size),
                "dim": int(self.dim), "settings": dict(GMM_SETTINGS)}

    # ------------------------------------------------------------------ evaluation
    def _components(self, y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log pi_k N(y; mu_k, C_k + s^2 I) ``[K, B]``, projections ``[K, B, D]`` and variances ``[K, B, D]``."""
        proj = np.matmul(y, self._eigvecs) - self._mu_rot[:, None, :]  # [B, D] @ [K, D, E]: BLAS, per component
        var = self._eigvals[:, None, :] + (s**2)[None, :, None]
        logn = -0.5 * (np.sum(proj**2 / var + np.log(var), axis=2) + self.dim * math.log(2 * math.pi))
        return logn + np.log(self.weights)[:, None], proj, var

    def log_density(self, y: Any, sigma: Any) -> np.ndarray:
        """log p_sigma(y) ``[B]`` of the noised mixture."""
        y, s = _check_input(y, sigma, self.dim)
        logn, _, _ = self._components(y, s)
        m = logn.max(axis=0)
        return m + np.log(np.exp(logn - m).sum(axis=0))

    def __call__(self, y: Any, sigma: Any) -> np.ndarray:
        """Posterior mean ``E[x0 | y]  # [B, D]`` for ``y  # [B, D]`` and a scalar or per-row sigma.

        Raises:
            ValueError: wrong shape, NaN/inf input, sigma not positive.
        """
        y, s = _check_input(y, sigma, self.dim)
        logn, proj, var = self._components(y, s)
        r = np.exp(logn - logn.max(axis=0))
        r /= r.sum(axis=0)  # responsibilities [K, B]
        shrunk = proj * (self._eigvals[:, None, :] / var)  # Wiener filter in each eigenbasis
        back = np.matmul(shrunk, np.swapaxes(self._eigvecs, 1, 2)) + self.means[:, None, :]
        return np.einsum("kb,kbd->bd", r, back)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws from the mixture ``[n, D]``."""
        k = rng.choice(self.weights.size, size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        return self.means[k] + np.einsum("bde,be->bd", self._eigvecs[k], np.sqrt(self._eigvals[k]) * z)


def _mixture(data: str) -> tuple[str, Any, str]:
    """`MIXTURES`' entry for ``data``; ValueError for an unknown name."""
    if data not in MIXTURES:
        raise ValueError(f"unknown mixture data {data!r}; known: {', '.join(MIXTURES)}")
    return MIXTURES[data]


def fit_gmm(data: str = "digits", **overrides: Any) -> GaussianMixtureDenoiser:
    """Fit the mixture of a data set of `MIXTURES` with `GMM_SETTINGS` (sklearn EM)."""
    from sklearn.mixture import GaussianMixture  # deferred: scikit-learn is optional (the eval extra)

    gm = GaussianMixture(**{**GMM_SETTINGS, **overrides}).fit(_mixture(data)[1]())
    return GaussianMixtureDenoiser(gm.weights_ / gm.weights_.sum(), gm.means_, gm.covariances_, name=f"{data}_gmm")


def fit_digits_gmm(**overrides: Any) -> GaussianMixtureDenoiser:
    """Fit the digits mixture with `GMM_SETTINGS` (sklearn EM)."""
    return fit_gmm("digits", **overrides)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - regeneration command
    import sklearn  # deferred: scikit-learn is optional (the eval extra)

    names = (argv if argv is not None else sys.argv[1:]) or ["digits"]
    for data in names:
        g = fit_gmm(data)
        path = DEFAULT_GMM_PATH.parent / _mixture(data)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        g.save(path, command=f"python -m hso.testbeds.gmm {data}", sklearn=sklearn.__version__,
               settings=GMM_SETTINGS, data=_mixture(data)[2])
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":  # pragma: no cover
    main()
