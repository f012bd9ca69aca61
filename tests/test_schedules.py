"""Noise schedules: exact maps, inverses, derivatives, presets and bad input."""
import math

import numpy as np
import pytest

import hso
from hso.schedules import NoiseSchedule, betas_for

ALL_PRESETS = sorted(hso.PRESETS)


def _grid(s: NoiseSchedule, n: int = 257) -> np.ndarray:
    return np.linspace(max(s.t_min, 0.01), s.t_max, n)


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_roundtrip_and_monotone(name):
    s = NoiseSchedule.preset(name)
    t = _grid(s)
    lam = s.lambda_(t)
    assert np.all(np.isfinite(lam))
    assert np.all(np.diff(lam) < 0), "lambda must decrease in t"
    np.testing.assert_allclose(s.t_of_lambda(lam), t, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_derivatives_match_finite_differences(name):
    s = NoiseSchedule.preset(name)
    # stay away from the discrete table's nodes, where lambda' jumps
    t = _grid(s, 40) + (0.37 / 1000 if s.is_discrete else 0.0)
    t = t[t < s.t_max - 1e-3]
    lam, d1, d2 = s.lambda_derivs(t)
    h = 1e-7
    fd1 = (s.lambda_(t + h) - s.lambda_(t - h)) / (2 * h)
    np.testing.assert_allclose(d1, fd1, rtol=1e-6)
    fd2 = (s.lambda_derivs(t + h)[1] - s.lambda_derivs(t - h)[1]) / (2 * h)
    np.testing.assert_allclose(d2, fd2, rtol=1e-5, atol=1e-6 * np.abs(d1).max())


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_family_identities(name):
    s = NoiseSchedule.preset(name)
    t = _grid(s)
    a, sg = s.alpha(t), s.sigma(t)
    np.testing.assert_allclose(np.log(a / sg), s.lambda_(t), atol=1e-12)
    np.testing.assert_allclose(s.edm_sigma(t), sg / a, rtol=1e-12)
    if s.kind == 0:
        np.testing.assert_allclose(a**2 + sg**2, 1.0, atol=1e-12)
    elif s.family == "edm":
        np.testing.assert_allclose(a, 1.0)
        assert s.edm_sigma(0.0) == pytest.approx(0.002) and s.edm_sigma(1.0) == pytest.approx(80.0)
    elif s.family == "flow":
        np.testing.assert_allclose(a + sg, 1.0, atol=1e-12)
        shift = s.params["shift"]
        np.testing.assert_allclose(sg, shift * t / (1 + (shift - 1) * t), rtol=1e-12)


def test_discrete_table_nodes_are_exact():
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    abar = np.cumprod(1 - betas)
    s = NoiseSchedule.preset("sd21")
    n = np.array([0, 28, 499, 958, 999])
    t = (n + 1) / 1000
    np.testing.assert_allclose(s.alpha(t) ** 2, abar[n], rtol=1e-12)
    np.testing.assert_array_equal(s.timesteps_of_t(t), n)
    np.testing.assert_allclose(s.t_of_timesteps(n), t)


def test_vp_linear_matches_closed_form():
    s = NoiseSchedule.vp_linear(0.1, 20.0)
    t = np.linspace(1e-3, 1, 11)
    log_alpha = -0.25 * t**2 * 19.9 - 0.05 * t
    # alpha goes through lambda, so near t = 0 only an absolute 1e-14 is meaningful
    np.testing.assert_allclose(np.log(s.alpha(t)), log_alpha, rtol=1e-12, atol=1e-14)


def test_beta_schedules_and_zero_snr():
    lin = betas_for("linear", 1000, 1e-4, 0.02)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    cos = betas_for("squaredcos_cap_v2", 1000)
    assert cos.max() <= 0.999 and np.all(cos > 0)
    z = NoiseSchedule.vp_discrete(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                  rescale_betas_zero_snr=True)
    # the terminal entry is 0 after rescaling and is replaced by 2**-24 (as diffusers' samplers do)
    assert math.exp(2 * z.log_alpha_table[-1]) == pytest.approx(2.0**-24)
    assert np.isfinite(z.lambda_(1.0))
    res = hso.optimize(z, 5, "unipc", popsize=4, maxiter=5)
    assert np.all(np.diff(res.timesteps) < 0)


def test_sources_agree():
    b = betas_for("scaled_linear", 1000, 0.00085, 0.012)
    s1 = NoiseSchedule.vp_discrete(betas=b)
    s2 = NoiseSchedule.vp_discrete(alphas_cumprod=np.cumprod(1 - b))
    np.testing.assert_array_equal(s1.log_alpha_table, s2.log_alpha_table)


@pytest.mark.parametrize("bad, msg", [
    (np.array([0.9, np.nan, 0.5]), "non-finite"),
    (np.array([0.9, 0.95, 0.5]), "strictly decreasing"),
    (np.array([0.9, 0.9, 0.5]), "strictly decreasing"),
    (np.array([1.5, 0.9, 0.5]), r"\(0, 1\]"),
    (np.array([0.9, -0.1, 0.0]), r"\(0, 1\]"),
    (np.ones((2, 2)), "1-D"),
    (np.array([0.5]), "at least 2"),
])
def test_bad_tables_raise(bad, msg):
    with pytest.raises(ValueError, match=msg):
        NoiseSchedule.vp_discrete(alphas_cumprod=bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        NoiseSchedule.vp_discrete()
    with pytest.raises(ValueError, match="exactly one"):
        NoiseSchedule.vp_discrete(alphas_cumprod=[0.9, 0.5], betas=[0.1, 0.2])
    with pytest.raises(ValueError, match="unknown beta_schedule"):
        NoiseSchedule.vp_discrete(beta_schedule="cosine-ish")
    with pytest.raises(ValueError, match="unknown preset 'sd99'.*sd21"):
        NoiseSchedule.preset("sd99")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        NoiseSchedule.edm(80.0, 0.002)
    with pytest.raises(ValueError, match="beta_0 < beta_1"):
        NoiseSchedule.vp_linear(20.0, 0.1)
    with pytest.raises(ValueError, match="shift"):
        NoiseSchedule.flow(-1.0)
    with pytest.raises(ValueError, match="no integer timesteps"):
        NoiseSchedule.preset("edm").timesteps_of_t([0.5])
    with pytest.raises(TypeError, match="NoiseSchedule or a preset"):
        hso.optimize(42, 5)
