"""The DM-NonUniform objective: `dmn_tile` (shared with the lower level) and its kernel, the twin of
`hso.fast.reference_dmn.dmn_and_grad` (the C++ `dmn_row`).
"""
from __future__ import annotations

import triton.language as tl

from .common import VE, VP, device_fn, expm1, kernel, rcumsum, rsum, softplus, tanh

__all__ = ["PHI_C1", "PHI_C2", "colcumsum", "colsum", "dmn_fwd_kernel", "dmn_tile", "log_sigma_derivs", "phi",
           "phi_series", "seqsum", "sign_of"]


@device_fn
def log_sigma_derivs(lam, KIND: tl.constexpr):
    # log sigma(lambda) and its derivative (hso.schedules.log_sigma_of_lambda; reference_dmn._dlog_sigma)
    if KIND == VP:
        return -0.5 * softplus(2.0 * lam), -0.5 * (1.0 + tanh(lam))
    elif KIND == VE:
        return -lam, tl.full(lam.shape, -1.0, tl.float64)
    else:
        return -softplus(lam), -0.5 * (1.0 + tanh(0.5 * lam))


def phi_series() -> tuple[tl.constexpr, tl.constexpr]:
    # Taylor coefficients of H1(h) / h^2 = sum_i h^i / ((i + 2) i!) and H2(h) / h^3 = sum_i h^i / ((i + 3) i!),
    # rounded as dmn_row.h's PhiSeries forms them; constexpr floats become exact float64 constants in the kernels
    c1, c2, fact = [], [], 1.0
    for i in range(30):
        c1.append(1.0 / (float(i + 2) * fact))
        c2.append(1.0 / (float(i + 3) * fact))
        fact *= float(i + 1)
    return tl.constexpr(tuple(c1)), tl.constexpr(tuple(c2))


PHI_C1, PHI_C2 = phi_series()


@device_fn
def phi(h):
    # (e^h, H0, H1, H2) as reference_dmn.phi_integrals: the 30-term series below |h| = 1.5 (Horner, as dmn_row.h),
    # the closed form beyond
    eh = tl.exp(h)
    h0 = expm1(h)
    s1 = tl.full(h.shape, PHI_C1[29], tl.float64)
    s2 = tl.full(h.shape, PHI_C2[29], tl.float64)
    for k in tl.static_range(29):
        s1 = s1 * h + PHI_C1[28 - k]
        s2 = s2 * h + PHI_C2[28 - k]
    small = tl.abs(h) < 1.5
    h1c = h * eh - h0
    h1 = tl.where(small, h * h * s1, h1c)
    h2 = tl.where(small, h * h * h * s2, h * h * eh - 2.0 * h1c)
    return eh, h0, h1, h2


@device_fn
def sign_of(x):
    # dmn_row.h sign_of (0 for NaN). The innermost alternative is a float64 tile: with two literal branches tl.where
    # would build a float32 select (exact for +-1 and 0, but the kernels are kept free of float32, which
    # tests/test_triton.py checks in the compiled IR)
    return tl.where(x > 0.0, 1.0, tl.where(x < 0.0, -1.0, tl.zeros_like(x)))


@device_fn
def seqsum(x, last, axis: tl.constexpr):
    # the sum along axis in index order, a sequential loop's rounding (the interpreter's cumsum is numpy's,
    # sequential; its plain sum is pairwise); last selects the final index. 2-D tiles only: see rowdot for 3-D.
    return rsum(tl.where(last, rcumsum(x, axis), 0.0), axis)


# The DM-NonUniform lower level runs no scan (tl.cumsum). Its [BLOCK_B, NP] tiles hold 256 / NP elements for 128
# threads, so from NP = 8 on their layouts repeat elements across whole warps along the scan axis, and from NP = 16 on
# across lanes too; its 3-D tiles, when scanned, were scanned along an inner axis. Triton's scan lowering has given
# wrong results for such layouts up to its 3.6 release, the GPU machine's (repeated "broadcast" layouts:
# triton-lang/triton#7817, fixed by #9185 and #9189 in January 2026; 3-D: #3017), and with those scans the compiled
# lower level diverged from the C++ one on an H200 while the interpreter agreed. The other kernels' tiles fill their
# threads from NP = 8 on (the objectives' always), and their scans agree compiled on an H200, the MEP lower level's
# NP = 4 tiles (repeated across warps) included. These two helpers are the scans' twins as loops over the columns,
# with numpy's (sequential) rounding: each column is taken by a masked sum, exact (one entry plus zeros), and added in
# turn.
@device_fn
def colsum(x, C, n):
    # the sum of the columns 0..n-1 of x [rows, NP] in turn (seqsum's value)
    acc = rsum(tl.where(C == 0, x, 0.0), 1)
    for j in range(1, n):
        acc = acc + rsum(tl.where(C == j, x, 0.0), 1)
    return acc


