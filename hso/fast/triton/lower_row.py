"""The MEP lower level (the C++ `lower_row.h`): start, blocks, active-set Newton with the block-reduced Thomas
solve and the Sturm-count shift, line search, outputs; the helpers the DM-NonUniform kernel shares; the kernel.
"""
from __future__ import annotations

import triton.language as tl

from .common import EDM_RHO, LOGSNR, MEP, TIME_UNIFORM, device_fn, interval, kernel, rcumsum, rmax, rmin, rsum
from .dmn_row import colcumsum, dmn_tile
from .schedule_map import lambda_derivs, t_of_lambda

__all__ = ["active_set_update", "armijo", "blocks", "column", "lower_scalars", "lower_solve_kernel", "lower_start",
           "mep_tile", "pow2m", "program_problem", "reduced_forward", "shift_of", "store_lower", "sturm_step",
           "value_of_t"]


@device_fn
def column(x, sel):
    # per-lane element at the one-hot column sel [BLOCK_B, NP] (x float or int)
    return rsum(tl.where(sel, x, 0), 1)


@device_fn
def mep_tile(lam, c, C, N, nxt, prv, KIND: tl.constexpr, DERIVS: tl.constexpr):
    # MEP of the schedules lam [BLOCK_B, NP] (points 0..N valid): value [BLOCK_B] and, with DERIVS, the gradient
    # and the Hessian's diagonal and off-diagonal as tiles (interval i lives at column i)
    iv = C < N
    sh, ch, e, q1, q2 = interval(lam, tl.gather(lam, nxt, 1), c, KIND)
    value = rsum(tl.where(iv, 2.0 * sh * e, 0.0), 1)
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


@device_fn
def sturm_step(q, cnt, d, e2, x):
    # one step of the Sturm count of the tridiagonal (number of eigenvalues < x; lower_row.h sturm_count); e2 is
    # the squared off-diagonal entry coupling this point to the previous one
    q = d - x - e2 / q
    q = tl.where(q == 0.0, -1e-300, q)
    return q, cnt + (q < 0.0).to(tl.int32)


@device_fn
def reduced_forward(Hd, E2, VF, HG, ENF, CPL, xs, C, N,
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
            q, cnt = sturm_step(q, cnt, column(Hd, sel), column(E2, sel), xs)
        acc_rb = acc_rb - column(VF, sel)
        acc_rd = acc_rd + column(HG, sel)
        end = column(ENF, sel) != 0
        m = prv_ro / prv_rd
        prv_rd = tl.where(end, acc_rd - m * prv_ro, prv_rd)
        prv_rb = tl.where(end, acc_rb - m * prv_rb, prv_rb)
        prv_ro = tl.where(end, column(CPL, sel), prv_ro)
        acc_rd = tl.where(end, 0.0, acc_rd)  # the next free block starts from zero (fixed points add zeros)
        acc_rb = tl.where(end, 0.0, acc_rb)
        RDP = tl.where(sel, prv_rd[:, None], RDP)
        RBP = tl.where(sel, prv_rb[:, None], RBP)
    return RDP, RBP, cnt


@device_fn
def shift_of(Hd, HoP, Ho, E2, interior, need, nm1, C, N, BLOCK_B: tl.constexpr):
    # tau = max(0, 1e-8 max|eig| - min eig) for the lanes in need, both extreme eigenvalues by Sturm bisection
    # inside the Gershgorin bounds, to rounding (lower_row.h extreme_eigenvalue, both bisections in one sweep)
    rad = tl.abs(HoP) + tl.abs(Ho)
    lo1 = rmin(tl.where(interior, Hd - rad, float("inf")), 1)
    hi2 = rmax(tl.where(interior, Hd + rad, -float("inf")), 1)
    hi1 = hi2
    lo2 = lo1
    run1 = need & (hi1 - lo1 > 1e-15 * tl.maximum(tl.abs(lo1), tl.abs(hi1)))
    run2 = need & (hi2 - lo2 > 1e-15 * tl.maximum(tl.abs(lo2), tl.abs(hi2)))
    it = 0
    while (it < 200) & (rmax((run1 | run2).to(tl.int32), 0) > 0):
        mid1 = 0.5 * (lo1 + hi1)
        mid2 = 0.5 * (lo2 + hi2)
        q1 = tl.full([BLOCK_B], 1.0, tl.float64)
        q2 = tl.full([BLOCK_B], 1.0, tl.float64)
        c1 = tl.zeros([BLOCK_B], dtype=tl.int32)
        c2 = tl.zeros([BLOCK_B], dtype=tl.int32)
        for j in range(1, N):
            sel = C == j
            d = column(Hd, sel)
            e2 = column(E2, sel)
            q1, c1 = sturm_step(q1, c1, d, e2, mid1)
            q2, c2 = sturm_step(q2, c2, d, e2, mid2)
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


@device_fn
def value_of_t(t, c, TAU, fa, fb, tab_ptr, n_tab, C, N,
                NP: tl.constexpr, FAMILY: tl.constexpr, KIND: tl.constexpr, OBJ: tl.constexpr):
    # the objective (OBJ 0: MEP, 1: DM-NonUniform) of the schedules t [rows, NP], and their lambdas
    lam, _d1, _d2 = lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY, False)
    if OBJ == MEP:
        nxt = tl.broadcast_to(tl.minimum(C + 1, NP - 1), t.shape)
        prv = tl.broadcast_to(tl.maximum(C - 1, 0), t.shape)
        value, _g, _d, _o = mep_tile(lam, c, C, N, nxt, prv, KIND, False)
    else:
        value, _g = dmn_tile(lam, c, TAU, C, N, NP, KIND, False, False)  # (the lower level's: no scan)
    return value, lam


