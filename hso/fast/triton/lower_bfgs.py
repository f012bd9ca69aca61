"""The DM-NonUniform lower level (the C++ `lower_bfgs.h`): a dense BFGS matrix per lane as a [BLOCK_B, NP, NP]
tile, its positive-definite copy (Cholesky test, Jacobi eigenvalues), the reduced working-set solve; the kernel.
"""
from __future__ import annotations

import triton.language as tl

from .common import device_fn, kernel, rmax, rmin, rsum
from .dmn_row import colsum, dmn_tile, sign_of
from .lower_row import active_set_update, blocks, column, lower_start, program_problem, store_lower
from .schedule_map import lambda_derivs

__all__ = ["cholesky", "cholesky_solve", "jacobi_extreme", "lower_dmn_kernel", "reduced_dense", "rowdot"]


# [BLOCK_B, NP, NP] tiles: R3 indexes rows (axis 1), K3 columns (axis 2), both by point; the matrices are zero
# outside the interior points 1..N-1 unless said otherwise.
@device_fn
def rowdot(M, x, g, N, C, K3):
    # g_i + sum_j M[i][j] x_j over the interior columns j = 1..N-1, added in turn from g_i as lower_bfgs.h's loops
    # (x, g [BLOCK_B, NP]). A loop over the columns (see colsum), not a cumsum along axis 2 of the 3-D tile as this
    # helper, the BFGS update's H s and the Gershgorin row sums once were: those scans (the scan axis is not the
    # layout's fastest lane dimension there, order [1, 2, 0]) were the one construct that only this kernel used, and
    # with them the compiled lower level diverged from the C++ one on an H200 (Triton 3.6: by 0.06 in lambda within
    # three iterations, at N = 3 already) while the interpreter, numpy's cumsum, agreed.
    acc = g
    for j in range(1, N):
        acc = acc + rsum(tl.where(K3 == j, M, 0.0), 2) * column(x, C == j)[:, None]
    return acc


@device_fn
def cholesky(A, N, C, R3, K3, BLOCK_B: tl.constexpr):
    # lower_bfgs.h cholesky of the interior block of A, right-looking: each entry receives the C++ inner products'
    # subtractions in the same order. Returns the factor (lower triangle; the rest is scratch) and whether every
    # pivot was positive.
    ok = tl.zeros([BLOCK_B], dtype=tl.int32) == 0
    for k in range(1, N):
        col = rsum(tl.where(K3 == k, A, 0.0), 2)
        piv = column(col, C == k)
        ok = ok & (piv > 0.0)
        dk = tl.sqrt(tl.where(piv > 0.0, piv, 1.0))[:, None]
        # (a lane whose factorisation failed stops changing: its factor is never used)
        lk = tl.where(ok[:, None], tl.where(C == k, dk, tl.where(C > k, col / dk, 0.0)), 0.0)
        A = tl.where((R3 > k) & (K3 > k), A - lk[:, :, None] * lk[:, None, :], A)
        A = tl.where(K3 == k, lk[:, :, None], A)
    return A, ok


@device_fn
def cholesky_solve(L, b, N, C, K3):
    # lower_bfgs.h cholesky_solve: forward substitution by columns, back substitution by rows, every entry summed
    # in the C++ order (L is zero from point N on)
    for k in range(1, N):
        sel = C == k
        lk = rsum(tl.where(K3 == k, L, 0.0), 2)
        yk = (column(b, sel) / column(lk, sel))[:, None]
        b = tl.where(sel, yk, tl.where(C > k, b - lk * yk, b))
    for kk in range(1, N):
        sel = C == N - kk
        li = rsum(tl.where(K3 == N - kk, L, 0.0), 2)
        terms = tl.where(C == 0, column(b, sel)[:, None], tl.where(C > N - kk, -(li * b), 0.0))
        b = tl.where(sel, (colsum(terms, C, N) / column(li, sel))[:, None], b)
    return b


