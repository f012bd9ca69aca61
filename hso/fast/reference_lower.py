"""Reference twin of the ``lower_solve`` kernel contract: the HSO lower level for a batch of candidates.

Contract::

    lower_solve(psi  # [B, 3] = (rho, t_eps, T_max),  schedule, spec)
        -> LowerResult(t  # [B, N+1] descending,  lambdas  # [B, N+1] increasing,
                       objective  # [B],  penalty  # [B],  fitness  # [B],  iters  # [B],  feasible  # [B])

For each candidate: build the ``spec.init`` start between the end points (EDM-rho with the candidate's rho for the
paper), then minimise the objective (MEP or DM-NonUniform, value and gradient in lambda from the backend) over the
interior points subject to the gap constraints ``t_i - t_{i+1} >= d`` for every consecutive pair, end points
included, where ``d = spec.gap``: one training step in ``spacing="rank"`` (so that integer timesteps never collide;
the paper's problem otherwise), ``max(d_min, one step)`` in ``spacing="constrain"``. Afterwards the SPF penalty
``gamma * sum max(0, d_min - gap)^2`` (spec §6) is added to rank candidates.

Method: primal active-set Newton in t. The constraints are linear in t, so t is the variable; the objective is
``J(lambda(t))`` with gradient ``J_lambda * lambda'(t)`` and Hessian ``D H_lambda D + diag(J_lambda * lambda''(t))``
(``D = diag(lambda')``; ``H_lambda`` is MEP's exact tridiagonal Hessian, or a BFGS approximation for objectives
without one). Each iteration solves the equality-constrained Newton system of the working set (dense KKT, batched),
takes the largest feasible step up to 1 (ratio test), backtracks on Armijo and adds a blocking constraint; at a
stationary point of the working set, the most negative multiplier leaves it. The start is made feasible by blending
it with the uniform-in-t schedule (which has the largest possible smallest gap). A candidate whose end points are
closer than ``N d`` is infeasible: it keeps the uniform schedule, which minimises the shortfall.
For a fixed pair of end points MEP is effectively unimodal (spec §5), so every start (any rho) reaches the same
optimum; if the optimiser produced anything non-finite, the start is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..inits import init_schedule
from ..schedules import NoiseSchedule
from .reference import spacing_penalty_and_grad

__all__ = ["LowerSpec", "LowerResult", "lower_solve", "lower_solve_many", "padded_result", "put_rows",
           "take_rows"]


@dataclass(frozen=True)
class LowerSpec:
    """What the lower level solves (shared by every backend).

    n_intervals: N; gap: hard minimum t-gap d; d_min / gamma: SPF penalty; objective: "mep" | "dmn";
    p: node-weight exponent; trunc_num: DM-NonUniform truncation (None = spec default); init: start family;
    maxiter / xtol: Newton iteration cap and the step size (in t) below which it stops.
    """

    n_intervals: int
    gap: float
    d_min: float
    gamma: float = 1e9
    objective: str = "mep"
    p: float = 2.0
    trunc_num: int | None = None
    init: str = "edm_rho"
    maxiter: int = 100
    xtol: float = 1e-12


@dataclass(frozen=True)
class LowerResult:
    t: np.ndarray          # [B, N+1] descending
    lambdas: np.ndarray    # [B, N+1] increasing
    objective: np.ndarray  # [B]
    penalty: np.ndarray    # [B]
    fitness: np.ndarray    # [B]
    iters: np.ndarray      # [B] int
    feasible: np.ndarray   # [B] bool: every gap >= spec.gap (up to rounding)


ObjectiveFn = Callable[..., tuple]


def _constraint_matrix(n_int: int) -> np.ndarray:
    """A  # [N, N-1]: c_i = t_i - t_{i+1} - d, interior variables x_j = t_{j+1}."""
    a = np.zeros((n_int, n_int - 1))
    idx = np.arange(n_int - 1)
    a[idx + 1, idx] = 1.0   # d c_i / d t_i for i >= 1
    a[idx, idx] = -1.0      # d c_i / d t_{i+1} for i <= N-2
    return a