@device_fn
def pow2m(k):
    # 2^-k for integers 0 <= k < 1023, exactly: the float64 with that exponent field
    return ((1023 - k).to(tl.int64) << 52).to(tl.float64, bitcast=True)


@device_fn
def armijo(ft, f, alpha, dec, newton):
    # the line search's test (lower_row.h armijo_backtrack): finite, and a decrease of 1e-4 alpha dec, or in the
    # Newton region (dec below f's rounding) no rise beyond rounding
    return (ft == ft) & (tl.abs(ft) < float("inf")) & ((ft <= f - 1e-4 * alpha * dec)
                                                       | (newton & (ft <= f + 4e-16 * (1.0 + tl.abs(f)))))


@device_fn
def lower_scalars(prm_ptr):
    # the float64 scalars fa, fb, gap d, d_min, gamma, c = p - 1, xtol: one masked load
    k8 = tl.arange(0, 8)
    prm = tl.load(prm_ptr + k8, mask=k8 < 7, other=0.0)
    return (rsum(tl.where(k8 == 0, prm, 0.0), 0), rsum(tl.where(k8 == 1, prm, 0.0), 0),
            rsum(tl.where(k8 == 2, prm, 0.0), 0), rsum(tl.where(k8 == 3, prm, 0.0), 0),
            rsum(tl.where(k8 == 4, prm, 0.0), 0), rsum(tl.where(k8 == 5, prm, 0.0), 0) - 1.0,
            rsum(tl.where(k8 == 6, prm, 0.0), 0))


@device_fn
def program_problem(prog_ptr, ints_ptr, prm_ptr, tab_ptr, BLOCK_B: tl.constexpr):
    # The problem this program's candidates solve (lower_bfgs.h LowerBatch: one row of numbers per problem).
    # prog_ptr [programs, 2] int32: (problem k, its first candidate here); ints_ptr [P, 8] int32: N, n_tab, n_bits,
    # maxiter, TAU (DM-NonUniform truncNum), offset of its table in tab_ptr, start family, end of its candidates;
    # prm_ptr [P, 8] float64: lower_scalars'. The integers are loaded, not arguments: never specialised on their
    # values (N = 1 included), one compilation per constexpr set serves every problem. Lanes past the problem's
    # last candidate are masked.
    pid = tl.program_id(0)
    k = tl.load(prog_ptr + 2 * pid)
    first = tl.load(prog_ptr + 2 * pid + 1)
    row = ints_ptr + 8 * k
    N = tl.load(row)
    n_tab = tl.load(row + 1)
    n_bits = tl.load(row + 2)
    maxiter = tl.load(row + 3)
    tau = tl.load(row + 4)
    tab = tab_ptr + tl.load(row + 5)
    init = tl.load(row + 6)
    lanes = first + tl.arange(0, BLOCK_B)
    lane_ok = lanes < tl.load(row + 7)
    fa, fb, d, d_min, gamma, c, xtol = lower_scalars(prm_ptr + 8 * k)
    return lanes, lane_ok, N, n_tab, n_bits, maxiter, tau, init, tab, fa, fb, d, d_min, gamma, c, xtol


