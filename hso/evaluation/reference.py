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

__all__ = ["initial_state", "final_data", "Reference", "reference_solution", "Conditioning", "conditioning",
           "AMPLIFICATION_STEP", "ILL_CONDITIONED"]

# `conditioning`: the size of the noise perturbation (per coordinate, unit noise) and the amplification, in
# multiples of the batch's median, above which a sample counts as ill-conditioned
AMPLIFICATION_STEP = 1e-4
ILL_CONDITIONED = 10.0


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


@dataclass(frozen=True)
class Conditioning:
    """How strongly each sample's converged clean sample depends on its noise (`conditioning`).

    Attributes:
        amplification: ``[B]`` the RMS change of the clean sample per unit RMS change of its noise.
        well: ``[B]`` bool, the samples whose amplification is at most `factor` times the batch's median.
        step: the perturbation's size per coordinate of unit noise.
        factor: the threshold, in multiples of the median amplification.
    """

    amplification: np.ndarray
    well: np.ndarray
    step: float
    factor: float

    def describe(self) -> dict:
        """A JSON-friendly summary: the threshold and the ill-conditioned samples with their amplification."""
        bad = np.flatnonzero(~self.well)
        return {"step": self.step, "factor": self.factor,
                "median_amplification": float(np.median(self.amplification)),
                "max_amplification": float(self.amplification.max()),
                "ill_conditioned": [int(i) for i in bad],
                "ill_amplification": [round(float(a), 3) for a in self.amplification[bad]]}


def conditioning(denoiser: Callable[[np.ndarray, Any], np.ndarray], schedule: NoiseSchedule, z: np.ndarray, *,
                 step: float = AMPLIFICATION_STEP, factor: float = ILL_CONDITIONED, seed: int = 1,
                 rtol: float = 1e-9, cache_dir: Any = None, base: np.ndarray | None = None) -> Conditioning:
    """Per sample, how much the converged solution moves when its noise moves: the probability-flow ODE solved
    (`reference_solution`) from ``z`` and from ``z + step * u`` (``u`` standard normal, seeded), and the RMS change
    of each clean sample divided by the RMS of its perturbation.

    A sample that starts near the boundary between two modes of the data (an exact mixture's components) ends in
    one or the other after a tiny change, so any sampler's error is amplified there; its error measures where the
    boundary lies more than the schedule. Such a sample has an amplification many times the batch's median, and
    it is the same for every schedule and sampler: it depends on the denoiser, the noise schedule and the noise
    only. ``well`` leaves out the samples above `factor` times the median. ``base``: the clean samples of the
    solve from ``z`` itself when the caller has them (`Reference.clean` at the same ``rtol``), else solved here.

    Raises:
        ValueError: a non-positive step or a factor below 1.
    """
    if not (step > 0 and np.isfinite(step)):
        raise ValueError(f"the perturbation step must be positive, got {step!r}")
    if not factor >= 1:
        raise ValueError(f"the ill-conditioning factor must be at least 1, got {factor!r}")
    z = np.asarray(z, dtype=np.float64)
    u = step * np.random.default_rng(seed).standard_normal(z.shape)
    if base is None:
        base = reference_solution(denoiser, schedule, z, cache_dir=cache_dir, rtol=rtol).clean
    moved = reference_solution(denoiser, schedule, z + u, cache_dir=cache_dir, rtol=rtol, check_rtol=None).clean
    amp = np.sqrt(np.mean((moved - base) ** 2, axis=1) / np.mean(u ** 2, axis=1))
    return Conditioning(amplification=amp, well=amp <= factor * np.median(amp), step=float(step),
                        factor=float(factor))
