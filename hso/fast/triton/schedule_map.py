"""The noise-schedule maps t <-> lambda of every family on the device (the C++ `schedule_map.h`).
"""
from __future__ import annotations

import triton.language as tl

from .common import EDM, FLOW, VP_LINEAR, VP_TABLE, acos01, device_fn, expm1, log1p, softplus

__all__ = ["grid_point", "lambda_derivs", "t_of_lambda", "table_log_alpha"]


@device_fn
def grid_point(k, n_f):
    # grid point k of the discrete table, exactly numpy's (arange(n) + 1.0) / n
    return (k.to(tl.float64) + 1.0) / n_f


@device_fn
def table_log_alpha(t, tab_ptr, n_tab, first, last):
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


@device_fn
def lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY: tl.constexpr, NEED_D: tl.constexpr):
    # (lambda, dlambda/dt, d2lambda/dt2) of hso.schedules.NoiseSchedule.lambda_derivs; fa/fb as schedule_code gives
    # them. Without NEED_D the derivatives are not computed (the second and third results are then lambda).
    if FAMILY == EDM:  # EDM: fa = log sigma_min, fb = log sigma_max
        lam = -(fa + t * (fb - fa))
        d1 = tl.full(t.shape, 0.0, tl.float64) - (fb - fa)
        d2 = tl.full(t.shape, 0.0, tl.float64)
    elif FAMILY == FLOW:  # flow: fa = shift
        lam = log1p(-t) - tl.log(fa * t)
        d1 = lam
        d2 = lam
        if NEED_D:
            d1 = -1.0 / (1.0 - t) - 1.0 / t
            d2 = 1.0 / (t * t) - 1.0 / ((1.0 - t) * (1.0 - t))
    else:
        if FAMILY == VP_TABLE:  # discrete table of 0.5 log(alphas_cumprod)
            la, l1 = table_log_alpha(t, tab_ptr, n_tab, fa, fb)  # fa, fb: table[0], table[n-1]
            l2 = tl.full(t.shape, 0.0, tl.float64)
        elif FAMILY == VP_LINEAR:  # linear beta: fa = beta_0, fb = beta_1
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
        sig2 = -expm1(2.0 * la)  # sigma^2 = 1 - alpha^2
        lam = la - 0.5 * tl.log(sig2)
        d1 = lam
        d2 = lam
        if NEED_D:
            # dlambda/dL = 1/sigma^2, d2lambda/dL2 = 2 alpha^2 / sigma^4
            a2 = tl.exp(2.0 * la)
            d1 = l1 / sig2
            d2 = l2 / sig2 + l1 * l1 * 2.0 * a2 / (sig2 * sig2)
    return lam, d1, d2


@device_fn
def t_of_lambda(lam, fa, fb, tab_ptr, n_tab, n_bits, FAMILY: tl.constexpr):
    # inverse map, hso.schedules.NoiseSchedule.t_of_lambda
    if FAMILY == EDM:
        t = (-lam - fa) / (fb - fa)
    elif FAMILY == FLOW:
        t = 1.0 / (1.0 + fa * tl.exp(lam))
    else:
        la = -0.5 * softplus(-2.0 * lam)  # log alpha(lambda)
        if FAMILY == VP_TABLE:
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
            y0 = grid_point(k, n_f)
            y1 = grid_point(k - 1, n_f)
            t = (y1 - y0) / (x1 - x0) * (la - x0) + y0
            t = tl.where(cnt == 0, grid_point(n_tab - 1, n_f), tl.where(cnt >= n_tab, grid_point(lo * 0, n_f), t))
        elif FAMILY == VP_LINEAR:
            m = -la
            t = 2.0 * m / (0.5 * fa + tl.sqrt(0.25 * fa * fa + (fb - fa) * m))
        else:
            cc = 3.141592653589793 / (2.0 * (1.0 + fa))
            t = acos01(tl.exp(la + tl.log(tl.cos(fa * cc)))) / cc - fa
    return t