@device_fn
def lower_start(psi_ptr, lanes, lane_ok, fa, fb, d, tab_ptr, n_tab, n_bits, C, N, nxt, init,
           FAMILY: tl.constexpr):
    # lower_row.h init_row and feasible_start: the init family's schedule between the candidate's end points, blended
    # with the uniform schedule until every gap is >= d. Returns the start t and whether the candidate is feasible.
    # The family (init, a code of hso.fast.codes.INIT_CODES) is the problem's, loaded at run time: every family's
    # formula is formed and the problem's selected (one t_of_lambda, on the selected lambdas), so that problems of
    # different start families share a launch; the selected values are the ones the family's own branch computed.
    N_f = N.to(tl.float64)
    # lanes past B get a harmless candidate (never iterated, never stored)
    rho = tl.load(psi_ptr + lanes * 3, mask=lane_ok, other=7.0)
    t_eps = tl.load(psi_ptr + lanes * 3 + 1, mask=lane_ok, other=0.4)
    t_max = tl.load(psi_ptr + lanes * 3 + 2, mask=lane_ok, other=0.6)
    # start schedule of the init family (hso/inits.py; u = linspace(0, 1, N + 1))
    u = tl.where(C >= N, 1.0, C.to(tl.float64) * (1.0 / N_f))  # padding columns clamped to the end
    # edm_rho and logSNR: between the end points' lambdas (edm_rho in log space)
    lam_hi, _a, _b = lambda_derivs(t_max, fa, fb, tab_ptr, n_tab, FAMILY, False)
    lam_lo, _a, _b = lambda_derivs(t_eps, fa, fb, tab_ptr, n_tab, FAMILY, False)
    rh = rho[:, None]
    la = -lam_hi[:, None] / rh
    lb = -lam_lo[:, None] / rh
    mx = tl.maximum(la, lb)
    log_sig = rh * (mx + tl.log((1.0 - u) * tl.exp(la - mx) + u * tl.exp(lb - mx)))
    lam_start = tl.where(init == EDM_RHO, -log_sig, lam_hi[:, None] + u * (lam_lo - lam_hi)[:, None])
    t_lam = t_of_lambda(lam_start, fa, fb, tab_ptr, n_tab, n_bits, FAMILY)
    # time_uniform, time_quadratic
    t_uni = t_max[:, None] + u * (t_eps - t_max)[:, None]
    sa = tl.sqrt(t_max)[:, None]
    sb = tl.sqrt(t_eps)[:, None]
    t_quad = (sa + u * (sb - sa)) * (sa + u * (sb - sa))
    t = tl.where((init == EDM_RHO) | (init == LOGSNR), t_lam, tl.where(init == TIME_UNIFORM, t_uni, t_quad))
    t = tl.where(C == 0, t_max[:, None], tl.where(C >= N, t_eps[:, None], t))  # exact ends; padding = t_eps

    # feasible start: blend with the uniform schedule until every gap is >= d
    gaps = t - tl.gather(t, nxt, 1)
    ug = (t_max - t_eps) / N_f
    feasible = ug >= d * (1.0 + 1e-12)
    dd = d * (1.0 + 1e-9)
    short = (C < N) & (gaps < dd)
    need = tl.where(short, (dd - gaps) / tl.where(short, ug[:, None] - gaps, 1.0), 0.0)
    w = rmax(need, 1)
    w = tl.where(feasible, tl.minimum(tl.maximum(w, 0.0), 1.0), 1.0)
    uni = C.to(tl.float64) * (1.0 / N_f) * (t_eps - t_max)[:, None] + t_max[:, None]
    interior = (C >= 1) & (C < N)
    return tl.where(interior, (1.0 - w[:, None]) * t + w[:, None] * uni, t), feasible


@device_fn
def blocks(t, bid, d, C, N, nxt, prv, SCAN: tl.constexpr):
    # lower_row.h working_blocks from the block starts bid (a block = points glued by working constraints):
    # slacks, working set (wk[i]: constraint i, points i and i+1, is in it), free points (interior points of blocks
    # holding neither end point) and offsets (dt_{j+1} = dt_j + c_j inside a block; blocks holding 0 start at 0, the
    # block holding N ends at 0)
    slack = tl.where(C < N, (t - tl.gather(t, nxt, 1)) - d, 0.0)
    wk = (C < N) & (tl.gather(bid, nxt, 1) == bid)
    bot = column(bid, C == N)[:, None]  # first point of the block holding N
    free = (C >= 1) & (C < N) & (bid != 0) & (bid != bot)
    if SCAN:
        csum = rcumsum(tl.where(wk, slack, 0.0), 1)
    else:
        csum = colcumsum(tl.where(wk, slack, 0.0), C, N)
    cex = tl.where(C >= 1, tl.gather(csum, prv, 1), 0.0)
    off = cex - tl.gather(cex, bid, 1)
    off = tl.where((bot > 0) & (C >= bot), off - column(off, C == N)[:, None], off)
    return slack, wk, free, off


