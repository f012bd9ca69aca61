"""Float64 numpy reference for the DM-NonUniform solver-specific objective (spec §10), with its exact gradient.

Kernel contract (a backend that offers this objective implements it with the same shapes and meaning):

``dmn_and_grad(lambdas, kind, p=2.0, trunc_num=None)``
    The DM-NonUniform global-error bound of a multistep exponential-integrator solver in data-prediction form
    (UniPC / DPM-Solver++ predictor, order <= 3) for a batch of schedules ``lambdas  # [B, N+1]``, increasing along
    a row (lambda_0 = high noise ... lambda_N = low noise, N >= 1 intervals = solver steps s = 0 .. N-1).
    Returns ``value  # [B]`` and ``grad  # [B, N+1]`` (d value / d lambda, end points included).

Notation (spec §10, same as the authors' ``step_optim.py``)::

    E_i = e^{lambda_i},  h_i = lambda_{i+1} - lambda_i,
    H0(h) = e^h - 1,  H1(h) = h e^h - H0(h),  H2(h) = h^2 e^h - 2 H1(h)      (H_k(h) = int_0^h tau^k e^tau dtau)
    w_m = eps_tilde_m = sigma_m^p / alpha_m = exp((p - 1) log sigma(lambda_m) - lambda_m)

with ``log sigma`` of the kind (``hso.schedules.log_sigma_of_lambda``; alpha = sigma e^lambda for every kind).

Step orders. Step s (from lambda_s to lambda_{s+1}) has order k = 1 if s in {0, N-1}, else k = 2 if
s in {1, N-2}, else k = 3, the rules tested in that order, so where two rules claim a step the lower order wins
(N = 1: [1]; N = 2: [1, 1]; N = 3: [1, 2, 1]; N = 4: [1, 2, 2, 1]; N = 5: [1, 2, 3, 2, 1]; ...). That is also
what the authors' code does, and it always satisfies k <= s + 1 (a step never needs history before lambda_0),
so no further clamping is needed. Base node n = s - k + 1; coefficient J_j belongs to node n + j (j = 0 .. k-1),
i.e. J_{k-1} multiplies the current node s and J_0 the oldest one used:

    k = 1:  J0 = E_{s+1} - E_s                                                          (node s)
    k = 2:  a = h_{s-1};  J0 = -E_s H1 / a                                              (node s-1)
                          J1 =  E_s (H1 + a H0) / a                                     (node s)
    k = 3:  a = h_{s-2}, b = h_{s-1};
            J0 =  E_s (H2 + b H1) / (a (a + b))                                         (node s-2)
            J1 = -E_s (H2 + (a + b) H1) / (a b)                                         (node s-1)
            J2 =  E_s (H2 + (2b + a) H1 + b (a + b) H0) / (b (a + b))                    (node s)

with every H at h = h_s. (Each row sums to E_{s+1} - E_s = E_s H0(h_s): the weights are exact for constants.)
Per step the terms are T_j = w_{n+j} J_j, and with tau = ``trunc_num`` (None: 3 if N <= 7 else 0, NFE = N)::

    value = sum_{s in {0, N-1}} |T_0(s)|                                   first and last steps (always k = 1)
          + sum_{other s < tau} sqrt(sum_j T_j(s)^2)                       early steps: root-sum-square
          + sum_m |c_m|,   c_m = sum_{other s >= tau} sum_{j: n+j = m} T_j(s)   later steps: per-node sums

The first/last steps are always added as |T_0| and never enter c_m, whatever tau is (as in the authors' code).
For VP, p = 2 and tau = 3 (the only case the authors' ``sel_lambdas_lof_obj`` hard-codes) the value agrees with
that function to 1e-15 relative (checked for N = 1 .. 19, tau in {0, 3, 5}).

Gradient (reverse mode over the steps). With the adjoint g_j = d value / d T_j of each term:
``g = sign(T_0)`` (first/last), ``g_j = T_j / R`` with R the step's root-sum-square (0 where R = 0), or
``g_j = sign(c_{n+j})`` (per-node sums), taking sign(0) = 0 at the kinks. Then, using dE_s/dlambda_s = E_s,
H0' = e^h, H1' = h e^h, H2' = h^2 e^h::

    d value / d w_{n+j}  += g_j J_j,       d value / d J_j = g_j w_{n+j} =: G_j
    d w_m / d lambda_m    = w_m ((p - 1) (log sigma)'(lambda_m) - 1)
      (log sigma)' = -sigmoid(2 lambda) (VP), -1 (VE), -sigmoid(lambda) (flow)
    k = 1:  dJ0/dlambda_{s+1} = E_{s+1},  dJ0/dlambda_s = -E_s
    k = 2:  dJ0/da = E_s H1 / a^2,  dJ0/dh = -E_s h e^h / a,
            dJ1/da = -E_s H1 / a^2, dJ1/dh = E_s e^h (h + a) / a
    k = 3:  dJ0/da = -J0 (1/a + 1/(a+b)),            dJ0/db = E_s H1 / (a(a+b)) - J0 / (a+b),
            dJ0/dh = E_s h e^h (h + b) / (a(a+b)),
            dJ1/da = -E_s H1 / (a b) - J1 / a,        dJ1/db = -E_s H1 / (a b) - J1 / b,
            dJ1/dh = -E_s h e^h (h + a + b) / (a b),
            dJ2/da = E_s (H1 + b H0) / (b(a+b)) - J2 / (a+b),
            dJ2/db = E_s (2 H1 + (a + 2b) H0) / (b(a+b)) - J2 (1/b + 1/(a+b)),
            dJ2/dh = E_s e^h (h + b)(h + a + b) / (b(a+b))
    and for k >= 2 the E_s-dependence gives dJ_j / dlambda_s (through E_s) = J_j.

The step lengths map back by a = lambda_{s-1} - lambda_{s-2}, b = lambda_s - lambda_{s-1}, h = lambda_{s+1} - lambda_s
(k = 2: a = lambda_s - lambda_{s-1}), so e.g. dvalue/dlambda_{s+1} += sum_j G_j dJ_j/dh and
dvalue/dlambda_s += sum_j G_j (J_j + dJ_j/db - dJ_j/dh) for k = 3.

Numerics. H1 and H2 lose digits to cancellation for small |h| when formed as written (relative error about
2 eps/|h| and 6 eps/h^2), so for |h| < 1.5 they come from their Taylor series
H_k(h) = h^{k+1} sum_{i>=0} h^i / ((i + k + 1) i!) (30 terms, truncation below 1e-27 relative); H0 is
``expm1``. Measured against 50-digit mpmath on h in [-3, 10]: at most 3 ulps for H0, H1 and H2.
The order-1 weight E_{s+1} - E_s is formed as E_s expm1(h_s) for the same reason.
The objective itself still has 1/h factors and is ill-conditioned when steps get small (spec §10): an optimiser
using it must bound the steps below or reparameterise; this function only evaluates it faithfully.
"""
from __future__ import annotations

