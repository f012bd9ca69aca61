"""Lower level: same (or lower) optimum as scipy's trust-constr, rho independence, hard spacing constraints."""
import warnings

import numpy as np
import pytest
from scipy.optimize import Bounds, LinearConstraint, minimize

import hso
from hso import fast
from hso.fast.reference import mep_and_grad

SD21 = hso.NoiseSchedule.preset("sd21")


def _solve(psi, n_int, gap, objective="mep", schedule=SD21, d_min=0.1):
    lower = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=d_min, objective=objective)
    return fast.lower_solve(np.atleast_2d(psi), schedule, lower, fast.ObjectiveSpec(objective, schedule.kind),
                            backend="reference")


def _random_psi(rng, b):
    return np.stack([rng.uniform(3, 16, b), rng.uniform(0.01, 0.03, b), rng.uniform(0.96, 1.0, b)], axis=1)


@pytest.mark.parametrize("n_int", range(2, 21))
def test_matches_scipy_trust_constr_in_lambda(n_int):
    """The paper's lower problem (MEP over interior lambdas, monotone, fixed ends): ours <= scipy * (1 + 1e-9)."""
    rng = np.random.default_rng(n_int)
    psi = _random_psi(rng, 6)
    res = _solve(psi, n_int, SD21.time_resolution)
    for b in range(psi.shape[0]):
        start = hso.init_schedule(SD21, n_int, psi[b, 2], psi[b, 1], rho=psi[b, 0])[0]
        lam0 = SD21.lambda_(start)
        lo, hi = lam0[0], lam0[-1]

        def f(x):
            return mep_and_grad(np.concatenate([[lo], x, [hi]])[None], 0)[0][0]

        def g(x):
            return mep_and_grad(np.concatenate([[lo], x, [hi]])[None], 0)[1][0, 1:-1]

        k = n_int - 1
        mono = LinearConstraint(np.eye(k, k, 1)[:-1] - np.eye(k)[:-1], 0.0, np.inf) if k > 1 else []
        box = Bounds(np.full(k, lo), np.full(k, hi))  # without the box trust-constr breaks down (NaN) here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the authors' settings: trust-constr, finite differences, xtol = gtol = 1e-6, maxiter 80
            paper = minimize(f, lam0[1:-1], method="trust-constr", constraints=mono, bounds=box,
                             options={"xtol": 1e-6, "gtol": 1e-6, "maxiter": 80})
            # an independent tight solve with the exact gradient, to pin down the point itself
            tight = minimize(f, lam0[1:-1], jac=g, method="trust-constr", constraints=mono, bounds=box,
                             options={"xtol": 1e-10, "gtol": 1e-10, "maxiter": 1000})
        assert res.objective[b] <= paper.fun * (1 + 1e-9), (b, res.objective[b], paper.fun)
        assert res.objective[b] <= tight.fun * (1 + 1e-9), (b, res.objective[b], tight.fun)
        # the same point, not just as low a value (the optimum is unique for fixed end points)
        np.testing.assert_allclose(res.lambdas[b, 1:-1], tight.x, atol=1e-4)


def test_optimum_does_not_depend_on_rho():
    psi = np.array([[3.0, 0.02, 0.98], [7.0, 0.02, 0.98], [16.0, 0.02, 0.98]])
    res = _solve(psi, 8, SD21.time_resolution)
    np.testing.assert_allclose(res.lambdas[0], res.lambdas[1], atol=1e-8)
    np.testing.assert_allclose(res.lambdas[0], res.lambdas[2], atol=1e-8)
    assert np.all(res.iters < 20)