@device_fn
def jacobi_extreme(A, need, N, C, R3, K3, interior, inner):
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
    while (sweep < 100) & (rmax(run.to(tl.int32), 0) > 0):
        dg = rsum(tl.where(R3 == K3, A, 0.0), 2)
        dsq = rsum(tl.where(interior, dg * dg, 0.0), 1)
        osq = rsum(rsum(tl.where(inner & (K3 > R3), A * A, 0.0), 2), 1)
        run = run & ~((osq <= 1e-32 * dsq) | (osq == 0.0))
        for rnd in range(0, m - 1):
            # round rnd pairs player m - 1 with rnd and every other i with (2 rnd - i) mod (m - 1)
            other = (2 * rnd - player + 2 * (m - 1)) % (m - 1)
            mate = tl.where(player == rnd, m - 1, tl.where(player == m - 1, rnd, other))
            P = tl.where(interior & (mate < n), mate + 1, C)  # [1, NP] partner point (itself: not rotated)
            lo = C < P                                        # the pair's first point, the C++ p
            dg = rsum(tl.where(R3 == K3, A, 0.0), 2)
            dgp = tl.gather(dg, tl.broadcast_to(P, dg.shape), 1)
            # A[p][q] for both points of a pair
            apq = tl.where(lo, rsum(tl.where(K3 == P[:, :, None], A, 0.0), 2),
                           rsum(tl.where(R3 == P[:, None, :], A, 0.0), 1))
            rot = run[:, None] & (P != C) & (apq != 0.0)
            theta = (tl.where(lo, dgp, dg) - tl.where(lo, dg, dgp)) / (2.0 * tl.where(rot, apq, 1.0))
            # (|theta| capped inside the root: where theta^2 overflows, tt is ~0 either way)
            th = tl.minimum(tl.abs(theta), 1e150)
            tt = sign_of(theta) / (tl.abs(theta) + tl.sqrt(th * th + 1.0))
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
    dg = rsum(tl.where(R3 == K3, A, 0.0), 2)
    return rmin(tl.where(interior, dg, float("inf")), 1), rmax(tl.where(interior, dg, -float("inf")), 1)


@device_fn
def reduced_dense(Hp, v, free, start, bid, C, N, R3, K3, inner, BLOCK_B: tl.constexpr, NP: tl.constexpr):
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
        col = rsum(tl.where(K3 == j, Hp, 0.0), 2)
        acc = tl.where((column(st, sel) != 0)[:, None], col, acc + col)
        put = (K3 == column(bid, sel)[:, None, None]) & (column(fr, sel) != 0)[:, None, None]
        Q = tl.where(put, acc[:, :, None], Q)
    acc = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    acc_b = tl.zeros([BLOCK_B], dtype=tl.float64)
    R = tl.zeros([BLOCK_B, NP, NP], dtype=tl.float64)
    rhs = tl.zeros([BLOCK_B, NP], dtype=tl.float64)
    for i in range(1, N):
        sel = C == i
        row = rsum(tl.where(R3 == i, Q, 0.0), 1)
        new = column(st, sel) != 0
        acc = tl.where(new[:, None], row, acc + row)
        vi = column(v, sel)
        acc_b = tl.where(new, -vi, acc_b - vi)
        bi = column(bid, sel)
        fi = column(fr, sel) != 0
        R = tl.where((R3 == bi[:, None, None]) & fi[:, None, None], acc[:, None, :], R)
        rhs = tl.where((C == bi[:, None]) & fi[:, None], acc_b[:, None], rhs)
    both = (st[:, :, None] != 0) & (st[:, None, :] != 0)
    return tl.where(both, R, tl.where(inner & (R3 == K3), 1.0, tl.zeros_like(R))), rhs


