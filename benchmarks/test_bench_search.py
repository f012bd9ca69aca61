"""pytest-benchmark suites: `hso.optimize` per method, the batched objective and the fused lower level, per backend.

    .venv/bin/python -m pytest benchmarks --benchmark-enable --benchmark-only

Without ``--benchmark-enable`` (the project's pytest default is ``--benchmark-disable``) every case runs once, as a
smoke test. `make test` runs ``pytest tests`` and never collects this folder. Rounds are kept small: the numbers are
for comparing backends on one machine, `benchmarks.report` measures the ratios against the paper's procedure.
"""
from __future__ import annotations

import numpy as np
import pytest

import hso
from hso import fast

from .report import METHODS, describe, same_problem_as_paper, searched

BACKENDS = fast.available_backends()
SOLVERS = ("unipc", "ddim")
NFES = (4, 5, 6, 8, 10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("nfe", NFES)
@pytest.mark.parametrize("solver", SOLVERS)
def test_search_sd21(benchmark, solver: str, nfe: int, method: str, backend: str) -> None:
    """``hso.optimize("sd21", nfe, solver, method=method)`` for SD 2.1, one case per method.

    ``method="paper"``: the paper's search exactly (MEP, p = 2, spacing "rank", DE popsize 20, maxiter 60, seed 66).
    ``method="hso"``: the search under the measured-best setting. ``method="auto"`` (the default): the measured-best
    schedule, which for some cells (UniPC on SD 2.1) is a baseline's points by table lookup, no search: the group name
    and ``extra_info["ran"]`` say what ran (`benchmarks.report.describe`), so a lookup is never read as a search.
    """
    probe = hso.optimize("sd21", nfe, solver, method=method, backend=backend)  # also the warm-up
    ran = describe(probe)
    benchmark.group = f"search sd21 {solver} nfe={nfe} method={method}: {ran}"
    benchmark.extra_info.update(solver=solver, nfe=nfe, method=method, backend=backend, source=probe.source,
                                searched=searched(probe), ran=ran)
    res = benchmark.pedantic(hso.optimize, args=("sd21", nfe, solver), kwargs={"method": method, "backend": backend},
                             rounds=3, iterations=1, warmup_rounds=0)
    assert res.backend == backend
    assert res.source == probe.source
    assert np.all(np.diff(res.timesteps) < 0)
    if method != "auto":
        assert searched(res) and res.nfev > 0
    if method == "paper":
        assert same_problem_as_paper(res)
    benchmark.extra_info.update(fitness=res.fitness, timesteps=res.timesteps.tolist(), nfev=res.nfev)


def _lambdas(batch: int, n_intervals: int, seed: int = 0) -> np.ndarray:
    """Random increasing lambdas ``[B, N+1]`` inside SD 2.1's range (t from 1.0 down to 0.01)."""
    sched = hso.NoiseSchedule.preset("sd21")
    lo, hi = float(sched.lambda_(1.0)), float(sched.lambda_(0.01))
    rng = np.random.default_rng(seed)
    inner = np.sort(rng.uniform(lo, hi, size=(batch, n_intervals - 1)), axis=1)
    return np.concatenate([np.full((batch, 1), lo), inner, np.full((batch, 1), hi)], axis=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_intervals", (5, 10, 20))
@pytest.mark.parametrize("batch", (64, 4096))
def test_objective_and_grad(benchmark, batch: int, n_intervals: int, backend: str) -> None:
    """Throughput of the batched MEP value + gradient (one launch for the whole batch)."""
    benchmark.group = f"mep+grad B={batch} N={n_intervals}"
    benchmark.extra_info.update(batch=batch, n_intervals=n_intervals, backend=backend)
    lam = _lambdas(batch, n_intervals)
    spec = fast.ObjectiveSpec("mep", hso.NoiseSchedule.preset("sd21").kind)
    value, grad = benchmark.pedantic(fast.objective_and_grad, args=(lam, spec), kwargs={"backend": backend},
                                     rounds=20, iterations=5, warmup_rounds=1)
    assert value.shape == (batch,) and grad.shape == (batch, n_intervals + 1)
    assert np.all(np.isfinite(value))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_intervals", (5, 10, 20))
@pytest.mark.parametrize("batch", (64, 4096))
def test_lower_solve(benchmark, batch: int, n_intervals: int, backend: str) -> None:
    """Throughput of the fused lower level (candidate solves per launch), paper box, spacing "rank"."""
    benchmark.group = f"lower_solve B={batch} N={n_intervals}"
    benchmark.extra_info.update(batch=batch, n_intervals=n_intervals, backend=backend)
    sched = hso.NoiseSchedule.preset("sd21")
    spec = fast.LowerSpec(n_intervals=n_intervals, gap=sched.time_resolution, d_min=hso.d_min(n_intervals))
    rng = np.random.default_rng(0)
    psi = np.stack([rng.uniform(3, 16, batch), rng.uniform(0.01, 0.03, batch), rng.uniform(0.96, 1.0, batch)], 1)
    res = benchmark.pedantic(fast.lower_solve, args=(psi, sched, spec, fast.ObjectiveSpec("mep", sched.kind)),
                             kwargs={"backend": backend}, rounds=5, iterations=1, warmup_rounds=1)
    assert res.t.shape == (batch, n_intervals + 1) and np.all(res.feasible)
