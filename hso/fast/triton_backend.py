"""The ``triton`` backend: the MEP and DM-NonUniform objectives and their fused lower levels as Triton kernels.

Runs on a CUDA GPU, or on the CPU through Triton's interpreter (``TRITON_INTERPRET=1`` set before this module is
imported). Only `hso.fast.registry` imports this module, lazily: importing `hso` never imports torch or Triton.

Kernels, each the twin of a contract documented in the reference (the math is written there, not here):

* `_mep_fwd_kernel` - `hso.fast.reference.mep_and_grad`: BLOCK_B candidates per program, one per vector lane, and
  a loop over the N intervals with each output element accumulated in the reference's order (the C++ `mep_row`).
* `_dmn_fwd_kernel` - `hso.fast.reference_dmn.dmn_and_grad`: one candidate per lane, its row a [BLOCK_B, NP] tile;
  `_dmn_tile` forms every step's coefficients at once and sums the node sums, the value and the gradient entries in
  the order of the C++ `dmn_row` (the lower level below evaluates the same helper).
* `_lower_solve_kernel` - `hso.fast.reference_lower.lower_solve` for MEP, as ported to one candidate in
  csrc/common/lower_row.h: init family, feasible blend, active-set Newton in t with the block-reduced Thomas solve,
  the Sturm-count positive-definiteness check (bisection shift when it fails), ratio test, backtracking line search,
  multipliers from sums within blocks, start fallback and SPF penalty. Each lane is one candidate; lanes that are
  done are masked while the others iterate.
* `_lower_dmn_kernel` - the same contract for DM-NonUniform, as csrc/common/lower_bfgs.h: the MEP kernel's start,
  blocks, multipliers, ratio test, line search and outputs (shared helpers), with a dense BFGS matrix per lane as a
  [BLOCK_B, NP, NP] tile, its positive-definite copy (Cholesky test, Jacobi eigenvalues when it fails) and the
  reduced working-set system solved by Cholesky.

Numerics. Triton's core language has exp, log, sqrt, sin and cos only (libdevice is unavailable to the
interpreter), so sinh/cosh/tanh/expm1/log1p/acos are built from them with the classic accurate forms (Kahan's
expm1, Higham's log1p, Newton on sin for asin): each is within a few ulps of numpy's, which keeps the kernels at
rounding distance from the reference. Scalars reach the kernels in a float64 buffer because Triton passes Python
floats as float32.

Compiled as interpreted. The interpreter is where CI runs these kernels, so nothing may mean something else once
compiled: integer arguments are never specialised on their values (`_kernel`: N = 1 would become a Python constant),
no float32 constant enters the float64 arithmetic (a tl.where of two literals is float32), the DM-NonUniform lower
level runs no scan (`_colsum`: its small tiles' layouts are ones Triton's scans have got wrong), and integer division
and remainder only see non-negative operands (C and Python round negatives differently). tests/test_triton.py
compiles every kernel for sm_90 as the launcher would and checks the IR.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import triton
import triton.language as tl

from ..schedules import NoiseSchedule
from .codes import FAMILY_CODES, INIT_CODES, KIND_CODES, OBJECTIVE_CODES, schedule_code
from .reference_dmn import resolve_trunc_num
from .reference_lower import LowerResult, LowerSpec

__all__ = ["mep_and_grad", "dmn_and_grad", "lower_solve"]

# the codes the kernels compare their constexpr arguments with (hso.fast.codes, shared with csrc/)
_KINDS = tuple(KIND_CODES.values())
_VP, _VE = tl.constexpr(KIND_CODES["vp"]), tl.constexpr(KIND_CODES["ve"])
_VP_TABLE, _VP_LINEAR = tl.constexpr(FAMILY_CODES["vp_discrete"]), tl.constexpr(FAMILY_CODES["vp_linear"])
_EDM, _FLOW = tl.constexpr(FAMILY_CODES["edm"]), tl.constexpr(FAMILY_CODES["flow"])
_EDM_RHO, _LOGSNR = tl.constexpr(INIT_CODES["edm_rho"]), tl.constexpr(INIT_CODES["logSNR"])
_TIME_UNIFORM = tl.constexpr(INIT_CODES["time_uniform"])
_MEP = tl.constexpr(OBJECTIVE_CODES["mep"])

# Triton decides at decoration time whether it compiles or interprets (TRITON_INTERPRET).
_KNOBS = getattr(triton, "knobs", None)  # Triton >= 3.3; before that the flag was read from the environment
_INTERPRETED = bool(_KNOBS.runtime.interpret if _KNOBS is not None else os.environ.get("TRITON_INTERPRET") == "1")


def _device_fn(fn):
    """``@triton.jit`` for a device helper; the plain function under the interpreter.

    The interpreter re-patches ``triton.language`` on every call of a jitted helper (~0.7 ms, whatever the tile):
    with the Newton loop calling helpers thousands of times per launch that would be most of the run time. A plain
    function called from an interpreted kernel runs on the kernel's patched ``triton.language`` with the same
    semantics (the interpreter's only source rewrite, of chained comparisons, is not needed by these helpers), so
    nothing but the overhead changes; compiled, the helpers are ordinary ``@triton.jit`` functions.
    """
    return fn if _INTERPRETED else triton.jit(fn)


def _kernel(*int_args: str):
    """``@triton.jit`` for a kernel whose integer arguments (sizes, counts, strides, iteration caps) are never
    specialised on their values.

    Compiled, Triton specialises an integer argument equal to 1 into a Python constant (``N.to(tl.float64)`` then
    fails: an int has no ``to``) and one divisible by 16 into an argument with a divisibility hint: a separate
    compilation for each case (some 15 s for the DM-NonUniform lower level), each a code path of its own that the
    common values never exercise. These kernels use their integers as loop bounds and masks, never as pointer
    strides that alignment would help, so ``do_not_specialize`` keeps them plain int32 at run time: one compilation
    per constexpr set serves every N and B, N = 1 included. (The alternative, writing every use as
    ``tl.full([], N, tl.int32)``, would have to be repeated in each helper and remembered in each new one.)
    tests/test_triton.py compiles every kernel as the launcher specialises it, N and B = 1, 16 and generic values.
    """
    return triton.jit(do_not_specialize=int_args)


# ------------------------------------------------------------------------------------------------- reductions
# tl.sum / tl.max / tl.min / tl.cumsum are tl.reduce / tl.associative_scan with these combine functions (no dtype
# promotion is involved for float64, int32). Calling the reductions directly skips a jitted wrapper that costs the
# interpreter ~0.8 ms per call, and the interpreter still recognises the combine functions and runs numpy's
# reductions: inside the per-column loops of the lower level that wrapper would otherwise be most of the run time.
_SUM = tl.standard._sum_combine
_MAX = tl.standard._elementwise_max
_MIN = tl.standard._elementwise_min


@_device_fn
def _rsum(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _SUM)


@_device_fn
def _rmax(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _MAX)


@_device_fn
def _rmin(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _MIN)


@_device_fn
def _rcumsum(x, axis: tl.constexpr):
    return tl.associative_scan(x, axis, _SUM)


# ----------------------------------------------------------------------------------------------- elementwise math
@_device_fn
def _expm1(x):
    # Kahan: expm1(x) = (u - 1) x / log(u) with u = fl(e^x); the rounding of u cancels to first order, so this is
    # accurate to a few ulps where e^x - 1 would lose all digits (x -> 0).
    u = tl.exp(x)
    one = u == 1.0
    r = (u - 1.0) * (x / tl.log(tl.where(one, 2.0, u)))
    r = tl.where(x > 709.0, u, r)     # e^x overflows: inf, as numpy
    r = tl.where(x < -40.0, -1.0, r)  # e^x - 1 rounds to -1
    return tl.where(one, x, r)


@_device_fn
def _log1p(y):
    # Higham: log1p(y) = log(w) y / (w - 1) with w = fl(1 + y), accurate to a few ulps for y > -1.
    w = 1.0 + y
    one = w == 1.0
    r = tl.log(w) * (y / tl.where(one, 1.0, w - 1.0))
    return tl.where(one, y, r)


@_device_fn
def _softplus(x):
    # log(1 + e^x) in numpy.logaddexp(0, x)'s branches: no overflow for large x, log1p's accuracy for x << 0
    return tl.maximum(x, 0.0) + _log1p(tl.exp(-tl.abs(x)))


@_device_fn
def _tanh(x):
    # E / (E + 2) with E = expm1(2|x|): relative accuracy everywhere; tanh(20) already rounds to 1
    e = _expm1(2.0 * tl.minimum(tl.abs(x), 20.0))
    th = e / (e + 2.0)
    return tl.where(x < 0.0, -th, th)


@_device_fn
def _sinh_cosh(x):
    # from E = expm1(|x|): sinh = (E + E / (E + 1)) / 2 (two positive terms, no cancellation for small gaps),
    # cosh = (E + 1 + 1 / (E + 1)) / 2
    e = _expm1(tl.abs(x))
    ec = tl.minimum(e, 1e300)  # keeps inf / inf out of sinh when e^|x| overflows
    sh = 0.5 * (e + ec / (ec + 1.0))
    ch = 0.5 * ((e + 1.0) + 1.0 / (e + 1.0))
    return tl.where(x < 0.0, -sh, sh), ch


@_device_fn
def _acos01(y):
    # acos(y) for y in [0, 1] as 2 asin(z), z = sqrt((1 - y) / 2) <= 1/sqrt(2) (1 - y is exact for y >= 1/2):
    # a 4-term series start, then Newton on sin(phi) = z (error 1.5e-3 -> 1e-6 -> 5e-13 -> rounding)
    z = tl.sqrt(0.5 * (1.0 - y))
    z2 = z * z
    phi = z * (1.0 + z2 * (1.0 / 6.0 + z2 * (3.0 / 40.0 + z2 * (5.0 / 112.0))))
    for _ in tl.static_range(3):
        phi = phi - (tl.sin(phi) - z) / tl.cos(phi)
    return 2.0 * phi


@_device_fn
def _q_derivs(m, c, KIND: tl.constexpr):
    # q = (p - 1) log sigma(lambda) and its first two derivatives at m (reference.q_derivs; c = p - 1)
    if KIND == _VP:
        s = 0.5 * (1.0 + _tanh(m))  # sigmoid(2m)
        q = -0.5 * c * _softplus(2.0 * m)
        q1 = -c * s
        q2 = -2.0 * c * s * (1.0 - s)
    elif KIND == _VE:
        q = -c * m
        q1 = tl.full(m.shape, 0.0, tl.float64) - c
        q2 = tl.full(m.shape, 0.0, tl.float64)
    else:
        s = 0.5 * (1.0 + _tanh(0.5 * m))  # sigmoid(m)
        q = -c * _softplus(m)
        q1 = -c * s
        q2 = -c * s * (1.0 - s)
    return q, q1, q2


@_device_fn
def _interval(a, b, c, KIND: tl.constexpr):
    # the shared factors of one MEP term (reference docstring: S, C, E, Q1, Q2)
    q, q1, q2 = _q_derivs(0.5 * (a + b), c, KIND)
    sh, ch = _sinh_cosh(0.5 * (b - a))
    return sh, ch, tl.exp(q), q1, q2


# ------------------------------------------------------------------------------------------------ MEP objective
@_kernel("B", "N1")
def _mep_fwd_kernel(lam_ptr,    # [B, N+1]
                    prm_ptr,    # [1]: p
                    value_ptr,  # [B]
                    grad_ptr,   # [B, N+1]
                    diag_ptr,   # [B, N+1] (HESSIAN)
                    off_ptr,    # [B, N] (HESSIAN)
                    B, N1,
                    KIND: tl.constexpr, HESSIAN: tl.constexpr, BLOCK_B: tl.constexpr):
    lanes = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = lanes < B
    row = lanes.to(tl.int64) * N1
    c = tl.load(prm_ptr + tl.zeros([BLOCK_B], dtype=tl.int32), mask=ok, other=2.0) - 1.0
    a = tl.load(lam_ptr + row, mask=ok, other=0.0)
    value = tl.zeros([BLOCK_B], dtype=tl.float64)
    # the right-end terms of interval i-1 wait in registers for the left-end terms of interval i, so every element
    # is summed in the reference's order: (0 + right term of i-1) + left term of i
    g_carry = tl.zeros([BLOCK_B], dtype=tl.float64)
    h_carry = tl.zeros([BLOCK_B], dtype=tl.float64)
    for i in range(0, N1 - 1):
        b = tl.load(lam_ptr + row + i + 1, mask=ok, other=0.0)
        sh, ch, e, q1, q2 = _interval(a, b, c, KIND)
        value += 2.0 * sh * e
        tl.store(grad_ptr + row + i, g_carry + e * (-ch + sh * q1), mask=ok)
        g_carry = e * (ch + sh * q1)
        if HESSIAN:
            common = 0.5 * sh * (q1 * q1 + q2)
            tl.store(diag_ptr + row + i, h_carry + e * (0.5 * sh - ch * q1 + common), mask=ok)
            h_carry = e * (0.5 * sh + ch * q1 + common)
            tl.store(off_ptr + lanes.to(tl.int64) * (N1 - 1) + i, e * (-0.5 * sh + common), mask=ok)
        a = b
    tl.store(grad_ptr + row + N1 - 1, g_carry, mask=ok)
    if HESSIAN:
        tl.store(diag_ptr + row + N1 - 1, h_carry, mask=ok)
    tl.store(value_ptr + lanes, value, mask=ok)


# ----------------------------------------------------------------------------------------- DM-NonUniform objective
@_device_fn
def _log_sigma_derivs(lam, KIND: tl.constexpr):
    # log sigma(lambda) and its derivative (hso.schedules.log_sigma_of_lambda; reference_dmn._dlog_sigma)
    if KIND == _VP:
        return -0.5 * _softplus(2.0 * lam), -0.5 * (1.0 + _tanh(lam))
    elif KIND == _VE:
        return -lam, tl.full(lam.shape, -1.0, tl.float64)
    else:
        return -_softplus(lam), -0.5 * (1.0 + _tanh(0.5 * lam))


def _phi_series() -> tuple[tl.constexpr, tl.constexpr]:
    # Taylor coefficients of H1(h) / h^2 = sum_i h^i / ((i + 2) i!) and H2(h) / h^3 = sum_i h^i / ((i + 3) i!),
    # rounded as dmn_row.h's PhiSeries forms them; constexpr floats become exact float64 constants in the kernels
    c1, c2, fact = [], [], 1.0
    for i in range(30):
        c1.append(1.0 / (float(i + 2) * fact))
        c2.append(1.0 / (float(i + 3) * fact))
        fact *= float(i + 1)
    return tl.constexpr(tuple(c1)), tl.constexpr(tuple(c2))


_PHI_C1, _PHI_C2 = _phi_series()


@_device_fn
def _phi(h):
    # (e^h, H0, H1, H2) as reference_dmn.phi_integrals: the 30-term series below |h| = 1.5 (Horner, as dmn_row.h),
    # the closed form beyond
    eh = tl.exp(h)
    h0 = _expm1(h)
    s1 = tl.full(h.shape, _PHI_C1[29], tl.float64)
    s2 = tl.full(h.shape, _PHI_C2[29], tl.float64)
    for k in tl.static_range(29):
        s1 = s1 * h + _PHI_C1[28 - k]
        s2 = s2 * h + _PHI_C2[28 - k]
    small = tl.abs(h) < 1.5
    h1c = h * eh - h0
    h1 = tl.where(small, h * h * s1, h1c)
    h2 = tl.where(small, h * h * h * s2, h * h * eh - 2.0 * h1c)
    return eh, h0, h1, h2


@_device_fn
def _sign(x):
    # dmn_row.h sign_of (0 for NaN). The innermost alternative is a float64 tile: with two literal branches tl.where
    # would build a float32 select (exact for +-1 and 0, but the kernels are kept free of float32, which
    # tests/test_triton.py checks in the compiled IR)
    return tl.where(x > 0.0, 1.0, tl.where(x < 0.0, -1.0, tl.zeros_like(x)))


@_device_fn
def _seqsum(x, last, axis: tl.constexpr):
    # the sum along axis in index order, a sequential loop's rounding (the interpreter's cumsum is numpy's,
    # sequential; its plain sum is pairwise); last selects the final index. 2-D tiles only: see _rowdot for 3-D.
    return _rsum(tl.where(last, _rcumsum(x, axis), 0.0), axis)


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
@_device_fn
def _colsum(x, C, n):
    # the sum of the columns 0..n-1 of x [rows, NP] in turn (_seqsum's value)
    acc = _rsum(tl.where(C == 0, x, 0.0), 1)
    for j in range(1, n):
        acc = acc + _rsum(tl.where(C == j, x, 0.0), 1)
    return acc


@_device_fn
def _colcumsum(x, C, n):
    # the prefix sums of x [rows, NP] over the columns 0..n-1 in turn (numpy's cumsum); the columns from n on hold
    # the total, the cumsum's value where x is zero there
    acc = _rsum(tl.where(C == 0, x, 0.0), 1)
    out = tl.broadcast_to(acc[:, None], x.shape)
    for j in range(1, n):
        acc = acc + _rsum(tl.where(C == j, x, 0.0), 1)
        out = tl.where(C >= j, acc[:, None], out)
    return out


@_device_fn
def _dmn_tile(lam, c, TAU, C, N, NP: tl.constexpr, KIND: tl.constexpr, DERIVS: tl.constexpr,
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
    ls, dls = _log_sigma_derivs(lam, KIND)
    E = tl.exp(lam)
    w = tl.exp(c * ls - lam)
    l0 = tl.gather(lam, p2, 1)
    l1 = tl.gather(lam, p1, 1)
    h = tl.where(step, tl.gather(lam, n1, 1) - lam, 0.0)
    # gaps h_{s-2} (order 3) and h_{s-1} (orders 3 and 2); 1 where unused, so discarded forms stay finite
    a = tl.where(o3, l1 - l0, 1.0)
    b = tl.where(hi, lam - l1, 1.0)
    eh, h0, h1, h2 = _phi(h)
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
        vc = _seqsum(tl.abs(cn), last, 1)
        value = _seqsum(tl.where(C == 0, vc[:, None] + vstep, vstep), last, 1)
    else:
        vc = _colsum(tl.abs(cn), C, N + 1)
        value = _colsum(tl.where(C == 0, vc[:, None] + vstep, vstep), C, N + 1)
    grad = lam
    if DERIVS:
        inv = tl.where(rss > 0.0, 1.0 / tl.where(rss > 0.0, rss, 1.0), 0.0)
        ga = tl.where(o3, tl.where(rssm, Ta * inv, _sign(tl.gather(cn, p2, 1))), 0.0)
        gb = tl.where(hi, tl.where(rssm, Tb * inv, _sign(tl.gather(cn, p1, 1))), 0.0)
        gc = tl.where(fl, _sign(Tc), tl.where(rssm, Tc * inv, tl.where(summ, _sign(cn), 0.0)))
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


@_kernel("B", "N1", "TAU")
def _dmn_fwd_kernel(lam_ptr,    # [B, N+1]
                    prm_ptr,    # [1]: p
                    value_ptr,  # [B]
                    grad_ptr,   # [B, N+1]
                    B, N1, TAU,
                    KIND: tl.constexpr, BLOCK_B: tl.constexpr, NP: tl.constexpr):
    # hso.fast.reference_dmn.dmn_and_grad, one candidate per lane, its row a [BLOCK_B, NP] tile (`_dmn_tile`, the
    # lower level's objective too)
    lanes = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = lanes < B
    C = tl.arange(0, NP)[None, :]
    k2 = tl.arange(0, 2)
    c = _rsum(tl.load(prm_ptr + k2, mask=k2 < 1, other=0.0), 0) - 1.0
    at = lanes.to(tl.int64)[:, None] * N1 + C
    keep = ok[:, None] & (C < N1)
    # masked points continue the row with distinct values, so that discarded coefficients stay finite
    lam = tl.where(keep, tl.load(lam_ptr + at, mask=keep, other=0.0), 0.01 * C.to(tl.float64))
    value, grad = _dmn_tile(lam, c, TAU, C, N1 - 1, NP, KIND, True, True)
    tl.store(grad_ptr + at, grad, mask=keep)
    tl.store(value_ptr + lanes, value, mask=ok)


# -------------------------------------------------------------------------------------------- noise-schedule maps
@_device_fn
def _grid(k, n_f):
    # grid point k of the discrete table, exactly numpy's (arange(n) + 1.0) / n
    return (k.to(tl.float64) + 1.0) / n_f


@_device_fn
def _table_log_alpha(t, tab_ptr, n_tab, first, last):
    # numpy.interp(t, grid, table) and the slope of the cell holding t (schedule_map.h, vp_log_alpha); first/last
    # are table[0] and table[n-1]. Counts are kept as floats: grid point k is (k + 1.0) / n exactly as numpy's.
    n_f = n_tab.to(tl.float64)
    cf = tl.floor(t * n_f)
    cf = tl.minimum(tl.where(cf >= 0.0, cf, 0.0), n_f)  # also maps NaN to 0
    # |fl(t n) - t n| <= n 2^-53 << 1, so that guess is the count of grid points <= t or one off: one step each way
    cf = tl.where((cf < n_f) & ((cf + 1.0) / n_f <= t), cf + 1.0, cf)
    cf = tl.where((cf > 0.0) & (cf / n_f > t), cf - 1.0, cf)
    kf = tl.minimum(tl.maximum(cf - 1.0, 0.0), n_f - 2.0)  # the interpolation cell, also the slope's cell
    k = kf.to(tl.int32)
    ok = k >= 0  # in [0, n - 2] by construction
    tb0 = tl.load(tab_ptr + k, mask=ok, other=0.0)
    dtb = tl.load(tab_ptr + k + 1, mask=ok, other=0.0) - tb0
    x0 = (kf + 1.0) / n_f
    la = dtb / ((kf + 2.0) / n_f - x0) * (t - x0) + tb0
    la = tl.where(cf == 0.0, first, tl.where(cf >= n_f, last, la))
    return la, dtb * n_f


@_device_fn
def _lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY: tl.constexpr, NEED_D: tl.constexpr):
    # (lambda, dlambda/dt, d2lambda/dt2) of hso.schedules.NoiseSchedule.lambda_derivs; fa/fb as schedule_code gives
    # them. Without NEED_D the derivatives are not computed (the second and third results are then lambda).
    if FAMILY == _EDM:  # EDM: fa = log sigma_min, fb = log sigma_max
        lam = -(fa + t * (fb - fa))
        d1 = tl.full(t.shape, 0.0, tl.float64) - (fb - fa)
        d2 = tl.full(t.shape, 0.0, tl.float64)
    elif FAMILY == _FLOW:  # flow: fa = shift
        lam = _log1p(-t) - tl.log(fa * t)
        d1 = lam
        d2 = lam
        if NEED_D:
            d1 = -1.0 / (1.0 - t) - 1.0 / t
            d2 = 1.0 / (t * t) - 1.0 / ((1.0 - t) * (1.0 - t))
    else:
        if FAMILY == _VP_TABLE:  # discrete table of 0.5 log(alphas_cumprod)
            la, l1 = _table_log_alpha(t, tab_ptr, n_tab, fa, fb)  # fa, fb: table[0], table[n-1]
            l2 = tl.full(t.shape, 0.0, tl.float64)
        elif FAMILY == _VP_LINEAR:  # linear beta: fa = beta_0, fb = beta_1
            la = -0.25 * (t * t) * (fb - fa) - 0.5 * t * fa
            l1 = -0.5 * t * (fb - fa) - 0.5 * fa
            l2 = tl.full(t.shape, 0.0, tl.float64) - 0.5 * (fb - fa)
        else:  # cosine: fa = s
            cc = 3.141592653589793 / (2.0 * (1.0 + fa))
            u = (t + fa) * cc
            cu = tl.cos(u)
            la = tl.log(cu) - tl.log(tl.cos(fa * cc))
            l1 = -(tl.sin(u) / cu) * cc
            sec = cc / cu
            l2 = -(sec * sec)
        sig2 = -_expm1(2.0 * la)  # sigma^2 = 1 - alpha^2
        lam = la - 0.5 * tl.log(sig2)
        d1 = lam
        d2 = lam
        if NEED_D:
            # dlambda/dL = 1/sigma^2, d2lambda/dL2 = 2 alpha^2 / sigma^4
            a2 = tl.exp(2.0 * la)
            d1 = l1 / sig2
            d2 = l2 / sig2 + l1 * l1 * 2.0 * a2 / (sig2 * sig2)
    return lam, d1, d2


@_device_fn
def _t_of_lambda(lam, fa, fb, tab_ptr, n_tab, n_bits, FAMILY: tl.constexpr):
    # inverse map, hso.schedules.NoiseSchedule.t_of_lambda
    if FAMILY == _EDM:
        t = (-lam - fa) / (fb - fa)
    elif FAMILY == _FLOW:
        t = 1.0 / (1.0 + fa * tl.exp(lam))
    else:
        la = -0.5 * _softplus(-2.0 * lam)  # log alpha(lambda)
        if FAMILY == _VP_TABLE:
            # numpy.interp(la, table[::-1], grid[::-1]); the table decreases: binary search for the first entry
            # <= la (n_bits = bit length of n iterations close any interval of [0, n])
            n_f = n_tab.to(tl.float64)
            lo = tl.full(la.shape, 0, tl.int32)
            hi = lo + n_tab
            for _ in range(n_bits):
                go = lo < hi
                mid = (lo + hi) // 2
                tm = tl.load(tab_ptr + mid, mask=go & (mid < n_tab), other=0.0)
                down = go & (tm <= la)
                hi = tl.where(down, mid, hi)
                lo = tl.where(go & ~down, mid + 1, lo)
            cnt = n_tab - lo
            k = tl.minimum(tl.maximum(lo, 1), n_tab - 1)
            ok = (k >= 1) & (k < n_tab)
            x0 = tl.load(tab_ptr + k, mask=ok, other=0.0)
            x1 = tl.load(tab_ptr + k - 1, mask=ok, other=1.0)
            y0 = _grid(k, n_f)
            y1 = _grid(k - 1, n_f)
            t = (y1 - y0) / (x1 - x0) * (la - x0) + y0
            t = tl.where(cnt == 0, _grid(n_tab - 1, n_f), tl.where(cnt >= n_tab, _grid(lo * 0, n_f), t))
        elif FAMILY == _VP_LINEAR:
            m = -la
            t = 2.0 * m / (0.5 * fa + tl.sqrt(0.25 * fa * fa + (fb - fa) * m))
        else:
            cc = 3.141592653589793 / (2.0 * (1.0 + fa))
            t = _acos01(tl.exp(la + tl.log(tl.cos(fa * cc)))) / cc - fa
    return t


# ------------------------------------------------------------------------------------------ lower level: helpers
@_device_fn
def _col(x, sel):
    # per-lane element at the one-hot column sel [BLOCK_B, NP] (x float or int)
    return _rsum(tl.where(sel, x, 0), 1)


@_device_fn
def _mep_tile(lam, c, C, N, nxt, prv, KIND: tl.constexpr, DERIVS: tl.constexpr):
    # MEP of the schedules lam [BLOCK_B, NP] (points 0..N valid): value [BLOCK_B] and, with DERIVS, the gradient
    # and the Hessian's diagonal and off-diagonal as tiles (interval i lives at column i)
    iv = C < N
    sh, ch, e, q1, q2 = _interval(lam, tl.gather(lam, nxt, 1), c, KIND)
    value = _rsum(tl.where(iv, 2.0 * sh * e, 0.0), 1)
    grad = lam
    diag = lam
    off = lam
    if DERIVS:
        common = 0.5 * sh * (q1 * q1 + q2)
        right = tl.where(iv, e * (ch + sh * q1), 0.0)
        left = tl.where(iv, e * (-ch + sh * q1), 0.0)
        h_right = tl.where(iv, e * (0.5 * sh + ch * q1 + common), 0.0)
        h_left = tl.where(iv, e * (0.5 * sh - ch * q1 + common), 0.0)
        # each point: (0 + right-end term of interval j-1) + left-end term of interval j, the reference's order
        grad = tl.where(C >= 1, tl.gather(right, prv, 1), 0.0) + left
        diag = tl.where(C >= 1, tl.gather(h_right, prv, 1), 0.0) + h_left
        off = tl.where(iv, e * (-0.5 * sh + common), 0.0)
    return value, grad, diag, off


@_device_fn
def _sturm_step(q, cnt, d, e2, x):
    # one step of the Sturm count of the tridiagonal (number of eigenvalues < x; lower_row.h sturm_count); e2 is
    # the squared off-diagonal entry coupling this point to the previous one
    q = d - x - e2 / q
    q = tl.where(q == 0.0, -1e-300, q)
    return q, cnt + (q < 0.0).to(tl.int32)


@_device_fn
def _reduced_forward(Hd, E2, VF, HG, ENF, CPL, xs, C, N,
                     BLOCK_B: tl.constexpr, NP: tl.constexpr, STURM: tl.constexpr):
    # One sweep over the interior points: the reduced system of the free blocks (lower_row.h: rb = -sum v,
    # rd = sum of Hd + 2 Ho over a block; VF, HG hold the free points' terms, zero elsewhere) accumulated along each
    # block and eliminated (Thomas forward) at its last point (ENF); with STURM the same sweep counts the eigenvalues
    # of H below xs. Returns the eliminated pivot and rhs of the latest free block at every point (read back at
    # the blocks' last points only), and the count.
    q = tl.full([BLOCK_B], 1.0, tl.float64)
    cnt = tl.zeros([BLOCK_B], dtype=tl.int32)
    acc_rd = tl.zeros([BLOCK_B], dtype=tl.float64)
    acc_rb = tl.zeros([BLOCK_B], dtype=tl.float64)
    prv_rd = tl.full([BLOCK_B], 1.0, tl.float64)  # previous free block: eliminated pivot, rhs and coupling
    prv_rb = tl.zeros([BLOCK_B], dtype=tl.float64)  # (coupling 0 before the first block: no elimination)
    prv_ro = tl.zeros([BLOCK_B], dtype=tl.float64)
    RDP = tl.full([BLOCK_B, NP], 1.0, tl.float64)
    RBP = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    for j in range(1, N):
        sel = C == j
        if STURM:
            q, cnt = _sturm_step(q, cnt, _col(Hd, sel), _col(E2, sel), xs)
        acc_rb = acc_rb - _col(VF, sel)
        acc_rd = acc_rd + _col(HG, sel)
        end = _col(ENF, sel) != 0
        m = prv_ro / prv_rd
        prv_rd = tl.where(end, acc_rd - m * prv_ro, prv_rd)
        prv_rb = tl.where(end, acc_rb - m * prv_rb, prv_rb)
        prv_ro = tl.where(end, _col(CPL, sel), prv_ro)
        acc_rd = tl.where(end, 0.0, acc_rd)  # the next free block starts from zero (fixed points add zeros)
        acc_rb = tl.where(end, 0.0, acc_rb)
        RDP = tl.where(sel, prv_rd[:, None], RDP)
        RBP = tl.where(sel, prv_rb[:, None], RBP)
    return RDP, RBP, cnt


@_device_fn
def _shift_of(Hd, HoP, Ho, E2, interior, need, nm1, C, N, BLOCK_B: tl.constexpr):
    # tau = max(0, 1e-8 max|eig| - min eig) for the lanes in need, both extreme eigenvalues by Sturm bisection
    # inside the Gershgorin bounds, to rounding (lower_row.h extreme_eigenvalue, both bisections in one sweep)
    rad = tl.abs(HoP) + tl.abs(Ho)
    lo1 = _rmin(tl.where(interior, Hd - rad, float("inf")), 1)
    hi2 = _rmax(tl.where(interior, Hd + rad, -float("inf")), 1)
    hi1 = hi2
    lo2 = lo1
    run1 = need & (hi1 - lo1 > 1e-15 * tl.maximum(tl.abs(lo1), tl.abs(hi1)))
    run2 = need & (hi2 - lo2 > 1e-15 * tl.maximum(tl.abs(lo2), tl.abs(hi2)))
    it = 0
    while (it < 200) & (_rmax((run1 | run2).to(tl.int32), 0) > 0):
        mid1 = 0.5 * (lo1 + hi1)
        mid2 = 0.5 * (lo2 + hi2)
        q1 = tl.full([BLOCK_B], 1.0, tl.float64)
        q2 = tl.full([BLOCK_B], 1.0, tl.float64)
        c1 = tl.zeros([BLOCK_B], dtype=tl.int32)
        c2 = tl.zeros([BLOCK_B], dtype=tl.int32)
        for j in range(1, N):
            sel = C == j
            d = _col(Hd, sel)
            e2 = _col(E2, sel)
            q1, c1 = _sturm_step(q1, c1, d, e2, mid1)
            q2, c2 = _sturm_step(q2, c2, d, e2, mid2)
        up1 = c1 >= 1     # the smallest eigenvalue is below mid1
        up2 = c2 >= nm1   # the largest eigenvalue is below mid2
        hi1 = tl.where(run1 & up1, mid1, hi1)
        lo1 = tl.where(run1 & ~up1, mid1, lo1)
        hi2 = tl.where(run2 & up2, mid2, hi2)
        lo2 = tl.where(run2 & ~up2, mid2, lo2)
        run1 = run1 & (hi1 - lo1 > 1e-15 * tl.maximum(tl.abs(lo1), tl.abs(hi1)))
        run2 = run2 & (hi2 - lo2 > 1e-15 * tl.maximum(tl.abs(lo2), tl.abs(hi2)))
        it += 1
    ev_min = 0.5 * (lo1 + hi1)
    ev_max = 0.5 * (lo2 + hi2)
    scale = tl.maximum(tl.maximum(tl.abs(ev_min), tl.abs(ev_max)), 1e-300)
    return tl.where(need, tl.maximum(0.0, 1e-8 * scale - ev_min), 0.0)


@_device_fn
def _value_of_t(t, c, TAU, fa, fb, tab_ptr, n_tab, C, N,
                NP: tl.constexpr, FAMILY: tl.constexpr, KIND: tl.constexpr, OBJ: tl.constexpr):
    # the objective (OBJ 0: MEP, 1: DM-NonUniform) of the schedules t [rows, NP], and their lambdas
    lam, _d1, _d2 = _lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY, False)
    if OBJ == _MEP:
        nxt = tl.broadcast_to(tl.minimum(C + 1, NP - 1), t.shape)
        prv = tl.broadcast_to(tl.maximum(C - 1, 0), t.shape)
        value, _g, _d, _o = _mep_tile(lam, c, C, N, nxt, prv, KIND, False)
    else:
        value, _g = _dmn_tile(lam, c, TAU, C, N, NP, KIND, False, False)  # (the lower level's: no scan)
    return value, lam


@_device_fn
def _pow2m(k):
    # 2^-k for integers 0 <= k < 1023, exactly: the float64 with that exponent field
    return ((1023 - k).to(tl.int64) << 52).to(tl.float64, bitcast=True)


@_device_fn
def _armijo(ft, f, alpha, dec, newton):
    # the line search's test (lower_row.h armijo_backtrack): finite, and a decrease of 1e-4 alpha dec, or in the
    # Newton region (dec below f's rounding) no rise beyond rounding
    return (ft == ft) & (tl.abs(ft) < float("inf")) & ((ft <= f - 1e-4 * alpha * dec)
                                                       | (newton & (ft <= f + 4e-16 * (1.0 + tl.abs(f)))))


@_device_fn
def _lower_scalars(prm_ptr):
    # the float64 scalars fa, fb, gap d, d_min, gamma, c = p - 1, xtol: one masked load
    k8 = tl.arange(0, 8)
    prm = tl.load(prm_ptr + k8, mask=k8 < 7, other=0.0)
    return (_rsum(tl.where(k8 == 0, prm, 0.0), 0), _rsum(tl.where(k8 == 1, prm, 0.0), 0),
            _rsum(tl.where(k8 == 2, prm, 0.0), 0), _rsum(tl.where(k8 == 3, prm, 0.0), 0),
            _rsum(tl.where(k8 == 4, prm, 0.0), 0), _rsum(tl.where(k8 == 5, prm, 0.0), 0) - 1.0,
            _rsum(tl.where(k8 == 6, prm, 0.0), 0))


@_device_fn
def _start(psi_ptr, lanes, lane_ok, fa, fb, d, tab_ptr, n_tab, n_bits, C, N, nxt,
           FAMILY: tl.constexpr, INIT: tl.constexpr):
    # lower_row.h init_row and feasible_start: the init family's schedule between the candidate's end points, blended
    # with the uniform schedule until every gap is >= d. Returns the start t and whether the candidate is feasible.
    N_f = N.to(tl.float64)
    # lanes past B get a harmless candidate (never iterated, never stored)
    rho = tl.load(psi_ptr + lanes * 3, mask=lane_ok, other=7.0)
    t_eps = tl.load(psi_ptr + lanes * 3 + 1, mask=lane_ok, other=0.4)
    t_max = tl.load(psi_ptr + lanes * 3 + 2, mask=lane_ok, other=0.6)
    # start schedule of the init family (hso/inits.py; u = linspace(0, 1, N + 1))
    u = tl.where(C >= N, 1.0, C.to(tl.float64) * (1.0 / N_f))  # padding columns clamped to the end
    if (INIT == _EDM_RHO) or (INIT == _LOGSNR):  # between the end points' lambdas
        lam_hi, _a, _b = _lambda_derivs(t_max, fa, fb, tab_ptr, n_tab, FAMILY, False)
        lam_lo, _a, _b = _lambda_derivs(t_eps, fa, fb, tab_ptr, n_tab, FAMILY, False)
        if INIT == _EDM_RHO:  # in log space
            rh = rho[:, None]
            la = -lam_hi[:, None] / rh
            lb = -lam_lo[:, None] / rh
            mx = tl.maximum(la, lb)
            log_sig = rh * (mx + tl.log((1.0 - u) * tl.exp(la - mx) + u * tl.exp(lb - mx)))
            t = _t_of_lambda(-log_sig, fa, fb, tab_ptr, n_tab, n_bits, FAMILY)
        else:  # logSNR
            t = _t_of_lambda(lam_hi[:, None] + u * (lam_lo - lam_hi)[:, None], fa, fb, tab_ptr, n_tab, n_bits,
                             FAMILY)
    elif INIT == _TIME_UNIFORM:
        t = t_max[:, None] + u * (t_eps - t_max)[:, None]
    else:  # time_quadratic
        sa = tl.sqrt(t_max)[:, None]
        sb = tl.sqrt(t_eps)[:, None]
        t = (sa + u * (sb - sa)) * (sa + u * (sb - sa))
    t = tl.where(C == 0, t_max[:, None], tl.where(C >= N, t_eps[:, None], t))  # exact ends; padding = t_eps

    # feasible start: blend with the uniform schedule until every gap is >= d
    gaps = t - tl.gather(t, nxt, 1)
    ug = (t_max - t_eps) / N_f
    feasible = ug >= d * (1.0 + 1e-12)
    dd = d * (1.0 + 1e-9)
    short = (C < N) & (gaps < dd)
    need = tl.where(short, (dd - gaps) / tl.where(short, ug[:, None] - gaps, 1.0), 0.0)
    w = _rmax(need, 1)
    w = tl.where(feasible, tl.minimum(tl.maximum(w, 0.0), 1.0), 1.0)
    uni = C.to(tl.float64) * (1.0 / N_f) * (t_eps - t_max)[:, None] + t_max[:, None]
    interior = (C >= 1) & (C < N)
    return tl.where(interior, (1.0 - w[:, None]) * t + w[:, None] * uni, t), feasible


@_device_fn
def _blocks(t, bid, d, C, N, nxt, prv, SCAN: tl.constexpr):
    # lower_row.h working_blocks from the block starts bid (a block = points glued by working constraints):
    # slacks, working set (wk[i]: constraint i, points i and i+1, is in it), free points (interior points of blocks
    # holding neither end point) and offsets (dt_{j+1} = dt_j + c_j inside a block; blocks holding 0 start at 0, the
    # block holding N ends at 0)
    slack = tl.where(C < N, (t - tl.gather(t, nxt, 1)) - d, 0.0)
    wk = (C < N) & (tl.gather(bid, nxt, 1) == bid)
    bot = _col(bid, C == N)[:, None]  # first point of the block holding N
    free = (C >= 1) & (C < N) & (bid != 0) & (bid != bot)
    if SCAN:
        csum = _rcumsum(tl.where(wk, slack, 0.0), 1)
    else:
        csum = _colcumsum(tl.where(wk, slack, 0.0), C, N)
    cex = tl.where(C >= 1, tl.gather(csum, prv, 1), 0.0)
    off = cex - tl.gather(cex, bid, 1)
    off = tl.where((bot > 0) & (C >= bot), off - _col(off, C == N)[:, None], off)
    return slack, wk, free, off


@_device_fn
def _active_set_update(t, f, g, dt, r, slack, wk, bid, eid, gmax, active, iters, it, xtol,
                       c, TAU, fa, fb, tab_ptr, n_tab, C, N, nxt,
                       BLOCK_B: tl.constexpr, NP: tl.constexpr, FAMILY: tl.constexpr, KIND: tl.constexpr,
                       OBJ: tl.constexpr, BATCH: tl.constexpr, SCAN: tl.constexpr):
    # lower_row.h active_set_update for the lanes in `active`, once the step dt and the residual r = g + H dt
    # (interior points) are known: multipliers; at a negligible step release the most negative one or stop;
    # otherwise ratio test, backtracking line search (alpha, alpha / 2, ... 24 tries; BATCH: the first alone, the
    # others in one evaluation) and the blocking constraint. Returns t, the blocks (bid, eid), active and iters.
    dt_next = tl.gather(dt, nxt, 1)
    smax = _rmax(tl.abs(dt), 1)
    dec = -_rsum(g * dt, 1)

    # multipliers of the working constraints from r, summed within blocks: downwards from the block start, or
    # (block holding 0) upwards from the block end
    if SCAN:
        rs = _rcumsum(r, 1)
    else:
        rs = _colcumsum(r, C, N)  # r is zero from point N on
    mu = tl.where(bid == 0, rs - tl.gather(rs, eid, 1), rs - tl.gather(rs, tl.maximum(bid - 1, 0), 1))
    mu_w = tl.where(wk, mu, float("inf"))
    mu_min = _rmin(mu_w, 1)
    worst = _rmin(tl.where(wk & (mu_w == mu_min[:, None]), C, NP), 1)
    mu_tol = 1e-10 * (1.0 + gmax)
    release_ok = mu_min < -mu_tol

    # stationary on the working set: release the most negative multiplier, or stop
    small = active & (smax <= xtol)
    iters = tl.where(small, it + 1, iters)
    release = small & release_ok
    done = small & ~release_ok
    move = active & ~small

    # ratio test over the inactive constraints
    dc = dt - dt_next
    cand = (C < N) & ~wk & (dc < 0.0)
    ratio = tl.where(cand, tl.maximum(slack, 0.0) / tl.where(cand, -dc, 1.0), float("inf"))
    alpha_max = _rmin(ratio, 1)
    blk = _rmin(tl.where(cand & (ratio == alpha_max[:, None]), C, NP), 1)
    alpha = tl.minimum(1.0, alpha_max)
    # in the Newton region the decrease is below f's rounding: take the step unless f visibly rises
    newton = dec <= 1e-10 * (1.0 + tl.abs(f))
    ft, _l = _value_of_t(t + alpha[:, None] * dt, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
    accepted = move & _armijo(ft, f, alpha, dec, newton)
    pending = move & ~accepted
    if BATCH:
        # the other 23 halvings alpha 2^-k at once, as [BLOCK_B x 32, NP] rows, and the first that passes: the
        # alpha of trying them in turn, in one evaluation (DM-NonUniform, non-smooth, often backtracks far)
        if _rmax(pending.to(tl.int32), 0) > 0:
            K = tl.arange(0, 32)[None, :]
            a_k = alpha[:, None] * _pow2m(K)
            trial = tl.reshape(t[:, None, :] + a_k[:, :, None] * dt[:, None, :], [BLOCK_B * 32, NP])
            f_k, _l_k = _value_of_t(trial, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
            ok = (K >= 1) & (K < 24) & _armijo(tl.reshape(f_k, [BLOCK_B, 32]), f[:, None], a_k, dec[:, None],
                                               newton[:, None])
            k_first = _rmin(tl.where(ok, K, 32), 1)
            found = pending & (k_first < 32)
            alpha = tl.where(found, alpha * _pow2m(k_first), alpha)
            accepted = accepted | found
    else:
        ls = 1
        while (ls < 24) & (_rmax(pending.to(tl.int32), 0) > 0):
            alpha = tl.where(pending, alpha * 0.5, alpha)
            ft, _l = _value_of_t(t + alpha[:, None] * dt, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND,
                                 OBJ)
            ok = pending & _armijo(ft, f, alpha, dec, newton)
            accepted = accepted | ok
            pending = pending & ~ok
            ls += 1
    hit = accepted & (alpha == alpha_max) & (alpha_max < float("inf")) & (blk < NP)
    t = tl.where(accepted[:, None], t + alpha[:, None] * dt, t)
    # no acceptable step: the working-set problem is solved to rounding, like a negligible step
    stuck = move & ~accepted
    release = release | (stuck & release_ok)
    done = done | (stuck & ~release_ok)
    iters = tl.where(stuck & ~release_ok, it + 1, iters)
    active = active & ~done

    # working-set updates: drop constraint `worst` (split its block) or add constraint `blk` (merge two blocks);
    # a lane does at most one of the two
    if _rmax((release | hit).to(tl.int32), 0) > 0:
        wi = worst[:, None]
        sel_w = C == wi
        s0 = _col(bid, sel_w)[:, None]
        e0 = _col(eid, sel_w)[:, None]
        rel = release[:, None]
        eid = tl.where(rel & (C >= s0) & (C <= wi), wi, eid)
        bid = tl.where(rel & (C > wi) & (C <= e0), wi + 1, bid)
        bi = blk[:, None]
        a0 = _col(bid, C == bi)[:, None]
        e1 = _col(eid, C == bi + 1)[:, None]
        mrg = hit[:, None]
        bid = tl.where(mrg & (C > bi) & (C <= e1), a0, bid)
        eid = tl.where(mrg & (C >= a0) & (C <= bi), e1, eid)
    return t, bid, eid, active, iters


@_device_fn
def _store_lower(t, t_start, iters, feasible, lanes, lane_ok, c, TAU, fa, fb, tab_ptr, n_tab, d_min, gamma,
                 C, N, nxt, t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr,
                 NP: tl.constexpr, FAMILY: tl.constexpr, KIND: tl.constexpr, OBJ: tl.constexpr):
    # value at the result; a failed optimisation keeps the start (spec section 5); SPF penalty; the outputs
    valid = C <= N
    value, lam = _value_of_t(t, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
    t_ok = ((t == t) & (tl.abs(t) < float("inf"))) | ~valid
    t_fin = _rmin(t_ok.to(tl.int32), 1) != 0
    bad = ~((value == value) & (tl.abs(value) < float("inf")) & t_fin)
    if _rmax((bad & lane_ok).to(tl.int32), 0) > 0:
        t = tl.where(bad[:, None], t_start, t)
        value2, lam2 = _value_of_t(t, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
        value = tl.where(bad, value2, value)
        lam = tl.where(bad[:, None], lam2, lam)
    sh = tl.maximum(0.0, d_min - tl.abs(t - tl.gather(t, nxt, 1)))
    penalty = gamma * _rsum(tl.where(C < N, sh * sh, 0.0), 1)

    out = lanes.to(tl.int64)[:, None] * (N + 1) + C
    keep = lane_ok[:, None] & valid
    tl.store(t_ptr + out, t, mask=keep)
    tl.store(lam_ptr + out, lam, mask=keep)
    tl.store(obj_ptr + lanes, value, mask=lane_ok)
    tl.store(pen_ptr + lanes, penalty, mask=lane_ok)
    tl.store(iters_ptr + lanes, iters.to(tl.int64), mask=lane_ok)
    tl.store(feas_ptr + lanes, feasible.to(tl.int8), mask=lane_ok)


# ------------------------------------------------------------------------------ lower level: dense BFGS helpers
# [BLOCK_B, NP, NP] tiles: R3 indexes rows (axis 1), K3 columns (axis 2), both by point; the matrices are zero
# outside the interior points 1..N-1 unless said otherwise.
@_device_fn
def _rowdot(M, x, g, N, C, K3):
    # g_i + sum_j M[i][j] x_j over the interior columns j = 1..N-1, added in turn from g_i as lower_bfgs.h's loops
    # (x, g [BLOCK_B, NP]). A loop over the columns (see _colsum), not a cumsum along axis 2 of the 3-D tile as this
    # helper, the BFGS update's H s and the Gershgorin row sums once were: those scans (the scan axis is not the
    # layout's fastest lane dimension there, order [1, 2, 0]) were the one construct that only this kernel used, and
    # with them the compiled lower level diverged from the C++ one on an H200 (Triton 3.6: by 0.06 in lambda within
    # three iterations, at N = 3 already) while the interpreter, numpy's cumsum, agreed.
    acc = g
    for j in range(1, N):
        acc = acc + _rsum(tl.where(K3 == j, M, 0.0), 2) * _col(x, C == j)[:, None]
    return acc


@_device_fn
def _cholesky(A, N, C, R3, K3, BLOCK_B: tl.constexpr):
    # lower_bfgs.h cholesky of the interior block of A, right-looking: each entry receives the C++ inner products'
    # subtractions in the same order. Returns the factor (lower triangle; the rest is scratch) and whether every
    # pivot was positive.
    ok = tl.zeros([BLOCK_B], dtype=tl.int32) == 0
    for k in range(1, N):
        col = _rsum(tl.where(K3 == k, A, 0.0), 2)
        piv = _col(col, C == k)
        ok = ok & (piv > 0.0)
        dk = tl.sqrt(tl.where(piv > 0.0, piv, 1.0))[:, None]
        # (a lane whose factorisation failed stops changing: its factor is never used)
        lk = tl.where(ok[:, None], tl.where(C == k, dk, tl.where(C > k, col / dk, 0.0)), 0.0)
        A = tl.where((R3 > k) & (K3 > k), A - lk[:, :, None] * lk[:, None, :], A)
        A = tl.where(K3 == k, lk[:, :, None], A)
    return A, ok


@_device_fn
def _cholesky_solve(L, b, N, C, K3):
    # lower_bfgs.h cholesky_solve: forward substitution by columns, back substitution by rows, every entry summed
    # in the C++ order (L is zero from point N on)
    for k in range(1, N):
        sel = C == k
        lk = _rsum(tl.where(K3 == k, L, 0.0), 2)
        yk = (_col(b, sel) / _col(lk, sel))[:, None]
        b = tl.where(sel, yk, tl.where(C > k, b - lk * yk, b))
    for kk in range(1, N):
        sel = C == N - kk
        li = _rsum(tl.where(K3 == N - kk, L, 0.0), 2)
        terms = tl.where(C == 0, _col(b, sel)[:, None], tl.where(C > N - kk, -(li * b), 0.0))
        b = tl.where(sel, (_colsum(terms, C, N) / _col(li, sel))[:, None], b)
    return b


@_device_fn
def _jacobi_extreme(A, need, N, C, R3, K3, interior, inner):
    # lower_bfgs.h jacobi_extreme_eigenvalues for the lanes in need: Jacobi sweeps over the interior block of the
    # symmetric A until the off-diagonal mass is below 1e-32 of the diagonal's, then its extreme diagonal entries.
    # Each rotation is the C++ one (its angle, columns then rows), but a sweep takes the pairs in round-robin
    # order, n / 2 disjoint pairs per round (n = N - 1 interior points, one idle when n is odd), so that a sweep
    # is n - 1 whole-tile rounds instead of n (n - 1) / 2 rotations in turn; the eigenvalues agree to rounding.
    n = N - 1
    m = n + n % 2  # players of the round robin (point i + 1 is player i)
    player = tl.where(interior, C - 1, 0)  # >= 0, so that % below means the same compiled (C) and interpreted
    run = need
    sweep = 0
    while (sweep < 100) & (_rmax(run.to(tl.int32), 0) > 0):
        dg = _rsum(tl.where(R3 == K3, A, 0.0), 2)
        dsq = _rsum(tl.where(interior, dg * dg, 0.0), 1)
        osq = _rsum(_rsum(tl.where(inner & (K3 > R3), A * A, 0.0), 2), 1)
        run = run & ~((osq <= 1e-32 * dsq) | (osq == 0.0))
        for rnd in range(0, m - 1):
            # round rnd pairs player m - 1 with rnd and every other i with (2 rnd - i) mod (m - 1)
            other = (2 * rnd - player + 2 * (m - 1)) % (m - 1)
            mate = tl.where(player == rnd, m - 1, tl.where(player == m - 1, rnd, other))
            P = tl.where(interior & (mate < n), mate + 1, C)  # [1, NP] partner point (itself: not rotated)
            lo = C < P                                        # the pair's first point, the C++ p
            dg = _rsum(tl.where(R3 == K3, A, 0.0), 2)
            dgp = tl.gather(dg, tl.broadcast_to(P, dg.shape), 1)
            # A[p][q] for both points of a pair
            apq = tl.where(lo, _rsum(tl.where(K3 == P[:, :, None], A, 0.0), 2),
                           _rsum(tl.where(R3 == P[:, None, :], A, 0.0), 1))
            rot = run[:, None] & (P != C) & (apq != 0.0)
            theta = (tl.where(lo, dgp, dg) - tl.where(lo, dg, dgp)) / (2.0 * tl.where(rot, apq, 1.0))
            # (|theta| capped inside the root: where theta^2 overflows, tt is ~0 either way)
            th = tl.minimum(tl.abs(theta), 1e150)
            tt = _sign(theta) / (tl.abs(theta) + tl.sqrt(th * th + 1.0))
            tn = tl.where(theta == 0.0, 1.0, tt)
            cs = 1.0 / tl.sqrt(tn * tn + 1.0)
            sn = tn * cs
            # columns p, q: cs a_p - sn a_q, sn a_p + cs a_q; then rows p, q alike
            Ag = tl.gather(A, tl.broadcast_to(P[:, None, :], A.shape), 2)
            c3 = cs[:, None, :]
            s3 = sn[:, None, :]
            A = tl.where(rot[:, None, :], tl.where(lo[:, None, :], c3 * A - s3 * Ag, s3 * Ag + c3 * A), A)
            Ag = tl.gather(A, tl.broadcast_to(P[:, :, None], A.shape), 1)
            c3 = cs[:, :, None]
            s3 = sn[:, :, None]
            A = tl.where(rot[:, :, None], tl.where(lo[:, :, None], c3 * A - s3 * Ag, s3 * Ag + c3 * A), A)
        sweep += 1
    dg = _rsum(tl.where(R3 == K3, A, 0.0), 2)
    return _rmin(tl.where(interior, dg, float("inf")), 1), _rmax(tl.where(interior, dg, -float("inf")), 1)


@_device_fn
def _reduced_dense(Hp, v, free, start, bid, C, N, R3, K3, inner, BLOCK_B: tl.constexpr, NP: tl.constexpr):
    # lower_bfgs.h's reduced system over the free blocks, each block at the row and column of its first point:
    # R[a][b] = sum of Hp over the points of blocks a and b, rhs[a] = -sum of v over block a. The other interior
    # rows and columns are the identity's (rhs 0), which leaves the Cholesky of the free blocks' system as it is:
    # they enter it as exact zeros. The sums run along each block in point order, over the columns, then the rows.
    fr = free.to(tl.int32)
    st = start.to(tl.int32)
    acc = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    Q = tl.zeros([BLOCK_B, NP, NP], dtype=tl.float64)
    for j in range(1, N):
        sel = C == j
        col = _rsum(tl.where(K3 == j, Hp, 0.0), 2)
        acc = tl.where((_col(st, sel) != 0)[:, None], col, acc + col)
        put = (K3 == _col(bid, sel)[:, None, None]) & (_col(fr, sel) != 0)[:, None, None]
        Q = tl.where(put, acc[:, :, None], Q)
    acc = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    acc_b = tl.zeros([BLOCK_B], dtype=tl.float64)
    R = tl.zeros([BLOCK_B, NP, NP], dtype=tl.float64)
    rhs = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    for i in range(1, N):
        sel = C == i
        row = _rsum(tl.where(R3 == i, Q, 0.0), 1)
        new = _col(st, sel) != 0
        acc = tl.where(new[:, None], row, acc + row)
        vi = _col(v, sel)
        acc_b = tl.where(new, -vi, acc_b - vi)
        bi = _col(bid, sel)
        fi = _col(fr, sel) != 0
        R = tl.where((R3 == bi[:, None, None]) & fi[:, None, None], acc[:, None, :], R)
        rhs = tl.where((C == bi[:, None]) & fi[:, None], acc_b[:, None], rhs)
    both = (st[:, :, None] != 0) & (st[:, None, :] != 0)
    return tl.where(both, R, tl.where(inner & (R3 == K3), 1.0, tl.zeros_like(R))), rhs


# ------------------------------------------------------------------------------------------ lower level: kernels
@_kernel("B", "N", "n_tab", "n_bits", "maxiter")
def _lower_solve_kernel(psi_ptr,    # [B, 3] (rho, t_eps, T_max)
                        prm_ptr,    # [7] fa, fb, gap d, d_min, gamma, p, xtol (fa, fb: schedule_code's a, b;
                                    #     for FAMILY 0 the table's first and last entries)
                        tab_ptr,    # [n_tab] 0.5 log(alphas_cumprod) (FAMILY 0), else a dummy [1]
                        t_ptr,      # [B, N+1] out, descending
                        lam_ptr,    # [B, N+1] out
                        obj_ptr,    # [B] out
                        pen_ptr,    # [B] out
                        iters_ptr,  # [B] int64 out
                        feas_ptr,   # [B] int8 out
                        B, N, n_tab, n_bits, maxiter,
                        FAMILY: tl.constexpr, KIND: tl.constexpr, INIT: tl.constexpr,
                        BLOCK_B: tl.constexpr, NP: tl.constexpr):
    # State layout: every per-candidate row lives in registers as a [BLOCK_B, NP] tile (lane = candidate, column =
    # point, NP >= N + 1). No global scratch: N is at most a few dozen here, so a row fits in registers, and the
    # elementwise work (schedule map, MEP and its derivatives, trial points of the line search) runs on whole tiles.
    # The working set is kept as each point's block start (bid) and block end (eid): adding or dropping one
    # constraint updates them with two masked selects, and the offsets and multipliers (sums within blocks) become
    # differences of row prefix sums gathered at the block ends, equal to lower_row.h's running sums up to
    # rounding. Only the genuinely sequential recurrences (Sturm count, Thomas sweeps) walk the columns, one
    # column per step.
    lanes = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    lane_ok = lanes < B
    C = tl.arange(0, NP)[None, :]
    nxt = tl.broadcast_to(tl.minimum(C + 1, NP - 1), [BLOCK_B, NP])
    prv = tl.broadcast_to(tl.maximum(C - 1, 0), [BLOCK_B, NP])
    Cb = tl.broadcast_to(C, [BLOCK_B, NP])
    interior = (C >= 1) & (C < N)
    fa, fb, d, d_min, gamma, c, xtol = _lower_scalars(prm_ptr)
    t, feasible = _start(psi_ptr, lanes, lane_ok, fa, fb, d, tab_ptr, n_tab, n_bits, C, N, nxt, FAMILY, INIT)
    t_start = t

    # ---- active-set Newton in t
    active = lane_ok & feasible & (N > 1)
    iters = tl.zeros([BLOCK_B], dtype=tl.int32)
    bid = Cb  # first point of each point's block (a block = points glued by active constraints)
    eid = Cb  # last point of each point's block
    it = 0
    while (it < maxiter) & (_rmax(active.to(tl.int32), 0) > 0):
        # objective, gradient and Hessian in t (reference_lower._Problem.full)
        lam, d1, d2 = _lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY, True)
        f, gl, hd, ho = _mep_tile(lam, c, C, N, nxt, prv, KIND, True)
        g = tl.where(interior, gl * d1, 0.0)
        Hd = tl.where(interior, hd * d1 * d1 + gl * d2, 0.0)
        Ho = tl.where((C >= 1) & (C < N - 1), ho * d1 * tl.gather(d1, nxt, 1), 0.0)  # couples j and j+1
        HoP = tl.gather(Ho, prv, 1)                                                 # couples j-1 and j
        gmax = _rmax(tl.abs(g), 1)
        gersh = _rmax(tl.where(interior, tl.abs(Hd) + (tl.abs(HoP) + tl.abs(Ho)), 0.0), 1)

        slack, wk, free, off = _blocks(t, bid, d, C, N, nxt, prv, True)
        # reduced system over the free blocks: v = g + H off, contributions of the free points
        v = g + Hd * off + HoP * tl.gather(off, prv, 1) + Ho * tl.gather(off, nxt, 1)
        E2 = HoP * HoP
        ENF = free & (eid == C)
        free_next = tl.gather(free.to(tl.int32), nxt, 1) != 0
        VF = tl.where(free, v, 0.0)
        # Hd + 2 Ho where the next point is in the same block (lower_row.h adds the two in turn)
        HG = tl.where(free, Hd + tl.where(wk & (C + 1 < N), 2.0 * Ho, 0.0), 0.0)
        CPL = tl.where(free & (C + 1 < N) & ~wk & free_next, Ho, 0.0)  # coupling to the next free block
        ENFi = ENF.to(tl.int32)
        RDP, RBP, nneg = _reduced_forward(Hd, E2, VF, HG, ENFi, CPL, 1e-8 * gersh, C, N, BLOCK_B, NP, True)
        # H not safely positive definite (an eigenvalue below 1e-8 x a bound of max|eig|): shift it, redo the sweep
        shift = active & (nneg > 0)
        if _rmax(shift.to(tl.int32), 0) > 0:
            tau = _shift_of(Hd, HoP, Ho, E2, interior, shift, N - 1, C, N, BLOCK_B)
            Hd = tl.where(interior, Hd + tau[:, None], Hd)
            v = g + Hd * off + HoP * tl.gather(off, prv, 1) + Ho * tl.gather(off, nxt, 1)
            VF = tl.where(free, v, 0.0)
            HG = tl.where(free, Hd + tl.where(wk & (C + 1 < N), 2.0 * Ho, 0.0), 0.0)
            RDP2, RBP2, _n = _reduced_forward(Hd, E2, VF, HG, ENFi, CPL, 0.0 * gersh, C, N, BLOCK_B, NP, False)
            RDP = tl.where(shift[:, None], RDP2, RDP)
            RBP = tl.where(shift[:, None], RBP2, RBP)
        # Thomas back substitution, walking the points upwards. Away from the blocks' last points the coefficients
        # are (rhs 0, coupling -1, pivot 1), which hand the solution on unchanged, (0 + u) / 1 = u: every free point
        # gets its block's solution
        RBPb = tl.where(ENF, RBP, 0.0)
        CPLb = tl.where(ENF, CPL, -1.0)
        RDPb = tl.where(ENF, RDP, 1.0)
        u_next = tl.zeros([BLOCK_B], dtype=tl.float64)
        U = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
        for jj in range(1, N):
            sel = C == (N - jj)
            u_next = (_col(RBPb, sel) - _col(CPLb, sel) * u_next) / _col(RDPb, sel)
            U = tl.where(sel, u_next[:, None], U)
        dt = tl.where(interior, off + tl.where(free, U, 0.0), 0.0)
        r = tl.where(interior, g + Hd * dt + HoP * tl.gather(dt, prv, 1) + Ho * tl.gather(dt, nxt, 1), 0.0)
        t, bid, eid, active, iters = _active_set_update(t, f, g, dt, r, slack, wk, bid, eid, gmax, active, iters, it,
                                                        xtol, c, 0, fa, fb, tab_ptr, n_tab, C, N, nxt,
                                                        BLOCK_B, NP, FAMILY, KIND, 0, False, True)
        it += 1
    iters = tl.where(active, maxiter, iters)
    _store_lower(t, t_start, iters, feasible, lanes, lane_ok, c, 0, fa, fb, tab_ptr, n_tab, d_min, gamma,
                 C, N, nxt, t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr, NP, FAMILY, KIND, 0)


@_kernel("B", "N", "n_tab", "n_bits", "maxiter", "TAU")
def _lower_dmn_kernel(psi_ptr, prm_ptr, tab_ptr,  # as _lower_solve_kernel's
                      t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr,
                      B, N, n_tab, n_bits, maxiter, TAU,  # TAU: DM-NonUniform truncNum
                      FAMILY: tl.constexpr, KIND: tl.constexpr, INIT: tl.constexpr,
                      BLOCK_B: tl.constexpr, NP: tl.constexpr, BATCH: tl.constexpr):
    # lower_bfgs.h lower_row_bfgs: the MEP kernel's start, blocks, multipliers, ratio test, line search and
    # outputs, with the DM-NonUniform objective (`_dmn_tile`) and its BFGS matrix in t. That matrix is dense: it
    # lives as a [BLOCK_B, NP, NP] tile (rows and columns = points, zero outside the interior), and the working-set
    # step is the dense reduced system over the free blocks solved by Cholesky; the loops over its columns are the
    # only sequential parts.
    lanes = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    lane_ok = lanes < B
    C = tl.arange(0, NP)[None, :]
    R3 = tl.arange(0, NP)[None, :, None]
    K3 = tl.arange(0, NP)[None, None, :]
    nxt = tl.broadcast_to(tl.minimum(C + 1, NP - 1), [BLOCK_B, NP])
    prv = tl.broadcast_to(tl.maximum(C - 1, 0), [BLOCK_B, NP])
    Cb = tl.broadcast_to(C, [BLOCK_B, NP])
    interior = (C >= 1) & (C < N)
    inner = (R3 >= 1) & (R3 < N) & (K3 >= 1) & (K3 < N)
    diag = inner & (R3 == K3)
    fa, fb, d, d_min, gamma, c, xtol = _lower_scalars(prm_ptr)
    t, feasible = _start(psi_ptr, lanes, lane_ok, fa, fb, d, tab_ptr, n_tab, n_bits, C, N, nxt, FAMILY, INIT)
    t_start = t

    active = lane_ok & feasible & (N > 1)
    iters = tl.zeros([BLOCK_B], dtype=tl.int32)
    bid = Cb
    eid = Cb
    H = tl.zeros([BLOCK_B, NP, NP], dtype=tl.float64)
    t_prev = t
    g_prev = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    zeros = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    ones = tl.full([BLOCK_B, NP], 1.0, tl.float64)
    it = 0
    while (it < maxiter) & (_rmax(active.to(tl.int32), 0) > 0):
        lam, d1, _d2 = _lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY, True)
        f, gl = _dmn_tile(lam, c, TAU, C, N, NP, KIND, True, False)
        g = tl.where(interior, gl * d1, 0.0)
        gmax = _rmax(tl.abs(g), 1)
        if it == 0:  # scaled identity: the first step moves no point by more than 0.02 in t
            H = tl.where(diag, (gmax / 0.02)[:, None, None], 0.0)
        else:  # BFGS update with the last step, where its curvature is positive
            s = tl.where(interior, t - t_prev, 0.0)
            y = tl.where(interior, g - g_prev, 0.0)
            sy = _colsum(s * y, C, N)
            upd = sy > 1e-12 * tl.sqrt(_colsum(s * s, C, N)) * tl.sqrt(_colsum(y * y, C, N))
            hs = _rowdot(H, s, zeros, N, C, K3)
            shs = _colsum(s * hs, C, N)
            sy = tl.where(upd, sy, 1.0)[:, None, None]
            shs = tl.where(upd, shs, 1.0)[:, None, None]
            H = tl.where(upd[:, None, None] & inner,
                         H + (y[:, :, None] * y[:, None, :] / sy - hs[:, :, None] * hs[:, None, :] / shs), H)
        t_prev = t
        g_prev = g
        # positive-definite copy: shift 0 when H - 1e-8 (Gershgorin bound) has a Cholesky factor, else
        # max(0, 1e-8 max|eig| - min eig) from Jacobi's extreme eigenvalues
        gersh = _rmax(tl.where(interior, _rowdot(tl.abs(H), ones, zeros, N, C, K3), 0.0), 1)
        _l, pd = _cholesky(tl.where(diag, H - (1e-8 * gersh)[:, None, None], H), N, C, R3, K3, BLOCK_B)
        need = active & ~pd
        shift = tl.zeros([BLOCK_B], dtype=tl.float64)
        if _rmax(need.to(tl.int32), 0) > 0:
            ev_min, ev_max = _jacobi_extreme(H, need, N, C, R3, K3, interior, inner)
            scale = tl.maximum(tl.maximum(tl.abs(ev_min), tl.abs(ev_max)), 1e-300)
            shift = tl.where(need, tl.maximum(0.0, 1e-8 * scale - ev_min), 0.0)
        Hp = tl.where(diag, H + shift[:, None, None], H)

        # the working-set step: dt = off + (its free block's solution of the reduced system)
        slack, wk, free, off = _blocks(t, bid, d, C, N, nxt, prv, False)
        start = free & (bid == Cb)
        Rm, rhs = _reduced_dense(Hp, _rowdot(Hp, off, g, N, C, K3), free, start, bid, C, N, R3, K3, inner, BLOCK_B,
                                 NP)
        Lm, solvable = _cholesky(Rm, N, C, R3, K3, BLOCK_B)
        U = _cholesky_solve(Lm, rhs, N, C, K3)
        dt = tl.where(interior, off + tl.where(free, tl.gather(U, bid, 1), 0.0), 0.0)
        r = tl.where(interior, _rowdot(Hp, dt, g, N, C, K3), 0.0)
        # a reduced system without a factor cannot happen for a positive-definite Hp: stop where we are
        stop = active & ~solvable
        iters = tl.where(stop, it + 1, iters)
        active = active & ~stop
        t, bid, eid, active, iters = _active_set_update(t, f, g, dt, r, slack, wk, bid, eid, gmax, active, iters, it,
                                                        xtol, c, TAU, fa, fb, tab_ptr, n_tab, C, N, nxt,
                                                        BLOCK_B, NP, FAMILY, KIND, 1, BATCH, False)
        it += 1
    iters = tl.where(active, maxiter, iters)
    _store_lower(t, t_start, iters, feasible, lanes, lane_ok, c, TAU, fa, fb, tab_ptr, n_tab, d_min, gamma,
                 C, N, nxt, t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr, NP, FAMILY, KIND, 1)


# ------------------------------------------------------------------------------------------------ host wrappers
def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _mep_block(b: int) -> int:
    # The interpreter costs tens of microseconds per operation whatever the tile, so it wants one or two huge
    # programs; on a GPU one lane per thread of a 4-warp program.
    if _INTERPRETED:
        return min(4096, max(16, triton.next_power_of_2(max(b, 1))))
    return 128


def _lower_block(b: int, np_: int, dense: bool = False) -> int:
    if _INTERPRETED:
        cap = 262144 // (np_ * np_) if dense else 16384 // np_
        return min(max(16, triton.next_power_of_2(max(b, 1))), max(64, cap))
    # some thirty [BLOCK_B, NP] float64 tiles are live in the Newton loop. Compiled for sm_90 (ptxas -v, 4 warps),
    # 2 elements of each per thread fit in registers (16 x 16: 235 registers, no spills) and 4 spill: keep
    # BLOCK_B * NP <= 256. Not timed on hardware.
    # The DM-NonUniform kernel (dense) also holds a handful of [BLOCK_B, NP, NP] tiles: the same budget per
    # element, one candidate per program from NP = 16 on. Compiled for sm_90 (Triton's ptxas, 4 warps, line
    # search in turn): 162-247 registers and at most 88 bytes of stack for NP = 4 ... 32, 1 KiB of spills at
    # NP = 64 (N > 31). Not timed on hardware.
    if dense:
        return max(1, min(16, 256 // (np_ * np_)))
    return max(1, min(16, 256 // np_))


def _dmn_block(b: int, np_: int) -> int:
    # rows are [BLOCK_B, NP] tiles, as in the lower level
    if _INTERPRETED:
        return min(_mep_block(b), max(16, 262144 // np_))
    return max(1, min(128, 256 // np_))


def mep_and_grad(lambdas: np.ndarray, kind: int, p: float = 2.0, hessian: bool = False):
    """MEP value, gradient (and tridiagonal Hessian) for ``lambdas  # [B, N+1]``; the contract of
    `hso.fast.reference.mep_and_grad`, float64 numpy in and out.

    Raises:
        ValueError: not 2-D, fewer than 2 points, or an unknown lambda-space kind.
    """
    lam = np.require(lambdas, dtype=np.float64, requirements=["C", "W"])  # torch wants writable memory
    if lam.ndim != 2:
        raise ValueError(f"lambdas must be 2-D [B, N+1], got shape {lam.shape}")
    if lam.shape[1] < 2:
        raise ValueError(f"lambdas need at least 2 points per row, got {lam.shape[1]}")
    if int(kind) not in _KINDS:
        raise ValueError(f"unknown lambda-space kind {kind}")
    bsz, n1 = lam.shape
    dev = _device()
    x = torch.from_numpy(lam).to(dev)
    value = torch.empty(bsz, dtype=torch.float64, device=dev)
    grad = torch.empty_like(x)
    diag = torch.empty_like(x) if hessian else grad
    off = torch.empty((bsz, n1 - 1), dtype=torch.float64, device=dev) if hessian else grad
    if bsz > 0:
        prm = torch.tensor([float(p)], dtype=torch.float64, device=dev)
        block = _mep_block(bsz)
        _mep_fwd_kernel[(triton.cdiv(bsz, block),)](x, prm, value, grad, diag, off, bsz, n1, KIND=int(kind),
                                                     HESSIAN=bool(hessian), BLOCK_B=block, num_warps=4)
    if not hessian:
        return value.cpu().numpy(), grad.cpu().numpy()
    return value.cpu().numpy(), grad.cpu().numpy(), diag.cpu().numpy(), off.cpu().numpy()


def dmn_and_grad(lambdas: np.ndarray, kind: int, p: float = 2.0, trunc_num: int | None = None):
    """DM-NonUniform value and gradient for ``lambdas  # [B, N+1]``; the contract of
    `hso.fast.reference_dmn.dmn_and_grad`, float64 numpy in and out.

    Raises:
        ValueError: not 2-D, fewer than 2 points, or an unknown lambda-space kind.
    """

    lam = np.require(lambdas, dtype=np.float64, requirements=["C", "W"])
    if lam.ndim != 2 or lam.shape[1] < 2:
        raise ValueError(f"lambdas must have shape [B, N+1] with N >= 1, got {lam.shape}")
    if int(kind) not in _KINDS:
        raise ValueError(f"unknown lambda-space kind {kind}")
    bsz, n1 = lam.shape
    tau = resolve_trunc_num(n1 - 1, trunc_num)
    dev = _device()
    x = torch.from_numpy(lam).to(dev)
    value = torch.empty(bsz, dtype=torch.float64, device=dev)
    grad = torch.empty_like(x)
    if bsz > 0:
        prm = torch.tensor([float(p)], dtype=torch.float64, device=dev)
        np_ = triton.next_power_of_2(n1)
        block = _dmn_block(bsz, np_)
        _dmn_fwd_kernel[(triton.cdiv(bsz, block),)](x, prm, value, grad, bsz, n1, tau, KIND=int(kind), BLOCK_B=block,
                                                     NP=np_, num_warps=4)
    return value.cpu().numpy(), grad.cpu().numpy()


def lower_solve(psi: np.ndarray, schedule: NoiseSchedule, spec: LowerSpec) -> LowerResult:
    """The fused lower level (MEP or DM-NonUniform) for ``psi  # [B, 3]``; the contract of
    `hso.fast.reference_lower.lower_solve` (validated by `hso.fast.lower_solve`)."""

    if spec.init not in INIT_CODES:
        raise ValueError(f"unknown init family {spec.init!r}; known: {', '.join(INIT_CODES)}")
    if spec.objective not in ("mep", "dmn"):
        raise ValueError(f"unknown objective {spec.objective!r}; the Triton lower level takes 'mep' and 'dmn'")
    fam, fa, fb, table = schedule_code(schedule)
    if fam == 0:  # the discrete table's end values, which interpolation clamps to
        fa, fb = float(table[0]), float(table[-1])
    n_int = int(spec.n_intervals)
    p = np.require(psi, dtype=np.float64, requirements=["C", "W"])
    bsz = p.shape[0]
    dev = _device()
    tab = np.array(table, dtype=np.float64) if fam == 0 else np.zeros(1)  # a writable copy for torch
    prm = np.array([fa, fb, spec.gap, spec.d_min, spec.gamma, spec.p, spec.xtol], dtype=np.float64)
    t = torch.empty((bsz, n_int + 1), dtype=torch.float64, device=dev)
    lam = torch.empty_like(t)
    obj = torch.empty(bsz, dtype=torch.float64, device=dev)
    pen = torch.empty_like(obj)
    iters = torch.empty(bsz, dtype=torch.int64, device=dev)
    feas = torch.empty(bsz, dtype=torch.int8, device=dev)
    if bsz > 0:
        np_ = triton.next_power_of_2(n_int + 1)
        dense = spec.objective == "dmn"
        block = _lower_block(bsz, np_, dense)
        args = (torch.from_numpy(p).to(dev), torch.from_numpy(prm).to(dev), torch.from_numpy(tab).to(dev),
                t, lam, obj, pen, iters, feas, bsz, n_int, tab.size, int(tab.size).bit_length(), int(spec.maxiter))
        meta = dict(FAMILY=int(fam), KIND=int(schedule.kind), INIT=INIT_CODES[spec.init], BLOCK_B=block, NP=np_,
                    num_warps=4)
        grid = (triton.cdiv(bsz, block),)
        if dense:
            # the batched line search saves the interpreter most of its calls; compiled, its 32 trial rows per
            # candidate would spill to local memory, and halving in turn accepts the same step
            _lower_dmn_kernel[grid](*args, resolve_trunc_num(n_int, spec.trunc_num), BATCH=_INTERPRETED, **meta)
        else:
            _lower_solve_kernel[grid](*args, **meta)
    obj_np, pen_np = obj.cpu().numpy(), pen.cpu().numpy()
    return LowerResult(t=t.cpu().numpy(), lambdas=lam.cpu().numpy(), objective=obj_np, penalty=pen_np,
                       fitness=obj_np + pen_np, iters=iters.cpu().numpy(), feasible=feas.cpu().numpy() != 0)
