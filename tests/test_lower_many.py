"""lower_solve_many: candidates of many lower-level problems (schedules, N, gaps, objectives, starts) in one call.

Each candidate's result must be byte-identical to `lower_solve` on its own problem with the same backend, rows of a
smaller N padded with NaN; the fused cpp kernel (one OpenMP loop over every candidate), Triton's kernels (one launch
per kernel configuration, under the interpreter) and the twin's per-problem calls (backends without a fused kernel)
are checked, and so are searches that go through it (`search_many`).
"""
import numpy as np
import pytest

import hso
from hso import _C, fast

pytestmark = pytest.mark.skipif("cpp" not in fast.available_backends(), reason="needs the compiled module")


def _problem(preset, n_int, objective="mep", spacing="rank", init="edm_rho"):
    s = hso.NoiseSchedule.preset(preset)
    d_min = hso.d_min(n_int + 1)
    gap = max(d_min, s.time_resolution) if spacing == "constrain" else s.time_resolution
    low = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=d_min, objective=objective, init=init,
                         maxiter=40 if objective == "dmn" else 100)
    return s, low, fast.objective_spec(low, s.kind)


PROBLEMS = [_problem("sd21", 5), _problem("edm", 1), _problem("flow", 10, "dmn"), _problem("vp_cosine", 2),
            _problem("ddpm", 8, "dmn", "constrain"), _problem("vp_linear", 19, init="time_quadratic"),
            _problem("sd15", 4, spacing="constrain", init="logSNR"), _problem("edm", 7, "dmn", init="time_uniform"),
            _problem("sd21", 12, spacing="constrain")]  # another SD 2.1 object: its table goes to the kernel once


def _psi_for(problems, rows, rng):
    out = np.empty((rows.size, 3))
    for i, k in enumerate(rows):
        s = problems[k][0]
        lo, hi = max(s.t_min, 0.01), min(s.t_max, 1.0)
        out[i] = (rng.uniform(3, 16), lo + rng.uniform(0, 0.02), hi - rng.uniform(0, 0.04))
    return out


@pytest.mark.parametrize("backend", ["cpp", "reference", "cuda"])
def test_each_candidate_equals_lower_solve_on_its_problem(backend):
    if backend not in fast.available_backends():
        pytest.skip(f"{backend}: {fast.BACKENDS[backend].probe()}")
    rng = np.random.default_rng(5)
    problems = PROBLEMS if backend == "cpp" else PROBLEMS[:4]
    rows = rng.permutation(np.repeat(np.arange(len(problems)), 5))  # interleaved: no two neighbours share a problem
    psi = _psi_for(problems, rows, rng)
    many = fast.lower_solve_many(psi, rows, problems, backend=backend)
    n1 = max(low.n_intervals for _, low, _ in problems) + 1
    assert many.t.shape == many.lambdas.shape == (rows.size, n1)
    for k, (s, low, obj) in enumerate(problems):
        at = np.flatnonzero(rows == k)
        alone = fast.lower_solve(psi[at], s, low, obj, backend=backend)
        w = low.n_intervals + 1
        assert np.array_equal(many.t[at, :w], alone.t) and np.array_equal(many.lambdas[at, :w], alone.lambdas)
        assert np.all(np.isnan(many.t[at, w:])) and np.all(np.isnan(many.lambdas[at, w:]))
        for field in ("objective", "penalty", "fitness", "iters", "feasible"):
            assert np.array_equal(getattr(many, field)[at], getattr(alone, field)), field


# the Triton kernels under the interpreter: every start family, a shared SD 2.1 table, both objectives (the slow
# DM-NonUniform problems left out), N from 1 to 19
TRITON_PROBLEMS = [PROBLEMS[k] for k in (0, 1, 3, 5, 6, 7, 8)]


class _CountedKernel:
    """A Triton kernel whose launches are recorded (name, programs, constexprs) and then run."""

    def __init__(self, kernel, launches):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.launches.append((self.kernel.__name__, grid[0], {k: v for k, v in kwargs.items() if k.isupper()}))
            return self.kernel[grid](*args, **kwargs)
        return run