@pytest.mark.parametrize("n_int", [4, 6, 8, 10])
def test_constrained_matches_scipy(n_int):
    """With gaps >= d in t: the active-set Newton result is at least as good as trust-constr's, and feasible."""
    d = hso.d_min(n_int)
    rng = np.random.default_rng(100 + n_int)
    psi = _random_psi(rng, 3)
    psi[:, 2] = 1.0
    psi[:, 1] = 0.01  # widest range so that every NFE here is feasible
    res = _solve(psi, n_int, d, d_min=d)
    assert np.all(res.feasible)
    gaps = -np.diff(res.t, axis=1)
    assert gaps.min() >= d * (1 - 1e-12)
    tt = res.t[0]
    top, bot = tt[0], tt[-1]

    def f(x):
        return mep_and_grad(SD21.lambda_(np.concatenate([[top], x, [bot]]))[None], 0)[0][0]

    a = np.eye(n_int, n_int - 1, -1) - np.eye(n_int, n_int - 1)
    const = np.zeros(n_int)
    const[0], const[-1] = top, -bot
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = minimize(f, np.linspace(top, bot, n_int + 1)[1:-1], method="trust-constr",
                       constraints=LinearConstraint(a, d - const, np.inf),
                       options={"xtol": 1e-12, "gtol": 1e-11, "maxiter": 5000})
    assert res.objective[0] <= ref.fun * (1 + 1e-9)
    np.testing.assert_allclose(res.t[0, 1:-1], ref.x, atol=2e-3)


def test_infeasible_candidates_are_flagged():
    res = _solve(np.array([[7.0, 0.03, 0.96]]), 10, 0.1)
    assert not res.feasible[0]
    assert res.penalty[0] == 0.0 or res.penalty[0] > 0  # defined
    np.testing.assert_allclose(np.diff(res.t[0]), np.diff(res.t[0])[0])  # kept uniform: the least short


@pytest.mark.parametrize("objective", ["mep", "dmn"])
@pytest.mark.parametrize("preset", ["edm", "flow", "vp_linear", "vp_cosine", "ddpm"])
def test_other_families_converge(objective, preset):
    s = hso.NoiseSchedule.preset(preset)
    psi = np.array([[7.0, 0.02, min(0.98, s.t_max)]])
    res = _solve(psi, 6, s.time_resolution, objective=objective, schedule=s)
    assert np.all(np.isfinite(res.t)) and np.all(np.diff(res.t[0]) < 0)
    start = hso.init_schedule(s, 6, psi[0, 2], psi[0, 1], rho=7.0)
    spec = fast.ObjectiveSpec(objective, s.kind)
    v0 = fast.objective_and_grad(s.lambda_(start), spec, backend="reference")[0][0]
    assert res.objective[0] <= v0 + 1e-12
    if objective == "mep":
        # first-order optimality on the interior (no constraint is active here); the DM-NonUniform bound is a sum
        # of absolute values, non-smooth at its optimum, so only its decrease is checked
        g = fast.objective_and_grad(res.lambdas, spec, backend="reference")[1][0, 1:-1]
        assert np.abs(g).max() <= 1e-6 * max(1.0, abs(res.objective[0]))
    else:
        assert res.objective[0] < 0.9 * v0


def test_mismatched_specs_are_refused():
    lower = fast.LowerSpec(n_intervals=4, gap=SD21.time_resolution, d_min=0.15, p=2.0)
    psi = np.array([[7.0, 0.02, 0.98]])
    for obj in (fast.ObjectiveSpec("mep", 0, 1.0), fast.ObjectiveSpec("dmn", 0, 2.0), fast.ObjectiveSpec("mep", 2)):
        with pytest.raises(ValueError, match="must match"):
            fast.lower_solve(psi, SD21, lower, obj, backend="reference")
    with pytest.raises(ValueError, match=r"psi must have shape \[B, 3\]"):
        fast.lower_solve(psi[:, :2], SD21, lower, fast.ObjectiveSpec("mep", 0))
    with pytest.raises(ValueError, match="t_eps < T_max"):
        fast.lower_solve(np.array([[7.0, 0.99, 0.98]]), SD21, lower, fast.ObjectiveSpec("mep", 0))
