"""DM-NonUniform objective reference (spec §10): gradient, an independent scalar oracle, sanity, batching."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad

from hso.fast.reference_dmn import dmn_and_grad, phi_integrals, step_plan

KINDS = (0, 1, 2)  # VP, VE, flow
NS = (1, 2, 3, 4, 5, 7, 8, 10, 17)


def _random_lambdas(rng, b, n, lo=0.1, hi=1.5):
    """B increasing rows of N+1 lambdas starting in [-7, -3] with steps in [lo, hi]."""
    start = rng.uniform(-7.0, -3.0, size=(b, 1))
    steps = rng.uniform(lo, hi, size=(b, n))
    return np.cumsum(np.concatenate([start, steps], axis=1), axis=1)


# ------------------------------------------------------------------ independent scalar oracle (spec §10 text)
def _log_sigma(lam, kind):
    if kind == 0:
        return -0.5 * math.log1p(math.exp(2.0 * lam))  # sigma = (1 + e^{2 lambda})^{-1/2}
    if kind == 1:
        return -lam  # sigma = e^{-lambda}
    return -math.log1p(math.exp(lam))  # sigma = 1 / (1 + e^lambda)


def _dmn_scalar(lams, kind, p, trunc_num):
    """Plain-loop DM-NonUniform value for one schedule, written from the spec text only."""
    lams = [float(x) for x in lams]
    n_int = len(lams) - 1
    tau = (3 if n_int <= 7 else 0) if trunc_num is None else trunc_num
    E = [math.exp(x) for x in lams]
    h = [lams[i + 1] - lams[i] for i in range(n_int)]
    eps = []
    for x in lams:
        sigma = math.exp(_log_sigma(x, kind))
        alpha = sigma * math.exp(x)
        eps.append(sigma**p / alpha)

    def H(hh):
        h0 = math.expm1(hh)
        h1 = hh * math.exp(hh) - h0
        h2 = hh * hh * math.exp(hh) - 2.0 * h1
        return h0, h1, h2

    total = 0.0
    per_node = [0.0] * (n_int + 1)
    for s in range(n_int):
        if s == 0 or s == n_int - 1:
            k = 1
        elif s == 1 or s == n_int - 2:
            k = 2
        else:
            k = 3
        base = s - k + 1
        assert base >= 0
        if k == 1:
            J = [E[s + 1] - E[s]]
        elif k == 2:
            H0, H1, _ = H(h[s])
            J = [-E[s] * H1 / h[s - 1], E[s] * (H1 + h[s - 1] * H0) / h[s - 1]]
        else:
            H0, H1, H2 = H(h[s])
            a, b = h[s - 2], h[s - 1]
            J = [E[s] * (H2 + b * H1) / (a * (a + b)),
                 -E[s] * (H2 + (a + b) * H1) / (a * b),
                 E[s] * (H2 + (2 * b + a) * H1 + b * (a + b) * H0) / (b * (a + b))]
        terms = [eps[base + j] * J[j] for j in range(k)]
        if k == 1:  # first / last step
            total += abs(terms[0])
        elif s < tau:
            total += math.sqrt(sum(t * t for t in terms))
        else:
            for j in range(k):
                per_node[base + j] += terms[j]
    total += sum(abs(c) for c in per_node)
    return total


# ------------------------------------------------------------------ (1) gradient vs central differences
def _central_differences(lam, kind, p, trunc_num, rel_step):
    """Central finite differences of the DM-NonUniform value, one coordinate at a time (relative step)."""
    fd = np.zeros_like(lam)
    for i in range(lam.shape[1]):
        step = rel_step * np.maximum(1.0, np.abs(lam[:, i]))
        up, dn = lam.copy(), lam.copy()
        up[:, i] += step
        dn[:, i] -= step
        fd[:, i] = (dmn_and_grad(up, kind, p, trunc_num)[0] - dmn_and_grad(dn, kind, p, trunc_num)[0]) / (2 * step)
    return fd


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("p", (1.0, 2.0))
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("trunc_num", (0, 3))
def test_gradient_matches_central_differences(kind, p, n, trunc_num):
    rng = np.random.default_rng(1000 * n + 10 * kind + trunc_num + int(p))
    lam = _random_lambdas(rng, 4, n)
    _, grad = dmn_and_grad(lam, kind, p, trunc_num)
    fd = _central_differences(lam, kind, p, trunc_num, 1e-6)
    scale = np.max(np.abs(fd), axis=1, keepdims=True)
    np.testing.assert_array_less(np.abs(grad - fd), 1e-6 * (np.abs(fd) + 1e-3 * scale))


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_small_steps_series_branch(kind):
    """Steps inside the H1/H2 series range (|h| < 1.5), down to 1e-2."""
    rng = np.random.default_rng(7 + kind)
    for n in (5, 9):
        lam = _random_lambdas(rng, 3, n, lo=0.01, hi=0.45)
        for trunc_num in (0, 3):
            _, grad = dmn_and_grad(lam, kind, 2.0, trunc_num)
            fd = _central_differences(lam, kind, 2.0, trunc_num, 1e-7)
            scale = np.max(np.abs(fd), axis=1, keepdims=True)
            np.testing.assert_array_less(np.abs(grad - fd), 1e-5 * (np.abs(fd) + 1e-3 * scale))


# ------------------------------------------------------------------ (2) independent scalar oracle
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("p", (0.0, 1.0, 2.0))
@pytest.mark.parametrize("trunc_num", (None, 0, 3, 5))
def test_value_matches_scalar_oracle(kind, p, trunc_num):
    rng = np.random.default_rng(31 + kind)
    for n in NS + (6, 9, 12):
        lam = _random_lambdas(rng, 3, n)
        value, _ = dmn_and_grad(lam, kind, p, trunc_num)
        for r in range(lam.shape[0]):
            want = _dmn_scalar(lam[r], kind, p, trunc_num)
            assert value[r] == pytest.approx(want, rel=1e-12, abs=0.0), (n, r)


def test_default_trunc_num():
    rng = np.random.default_rng(3)
    for n, tau in ((5, 3), (7, 3), (8, 0), (10, 0)):
        lam = _random_lambdas(rng, 2, n)
        np.testing.assert_array_equal(dmn_and_grad(lam, 0)[0], dmn_and_grad(lam, 0, 2.0, tau)[0])


def test_step_plan_small_n():
    want = {1: [1], 2: [1, 1], 3: [1, 2, 1], 4: [1, 2, 2, 1], 5: [1, 2, 3, 2, 1], 6: [1, 2, 3, 3, 2, 1]}
    for n, orders in want.items():
        k, mode = step_plan(n, 3)
        assert k.tolist() == orders
        assert np.all(k <= np.arange(n) + 1)  # never needs history before lambda_0
        assert np.all((mode == 0) == (k == 1))  # first / last steps are the |J0| ones


# ------------------------------------------------------------------ (3) sanity
def test_ve_first_order_single_step():
    """VE: eps_tilde = sigma^p / alpha = e^{-p lambda}; p = 0 gives eps_tilde = 1, so N = 1 is |E_1 - E_0|."""
    lam = np.array([[-3.0, 1.5], [0.2, 0.7], [-1.0, -0.999]])
    value, grad = dmn_and_grad(lam, 1, p=0.0)
    np.testing.assert_allclose(value, np.exp(lam[:, 1]) - np.exp(lam[:, 0]), rtol=1e-12)
    # the step weight is formed as E_0 expm1(h_0), free of the cancellation in E_1 - E_0
    np.testing.assert_allclose(value, np.exp(lam[:, 0]) * np.expm1(lam[:, 1] - lam[:, 0]), rtol=1e-15)
    np.testing.assert_allclose(grad, np.stack([-np.exp(lam[:, 0]), np.exp(lam[:, 1])], 1), rtol=1e-15)
    # p = 1: eps_tilde = e^{-lambda}, so the value is e^{-lambda_0} (E_1 - E_0) = expm1(h_0)
    np.testing.assert_allclose(dmn_and_grad(lam, 1, p=1.0)[0], np.expm1(lam[:, 1] - lam[:, 0]), rtol=1e-14)


def test_phi_integrals_accurate():
    hs = np.concatenate([[0.0, 1e-12, -1e-9, 1.4999, 1.5, 1.5001], np.linspace(-3.0, 10.0, 131),
                         np.geomspace(1e-8, 1.0, 41), -np.geomspace(1e-8, 1.0, 41)])
    eh, h0, h1, h2 = phi_integrals(hs)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for x, e0, e1, e2 in zip(hs, h0, h1, h2):
        xm = mpmath.mpf(float(x))  # H_k(h) = int_0^h t^k e^t dt in closed form, 50 digits
        want = [mpmath.expm1(xm), xm * mpmath.exp(xm) - mpmath.expm1(xm),
                xm**2 * mpmath.exp(xm) - 2 * (xm * mpmath.exp(xm) - mpmath.expm1(xm))]
        for k, got in enumerate((e0, e1, e2)):
            if x == 0.0:
                assert got == 0.0
            else:
                assert abs(got - float(want[k])) <= 1e-15 * abs(float(want[k])), (x, k)
    np.testing.assert_array_equal(eh, np.exp(hs))
    # shape handling: 0-d and 2-d
    assert np.shape(phi_integrals(0.3)[2]) == ()
    assert phi_integrals(np.full((2, 3), 0.3))[2].shape == (2, 3)


def test_phi_integrals_match_quadrature():
    for x in (-0.4, 1e-3, 0.05, 0.3, 1.49, 1.51, 4.0):
        got = phi_integrals(np.array([x]))[1:]
        for k in range(3):
            want, _ = quad(lambda t: t**k * math.exp(t), 0.0, x, epsabs=0.0, epsrel=1e-13)
            assert got[k][0] == pytest.approx(want, rel=1e-12), (x, k)


def test_coefficients_exact_for_constants():
    """Each step's weights (spec §10 formulas, H from `phi_integrals`) sum to E_{s+1} - E_s: exact for constants."""
    rng = np.random.default_rng(11)
    for n in (3, 5, 8, 17):
        lam = _random_lambdas(rng, 1, n)[0]
        E = np.exp(lam)
        signed = 0.0
        for s in range(n):
            k = step_plan(n, 0)[0][s]
            h = np.diff(lam)
            if k == 1:
                row = [E[s + 1] - E[s]]
            elif k == 2:
                _, H0, H1, _ = phi_integrals(h[s])
                row = [-E[s] * H1 / h[s - 1], E[s] * (H1 + h[s - 1] * H0) / h[s - 1]]
            else:
                _, H0, H1, H2 = phi_integrals(h[s])
                a, b = h[s - 2], h[s - 1]
                row = [E[s] * (H2 + b * H1) / (a * (a + b)), -E[s] * (H2 + (a + b) * H1) / (a * b),
                       E[s] * (H2 + (2 * b + a) * H1 + b * (a + b) * H0) / (b * (a + b))]
            assert sum(row) == pytest.approx(E[s + 1] - E[s], rel=1e-12)
            signed += sum(row)
        assert signed == pytest.approx(E[-1] - E[0], rel=1e-12)


# ------------------------------------------------------------------ (4) batching
@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_row_by_row(kind):
    rng = np.random.default_rng(5 + kind)
    for n in NS:
        lam = _random_lambdas(rng, 6, n)
        for trunc_num in (None, 0, 3):
            value, grad = dmn_and_grad(lam, kind, 1.5, trunc_num)
            for r in range(lam.shape[0]):
                v1, g1 = dmn_and_grad(lam[r:r + 1], kind, 1.5, trunc_num)
                np.testing.assert_allclose(v1[0], value[r], rtol=1e-15, atol=0)
                np.testing.assert_allclose(g1[0], grad[r], rtol=1e-15, atol=0)


def test_bad_input():
    with pytest.raises(ValueError):
        dmn_and_grad(np.zeros(5), 0)
    with pytest.raises(ValueError):
        dmn_and_grad(np.zeros((2, 1)), 0)
    with pytest.raises(ValueError):
        dmn_and_grad(np.array([[0.0, 1.0]]), 7)
