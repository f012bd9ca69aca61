"""Reference solutions: the probability-flow ODE of a denoiser integrated to tight tolerance from the same noise.

In EDM coordinates ``y = x / alpha`` and half log-SNR lambda, every noise family's probability-flow ODE is

    dy / d lambda = D(y, e^{-lambda}) - y

(smooth, non-stiff: the Jacobian of D - I has eigenvalues in [-1, 0] for a posterior mean). It is integrated with
scipy's DOP853 (an 8th-order Runge-Kutta pair, independent of `hso.solvers`) from the top of the family's time
domain, with the initial state every sampler uses (`initial_state`), to each requested end time, and on to the
bottom of the domain for the clean sample (the data prediction there, as a "jump" sampler ends). A second solve at
a looser tolerance gives the convergence check reported with every evaluation.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.integrate import solve_ivp

from ..schedules import NoiseSchedule
from ..solvers import final_data, initial_state

__all__ = ["initial_state", "final_data", "Reference", "reference_solution"]


@dataclass(frozen=True)
class Reference:
    """The converged solution from one batch of noise.

    Attributes:
        t_ends: the requested end times (ascending).
        y_ends: ``[len(t_ends), B, D]`` the solution at those times, in data units (y = x / alpha).
        clean: ``[B, D]`` the clean samples (the data prediction at the bottom of the domain).
        nfev: denoiser evaluations of the main solve.
        max_change: largest absolute change of any returned value between the main solve and the looser check
            (an upper bound on the reference's own error).
        rtol: tolerance of the main solve.
    """

    t_ends: np.ndarray
    y_ends: np.ndarray
    clean: np.ndarray
    nfev: int
    max_change: float
    rtol: float

    def at(self, t_end: float) -> np.ndarray:
        """The solution at one of the requested end times ``[B, D]`` (data units)."""
        k = int(np.argmin(np.abs(self.t_ends - t_end)))
        if abs(self.t_ends[k] - t_end) > 1e-12:
            raise KeyError(f"t = {t_end} was not requested from the reference solve")
        return self.y_ends[k]


def _solve(denoiser: Callable[[np.ndarray, Any], np.ndarray], schedule: NoiseSchedule, z: np.ndarray,
           lam_eval: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray, int]:
    bsz, dim = z.shape
    t_top = schedule.t_max
    y0 = initial_state(schedule, t_top, z) / float(schedule.alpha(t_top))
    lam0 = float(schedule.lambda_(t_top))
    lam_end = float(lam_eval[-1])

    def rhs(lam: float, y: np.ndarray) -> np.ndarray:
        yy = y.reshape(bsz, dim)
        return (denoiser(yy, float(np.exp(-lam))) - yy).ravel()

    sol = solve_ivp(rhs, (lam0, lam_end), y0.ravel(), method="DOP853", t_eval=lam_eval, rtol=rtol,
                    atol=rtol)
    if not sol.success:
        raise RuntimeError(f"the reference ODE solve failed: {sol.message}")
    ys = sol.y.T.reshape(lam_eval.size, bsz, dim)
    return ys, denoiser(ys[-1], float(np.exp(-lam_end))), int(sol.nfev)


def _cache_key(denoiser: Any, schedule: NoiseSchedule, z: np.ndarray, rtol: float, check_rtol: float | None) -> str:
    h = hashlib.sha256()
    desc = denoiser.describe() if hasattr(denoiser, "describe") else {"name": getattr(denoiser, "name", None)}
    table = schedule.log_alpha_table
    h.update(json.dumps([desc, schedule.describe(), rtol, check_rtol], sort_keys=True, default=str).encode())
    h.update(b"" if table is None else np.ascontiguousarray(table).tobytes())
    h.update(np.ascontiguousarray(z, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def reference_solution(denoiser: Callable[[np.ndarray, Any], np.ndarray], schedule: NoiseSchedule, z: np.ndarray,
                       t_ends: Sequence[float] = (), *, rtol: float = 1e-9, check_rtol: float | None = 1e-7,
                       cache_dir: Any = None) -> Reference:
    """Integrate the probability-flow ODE from noise ``z  # [B, D]`` to tight tolerance.

    Args:
        denoiser: EDM-form ``D(y, s)`` (a test bed).
        schedule: the noise schedule (the solve runs from its ``t_max`` to its ``t_min``).
        z: unit noise, one row per sample.
        t_ends: times at which the solution is wanted (e.g. the last point of every "stop"-convention schedule).
        rtol: relative (and absolute) tolerance of the main solve.
        check_rtol: tolerance of the convergence-check solve (None: skip it; ``max_change`` is then NaN).
        cache_dir: a folder for solved references (None: none). The solver's steps do not depend on the requested
            end points (they are read off its dense output), so a later request for a subset of a stored solve's
            end points, with the same denoiser description, noise schedule, noise and tolerances, returns the
            stored values, identical to a new solve; ``nfev`` and ``max_change`` are the stored solve's (dense
            output at more end points costs a few more evaluations on the same steps, and the change is the largest
            over all its end points: a bound that holds for the subset).

    Raises:
        ValueError: end times outside the schedule's domain.
    """
    t_ends = np.unique(np.asarray(t_ends, dtype=np.float64))
    if t_ends.size and (t_ends.min() < schedule.t_min or t_ends.max() > schedule.t_max):
        raise ValueError(f"reference end times must lie in [{schedule.t_min}, {schedule.t_max}]")
    # DOP853's t_eval must increase strictly with the direction of integration (lambda); times that differ by
    # rounding only (a snapped (n + 1) / T against an optimised t) share one lambda
    lam_ends = schedule.lambda_(t_ends)
    lam_eval = np.unique(np.concatenate([lam_ends, schedule.lambda_(np.array([schedule.t_min]))]))
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_cache_key(denoiser, schedule, z, rtol, check_rtol)}.npz"
        if path.exists():
            with np.load(path, allow_pickle=False) as c:
                stored = c["lam_eval"]
                if np.all(np.isin(lam_eval, stored)):
                    y_ends = c["ys"][np.searchsorted(stored, lam_ends)] if t_ends.size else c["ys"][:0]
                    return Reference(t_ends=t_ends, y_ends=y_ends, clean=c["clean"], nfev=int(c["nfev"]),
                                     max_change=float(c["max_change"]), rtol=rtol)
            lam_eval = np.union1d(lam_eval, stored)  # solve once for both sets, keep the union
    ys, clean, nfev = _solve(denoiser, schedule, z, lam_eval, rtol)
    change = float("nan")
    if check_rtol is not None:
        ys_c, clean_c, _ = _solve(denoiser, schedule, z, lam_eval, check_rtol)
        change = float(max(np.abs(ys - ys_c).max(), np.abs(clean - clean_c).max()))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, lam_eval=lam_eval, ys=ys, clean=clean, nfev=nfev, max_change=change)
    y_ends = ys[np.searchsorted(lam_eval, lam_ends)] if t_ends.size else ys[:0]
    return Reference(t_ends=t_ends, y_ends=y_ends, clean=clean, nfev=nfev, max_change=change, rtol=rtol)