@device_fn
def colcumsum(x, C, n):
    # the prefix sums of x [rows, NP] over the columns 0..n-1 in turn (numpy's cumsum); the columns from n on hold
    # the total, the cumsum's value where x is zero there
    acc = rsum(tl.where(C == 0, x, 0.0), 1)
    out = tl.broadcast_to(acc[:, None], x.shape)
    for j in range(1, n):
        acc = acc + rsum(tl.where(C == j, x, 0.0), 1)
        out = tl.where(C >= j, acc[:, None], out)
    return out


@device_fn
def dmn_tile(lam, c, TAU, C, N, NP: tl.constexpr, KIND: tl.constexpr, DERIVS: tl.constexpr,
              SCAN: tl.constexpr):
    # hso.fast.reference_dmn.dmn_and_grad of the rows lam [BLOCK_B, NP] (points 0..N valid; c = p - 1, TAU =
    # truncNum): value [BLOCK_B] and, with DERIVS, the gradient tile. Column s holds node s and step s (s < N). Each
    # step's coefficients are formed for orders 1, 2 and 3 and its own order selects one; the per-node sums, the
    # value and every gradient entry are then summed in dmn_row.h's order (its loops over the steps add, to node m,
    # the terms of steps m - 1, m, m + 1, m + 2 in turn), which gathers of the step tiles reproduce.
    p1 = tl.broadcast_to(tl.maximum(C - 1, 0), lam.shape)
    p2 = tl.broadcast_to(tl.maximum(C - 2, 0), lam.shape)
    n1 = tl.broadcast_to(tl.minimum(C + 1, NP - 1), lam.shape)
    n2 = tl.broadcast_to(tl.minimum(C + 2, NP - 1), lam.shape)
    last = C == NP - 1
    step = C < N
    fl = step & ((C == 0) | (C == N - 1))  # order 1
    hi = step & ~fl
    k2 = hi & ((C == 1) | (C == N - 2))    # order 2
    o3 = hi & ~k2                          # order 3
    ls, dls = log_sigma_derivs(lam, KIND)
    E = tl.exp(lam)
    w = tl.exp(c * ls - lam)
    l0 = tl.gather(lam, p2, 1)
    l1 = tl.gather(lam, p1, 1)
    h = tl.where(step, tl.gather(lam, n1, 1) - lam, 0.0)
    # gaps h_{s-2} (order 3) and h_{s-1} (orders 3 and 2); 1 where unused, so discarded forms stay finite
    a = tl.where(o3, l1 - l0, 1.0)
    b = tl.where(hi, lam - l1, 1.0)
    eh, h0, h1, h2 = phi(h)
    ab = a + b
    d0 = a * ab
    d1 = a * b
    d2 = b * ab
    J30 = E * (h2 + b * h1) / d0
    J31 = -E * (h2 + ab * h1) / d1
    J32 = E * (h2 + (2.0 * b + a) * h1 + b * ab * h0) / d2
    # node coefficients of nodes s-2, s-1, s (order 2: a = b; order 1: E_{s+1} - E_s without cancellation)
    Ja = tl.where(o3, J30, 0.0)
    Jb = tl.where(o3, J31, tl.where(k2, -E * h1 / b, 0.0))
    Jc = tl.where(o3, J32, tl.where(k2, E * (h1 / b + h0), tl.where(fl, E * h0, 0.0)))
    wa = tl.gather(w, p2, 1)
    wb = tl.gather(w, p1, 1)
    Ta = wa * Ja
    Tb = wb * Jb
    Tc = w * Jc
    summ = hi & (C >= TAU)
    rssm = hi & (C < TAU)
    # per-node sums of the sum-mode steps: node m takes steps m, m + 1, m + 2
    SA = tl.where(summ, Ta, 0.0)
    SB = tl.where(summ, Tb, 0.0)
    cn = (tl.where(summ, Tc, 0.0) + tl.gather(SB, n1, 1)) + tl.gather(SA, n2, 1)
    rss = tl.sqrt(Ta * Ta + Tb * Tb + Tc * Tc)
    vstep = tl.where(fl, tl.abs(Tc), tl.where(rssm, rss, 0.0))
    # value: the nodes' |c| in turn, then the steps' terms in turn (without SCAN: the lower level's loops; both are
    # zero past node N)
    if SCAN:
        vc = seqsum(tl.abs(cn), last, 1)
        value = seqsum(tl.where(C == 0, vc[:, None] + vstep, vstep), last, 1)
    else:
        vc = colsum(tl.abs(cn), C, N + 1)
        value = colsum(tl.where(C == 0, vc[:, None] + vstep, vstep), C, N + 1)
    grad = lam
    if DERIVS:
        inv = tl.where(rss > 0.0, 1.0 / tl.where(rss > 0.0, rss, 1.0), 0.0)
        ga = tl.where(o3, tl.where(rssm, Ta * inv, sign_of(tl.gather(cn, p2, 1))), 0.0)
        gb = tl.where(hi, tl.where(rssm, Tb * inv, sign_of(tl.gather(cn, p1, 1))), 0.0)
        gc = tl.where(fl, sign_of(Tc), tl.where(rssm, Tc * inv, tl.where(summ, sign_of(cn), 0.0)))
        Ga = ga * wa
        Gb = gb * wb
        Gc = gc * w
        gE = (Ga * Ja + Gb * Jb) + Gc * Jc
        # partials of the order-3 and order-2 coefficients in a, b, h (dmn_row.h dmn_coeffs)
        heh = h * eh
        g_a3 = (Ga * (-J30 * (1.0 / a + 1.0 / ab)) + Gb * (-E * h1 / d1 - J31 / a)) \
            + Gc * (E * (h1 + b * h0) / d2 - J32 / ab)
        g_b3 = (Ga * (E * h1 / d0 - J30 / ab) + Gb * (-E * h1 / d1 - J31 / b)) \
            + Gc * (E * (2.0 * h1 + (a + 2.0 * b) * h0) / d2 - J32 * (1.0 / b + 1.0 / ab))
        g_h3 = (Ga * (E * heh * (h + b) / d0) + Gb * (-E * heh * (h + ab) / d1)) \
            + Gc * (E * eh * (h + b) * (h + ab) / d2)
        da20 = E * h1 / (b * b)
        g_a2 = Gb * da20 + Gc * (-da20)
        g_h2 = Gb * (-E * h * eh / b) + Gc * (E * eh * (h + b) / b)
        g_a = tl.where(o3, g_a3, tl.where(k2, g_a2, 0.0))
        g_b = tl.where(o3, g_b3, 0.0)
        g_h = tl.where(o3, g_h3, tl.where(k2, g_h2, 0.0))
        # each step's terms for nodes s + 1, s (two in turn), s - 1, s - 2
        to_next = tl.where(fl, Gc * tl.gather(E, n1, 1), g_h)
        to_self = tl.where(fl, -(Gc * E), tl.where(hi, gE - g_h, 0.0))
        to_self2 = tl.where(k2, g_a, g_b)
        to_prev = tl.where(k2, -g_a, tl.where(o3, g_a - g_b, 0.0))
        to_prev2 = tl.where(o3, -g_a, 0.0)
        grad = (((tl.where(C >= 1, tl.gather(to_next, p1, 1), 0.0) + to_self) + to_self2)
                + tl.gather(to_prev, n1, 1)) + tl.gather(to_prev2, n2, 1)
        # the w chain rule: d value / d w in the same node order
        gw = (gc * Jc + tl.gather(gb * Jb, n1, 1)) + tl.gather(ga * Ja, n2, 1)
        grad = tl.where(C <= N, grad + gw * w * (c * dls - 1.0), 0.0)
    return value, grad


