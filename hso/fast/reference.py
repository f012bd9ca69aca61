"""The float64 numpy reference backend: the readable twin of every kernel contract, and the test oracle.

Kernel contract (every backend implements these with the same shapes and meaning):

``mep_and_grad(lambdas, kind, p, hessian=False)``
    Midpoint Error Proxy (spec §4) for a batch of schedules ``lambdas  # [B, N+1]``, increasing along a row::

        J = sum_i eps(m_i) (e^{lambda_{i+1}} - e^{lambda_i}),   m_i = (lambda_i + lambda_{i+1}) / 2,
        eps = sigma^p / alpha = sigma^{p-1} e^{-lambda}
          = sum_i 2 sinh(h_i / 2) * exp(q(m_i)),   h_i = lambda_{i+1} - lambda_i,  q = (p - 1) log sigma(lambda)

    with log sigma(lambda) of the kind (VP: -softplus(2 lambda)/2, VE: -lambda, flow: -softplus(lambda)).
    Returns ``value  # [B]``, ``grad  # [B, N+1]`` (d J / d lambda, end points included) and, when ``hessian``,
    the tridiagonal Hessian as ``diag  # [B, N+1]`` and ``off  # [B, N]`` (off[i] = d2J / dlambda_i dlambda_{i+1}).
    Per term, with S = sinh(h/2), C = cosh(h/2), E = e^q, Q1 = q'(m), Q2 = q''(m) and a = lambda_i, b = lambda_{i+1}:
    dT/db = E (C + S Q1), dT/da = E (-C + S Q1), d2T/db2 = E (S/2 + C Q1 + S (Q1^2 + Q2)/2),
    d2T/da2 = E (S/2 - C Q1 + S (Q1^2 + Q2)/2), d2T/dadb = E (-S/2 + S (Q1^2 + Q2)/2).

``spacing_penalty_and_grad(t, d_min, gamma)``
    SPF penalty (spec §6) over all consecutive gaps of ``t  # [B, N+1]`` (descending):
    ``gamma * sum_i max(0, d_min - |t_{i+1} - t_i|)^2`` and its gradient in t.
"""
from __future__ import annotations

import numpy as np

from ..schedules import KIND_FLOW, KIND_VE, KIND_VP

__all__ = ["mep_and_grad", "spacing_penalty_and_grad", "q_derivs"]


def q_derivs(m: np.ndarray, kind: int, p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q = (p - 1) log sigma(lambda) and its first two derivatives in lambda, at lambda = m."""
    c = p - 1.0
    if kind == KIND_VP:
        # log sigma = -softplus(2m)/2; d/dm = -sigmoid(2m); d2/dm2 = -2 s (1 - s)
        s = 0.5 * (1.0 + np.tanh(m))  # sigmoid(2m), overflow-free
        return -0.5 * c * np.logaddexp(0.0, 2.0 * m), -c * s, -2.0 * c * s * (1.0 - s)
    if kind == KIND_VE:
        return -c * m, np.full_like(m, -c), np.zeros_like(m)
    if kind == KIND_FLOW:
        s = 0.5 * (1.0 + np.tanh(0.5 * m))  # sigmoid(m)
        return -c * np.logaddexp(0.0, m), -c * s, -c * s * (1.0 - s)
    raise ValueError(f"unknown lambda-space kind {kind}")


def mep_and_grad(lambdas: np.ndarray, kind: int, p: float = 2.0, hessian: bool = False):
    """MEP value, gradient (and tridiagonal Hessian) for ``lambdas  # [B, N+1]``; see the module docstring."""
    lam = np.asarray(lambdas, dtype=np.float64)
    a, b = lam[:, :-1], lam[:, 1:]
    h = b - a
    m = 0.5 * (a + b)
    q, q1, q2 = q_derivs(m, kind, p)
    e = np.exp(q)
    s, c = np.sinh(0.5 * h), np.cosh(0.5 * h)
    value = np.sum(2.0 * s * e, axis=1)
    d_b = e * (c + s * q1)
    d_a = e * (-c + s * q1)
    grad = np.zeros_like(lam)
    grad[:, 1:] += d_b
    grad[:, :-1] += d_a
    if not hessian:
        return value, grad
    common = 0.5 * s * (q1 * q1 + q2)
    h_bb = e * (0.5 * s + c * q1 + common)
    h_aa = e * (0.5 * s - c * q1 + common)
    h_ab = e * (-0.5 * s + common)
    diag = np.zeros_like(lam)
    diag[:, 1:] += h_bb
    diag[:, :-1] += h_aa
    return value, grad, diag, h_ab


def spacing_penalty_and_grad(t: np.ndarray, d_min: float, gamma: float = 1e9):
    """SPF spacing penalty and its gradient in t for ``t  # [B, N+1]``; see the module docstring."""
    t = np.asarray(t, dtype=np.float64)
    gap = t[:, :-1] - t[:, 1:]
    short = np.maximum(0.0, d_min - np.abs(gap))
    value = gamma * np.sum(short**2, axis=1)
    # d/dgap of short^2 = -2 short sign(gap)
    dg = -2.0 * gamma * short * np.sign(gap)
    grad = np.zeros_like(t)
    grad[:, :-1] += dg
    grad[:, 1:] -= dg
    return value, grad
