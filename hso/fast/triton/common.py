"""What every Triton kernel shares (csrc/common's role): the codes as constexprs, the compile-or-interpret
decorators, reductions and the accurate elementwise math built from Triton's exp/log/sqrt/sin/cos.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

from ..codes import FAMILY_CODES, INIT_CODES, KIND_CODES, OBJECTIVE_CODES

__all__ = ["EDM", "EDM_RHO", "FLOW", "INTERPRETED", "KINDS", "KNOBS", "LOGSNR", "MAX_COMBINE", "MEP", "MIN_COMBINE",
           "SUM_COMBINE", "TIME_UNIFORM", "VE", "VP", "VP_LINEAR", "VP_TABLE", "acos01", "device_fn", "expm1",
           "interval", "kernel", "log1p", "q_derivs", "rcumsum", "rmax", "rmin", "rsum", "sinh_cosh", "softplus",
           "tanh"]


# the codes the kernels compare their constexpr arguments with (hso.fast.codes, shared with csrc/)
KINDS = tuple(KIND_CODES.values())
VP, VE = tl.constexpr(KIND_CODES["vp"]), tl.constexpr(KIND_CODES["ve"])
VP_TABLE, VP_LINEAR = tl.constexpr(FAMILY_CODES["vp_discrete"]), tl.constexpr(FAMILY_CODES["vp_linear"])
EDM, FLOW = tl.constexpr(FAMILY_CODES["edm"]), tl.constexpr(FAMILY_CODES["flow"])
EDM_RHO, LOGSNR = tl.constexpr(INIT_CODES["edm_rho"]), tl.constexpr(INIT_CODES["logSNR"])
TIME_UNIFORM = tl.constexpr(INIT_CODES["time_uniform"])
MEP = tl.constexpr(OBJECTIVE_CODES["mep"])

# Triton decides at decoration time whether it compiles or interprets (TRITON_INTERPRET).
KNOBS = getattr(triton, "knobs", None)  # Triton >= 3.3; before that the flag was read from the environment
INTERPRETED = bool(KNOBS.runtime.interpret if KNOBS is not None else os.environ.get("TRITON_INTERPRET") == "1")


def device_fn(fn):
    """``@triton.jit`` for a device helper; the plain function under the interpreter.

    The interpreter re-patches ``triton.language`` on every call of a jitted helper (~0.7 ms, whatever the tile):
    with the Newton loop calling helpers thousands of times per launch that would be most of the run time. A plain
    function called from an interpreted kernel runs on the kernel's patched ``triton.language`` with the same
    semantics (the interpreter's only source rewrite, of chained comparisons, is not needed by these helpers), so
    nothing but the overhead changes; compiled, the helpers are ordinary ``@triton.jit`` functions.
    """
    return fn if INTERPRETED else triton.jit(fn)


def kernel(*int_args: str):
    """``@triton.jit`` for a kernel whose integer arguments (sizes, counts, strides, iteration caps) are never
    specialised on their values.

    Compiled, Triton specialises an integer argument equal to 1 into a Python constant (``N.to(tl.float64)`` then
    fails: an int has no ``to``) and one divisible by 16 into an argument with a divisibility hint: a separate
    compilation for each case (some 15 s for the DM-NonUniform lower level), each a code path of its own that the
    common values never exercise. These kernels use their integers as loop bounds, masks and an output row stride,
    where alignment hints buy nothing worth a compilation, so ``do_not_specialize`` keeps them plain int32 at run
    time: one compilation per constexpr set serves every N and B, N = 1 included. (The alternative, writing every
    use as ``tl.full([], N, tl.int32)``, would have to be repeated in each helper and remembered in each new one.
    The lower levels load their problems' integers from a buffer, which is never specialised either:
    `lower_row.program_problem`.) tests/test_triton.py compiles every kernel as the launcher specialises it, every
    int argument at 1, 16 and generic values.
    """
    return triton.jit(do_not_specialize=int_args)


# ------------------------------------------------------------------------------------------------- reductions
# tl.sum / tl.max / tl.min / tl.cumsum are tl.reduce / tl.associative_scan with these combine functions (no dtype
# promotion is involved for float64, int32). Calling the reductions directly skips a jitted wrapper that costs the
# interpreter ~0.8 ms per call, and the interpreter still recognises the combine functions and runs numpy's
# reductions: inside the per-column loops of the lower level that wrapper would otherwise be most of the run time.
SUM_COMBINE = tl.standard._sum_combine
MAX_COMBINE = tl.standard._elementwise_max
MIN_COMBINE = tl.standard._elementwise_min


@device_fn
def rsum(x, axis: tl.constexpr):
    return tl.reduce(x, axis, SUM_COMBINE)


@device_fn
def rmax(x, axis: tl.constexpr):
    return tl.reduce(x, axis, MAX_COMBINE)


@device_fn
def rmin(x, axis: tl.constexpr):
    return tl.reduce(x, axis, MIN_COMBINE)


@device_fn
def rcumsum(x, axis: tl.constexpr):
    return tl.associative_scan(x, axis, SUM_COMBINE)


# ----------------------------------------------------------------------------------------------- elementwise math
@device_fn
def expm1(x):
    # Kahan: expm1(x) = (u - 1) x / log(u) with u = fl(e^x); the rounding of u cancels to first order, so this is
    # accurate to a few ulps where e^x - 1 would lose all digits (x -> 0).
    u = tl.exp(x)
    one = u == 1.0
    r = (u - 1.0) * (x / tl.log(tl.where(one, 2.0, u)))
    r = tl.where(x > 709.0, u, r)     # e^x overflows: inf, as numpy
    r = tl.where(x < -40.0, -1.0, r)  # e^x - 1 rounds to -1
    return tl.where(one, x, r)


@device_fn
def log1p(y):
    # Higham: log1p(y) = log(w) y / (w - 1) with w = fl(1 + y), accurate to a few ulps for y > -1.
    w = 1.0 + y
    one = w == 1.0
    r = tl.log(w) * (y / tl.where(one, 1.0, w - 1.0))
    return tl.where(one, y, r)


@device_fn
def softplus(x):
    # log(1 + e^x) in numpy.logaddexp(0, x)'s branches: no overflow for large x, log1p's accuracy for x << 0
    return tl.maximum(x, 0.0) + log1p(tl.exp(-tl.abs(x)))


@device_fn
def tanh(x):
    # E / (E + 2) with E = expm1(2|x|): relative accuracy everywhere; tanh(20) already rounds to 1
    e = expm1(2.0 * tl.minimum(tl.abs(x), 20.0))
    th = e / (e + 2.0)
    return tl.where(x < 0.0, -th, th)


@device_fn
def sinh_cosh(x):
    # from E = expm1(|x|): sinh = (E + E / (E + 1)) / 2 (two positive terms, no cancellation for small gaps),
    # cosh = (E + 1 + 1 / (E + 1)) / 2
    e = expm1(tl.abs(x))
    ec = tl.minimum(e, 1e300)  # keeps inf / inf out of sinh when e^|x| overflows
    sh = 0.5 * (e + ec / (ec + 1.0))
    ch = 0.5 * ((e + 1.0) + 1.0 / (e + 1.0))
    return tl.where(x < 0.0, -sh, sh), ch


@device_fn
def acos01(y):
    # acos(y) for y in [0, 1] as 2 asin(z), z = sqrt((1 - y) / 2) <= 1/sqrt(2) (1 - y is exact for y >= 1/2):
    # a 4-term series start, then Newton on sin(phi) = z (error 1.5e-3 -> 1e-6 -> 5e-13 -> rounding)
    z = tl.sqrt(0.5 * (1.0 - y))
    z2 = z * z
    phi = z * (1.0 + z2 * (1.0 / 6.0 + z2 * (3.0 / 40.0 + z2 * (5.0 / 112.0))))
    for _ in tl.static_range(3):
        phi = phi - (tl.sin(phi) - z) / tl.cos(phi)
    return 2.0 * phi


@device_fn
def q_derivs(m, c, KIND: tl.constexpr):
    # q = (p - 1) log sigma(lambda) and its first two derivatives at m (reference.q_derivs; c = p - 1)
    if KIND == VP:
        s = 0.5 * (1.0 + tanh(m))  # sigmoid(2m)
        q = -0.5 * c * softplus(2.0 * m)
        q1 = -c * s
        q2 = -2.0 * c * s * (1.0 - s)
    elif KIND == VE:
        q = -c * m
        q1 = tl.full(m.shape, 0.0, tl.float64) - c
        q2 = tl.full(m.shape, 0.0, tl.float64)
    else:
        s = 0.5 * (1.0 + tanh(0.5 * m))  # sigmoid(m)
        q = -c * softplus(m)
        q1 = -c * s
        q2 = -c * s * (1.0 - s)
    return q, q1, q2


@device_fn
def interval(a, b, c, KIND: tl.constexpr):
    # the shared factors of one MEP term (reference docstring: S, C, E, Q1, Q2)
    q, q1, q2 = q_derivs(0.5 * (a + b), c, KIND)
    sh, ch = sinh_cosh(0.5 * (b - a))
    return sh, ch, tl.exp(q), q1, q2
