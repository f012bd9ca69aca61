"""Upper level: differential evolution over psi = (rho, t_eps, T_max), one batched lower-level call per generation.

It follows scipy's ``differential_evolution`` with the reference settings of spec §7 (strategy best1bin, dithered
mutation drawn once per generation, binomial crossover with one forced coordinate, Latin-hypercube start, deferred
updating, out-of-box coordinates redrawn uniformly, convergence when ``std(E) <= atol + tol * |mean(E)|``, L-BFGS-B
polish of the best point). The random stream is numpy's ``default_rng(seed)``, not scipy's, so runs match the
authors' to within a few training steps rather than bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

import numpy as np

from .reference_lower import LowerResult

__all__ = ["SearchSpec", "SearchOutcome", "differential_evolution", "de_generations", "finish_search", "PAPER_BOUNDS"]

PAPER_BOUNDS = ((3.0, 16.0), (0.01, 0.03), (0.96, 1.0))


@dataclass(frozen=True)
class SearchSpec:
    """Differential-evolution settings (scipy names). ``popsize`` multiplies the number of parameters (3)."""

    bounds: tuple[tuple[float, float], ...] = PAPER_BOUNDS
    popsize: int = 20
    maxiter: int = 60
    tol: float = 0.01
    atol: float = 0.0
    mutation: float | tuple[float, float] = (0.5, 1.0)
    recombination: float = 0.7
    init: str = "latinhypercube"
    polish: bool = True
    seed: int | None = 66


@dataclass(frozen=True)
class SearchOutcome:
    psi: np.ndarray              # [3] best (rho, t_eps, T_max)
    lower: LowerResult           # the lower-level result at psi (batch of 1)
    fitness: float
    nit: int                     # generations run
    nfev: int                    # lower-level solves (candidates evaluated)
    success: bool
    message: str
    population: np.ndarray = field(repr=False)  # [S, 3] final population
    energies: np.ndarray = field(repr=False)    # [S]
    backend: str = ""                           # the engine that ran the lower level (set by hso.fast)


def population_size(spec: SearchSpec, m: int = 3) -> int:
    """Candidates per generation (scipy's rule: popsize times the number of parameters, at least 5)."""
    return max(5, int(spec.popsize) * m)


def _latin_hypercube(rng: np.random.Generator, s: int, m: int) -> np.ndarray:
    seg = 1.0 / s
    samples = seg * rng.uniform(size=(s, m)) + np.linspace(0.0, 1.0, s, endpoint=False)[:, None]
    pop = np.empty_like(samples)
    for j in range(m):
        pop[:, j] = samples[rng.permutation(s), j]
    return pop


@dataclass
class _DEState:
    """What the generation loop hands to the polish: population in unit coordinates and its energies."""

    pop: np.ndarray
    energies: np.ndarray
    nit: int
    success: bool
    message: str


def de_generations(spec: SearchSpec, callback: Callable[..., Any] | None = None
                   ) -> Generator[np.ndarray, np.ndarray, _DEState]:
    """The generation loop as a generator: it yields populations in box units ``psi  # [S, 3]`` and is sent their
    fitness ``[S]``; it returns the final state. Several searches can so share one lower-level call per round."""
    rng = np.random.default_rng(spec.seed)
    lo = np.array([b[0] for b in spec.bounds], dtype=np.float64)
    hi = np.array([b[1] for b in spec.bounds], dtype=np.float64)
    m = lo.size
    s = population_size(spec, m)
    if spec.init == "latinhypercube":
        pop = _latin_hypercube(rng, s, m)
    elif spec.init == "random":
        pop = rng.uniform(size=(s, m))
    else:
        raise ValueError(f"unknown init {spec.init!r}; known: 'latinhypercube', 'random'")
    energies = np.array((yield lo + pop * (hi - lo)), dtype=np.float64)

    def promote_best() -> None:
        k = int(np.argmin(energies))
        pop[[0, k]] = pop[[k, 0]]
        energies[[0, k]] = energies[[k, 0]]

    promote_best()
    message = f"Maximum number of iterations ({spec.maxiter}) reached."
    success = False
    nit = 0
    others = np.arange(s)
    for nit in range(1, int(spec.maxiter) + 1):
        f_scale = (rng.uniform(*spec.mutation) if isinstance(spec.mutation, tuple) else float(spec.mutation))
        # two distinct members other than the target itself, for every target at once
        r0 = rng.integers(0, s - 1, size=s)
        r0 += r0 >= others
        r1 = rng.integers(0, s - 2, size=s)
        lo_x, hi_x = np.minimum(others, r0), np.maximum(others, r0)
        r1 += r1 >= lo_x
        r1 += r1 >= hi_x
        mutant = pop[0] + f_scale * (pop[r0] - pop[r1])
        cross = rng.uniform(size=(s, m)) < spec.recombination
        cross[np.arange(s), rng.integers(m, size=s)] = True
        trial = np.where(cross, mutant, pop)
        out = (trial < 0) | (trial > 1)
        trial[out] = rng.uniform(size=int(out.sum()))
        e_trial = np.array((yield lo + trial * (hi - lo)), dtype=np.float64)
        better = e_trial < energies
        pop[better], energies[better] = trial[better], e_trial[better]
        promote_best()
        if callback is not None and callback(lo + pop[0] * (hi - lo), float(energies[0]), nit):
            message = "callback requested stop"
            success = False
            break
        finite = np.isfinite(energies)
        with np.errstate(over="ignore"):  # a huge tol overflows to inf: converged, as it should be
            converged = np.all(finite) and np.std(energies) <= spec.atol + spec.tol * np.abs(np.mean(energies))
        if converged:
            message = "Optimization terminated successfully."
            success = True
            break
    return _DEState(pop=pop, energies=energies, nit=nit, success=success, message=message)


def finish_search(state: _DEState, evaluate: Callable[[np.ndarray], LowerResult], spec: SearchSpec,
                  nfev: int) -> SearchOutcome:
    """Polish the best member (L-BFGS-B on the fitness with finite differences, as scipy does, then a compass
    search) and solve the lower level at the result."""
    lo = np.array([b[0] for b in spec.bounds], dtype=np.float64)
    hi = np.array([b[1] for b in spec.bounds], dtype=np.float64)
    best_unit, best_e = state.pop[0].copy(), float(state.energies[0])
    if spec.polish:
        calls = 0

        def fun_and_grad(u: np.ndarray) -> tuple[float, np.ndarray]:
            # scipy's '2-point' finite differences (step sqrt(eps) max(1, |u|), flipped to stay in the box), with
            # the point and its three neighbours solved in one batched lower-level call instead of four
            nonlocal calls
            h = np.sqrt(np.finfo(np.float64).eps) * np.maximum(1.0, np.abs(u))
            h = np.where(u + h > 1.0, -h, h)
            pts = np.clip(np.vstack([u, u + np.diag(h)]), 0.0, 1.0)
            f = evaluate(lo + pts * (hi - lo)).fitness
            calls += pts.shape[0]
            return float(f[0]), (f[1:] - f[0]) / h

        from scipy.optimize import minimize  # deferred: `import hso` stays light; only a polish needs scipy

        res = minimize(fun_and_grad, best_unit, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * lo.size)
        nfev += calls
        if np.isfinite(res.fun) and res.fun < best_e:
            best_unit, best_e = np.clip(res.x, 0.0, 1.0), float(res.fun)
        best_unit, best_e, used = _compass_polish(
            lambda u: evaluate(lo + u * (hi - lo)).fitness, best_unit, best_e)
        nfev += used
    psi = lo + best_unit * (hi - lo)
    final = evaluate(psi[None])
    return SearchOutcome(psi=psi, lower=final, fitness=float(final.fitness[0]), nit=state.nit, nfev=nfev,
                         success=state.success, message=state.message, population=lo + state.pop * (hi - lo),
                         energies=state.energies)


# axis moves plus the four diagonals of (t_eps, T_max): the fitness often has its minimum on the kink where a gap
# reaches d_min, a line in that plane that axis moves and finite-difference gradients cannot follow
_COMPASS = np.concatenate([np.eye(3), -np.eye(3), [[0, 1, 1], [0, 1, -1], [0, -1, 1], [0, -1, -1]]])


def _compass_polish(fitness: Callable[[np.ndarray], np.ndarray], x: np.ndarray, fx: float, step: float = 0.05,
                    min_step: float = 1e-7, max_rounds: int = 200) -> tuple[np.ndarray, float, int]:
    """Batched derivative-free pattern search in box units: each round evaluates the 10 stencil points in one
    lower-level call, moves to the best improvement or halves the step. Only ever lowers the fitness."""
    used = 0
    for _ in range(max_rounds):
        if step < min_step:
            break
        trial = np.clip(x[None, :] + step * _COMPASS, 0.0, 1.0)
        f = fitness(trial)
        used += trial.shape[0]
        k = int(np.argmin(f))
        if np.isfinite(f[k]) and f[k] < fx:
            x, fx = trial[k], float(f[k])
        else:
            step *= 0.5
    return x, fx, used


def differential_evolution(evaluate: Callable[[np.ndarray], LowerResult], spec: SearchSpec = SearchSpec(),
                           callback: Callable[..., Any] | None = None) -> SearchOutcome:
    """Run the bi-level search; ``evaluate(psi  # [B, 3]) -> LowerResult`` is the bound lower level.

    ``callback(psi_best, fitness_best, nit)`` is called after each generation; returning True stops the search.
    """
    gen = de_generations(spec, callback)
    nfev = 0
    try:
        request = next(gen)
        while True:
            nfev += request.shape[0]
            request = gen.send(evaluate(request).fitness)
    except StopIteration as stop:
        state = stop.value
    return finish_search(state, evaluate, spec, nfev)