class _Problem:
    """Objective of the interior t's for a batch; caches nothing between calls (pure function of t)."""

    def __init__(self, schedule: NoiseSchedule, spec: LowerSpec, objective_fn: ObjectiveFn):
        self.schedule, self.spec, self.fn = schedule, spec, objective_fn
        self.exact_hessian = spec.objective == "mep"

    def value(self, t: np.ndarray) -> np.ndarray:
        lam = self.schedule.lambda_(t)
        return self.fn(lam, hessian=False)[0]

    def full(self, t: np.ndarray):
        lam, d1, d2 = self.schedule.lambda_derivs(t)
        out = self.fn(lam, hessian=self.exact_hessian)
        value, g_lam = out[0], out[1]
        g = (g_lam * d1)[:, 1:-1]
        if not self.exact_hessian:
            return value, g, None
        diag, off = out[2], out[3]
        di, de = d1[:, 1:-1], d2[:, 1:-1]
        n = di.shape[1]
        h = np.zeros((t.shape[0], n, n))
        k = np.arange(n)
        h[:, k, k] = diag[:, 1:-1] * di * di + g_lam[:, 1:-1] * de
        if n > 1:
            o = off[:, 1:-1] * di[:, :-1] * di[:, 1:]
            h[:, k[:-1], k[1:]] = o
            h[:, k[1:], k[:-1]] = o
        return value, g, h


def _make_positive_definite(h: np.ndarray) -> np.ndarray:
    """Shift indefinite Hessians so the Newton direction is a descent direction (no-op near a strict minimum)."""
    ev = np.linalg.eigvalsh(h)
    scale = np.maximum(np.abs(ev).max(axis=1), 1e-300)
    shift = np.maximum(0.0, 1e-8 * scale - ev[:, 0])
    n = h.shape[1]
    return h + shift[:, None, None] * np.eye(n)[None]


