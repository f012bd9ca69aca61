"""The authors' HSO *procedure*, re-implemented with scipy as the benchmark baseline (spec §5-§7).

Written from the method description, not copied: it reproduces what the authors' reference code does, so that the
`hso` engine can be timed (and its fitness checked) against it in one run on one machine.

* Lower level: ``scipy.optimize.minimize(method="trust-constr")`` on the MEP over the N-1 interior lambdas, with
  finite-difference gradients (scipy's default "2-point") and a BFGS Hessian, maxiter 80, xtol = gtol = 1e-6.
  Start: the EDM-rho schedule of the candidate. Constraints: monotone lambdas (``lambda_{i+1} - lambda_i >= 0``, a
  `LinearConstraint`) and ``Bounds(lambda_0, lambda_N)`` on every interior variable (without the bounds trust-constr
  steps outside the end points and produces NaNs on this problem). If the optimiser raises or returns anything
  non-finite, the start is kept. Only the MEP value of the backend-independent reference
  (`hso.fast.reference.mep_and_grad`) is used: no analytic gradient, as in the authors' code.
* Upper level: ``scipy.optimize.differential_evolution`` over psi = (rho, t_eps, T_max) in the paper's box with the
  authors' settings (popsize 20, maxiter 60, tol 0.01, best1bin, mutation (0.5, 1), recombination 0.7, Latin
  hypercube, deferred updating, polish, seed 66). Fitness = SPF: MEP(lambda_opt) + 1e9 * sum max(0, d_min - |gap|)^2
  over the t-gaps of the final schedule, end points included.

This is slow by design (seconds per schedule; the authors report 5-60 s). It is a baseline, not part of `hso`.
"""
from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, differential_evolution, minimize

import hso
from hso.fast.reference import mep_and_grad
from hso.fast.search_de import PAPER_BOUNDS
from hso.schedules import NoiseSchedule, as_schedule

__all__ = ["paper_lower", "paper_fitness", "paper_search", "GAMMA", "LOWER_OPTIONS"]

GAMMA = 1e9
LOWER_OPTIONS = {"maxiter": 80, "xtol": 1e-6, "gtol": 1e-6}


def _mep(full_lambdas: np.ndarray, kind: int) -> float:
    return float(mep_and_grad(full_lambdas[None, :], kind, 2.0)[0][0])


def paper_lower(schedule: NoiseSchedule, n_intervals: int, psi: Any) -> np.ndarray:
    """The authors' lower level for one candidate ``psi = (rho, t_eps, T_max)``.

    Returns:
        ``lambdas  # [N+1]`` increasing, end points fixed at lambda(T_max), lambda(t_eps).
    """
    rho, t_eps, t_max = (float(v) for v in psi)
    t0 = hso.init_schedule(schedule, n_intervals, t_max, t_eps, rho=rho)[0]
    lam0 = schedule.lambda_(t0)
    lo, hi = float(lam0[0]), float(lam0[-1])
    x0 = lam0[1:-1].copy()
    n = x0.size
    if n == 0:
        return lam0
    kind = schedule.kind

    def objective(x: np.ndarray) -> float:
        return _mep(np.concatenate(([lo], x, [hi])), kind)

    constraints = []
    if n > 1:
        a = np.zeros((n - 1, n))
        idx = np.arange(n - 1)
        a[idx, idx] = -1.0
        a[idx, idx + 1] = 1.0
        constraints.append(LinearConstraint(a, 0.0, np.inf))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = minimize(objective, x0, method="trust-constr", constraints=constraints,
                           bounds=Bounds(np.full(n, lo), np.full(n, hi)), options=dict(LOWER_OPTIONS))
        x = np.asarray(res.x, dtype=np.float64)
        if x.shape != x0.shape or not np.all(np.isfinite(x)) or not np.isfinite(objective(x)):
            x = x0
    except Exception:  # the authors' procedure keeps the start whenever the optimiser fails
        x = x0
    return np.concatenate(([lo], x, [hi]))


def paper_fitness(schedule: NoiseSchedule, lambdas: np.ndarray, nfe: int, gamma: float = GAMMA
                  ) -> tuple[float, float, np.ndarray]:
    """SPF fitness of a lower-level result: (fitness, MEP, t  # [N+1] descending)."""
    t = schedule.t_of_lambda(lambdas)
    value = _mep(lambdas, schedule.kind)
    short = np.maximum(0.0, hso.d_min(nfe) - np.abs(np.diff(t)))
    return value + gamma * float(np.sum(short**2)), value, t


def paper_search(preset: str | NoiseSchedule, nfe: int, solver: str, seed: int | None = 66, maxiter: int = 60,
                 popsize: int = 20) -> dict[str, Any]:
    """The authors' bi-level procedure with scipy (see the module docstring).

    Args:
        preset: a noise-schedule preset name (``"sd21"``) or a `NoiseSchedule`.
        nfe: network evaluations; N comes from the solver (unipc: N = NFE, ddim: N = NFE - 1).
        solver: solver name as for `hso.optimize`.
        seed, maxiter, popsize: differential-evolution settings (scipy's legacy ``seed``, as the authors used).

    Returns:
        ``dict(psi, t, timesteps, fitness, mep, wall_time, nfev)``; ``timesteps`` is None for continuous models.
    """
    start = time.perf_counter()
    schedule = as_schedule(preset)
    n_int = hso.get_solver(solver).n_intervals(nfe)

    def upper(psi: np.ndarray) -> float:
        return paper_fitness(schedule, paper_lower(schedule, n_int, psi), nfe)[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's legacy-seed notice, trust-constr's delta_grad chatter
        res = differential_evolution(upper, PAPER_BOUNDS, strategy="best1bin", maxiter=maxiter, popsize=popsize,
                                     tol=0.01, mutation=(0.5, 1), recombination=0.7, seed=seed, polish=True,
                                     init="latinhypercube", updating="deferred")
    psi = np.asarray(res.x, dtype=np.float64)
    lam = paper_lower(schedule, n_int, psi)
    fitness, value, t = paper_fitness(schedule, lam, nfe)
    timesteps = schedule.timesteps_of_t(t).tolist() if schedule.is_discrete else None
    return {"psi": psi.tolist(), "t": t.tolist(), "timesteps": timesteps, "fitness": fitness, "mep": value,
            "wall_time": time.perf_counter() - start, "nfev": int(res.nfev)}
