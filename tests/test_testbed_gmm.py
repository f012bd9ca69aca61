"""The exact Gaussian-mixture denoisers (closed-form posterior mean; digits and image patches) and the model
wrapper."""
from __future__ import annotations

import numpy as np
import pytest

import hso
from hso.testbeds import as_model, load, load_digits
from hso.testbeds.gmm import GaussianMixtureDenoiser


def _log_marginal(gmm, sched, x, t):
    """log p_t(x) of the family's marginal x = alpha x0 + sigma eps (change of variables from EDM coordinates)."""
    a, s = float(sched.alpha(t)), float(sched.sigma(t))
    return gmm.log_density(x / a, s / a) - x.shape[1] * np.log(a)


@pytest.mark.parametrize("family", ["sd21", "ddpm", "vp_linear", "vp_cosine", "edm", "flow"])
@pytest.mark.parametrize("t", [0.05, 0.4, 0.9])
def test_epsilon_prediction_is_the_score(gmm, family, t):
    """eps(x, t) = -sigma_t grad log p_t(x): the model's epsilon matches the finite-difference score of the
    mixture's log density (central differences, step 1e-5 relative to the state scale)."""
    sched = hso.NoiseSchedule.preset(family)
    t = float(np.clip(t, sched.t_min, sched.t_max))
    rng = np.random.default_rng(1)
    x0 = load_digits()[rng.choice(1797, 3)]
    a, s = float(sched.alpha(t)), float(sched.sigma(t))
    x = a * x0 + s * rng.standard_normal(x0.shape)
    eps = as_model(gmm, sched, "epsilon")(x, t)
    h = 1e-5 * max(1.0, s)
    grad = np.empty_like(x)
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, j] = h
        grad[:, j] = (_log_marginal(gmm, sched, x + e, t) - _log_marginal(gmm, sched, x - e, t)) / (2 * h)
    np.testing.assert_allclose(eps, -s * grad, rtol=1e-5, atol=1e-5 * np.abs(eps).max())


def test_denoiser_limits(gmm):
    x = load_digits()[:50]
    # tiny noise: the posterior mean is the input itself; huge noise: the mixture mean
    np.testing.assert_allclose(gmm(x, 1e-6), x, atol=1e-6)
    mean = np.einsum("k,kd->d", gmm.weights, gmm.means)
    np.testing.assert_allclose(gmm(x * 1e3, 1e8), np.broadcast_to(mean, x.shape), atol=1e-6)
    # per-row sigma equals one call per row
    s = np.array([0.1, 1.0, 3.0])
    rows = np.stack([gmm(x[i:i + 1], s[i])[0] for i in range(3)])
    np.testing.assert_allclose(gmm(x[:3], s), rows, rtol=1e-12, atol=1e-12)


def test_denoiser_beats_the_mean_and_samples_look_like_data(gmm):
    x = load_digits()
    rng = np.random.default_rng(0)
    y = x + 0.5 * rng.standard_normal(x.shape)
    assert np.mean((gmm(y, 0.5) - x) ** 2) < 0.25 * np.mean((x - x.mean(0)) ** 2)
    draws = gmm.sample(4000, rng)
    assert abs(draws.mean() - x.mean()) < 0.02
    assert abs(draws.std() - x.std()) < 0.02


def test_shipped_file_roundtrip(gmm, tmp_path):
    p = tmp_path / "g.npz"
    gmm.save(p, note="test")
    g2 = GaussianMixtureDenoiser.load(p)
    x = load_digits()[:5]
    np.testing.assert_array_equal(g2(x, 0.3), gmm(x, 0.3))
    with pytest.raises(FileNotFoundError, match="python -m hso.testbeds.gmm"):
        GaussianMixtureDenoiser.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("args,match", [
    ((np.zeros((2, 63)), 0.5), "shape"), ((np.full((2, 64), np.nan), 0.5), "NaN"),
    ((np.zeros((2, 64)), 0.0), "positive"), ((np.zeros((2, 64)), np.ones(3)), "sigma must be"),
])
def test_bad_inputs(gmm, args, match):
    with pytest.raises(ValueError, match=match):
        gmm(*args)


def test_bad_mixtures():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixtureDenoiser([0.5, 0.6], np.zeros((2, 3)), np.stack([np.eye(3)] * 2))
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixtureDenoiser([1.0], np.zeros((1, 3)), -np.eye(3)[None])
    with pytest.raises(ValueError, match="unknown test bed"):
        load("imagenet")
    with pytest.raises(ValueError, match="flow"):
        as_model(load("gmm"), hso.NoiseSchedule.preset("sd21"), "flow")


def test_patches_bed_is_a_mixture_of_natural_image_patches():
    """The held-out bed: a mixture of the bundled photographs' 8x8 patches whose draws match the patches'
    statistics, and whose exact denoiser removes most of the noise, like the digits one."""
    from hso.testbeds.data import load_patches

    x = load_patches()
    assert x.shape[1] == 64 and x.shape[0] > 30000 and x.min() >= -1.0 and x.max() <= 1.0
    assert not x.flags.writeable
    # natural patches are smooth: neighbouring pixels correlate far more than in the digits
    assert np.corrcoef(x[:, 27], x[:, 28])[0, 1] > 0.9 > np.corrcoef(load_digits()[:, 27], load_digits()[:, 28])[0, 1]
    g = load("patches")
    assert g.name == "patches_gmm" and g.dim == 64 and g.weights.size == 10
    rng = np.random.default_rng(0)
    draws = g.sample(4000, rng)
    assert abs(draws.mean() - x.mean()) < 0.03 and abs(draws.std() - x.std()) < 0.03
    y = x[::50] + 0.5 * rng.standard_normal(x[::50].shape)
    assert np.mean((g(y, 0.5) - x[::50]) ** 2) < 0.25 * np.mean((x - x.mean(0)) ** 2)
    with pytest.raises(ValueError, match="unknown mixture data"):
        GaussianMixtureDenoiser.load(data="faces")
    with pytest.raises(ValueError, match="unknown test bed"):
        load("faces")
