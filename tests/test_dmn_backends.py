"""Backends with their own DM-NonUniform kernels agree with the numpy reference (`hso.fast.reference_dmn`).

The objective is a sum of absolute values and root-sum-squares: float64 on both sides, so values and gradients agree
to rounding. The lower level runs the same BFGS active-set iterations as the reference, but on a non-smooth objective
those iterations are chaotic beyond a few steps: for N >= 7 the reference itself can move by more than 1e-7 when
psi moves by 1e-14, so the kernel can only agree to 1e-7 where the reference is stable under such a perturbation
(the test finds those candidates); where it is not, both must still descend from the common start.
"""
import numpy as np
import pytest

import hso
from agreement import random_psi
from hso import fast
from hso.fast.reference_dmn import dmn_and_grad
from hso.fast.reference_lower import _feasible_start


def _dmn_backends(lower: bool):
    """Backends with their own DM-NonUniform objective (lower=False) or fused lower level (lower=True); those that
    cannot run here are skipped with the reason."""
    out = []
    for name, backend in fast.BACKENDS.items():
        if ("dmn" not in backend.lower_objectives) if lower else (backend.dmn is None):
            continue
        if name == "triton":  # tests/test_triton.py, on a smaller grid (its CPU interpreter is slow)
            continue
        reason = backend.probe()
        out.append(pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=f"{name}: {reason}")))
    return out


DMN_BACKENDS = _dmn_backends(lower=False)
DMN_LOWER_BACKENDS = _dmn_backends(lower=True)


def test_cpp_has_the_fused_dmn_kernels():
    assert fast.BACKENDS["cpp"].dmn is not None and "dmn" in fast.BACKENDS["cpp"].lower_objectives


@pytest.mark.parametrize("backend", DMN_BACKENDS)
@pytest.mark.parametrize("n_int", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64, 4097])
def test_objective_and_grad_agree(backend, n_int, b):
    rng = np.random.default_rng(100 * n_int + b)
    lam = np.sort(rng.uniform(-8.0, 6.0, size=(b, n_int + 1)), axis=1)
    for kind in (0, 1, 2):
        for p, trunc in ((2.0, None), (1.0, 0), (1.5, 5)):
            spec = fast.ObjectiveSpec("dmn", kind, p, trunc)
            want_v, want_g = fast.objective_and_grad(lam, spec, backend="reference")
            got_v, got_g = fast.objective_and_grad(lam, spec, backend=backend)
            assert got_v.shape == (b,) and got_g.shape == (b, n_int + 1)
            np.testing.assert_allclose(got_v, want_v, rtol=1e-12)
            # gradient entries are sums of terms of either sign: compare on the scale of the row's largest entry
            scale = np.abs(want_g).max(axis=1, keepdims=True)
            assert np.all(np.abs(got_g - want_g) <= 1e-12 * scale)


@pytest.mark.parametrize("backend", DMN_BACKENDS)
def test_objective_matches_the_reference_function_itself(backend):
    """The dispatch passes truncNum through: the kernel equals dmn_and_grad with the same arguments."""
    lam = np.sort(np.random.default_rng(3).uniform(-5, 5, (5, 9)), axis=1)
    for trunc in (None, -1, 0, 3, 8):
        got = fast.objective_and_grad(lam, fast.ObjectiveSpec("dmn", 0, 2.0, trunc), backend=backend)[0]
        np.testing.assert_allclose(got, dmn_and_grad(lam, 0, 2.0, trunc)[0], rtol=1e-12)
    assert not np.allclose(dmn_and_grad(lam, 0, 2.0, 0)[0], dmn_and_grad(lam, 0, 2.0, 8)[0])


def _solve(backend, schedule, spec, psi):
    obj = fast.ObjectiveSpec("dmn", schedule.kind, spec.p, spec.trunc_num)
    return fast.lower_solve(psi, schedule, spec, obj, backend=backend)