@kernel("B", "N1", "TAU")
def dmn_fwd_kernel(lam_ptr,    # [B, N+1]
                    prm_ptr,    # [1]: p
                    value_ptr,  # [B]
                    grad_ptr,   # [B, N+1]
                    B, N1, TAU,
                    KIND: tl.constexpr, BLOCK_B: tl.constexpr, NP: tl.constexpr):
    # hso.fast.reference_dmn.dmn_and_grad, one candidate per lane, its row a [BLOCK_B, NP] tile (`dmn_tile`, the
    # lower level's objective too)
    lanes = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = lanes < B
    C = tl.arange(0, NP)[None, :]
    k2 = tl.arange(0, 2)
    c = rsum(tl.load(prm_ptr + k2, mask=k2 < 1, other=0.0), 0) - 1.0
    at = lanes.to(tl.int64)[:, None] * N1 + C
    keep = ok[:, None] & (C < N1)
    # masked points continue the row with distinct values, so that discarded coefficients stay finite
    lam = tl.where(keep, tl.load(lam_ptr + at, mask=keep, other=0.0), 0.01 * C.to(tl.float64))
    value, grad = dmn_tile(lam, c, TAU, C, N1 - 1, NP, KIND, True, True)
    tl.store(grad_ptr + at, grad, mask=keep)
    tl.store(value_ptr + lanes, value, mask=ok)
