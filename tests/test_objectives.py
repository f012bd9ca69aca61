"""Objectives: MEP closed-form identity, analytic gradients and Hessians vs finite differences, SPF penalty."""
import numpy as np
import pytest

import hso
from hso import fast
from hso.fast.reference import mep_and_grad, spacing_penalty_and_grad


def _random_lambdas(rng, b, n1, lo=-6.0, hi=5.0):
    return np.sort(rng.uniform(lo, hi, size=(b, n1)), axis=1)


def _eps_form(lam, kind, p):
    """J = sum eps(m) (e^{b} - e^{a}) with eps = sigma^p / alpha straight from each family's formulas."""
    m = 0.5 * (lam[:, 1:] + lam[:, :-1])
    if kind == 0:
        alpha, sigma = (1 + np.exp(-2 * m)) ** -0.5, (1 + np.exp(2 * m)) ** -0.5
    elif kind == 1:
        alpha, sigma = np.ones_like(m), np.exp(-m)
    else:
        sigma = 1 / (1 + np.exp(m))
        alpha = 1 - sigma
    return np.sum(sigma**p / alpha * (np.exp(lam[:, 1:]) - np.exp(lam[:, :-1])), axis=1)


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_mep_closed_form_identity(kind, p):
    lam = _random_lambdas(np.random.default_rng(kind), 16, 9)
    np.testing.assert_allclose(mep_and_grad(lam, kind, p)[0], _eps_form(lam, kind, p), rtol=1e-12)


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("n1", [2, 3, 8, 21])
def test_mep_gradient_and_hessian_vs_finite_differences(kind, n1):
    rng = np.random.default_rng(n1)
    lam = _random_lambdas(rng, 4, n1, -3, 3)
    v, g, diag, off = mep_and_grad(lam, kind, 2.0, hessian=True)
    h = 1e-6
    for j in range(n1):
        e = np.zeros(n1)
        e[j] = h
        vp, gp = mep_and_grad(lam + e, kind, 2.0)
        vm, gm = mep_and_grad(lam - e, kind, 2.0)
        # central differences: truncation O(h^2) ~ 1e-12 relative, rounding ~ 1e-16/1e-6 = 1e-10 relative
        np.testing.assert_allclose(g[:, j], (vp - vm) / (2 * h), rtol=1e-7, atol=1e-8)
        col = (gp - gm) / (2 * h)
        np.testing.assert_allclose(diag[:, j], col[:, j], rtol=1e-6, atol=1e-7)
        if j + 1 < n1:
            np.testing.assert_allclose(off[:, j], col[:, j + 1], rtol=1e-6, atol=1e-7)
        if j + 2 < n1:
            np.testing.assert_allclose(col[:, j + 2], 0.0, atol=1e-7)  # tridiagonal


def test_public_wrappers_single_and_batch():
    lam = np.linspace(-2.5, 2.2, 6)
    v, g = hso.mep(lam, "sd21")
    vb, gb = hso.mep(lam[None], "sd21")
    assert v == pytest.approx(vb[0]) and np.allclose(g, gb[0])
    with pytest.raises(ValueError, match=r"\[B, N\+1\]"):
        fast.objective_and_grad(np.zeros((3,)))
    with pytest.raises(ValueError, match="NaN"):
        fast.objective_and_grad(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="unknown objective 'fid'"):
        fast.ObjectiveSpec("fid")


def test_spacing_penalty_and_d_min():
    assert hso.d_min(4) == pytest.approx(0.15)
    assert hso.d_min(20) == pytest.approx(0.01)
    assert hso.d_min(2) == pytest.approx(0.15) and hso.d_min(50) == pytest.approx(0.01)
    assert hso.d_min(8) == pytest.approx(0.115)
    t = np.array([[1.0, 0.9, 0.5, 0.45, 0.01]])
    v, g = spacing_penalty_and_grad(t, 0.15, 1e9)
    assert v[0] == pytest.approx(1e9 * (0.05**2 + 0.1**2))
    h = 1e-7
    for j in range(5):
        e = np.zeros_like(t)
        e[0, j] = h
        fd = (spacing_penalty_and_grad(t + e, 0.15)[0] - spacing_penalty_and_grad(t - e, 0.15)[0]) / (2 * h)
        assert g[0, j] == pytest.approx(fd[0], rel=1e-5, abs=1e-3)
    assert hso.spacing_penalty(np.array([1.0, 0.5, 0.01]), 0.15)[0] == 0.0