@pytest.mark.parametrize("compiled_config", [False, True], ids=["as-launched", "compiled-config"])
def test_triton_launches_once_per_kernel_configuration_and_each_candidate_equals_its_problem_alone(
        monkeypatch, compiled_config):
    """The Triton backend's lower_solve_many: one launch per objective, schedule family, lambda kind and padded
    width NP, whatever the problems' N, gaps, start families and tables; each candidate byte-identical to
    `lower_solve` on its own problem (the same kernels, one problem per call), rows of a smaller N padded with NaN.
    With the compiled path's launch configuration (small blocks, several programs per problem, the last partly
    masked, the DM-NonUniform line search in turn) too."""
    if "triton" not in fast.available_backends():
        pytest.skip(f"triton: {fast.BACKENDS['triton'].probe()}")
    import triton

    from hso.fast.triton import common, launch
    if compiled_config:
        monkeypatch.setattr(common, "INTERPRETED", False)
    launches = []
    for name in ("lower_solve_kernel", "lower_dmn_kernel"):
        monkeypatch.setattr(launch, name, _CountedKernel(getattr(launch, name), launches))
    rng = np.random.default_rng(11)
    counts = [5, 3, 5, 19, 5, 5, 4]  # 19 of N = 19: three compiled-size programs, the last partly masked
    rows = rng.permutation(np.repeat(np.arange(len(TRITON_PROBLEMS)), counts))
    psi = _psi_for(TRITON_PROBLEMS, rows, rng)
    many = fast.lower_solve_many(psi, rows, TRITON_PROBLEMS, backend="triton")
    configs = {(low.objective, s.family, s.kind, triton.next_power_of_2(low.n_intervals + 1))
               for s, low, _ in TRITON_PROBLEMS}
    assert len(launches) == len(configs) < len(TRITON_PROBLEMS)  # sd21 N = 5 and sd15 N = 4 share one
    assert sum(programs for _, programs, _ in launches) >= len(TRITON_PROBLEMS)
    if compiled_config:
        assert any(programs > 2 for _, programs, _ in launches)
    for k, (s, low, obj) in enumerate(TRITON_PROBLEMS):
        at = np.flatnonzero(rows == k)
        alone = fast.lower_solve(psi[at], s, low, obj, backend="triton")
        w = low.n_intervals + 1
        assert np.array_equal(many.t[at, :w], alone.t) and np.array_equal(many.lambdas[at, :w], alone.lambdas)
        assert np.all(np.isnan(many.t[at, w:])) and np.all(np.isnan(many.lambdas[at, w:]))
        for field in ("objective", "penalty", "fitness", "iters", "feasible"):
            assert np.array_equal(getattr(many, field)[at], getattr(alone, field)), field


def test_a_problem_without_candidates_still_sets_the_width_and_no_candidates_is_empty():
    rows = np.zeros(3, dtype=np.int64)
    psi = _psi_for(PROBLEMS, rows, np.random.default_rng(0))
    got = fast.lower_solve_many(psi, rows, PROBLEMS[:2] + [PROBLEMS[5]], backend="cpp")
    assert got.t.shape == (3, 20) and np.all(np.isnan(got.t[:, 6:])) and np.all(np.isfinite(got.t[:, :6]))
    empty = fast.lower_solve_many(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), PROBLEMS, backend="cpp")
    assert empty.t.shape == (0, 20) and empty.fitness.shape == (0,)


@pytest.mark.parametrize("rows, message", [
    (np.array([0, 1, 2]), "rows must be"),          # not one per candidate
    (np.array([0, 9]), "rows must name problems"),  # no such problem
    (np.array([0, -1]), "rows must name problems"),
    (np.array([0.0, 1.0]), "integers"),
])
def test_bad_rows_get_one_clear_error(rows, message):
    psi = np.array([[7.0, 0.02, 0.98], [7.0, 0.02, 0.98]])
    with pytest.raises(ValueError, match=message):
        fast.lower_solve_many(psi, rows, PROBLEMS[:2], backend="cpp")


def test_bad_problems_and_end_points_get_one_clear_error():
    psi = np.array([[7.0, 0.02, 0.98], [7.0, 0.0001, 0.98]])
    with pytest.raises(ValueError, match="problems is empty"):
        fast.lower_solve_many(psi[:1], [0], [], backend="cpp")
    with pytest.raises(ValueError, match="domain"):  # 1e-4 is inside vp_linear's domain, not sd21's
        fast.lower_solve_many(psi, [0, 0], [PROBLEMS[0], PROBLEMS[5]], backend="cpp")
    fast.lower_solve_many(psi, [0, 1], [PROBLEMS[0], PROBLEMS[5]], backend="cpp")
    s, low, _ = PROBLEMS[0]
    with pytest.raises(ValueError, match="must match"):
        fast.lower_solve_many(psi[:1], [0], [(s, low, fast.ObjectiveSpec("dmn", s.kind))], backend="cpp")