@device_fn
def active_set_update(t, f, g, dt, r, slack, wk, bid, eid, gmax, active, iters, it, xtol,
                       c, TAU, fa, fb, tab_ptr, n_tab, C, N, nxt,
                       BLOCK_B: tl.constexpr, NP: tl.constexpr, FAMILY: tl.constexpr, KIND: tl.constexpr,
                       OBJ: tl.constexpr, BATCH: tl.constexpr, SCAN: tl.constexpr):
    # lower_row.h active_set_update for the lanes in `active`, once the step dt and the residual r = g + H dt
    # (interior points) are known: multipliers; at a negligible step release the most negative one or stop;
    # otherwise ratio test, backtracking line search (alpha, alpha / 2, ... 24 tries; BATCH: the first alone, the
    # others in one evaluation) and the blocking constraint. Returns t, the blocks (bid, eid), active and iters.
    dt_next = tl.gather(dt, nxt, 1)
    smax = rmax(tl.abs(dt), 1)
    dec = -rsum(g * dt, 1)

    # multipliers of the working constraints from r, summed within blocks: downwards from the block start, or
    # (block holding 0) upwards from the block end
    if SCAN:
        rs = rcumsum(r, 1)
    else:
        rs = colcumsum(r, C, N)  # r is zero from point N on
    mu = tl.where(bid == 0, rs - tl.gather(rs, eid, 1), rs - tl.gather(rs, tl.maximum(bid - 1, 0), 1))
    mu_w = tl.where(wk, mu, float("inf"))
    mu_min = rmin(mu_w, 1)
    worst = rmin(tl.where(wk & (mu_w == mu_min[:, None]), C, NP), 1)
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
    alpha_max = rmin(ratio, 1)
    blk = rmin(tl.where(cand & (ratio == alpha_max[:, None]), C, NP), 1)
    alpha = tl.minimum(1.0, alpha_max)
    # in the Newton region the decrease is below f's rounding: take the step unless f visibly rises
    newton = dec <= 1e-10 * (1.0 + tl.abs(f))
    ft, _l = value_of_t(t + alpha[:, None] * dt, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
    accepted = move & armijo(ft, f, alpha, dec, newton)
    pending = move & ~accepted
    if BATCH:
        # the other 23 halvings alpha 2^-k at once, as [BLOCK_B x 32, NP] rows, and the first that passes: the
        # alpha of trying them in turn, in one evaluation (DM-NonUniform, non-smooth, often backtracks far)
        if rmax(pending.to(tl.int32), 0) > 0:
            K = tl.arange(0, 32)[None, :]
            a_k = alpha[:, None] * pow2m(K)
            trial = tl.reshape(t[:, None, :] + a_k[:, :, None] * dt[:, None, :], [BLOCK_B * 32, NP])
            f_k, _l_k = value_of_t(trial, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
            ok = (K >= 1) & (K < 24) & armijo(tl.reshape(f_k, [BLOCK_B, 32]), f[:, None], a_k, dec[:, None],
                                               newton[:, None])
            k_first = rmin(tl.where(ok, K, 32), 1)
            found = pending & (k_first < 32)
            alpha = tl.where(found, alpha * pow2m(k_first), alpha)
            accepted = accepted | found
    else:
        ls = 1
        while (ls < 24) & (rmax(pending.to(tl.int32), 0) > 0):
            alpha = tl.where(pending, alpha * 0.5, alpha)
            ft, _l = value_of_t(t + alpha[:, None] * dt, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND,
                                 OBJ)
            ok = pending & armijo(ft, f, alpha, dec, newton)
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
    if rmax((release | hit).to(tl.int32), 0) > 0:
        wi = worst[:, None]
        sel_w = C == wi
        s0 = column(bid, sel_w)[:, None]
        e0 = column(eid, sel_w)[:, None]
        rel = release[:, None]
        eid = tl.where(rel & (C >= s0) & (C <= wi), wi, eid)
        bid = tl.where(rel & (C > wi) & (C <= e0), wi + 1, bid)
        bi = blk[:, None]
        a0 = column(bid, C == bi)[:, None]
        e1 = column(eid, C == bi + 1)[:, None]
        mrg = hit[:, None]
        bid = tl.where(mrg & (C > bi) & (C <= e1), a0, bid)
        eid = tl.where(mrg & (C >= a0) & (C <= bi), e1, eid)
    return t, bid, eid, active, iters


@device_fn
def store_lower(t, t_start, iters, feasible, lanes, lane_ok, c, TAU, fa, fb, tab_ptr, n_tab, d_min, gamma,
                 C, N, nxt, t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr, W,
                 NP: tl.constexpr, FAMILY: tl.constexpr, KIND: tl.constexpr, OBJ: tl.constexpr):
    # value at the result; a failed optimisation keeps the start (spec section 5); SPF penalty; the outputs (t and
    # lambdas rows of stride W: points 0..N written, the rest left as the host filled them)
    valid = C <= N
    value, lam = value_of_t(t, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
    t_ok = ((t == t) & (tl.abs(t) < float("inf"))) | ~valid
    t_fin = rmin(t_ok.to(tl.int32), 1) != 0
    bad = ~((value == value) & (tl.abs(value) < float("inf")) & t_fin)
    if rmax((bad & lane_ok).to(tl.int32), 0) > 0:
        t = tl.where(bad[:, None], t_start, t)
        value2, lam2 = value_of_t(t, c, TAU, fa, fb, tab_ptr, n_tab, C, N, NP, FAMILY, KIND, OBJ)
        value = tl.where(bad, value2, value)
        lam = tl.where(bad[:, None], lam2, lam)
    sh = tl.maximum(0.0, d_min - tl.abs(t - tl.gather(t, nxt, 1)))
    penalty = gamma * rsum(tl.where(C < N, sh * sh, 0.0), 1)

    out = lanes.to(tl.int64)[:, None] * W + C
    keep = lane_ok[:, None] & valid
    tl.store(t_ptr + out, t, mask=keep)
    tl.store(lam_ptr + out, lam, mask=keep)
    tl.store(obj_ptr + lanes, value, mask=lane_ok)
    tl.store(pen_ptr + lanes, penalty, mask=lane_ok)
    tl.store(iters_ptr + lanes, iters.to(tl.int64), mask=lane_ok)
    tl.store(feas_ptr + lanes, feasible.to(tl.int8), mask=lane_ok)


# ------------------------------------------------------------------------------------------ lower level: kernels
@kernel("W")
def lower_solve_kernel(psi_ptr,    # [B, 3] (rho, t_eps, T_max), each problem's candidates together
                        prog_ptr,   # [programs, 2] int32: problem, first candidate (program_problem)
                        ints_ptr,   # [P, 8] int32: N, n_tab, n_bits, maxiter, TAU, table offset, init, end
                        prm_ptr,    # [P, 8] fa, fb, gap d, d_min, gamma, p, xtol, - (fa, fb: schedule_code's a, b;
                                    #     for FAMILY 0 the table's first and last entries)
                        tab_ptr,    # the problems' 0.5 log(alphas_cumprod) tables back to back (FAMILY 0), or [1]
                        t_ptr,      # [B, W] out, descending (points 0..N of each candidate's problem)
                        lam_ptr,    # [B, W] out
                        obj_ptr,    # [B] out
                        pen_ptr,    # [B] out
                        iters_ptr,  # [B] int64 out
                        feas_ptr,   # [B] int8 out
                        W,          # the widest problem's N + 1
                        FAMILY: tl.constexpr, KIND: tl.constexpr, BLOCK_B: tl.constexpr, NP: tl.constexpr):
    # State layout: every per-candidate row lives in registers as a [BLOCK_B, NP] tile (lane = candidate, column =
    # point, NP >= N + 1). No global scratch: N is at most a few dozen here, so a row fits in registers, and the
    # elementwise work (schedule map, MEP and its derivatives, trial points of the line search) runs on whole tiles.
    # The working set is kept as each point's block start (bid) and block end (eid): adding or dropping one
    # constraint updates them with two masked selects, and the offsets and multipliers (sums within blocks) become
    # differences of row prefix sums gathered at the block ends, equal to lower_row.h's running sums up to
    # rounding. Only the genuinely sequential recurrences (Sturm count, Thomas sweeps) walk the columns, one
    # column per step.
    lanes, lane_ok, N, n_tab, n_bits, maxiter, _tau, init, tab_ptr, fa, fb, d, d_min, gamma, c, xtol = \
        program_problem(prog_ptr, ints_ptr, prm_ptr, tab_ptr, BLOCK_B)
    C = tl.arange(0, NP)[None, :]
    nxt = tl.broadcast_to(tl.minimum(C + 1, NP - 1), [BLOCK_B, NP])
    prv = tl.broadcast_to(tl.maximum(C - 1, 0), [BLOCK_B, NP])
    Cb = tl.broadcast_to(C, [BLOCK_B, NP])
    interior = (C >= 1) & (C < N)
    t, feasible = lower_start(psi_ptr, lanes, lane_ok, fa, fb, d, tab_ptr, n_tab, n_bits, C, N, nxt, init, FAMILY)
    t_start = t

    # ---- active-set Newton in t
    active = lane_ok & feasible & (N > 1)
    iters = tl.zeros([BLOCK_B], dtype=tl.int32)
    bid = Cb  # first point of each point's block (a block = points glued by active constraints)
    eid = Cb  # last point of each point's block
    it = 0
    while (it < maxiter) & (rmax(active.to(tl.int32), 0) > 0):
        # objective, gradient and Hessian in t (reference_lower._Problem.full)
        lam, d1, d2 = lambda_derivs(t, fa, fb, tab_ptr, n_tab, FAMILY, True)
        f, gl, hd, ho = mep_tile(lam, c, C, N, nxt, prv, KIND, True)
        g = tl.where(interior, gl * d1, 0.0)
        Hd = tl.where(interior, hd * d1 * d1 + gl * d2, 0.0)
        Ho = tl.where((C >= 1) & (C < N - 1), ho * d1 * tl.gather(d1, nxt, 1), 0.0)  # couples j and j+1
        HoP = tl.gather(Ho, prv, 1)                                                 # couples j-1 and j
        gmax = rmax(tl.abs(g), 1)
        gersh = rmax(tl.where(interior, tl.abs(Hd) + (tl.abs(HoP) + tl.abs(Ho)), 0.0), 1)

        slack, wk, free, off = blocks(t, bid, d, C, N, nxt, prv, True)
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
        RDP, RBP, nneg = reduced_forward(Hd, E2, VF, HG, ENFi, CPL, 1e-8 * gersh, C, N, BLOCK_B, NP, True)
        # H not safely positive definite (an eigenvalue below 1e-8 x a bound of max|eig|): shift it, redo the sweep
        shift = active & (nneg > 0)
        if rmax(shift.to(tl.int32), 0) > 0:
            tau = shift_of(Hd, HoP, Ho, E2, interior, shift, N - 1, C, N, BLOCK_B)
            Hd = tl.where(interior, Hd + tau[:, None], Hd)
            v = g + Hd * off + HoP * tl.gather(off, prv, 1) + Ho * tl.gather(off, nxt, 1)
            VF = tl.where(free, v, 0.0)
            HG = tl.where(free, Hd + tl.where(wk & (C + 1 < N), 2.0 * Ho, 0.0), 0.0)
            RDP2, RBP2, _n = reduced_forward(Hd, E2, VF, HG, ENFi, CPL, 0.0 * gersh, C, N, BLOCK_B, NP, False)
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
            u_next = (column(RBPb, sel) - column(CPLb, sel) * u_next) / column(RDPb, sel)
            U = tl.where(sel, u_next[:, None], U)
        dt = tl.where(interior, off + tl.where(free, U, 0.0), 0.0)
        r = tl.where(interior, g + Hd * dt + HoP * tl.gather(dt, prv, 1) + Ho * tl.gather(dt, nxt, 1), 0.0)
        t, bid, eid, active, iters = active_set_update(t, f, g, dt, r, slack, wk, bid, eid, gmax, active, iters, it,
                                                        xtol, c, 0, fa, fb, tab_ptr, n_tab, C, N, nxt,
                                                        BLOCK_B, NP, FAMILY, KIND, 0, False, True)
        it += 1
    iters = tl.where(active, maxiter, iters)
    store_lower(t, t_start, iters, feasible, lanes, lane_ok, c, 0, fa, fb, tab_ptr, n_tab, d_min, gamma,
                 C, N, nxt, t_ptr, lam_ptr, obj_ptr, pen_ptr, iters_ptr, feas_ptr, W, NP, FAMILY, KIND, 0)