@kernel("W")
def lower_dmn_kernel(psi_ptr, prog_ptr, ints_ptr, prm_ptr, tab_ptr,  # as lower_solve_kernel's
                      t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr, W,
                      FAMILY: tl.constexpr, KIND: tl.constexpr, BLOCK_B: tl.constexpr, NP: tl.constexpr,
                      BATCH: tl.constexpr):
    # lower_bfgs.h lower_row_bfgs: the MEP kernel's start, blocks, multipliers, ratio test, line search and
    # outputs, with the DM-NonUniform objective (`dmn_tile`) and its BFGS matrix in t. That matrix is dense: it
    # lives as a [BLOCK_B, NP, NP] tile (rows and columns = points, zero outside the interior), and the working-set
    # step is the dense reduced system over the free blocks solved by Cholesky; the loops over its columns are the
    # only sequential parts.
    lanes, lane_ok, N, n_tab, n_bits, maxiter, TAU, init, tab_ptr, fa, fb, d, d_min, gamma, c, xtol = \
        program_problem(prog_ptr, ints_ptr, prm_ptr, tab_ptr, BLOCK_B)  # TAU: DM-NonUniform truncNum
    C = tl.arange(0, NP)[None, :]
    R3 = tl.arange(0, NP)[None, :, None]
    K3 = tl.arange(0, NP)[None, None, :]
    nxt = tl.broadcast_to(tl.minimum(C + 1, NP - 1), [BLOCK_B, NP])
    prv = tl.broadcast_to(tl.maximum(C - 1, 0), [BLOCK_B, NP])
    Cb = tl.broadcast_to(C, [BLOCK_B, NP])
    interior = (C >= 1) & (C < N)
    inner = (R3 >= 1) & (R3 < N) & (K3 >= 1) & (K3 < N)
    diag = inner & (R3 == K3)
    t, feasible = lower_start(psi_ptr, lanes, lane_ok, fa, fb, d, tab_ptr, n_tab, n_bits, C, N, nxt, init, FAMILY)
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
    while (it < maxiter) & (rmax(active.to(tl.int32), 0) > 0):
        lam, d1, _d2 = lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY, True)
        f, gl = dmn_tile(lam, c, TAU, C, N, NP, KIND, True, False)
        g = tl.where(interior, gl * d1, 0.0)
        gmax = rmax(tl.abs(g), 1)
        if it == 0:  # scaled identity: the first step moves no point by more than 0.02 in t
            H = tl.where(diag, (gmax / 0.02)[:, None, None], 0.0)
        else:  # BFGS update with the last step, where its curvature is positive
            s = tl.where(interior, t - t_prev, 0.0)
            y = tl.where(interior, g - g_prev, 0.0)
            sy = colsum(s * y, C, N)
            upd = sy > 1e-12 * tl.sqrt(colsum(s * s, C, N)) * tl.sqrt(colsum(y * y, C, N))
            hs = rowdot(H, s, zeros, N, C, K3)
            shs = colsum(s * hs, C, N)
            sy = tl.where(upd, sy, 1.0)[:, None, None]
            shs = tl.where(upd, shs, 1.0)[:, None, None]
            H = tl.where(upd[:, None, None] & inner,
                         H + (y[:, :, None] * y[:, None, :] / sy - hs[:, :, None] * hs[:, None, :] / shs), H)
        t_prev = t
        g_prev = g
        # positive-definite copy: shift 0 when H - 1e-8 (Gershgorin bound) has a Cholesky factor, else
        # max(0, 1e-8 max|eig| - min eig) from Jacobi's extreme eigenvalues
        gersh = rmax(tl.where(interior, rowdot(tl.abs(H), ones, zeros, N, C, K3), 0.0), 1)
        _l, pd = cholesky(tl.where(diag, H - (1e-8 * gersh)[:, None, None], H), N, C, R3, K3, BLOCK_B)
        need = active & ~pd
        shift = tl.zeros([BLOCK_B], dtype=tl.float64)
        if rmax(need.to(tl.int32), 0) > 0:
            ev_min, ev_max = jacobi_extreme(H, need, N, C, R3, K3, interior, inner)
            scale = tl.maximum(tl.maximum(tl.abs(ev_min), tl.abs(ev_max)), 1e-300)
            shift = tl.where(need, tl.maximum(0.0, 1e-8 * scale - ev_min), 0.0)
        Hp = tl.where(diag, H + shift[:, None, None], H)

        # the working-set step: dt = off + (its free block's solution of the reduced system)
        slack, wk, free, off = blocks(t, bid, d, C, N, nxt, prv, False)
        start = free & (bid == Cb)
        Rm, rhs = reduced_dense(Hp, rowdot(Hp, off, g, N, C, K3), free, start, bid, C, N, R3, K3, inner, BLOCK_B,
                                 NP)
        Lm, solvable = cholesky(Rm, N, C, R3, K3, BLOCK_B)
        U = cholesky_solve(Lm, rhs, N, C, K3)
        dt = tl.where(interior, off + tl.where(free, tl.gather(U, bid, 1), 0.0), 0.0)
        r = tl.where(interior, rowdot(Hp, dt, g, N, C, K3), 0.0)
        # a reduced system without a factor cannot happen for a positive-definite Hp: stop where we are
        stop = active & ~solvable
        iters = tl.where(stop, it + 1, iters)
        active = active & ~stop
        t, bid, eid, active, iters = active_set_update(t, f, g, dt, r, slack, wk, bid, eid, gmax, active, iters, it,
                                                        xtol, c, TAU, fa, fb, tab_ptr, n_tab, C, N, nxt,
                                                        BLOCK_B, NP, FAMILY, KIND, 1, BATCH, False)
        it += 1
    iters = tl.where(active, maxiter, iters)
    store_lower(t, t_start, iters, feasible, lanes, lane_ok, c, TAU, fa, fb, tab_ptr, n_tab, d_min, gamma,
                 C, N, nxt, t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr, W, NP, FAMILY, KIND, 1)