def _feasible_start(t: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Blend each row with the uniform schedule just enough that every gap is >= d (rows where no blend works
    are returned uniform and flagged infeasible)."""
    n_int = t.shape[1] - 1
    uni = np.linspace(0.0, 1.0, n_int + 1)[None, :] * (t[:, -1:] - t[:, :1]) + t[:, :1]
    gaps = t[:, :-1] - t[:, 1:]
    u = (t[:, :1] - t[:, -1:]) / n_int  # the uniform gap
    feasible = u[:, 0] >= d * (1 + 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(gaps < d * (1 + 1e-9), (d * (1 + 1e-9) - gaps) / (u - gaps), 0.0)
    w = np.clip(np.max(need, axis=1), 0.0, 1.0)
    w = np.where(feasible, w, 1.0)
    out = (1 - w[:, None]) * t + w[:, None] * uni
    out[:, 0], out[:, -1] = t[:, 0], t[:, -1]
    return out, feasible


def newton_active_set(problem: _Problem, t0: np.ndarray, d: float, maxiter: int, xtol: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Minimise problem over the interior of each row of ``t0  # [B, N+1]`` with gaps >= d. Returns (t, iters)."""
    bsz, n1 = t0.shape
    n_int, n = n1 - 1, n1 - 2
    t = t0.copy()
    iters = np.zeros(bsz, dtype=np.int64)
    if n == 0:
        return t, iters
    amat = _constraint_matrix(n_int)                      # [N, n]
    working = np.zeros((bsz, n_int), dtype=bool)          # active constraints
    active = np.ones(bsz, dtype=bool)                     # rows still iterating
    bfgs = None if problem.exact_hessian else np.broadcast_to(np.eye(n), (bsz, n, n)).copy()
    g_prev = t_prev = None
    eye_c = np.eye(n_int)

    for it in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        tt = t[idx]
        f, g, h = problem.full(tt)
        if h is None:
            h = bfgs[idx]
            if g_prev is not None:
                # BFGS update with the last step of these rows (skipped when curvature is not positive)
                s_ = (tt - t_prev[idx])[:, 1:-1]
                y_ = g - g_prev[idx]
                sy = np.einsum("bi,bi->b", s_, y_)
                ok = sy > 1e-12 * np.linalg.norm(s_, axis=1) * np.linalg.norm(y_, axis=1)
                if np.any(ok):
                    hs = np.einsum("bij,bj->bi", h, s_)
                    shs = np.einsum("bi,bi->b", s_, hs)
                    upd = (np.einsum("bi,bj->bij", y_, y_) / np.where(ok, sy, 1)[:, None, None]
                           - np.einsum("bi,bj->bij", hs, hs) / np.where(ok, shs, 1)[:, None, None])
                    h = np.where(ok[:, None, None], h + upd, h)
            if g_prev is None:
                # first iteration: scale the identity so the first step moves no point by more than 0.02 in t
                h = h * (np.abs(g).max(axis=1) / 0.02)[:, None, None]
                g_prev = np.zeros((bsz, n))
                t_prev = t.copy()
            g_prev[idx], t_prev[idx] = g, tt
            bfgs[idx] = h
        hpd = _make_positive_definite(h)
        w = working[idx]
        c = (tt[:, :-1] - tt[:, 1:]) - d                   # [b, N]
        aw = np.where(w[:, :, None], amat[None], 0.0)      # [b, N, n]
        kkt = np.zeros((idx.size, n + n_int, n + n_int))
        kkt[:, :n, :n] = hpd
        kkt[:, :n, n:] = -np.swapaxes(aw, 1, 2)
        kkt[:, n:, :n] = aw
        kkt[:, n:, n:] = np.where(w[:, :, None], 0.0, eye_c[None])
        rhs = np.concatenate([-g, np.where(w, -c, 0.0)], axis=1)
        try:
            sol = np.linalg.solve(kkt, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:
            sol = np.stack([np.linalg.lstsq(k, r, rcond=None)[0] for k, r in zip(kkt, rhs)])
        step, mu = sol[:, :n], sol[:, n:]
        decrement = -np.einsum("bi,bi->b", g, step)
        # converged on the working set once the Newton step itself is negligible (t is O(1))
        small = np.abs(step).max(axis=1) <= xtol

        # stationary on the working set: release the most negative multiplier, or stop
        mu_w = np.where(w, mu, np.inf)
        worst = np.argmin(mu_w, axis=1)
        mu_min = mu_w[np.arange(idx.size), worst]
        mu_tol = 1e-10 * (1.0 + np.abs(g).max(axis=1))
        release = small & (mu_min < -mu_tol)
        done = small & ~release
        rel_rows = idx[release]
        working[rel_rows, worst[release]] = False
        active[idx[done]] = False
        iters[idx[done | release]] = it + 1
        move = ~small
        if not np.any(move):
            continue
        idx, tt, step, f, g, w, c = idx[move], tt[move], step[move], f[move], g[move], w[move], c[move]
        decrement = decrement[move]

        # ratio test over the inactive constraints
        full_step = np.zeros_like(tt)
        full_step[:, 1:-1] = step
        dc = full_step[:, :-1] - full_step[:, 1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(~w & (dc < 0), np.maximum(c, 0.0) / -dc, np.inf)
        block = np.argmin(ratio, axis=1)
        alpha_max = ratio[np.arange(idx.size), block]
        alpha = np.minimum(1.0, alpha_max)
        t_new = tt.copy()
        # in the Newton region the decrease is below f's rounding: take the step unless f visibly rises
        newton_region = decrement <= 1e-10 * (1.0 + np.abs(f))
        # Armijo backtracking over alpha 2^-k, k < 24. The full step is tried alone (Newton's usually passes); rows
        # that reject it try every remaining halving in one batched call and take the first that passes: the same
        # alpha as trying them in turn, with one objective call instead of up to 23 (DM-NonUniform, non-smooth,
        # often backtracks far).
        def passes(f_trial: np.ndarray, fp: np.ndarray, ap: np.ndarray, dp: np.ndarray, nr: np.ndarray) -> np.ndarray:
            return np.isfinite(f_trial) & ((f_trial <= fp - 1e-4 * ap * dp)
                                           | (nr & (f_trial <= fp + 4e-16 * (1.0 + np.abs(fp)))))

        trial = tt + alpha[:, None] * full_step
        accepted = passes(problem.value(trial), f, alpha, decrement, newton_region)
        t_new[accepted] = trial[accepted]
        rows = np.flatnonzero(~accepted)
        if rows.size:
            a = alpha[rows, None] * 0.5 ** np.arange(1, 24)[None, :]                    # [r, 23]
            trials = tt[rows, None, :] + a[..., None] * full_step[rows, None, :]        # [r, 23, N+1]
            f_t = problem.value(trials.reshape(-1, n1)).reshape(a.shape)
            ok = passes(f_t, f[rows, None], a, decrement[rows, None], newton_region[rows, None])
            first, has = np.argmax(ok, axis=1), ok.any(axis=1)
            good = rows[has]
            t_new[good] = trials[has, first[has]]
            alpha[good] = a[has, first[has]]
            accepted[good] = True
        hit = accepted & (alpha == alpha_max) & np.isfinite(alpha_max)
        working[idx[hit], block[hit]] = True
        t[idx[accepted]] = t_new[accepted]
        # no acceptable step: the working-set problem is solved to rounding, so treat it like a small decrement
        stuck = ~accepted
        if np.any(stuck):
            rows = idx[stuck]
            mu_s = np.where(w[stuck], mu[move][stuck], np.inf)
            k = np.argmin(mu_s, axis=1)
            neg = mu_s[np.arange(rows.size), k] < -mu_tol[move][stuck]
            working[rows[neg], k[neg]] = False
            active[rows[~neg]] = False
            iters[rows[~neg]] = it + 1
    iters[active] = maxiter
    return t, iters


def lower_solve(psi: np.ndarray, schedule: NoiseSchedule, spec: LowerSpec,
                objective_fn: ObjectiveFn) -> LowerResult:
    """Reference lower level for ``psi  # [B, 3]``; see the module docstring. ``objective_fn(lambdas, hessian)``
    returns ``(value, grad[, diag, off])`` in lambda (a backend's ``objective_and_grad`` bound to the spec)."""
    psi = np.asarray(psi, dtype=np.float64)
    rho, t_eps, t_max = psi[:, 0], psi[:, 1], psi[:, 2]
    t0 = init_schedule(schedule, spec.n_intervals, t_max, t_eps, family=spec.init, rho=rho)
    t_start, feasible = _feasible_start(t0, spec.gap)
    problem = _Problem(schedule, spec, objective_fn)
    t = t_start.copy()
    iters = np.zeros(psi.shape[0], dtype=np.int64)
    if np.any(feasible):
        rows = np.flatnonzero(feasible)
        t_opt, it = newton_active_set(problem, t_start[rows], spec.gap, spec.maxiter, spec.xtol)
        t[rows], iters[rows] = t_opt, it
    lam = schedule.lambda_(t)
    value = objective_fn(lam, hessian=False)[0]
    # a failed optimisation keeps the start (spec §5)
    bad = ~np.isfinite(value) | ~np.all(np.isfinite(t), axis=1)
    if np.any(bad):
        t[bad] = t_start[bad]
        lam[bad] = schedule.lambda_(t_start[bad])
        value[bad] = objective_fn(lam[bad], hessian=False)[0]
    penalty = spacing_penalty_and_grad(t, spec.d_min, spec.gamma)[0]
    return LowerResult(t=t, lambdas=lam, objective=value, penalty=penalty, fitness=value + penalty,
                       iters=iters, feasible=feasible)


def lower_solve_many(psi: np.ndarray, rows: np.ndarray, solves: Sequence[Callable[[np.ndarray], LowerResult]],
                     n_intervals: Sequence[int]) -> LowerResult:
    """Contract ``lower_solve_many``: candidates of several lower-level problems in one call.

    ``psi  # [B, 3]``; ``rows  # [B]`` int, the problem each candidate solves (an index into the problems);
    ``solves[k](psi_k)`` solves problem k's candidates (`lower_solve` bound to its schedule, spec and objective) and
    ``n_intervals[k]`` is its N. The result is `lower_solve`'s with ``t`` and ``lambdas`` of shape
    ``[B, max N + 1]``: a candidate of a problem with fewer intervals is padded with NaN after its last point.
    Every candidate's row equals what its problem's `lower_solve` returns for it (a fused kernel runs each
    candidate alone; this twin groups them by problem).
    """
    out = padded_result(psi.shape[0], max(n_intervals) + 1)
    for k in np.unique(rows):
        at = np.flatnonzero(rows == k)
        put_rows(out, at, solves[k](psi[at]))
    return out


def padded_result(bsz: int, n1: int) -> LowerResult:
    """An empty `lower_solve_many` result for ``bsz`` candidates and ``n1`` columns (t and lambdas NaN)."""
    return LowerResult(t=np.full((bsz, n1), np.nan), lambdas=np.full((bsz, n1), np.nan), objective=np.zeros(bsz),
                       penalty=np.zeros(bsz), fitness=np.zeros(bsz), iters=np.zeros(bsz, dtype=np.int64),
                       feasible=np.zeros(bsz, dtype=bool))


_PER_CANDIDATE = ("objective", "penalty", "fitness", "iters", "feasible")


def put_rows(out: LowerResult, at: np.ndarray, res: LowerResult) -> None:
    """Write ``res`` (one row per index in ``at``, possibly fewer columns) into rows ``at`` of ``out``."""
    width = res.t.shape[1]
    out.t[at, :width], out.lambdas[at, :width] = res.t, res.lambdas
    for field in _PER_CANDIDATE:
        getattr(out, field)[at] = getattr(res, field)


def take_rows(res: LowerResult, rows: slice, width: int) -> LowerResult:
    """Rows ``rows`` of a padded result, as a result of their own with ``width`` columns (copies)."""
    return LowerResult(t=res.t[rows, :width].copy(), lambdas=res.lambdas[rows, :width].copy(),
                       **{field: getattr(res, field)[rows].copy() for field in _PER_CANDIDATE})