def test_the_kernel_checks_what_it_is_given():
    """The compiled entry point refuses what the Python side never sends, instead of reading out of bounds."""
    psi = np.array([[7.0, 0.02, 0.98]])
    row = [3.0, 0.0, 0.0, 0, 0, 5, 1e-3, 0.1, 1e9, 1, 2.0, 0, 100, 1e-12, 0, 0]  # edm-family numbers, N = 5
    _C.lower_solve_many(psi, np.array([0]), np.array([row]), np.zeros(0))
    with pytest.raises(ValueError, match="not a problem index"):
        _C.lower_solve_many(psi, np.array([1]), np.array([row]), np.zeros(0))
    table = list(row)
    table[0], table[3], table[4] = 0, 2, 5  # a vp table at 2..7 of a 4-entry buffer
    with pytest.raises(ValueError, match="outside tables"):
        _C.lower_solve_many(psi, np.array([0]), np.array([table]), np.zeros(4))
    with pytest.raises(ValueError, match=r"\[P, 16\]"):
        _C.lower_solve_many(psi, np.array([0]), np.array([row[:15]]), np.zeros(0))
    for col, value in ((5, np.nan), (5, 2.5), (12, 1e300)):  # N, maxiter: integers only
        bad = list(row)
        bad[col] = value
        with pytest.raises(ValueError, match=f"column {col} must hold an integer"):
            _C.lower_solve_many(psi, np.array([0]), np.array([bad]), np.zeros(0))
    bad = list(row)
    bad[14] = 7
    with pytest.raises(ValueError, match="unknown objective"):
        _C.lower_solve_many(psi, np.array([0]), np.array([bad]), np.zeros(0))


def test_searches_of_different_schedules_n_and_objectives_share_calls_and_equal_search_alone(monkeypatch):
    """search_many sends every round, of the differential evolutions and of their polish, to one lower_solve_many
    call; each search's outcome is `search`'s, byte for byte, with far fewer lower-level calls than the searches
    make one by one."""
    jobs = []
    for preset, nfe, objective in (("sd21", 4, "mep"), ("edm", 6, "dmn"), ("flow", 3, "mep"), ("sd21", 9, "mep")):
        s, low, obj = _problem(preset, nfe, objective, "constrain")
        jobs.append((s, low, obj, fast.SearchSpec(popsize=4, maxiter=3, seed=nfe)))
    together = []
    real = fast._solve_many

    def counted(psi, rows, problems, engines):
        together.append(len(np.unique(rows)))
        return real(psi, rows, problems, engines)
    monkeypatch.setattr(fast, "_solve_many", counted)
    many = fast.search_many(jobs, backend="cpp")
    assert together[0] == len(jobs)  # the first generation of every search in one call
    alone_calls = 0
    for job, got in zip(jobs, many):
        calls = []
        real_lower = fast._lower_fn

        def lower_fn(*args, calls=calls, real_lower=real_lower):
            fn = real_lower(*args)
            return lambda psi: (calls.append(1), fn(psi))[1]
        monkeypatch.setattr(fast, "_lower_fn", lower_fn)
        alone = fast.search(*job, backend="cpp")
        monkeypatch.setattr(fast, "_lower_fn", real_lower)
        alone_calls += len(calls)
        assert np.array_equal(got.lower.t, alone.lower.t) and got.fitness == alone.fitness and got.nfev == alone.nfev
        assert np.array_equal(got.psi, alone.psi) and got.nit == alone.nit
    assert len(together) < alone_calls / 2


def test_rendezvous_answers_each_task_its_own_rows_and_reraises_after_all_end():
    """Tasks that ask different numbers of times; one raises half-way. Every other task still gets its own answers
    (the square of what it asked), the rounds are as many as the longest task's requests, and the error comes out
    once all have ended."""
    from hso.fast.batching import Rendezvous
    seen = []

    def solve(requests):
        seen.append(len(requests))
        return [r * r for r in requests]

    def task(i):
        def run(ask):
            out = [ask(i * 10 + k) for k in range(i + 1)]
            if i == 2:
                raise ValueError("task 2 failed")
            return out
        return run

    rz = Rendezvous(solve)
    with pytest.raises(ValueError, match="task 2 failed"):
        rz.run([task(i) for i in range(5)], workers=5)
    assert rz.rounds == 5 and seen[0] == 5 and seen[-1] == 1
    ok = Rendezvous(solve).run([task(i) for i in (0, 1, 3)], workers=2)  # fewer threads than tasks
    assert ok == [[0], [100, 121], [900, 961, 1024, 1089]]


def test_rendezvous_passes_a_failed_round_to_every_task_of_it():
    from hso.fast.batching import Rendezvous

    def solve(requests):
        raise RuntimeError("the engine failed")

    with pytest.raises(RuntimeError, match="the engine failed"):
        Rendezvous(solve).run([lambda ask: ask(1), lambda ask: ask(2)], workers=2)