import numpy as np

from ..schedules import KIND_FLOW, KIND_VE, KIND_VP, log_sigma_of_lambda

__all__ = ["dmn_and_grad", "phi_integrals", "step_plan", "default_trunc_num", "resolve_trunc_num"]

_SERIES_CUT = 1.5
_SERIES_TERMS = 30

# step modes
MODE_ABS, MODE_RSS, MODE_SUM = 0, 1, 2


def default_trunc_num(n: int) -> int:
    """The spec's truncNum for N = NFE intervals: 3 for NFE <= 7, else 0."""
    return 3 if n <= 7 else 0


def resolve_trunc_num(n: int, trunc_num: int | None) -> int:
    """truncNum as every backend uses it: the spec default for None; a negative one acts as 0 (no early step then
    has s < tau), so it is clamped there."""
    return default_trunc_num(n) if trunc_num is None else max(0, int(trunc_num))


def step_plan(n: int, trunc_num: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Orders ``k  # [N]`` and modes ``mode  # [N]`` (0 abs, 1 root-sum-square, 2 per-node sum) of the N steps."""
    n = int(n)
    if n < 1:
        raise ValueError(f"need N >= 1 intervals, got {n}")
    tau = resolve_trunc_num(n, trunc_num)
    s = np.arange(n)
    first_last = (s == 0) | (s == n - 1)
    k = np.where(first_last, 1, np.where((s == 1) | (s == n - 2), 2, 3))
    mode = np.where(first_last, MODE_ABS, np.where(s < tau, MODE_RSS, MODE_SUM))
    return k, mode


def phi_integrals(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(e^h, H0, H1, H2) at ``h``, float64, to about 3 ulps (series for |h| < 1.5, closed form beyond)."""
    h = np.asarray(h, dtype=np.float64)
    shape = h.shape
    h = h.reshape(-1)
    eh = np.exp(h)
    h0 = np.expm1(h)
    h1 = h * eh - h0
    h2 = h * h * eh - 2.0 * h1
    small = np.abs(h) < _SERIES_CUT
    if np.any(small):
        x = h[small]
        s1 = np.zeros_like(x)
        s2 = np.zeros_like(x)
        term = np.ones_like(x)  # x^i / i!
        for i in range(_SERIES_TERMS):
            s1 += term / (i + 2)
            s2 += term / (i + 3)
            term = term * x / (i + 1)
        x2 = x * x
        h1[small] = x2 * s1
        h2[small] = x2 * x * s2
    eh, h0, h1, h2 = (v.reshape(shape) for v in (eh, h0, h1, h2))
    return eh, h0, h1, h2


def _dlog_sigma(lam: np.ndarray, kind: int) -> np.ndarray:
    """d log sigma / d lambda for a lambda-space kind."""
    if kind == KIND_VP:
        return -0.5 * (1.0 + np.tanh(lam))  # -sigmoid(2 lambda)
    if kind == KIND_VE:
        return np.full_like(lam, -1.0)
    if kind == KIND_FLOW:
        return -0.5 * (1.0 + np.tanh(0.5 * lam))  # -sigmoid(lambda)
    raise ValueError(f"unknown lambda-space kind {kind}")


def _coeffs(k: int, E: np.ndarray, hs: list[np.ndarray]):
    """J_j and their partials for order-k steps; arrays [B, m]. Returns (J, dJ/da, dJ/db, dJ/dh), lists over j.

    ``hs`` = [a, b, h] (k = 3) or [a, h] (k = 2); for k = 2 the dJ/db list is None.
    """
    if k == 2:
        a, h = hs
        eh, h0, h1, _ = phi_integrals(h)
        J0 = -E * h1 / a
        J1 = E * (h1 / a + h0)
        dJ0_da = E * h1 / (a * a)
        dJ0_dh = -E * h * eh / a
        return [J0, J1], [dJ0_da, -dJ0_da], None, [dJ0_dh, E * eh * (h + a) / a]
    a, b, h = hs
    eh, h0, h1, h2 = phi_integrals(h)
    ab = a + b
    d0, d1, d2 = a * ab, a * b, b * ab
    J0 = E * (h2 + b * h1) / d0
    J1 = -E * (h2 + ab * h1) / d1
    J2 = E * (h2 + (2.0 * b + a) * h1 + b * ab * h0) / d2
    da = [-J0 * (1.0 / a + 1.0 / ab), -E * h1 / d1 - J1 / a, E * (h1 + b * h0) / d2 - J2 / ab]
    db = [E * h1 / d0 - J0 / ab, -E * h1 / d1 - J1 / b,
          E * (2.0 * h1 + (a + 2.0 * b) * h0) / d2 - J2 * (1.0 / b + 1.0 / ab)]
    heh = h * eh
    dh = [E * heh * (h + b) / d0, -E * heh * (h + ab) / d1, E * eh * (h + b) * (h + ab) / d2]
    return [J0, J1, J2], da, db, dh


def dmn_and_grad(lambdas: np.ndarray, kind: int, p: float = 2.0, trunc_num: int | None = None):
    """DM-NonUniform value and exact gradient for ``lambdas  # [B, N+1]``; see the module docstring.

    Raises:
        ValueError: ``lambdas`` not 2-D with at least 2 columns, or an unknown kind.
    """
    lam = np.asarray(lambdas, dtype=np.float64)
    if lam.ndim != 2 or lam.shape[1] < 2:
        raise ValueError(f"lambdas must have shape [B, N+1] with N >= 1, got {lam.shape}")
    bsz, n = lam.shape[0], lam.shape[1] - 1
    order, mode = step_plan(n, trunc_num)
    p = float(p)

    E = np.exp(lam)
    h = lam[:, 1:] - lam[:, :-1]
    w = np.exp((p - 1.0) * log_sigma_of_lambda(lam, kind) - lam)
    dlogw = (p - 1.0) * _dlog_sigma(lam, kind) - 1.0

    value = np.zeros(bsz)
    grad = np.zeros_like(lam)
    gw = np.zeros_like(lam)  # d value / d w_m

    # ---- first / last steps (order 1, |T_0|)
    s1 = np.flatnonzero(order == 1)
    J = E[:, s1] * np.expm1(h[:, s1])  # = E_{s+1} - E_s without cancellation for small h_s
    T = w[:, s1] * J
    value += np.sum(np.abs(T), axis=1)
    g = np.sign(T)
    gw[:, s1] += g * J  # s1 holds distinct nodes
    G = g * w[:, s1]
    grad[:, s1 + 1] += G * E[:, s1 + 1]
    grad[:, s1] -= G * E[:, s1]

    # ---- higher-order steps: terms, then the per-node sums c_m
    steps = []
    c = np.zeros_like(lam)
    for k in (2, 3):
        sk = np.flatnonzero(order == k)
        if sk.size == 0:
            continue
        hs = [h[:, sk - k + 1 + i] for i in range(k)]  # [a, h] or [a, b, h]
        Jk, da, db, dh = _coeffs(k, E[:, sk], hs)
        nodes = [sk - k + 1 + j for j in range(k)]
        Tk = [w[:, nodes[j]] * Jk[j] for j in range(k)]
        is_sum = mode[sk] == MODE_SUM
        for j in range(k):  # within one j the nodes are distinct, so plain fancy-index += is exact
            c[:, nodes[j][is_sum]] += Tk[j][:, is_sum]
        steps.append((k, sk, Jk, da, db, dh, nodes, Tk, is_sum))
    value += np.sum(np.abs(c), axis=1)
    sc = np.sign(c)

    for k, sk, Jk, da, db, dh, nodes, Tk, is_sum in steps:
        rss = np.sqrt(sum(t * t for t in Tk))  # [B, m]
        value += np.sum(np.where(is_sum, 0.0, rss), axis=1)
        inv = np.divide(1.0, rss, out=np.zeros_like(rss), where=rss > 0)
        gE = np.zeros_like(rss)
        ga = np.zeros_like(rss)
        gb = np.zeros_like(rss)
        gh = np.zeros_like(rss)
        for j in range(k):
            gj = np.where(is_sum, sc[:, nodes[j]], Tk[j] * inv)
            gw[:, nodes[j]] += gj * Jk[j]
            Gj = gj * w[:, nodes[j]]
            gE += Gj * Jk[j]
            ga += Gj * da[j]
            gh += Gj * dh[j]
            if k == 3:
                gb += Gj * db[j]
        # a = h_{s-k+1}, (b = h_{s-1}), h = h_s; each index set is distinct within one step order
        grad[:, sk] += gE - gh
        grad[:, sk + 1] += gh
        if k == 2:
            grad[:, sk] += ga
            grad[:, sk - 1] -= ga
        else:
            grad[:, sk] += gb
            grad[:, sk - 1] += ga - gb
            grad[:, sk - 2] -= ga

    grad += gw * w * dlogw
    return value, grad