@pytest.mark.parametrize("backend", DMN_LOWER_BACKENDS)
@pytest.mark.parametrize("preset, p", [("sd21", 2.0), ("edm", 1.0), ("flow", 2.0), ("vp_linear", 2.0)])
@pytest.mark.parametrize("n_int", [1, 2, 3, 5, 7, 10])
@pytest.mark.parametrize("spacing", ["rank", "constrain"])
def test_lower_solve_agrees_where_the_reference_is_stable(backend, preset, p, n_int, spacing):
    s = hso.NoiseSchedule.preset(preset)
    gap = s.time_resolution if spacing == "rank" else max(hso.d_min(n_int), s.time_resolution) * (1 + 1e-12)
    spec = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=hso.d_min(n_int), objective="dmn", p=p)
    psi = random_psi(s, 24, 5 * n_int)
    ref = _solve("reference", s, spec, psi)
    got = _solve(backend, s, spec, psi)
    np.testing.assert_array_equal(got.feasible, ref.feasible)
    np.testing.assert_allclose(got.fitness, got.objective + got.penalty, rtol=0, atol=0)
    # stable: the reference converged (before maxiter) and two perturbations of psi by 1e-14 leave it in place
    stable = ref.iters < spec.maxiter
    for eps in (1e-14, -1e-14):
        stable &= np.abs(_solve("reference", s, spec, psi * (1 + eps)).lambdas - ref.lambdas).max(axis=1) <= 1e-9
    if n_int <= 5:
        assert np.all(stable)  # the smooth regime: every candidate must agree
    assert np.any(stable) or n_int >= 7
    np.testing.assert_allclose(got.lambdas[stable], ref.lambdas[stable], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.objective[stable], ref.objective[stable], rtol=1e-9)
    # every candidate: a feasible descent from the common (feasible-blended) start
    start = _feasible_start(hso.init_schedule(s, n_int, psi[:, 2], psi[:, 1], rho=psi[:, 0]), gap)[0]
    v0 = fast.objective_and_grad(s.lambda_(start), fast.ObjectiveSpec("dmn", s.kind, p), backend="reference")[0]
    ok = got.feasible
    assert np.all(got.objective[ok] <= v0[ok] * (1 + 1e-12))
    assert np.all(np.diff(got.t[ok], axis=1) <= -gap * (1 - 1e-6))


@pytest.mark.parametrize("backend", DMN_LOWER_BACKENDS)
def test_whole_dmn_search_is_the_same(backend):
    a = hso.optimize("sd21", 5, "unipc", objective="dmn", backend="reference")
    b = hso.optimize("sd21", 5, "unipc", objective="dmn", backend=backend)
    np.testing.assert_array_equal(a.timesteps, b.timesteps)
    assert b.fitness == pytest.approx(a.fitness, rel=1e-9)


def test_compiled_kernel_rejects_bad_arguments():
    mod = fast.registry.load_extension()
    if mod is None:
        pytest.skip("hso._C did not load")
    lam = np.sort(np.random.default_rng(0).uniform(-3, 3, (2, 5)), axis=1)
    with pytest.raises(ValueError, match="trunc"):
        mod.dmn_and_grad(lam, 0, 2.0, -1)
    with pytest.raises(ValueError, match="kind"):
        mod.dmn_and_grad(lam, 5, 2.0, 3)
    with pytest.raises(ValueError, match="2-D"):
        mod.dmn_and_grad(lam[0], 0, 2.0, 3)
    s = hso.NoiseSchedule.preset("edm")
    fam, a, b, table = fast.registry.schedule_code(s)
    with pytest.raises(ValueError, match="unknown objective"):
        mod.lower_solve(np.array([[7.0, 0.02, 0.98]]), fam, a, b, table, 4, 1e-3, 0.1, 1e9, 1, 1.0, 0, 100, 1e-12,
                        objective=7)
