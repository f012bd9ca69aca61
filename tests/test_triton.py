"""The Triton backend (`hso.fast.triton_backend`) agrees with its float64 numpy twins.

On machines without a GPU the kernels run on Triton's CPU interpreter (TRITON_INTERPRET=1, set in conftest), which
costs tens of microseconds per tile operation: batches here are one or two programs each (see the host wrappers'
block sizes), and every agreement test is one launch.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hso
from hso import fast
from hso.fast import reference, registry

_REASON = registry.BACKENDS["triton"].probe()
if _REASON is not None:
    pytest.skip(f"triton backend unavailable: {_REASON}", allow_module_level=True)

from hso.fast import triton_backend  # noqa: E402  (imports torch and triton: only once the probe passed)

KINDS = (0, 1, 2)  # KIND_VP, KIND_VE, KIND_FLOW (hso/schedules.py)

# Both sides evaluate the reference docstring's float64 formulas term by term in the same order; what differs is the
# summation order of the value (sequential here, pairwise in numpy) and the elementary functions: the kernel builds
# sinh, cosh, tanh, expm1 and log1p from exp and log (Kahan's expm1, Higham's log1p), each within a few ulps of
# numpy's. Those rounding differences are relative to the size of each term, not of the entry the terms add up to
# (interior gradients are differences of neighbouring terms, exactly zero for VE with p = 2; Q1^2 + Q2 nearly cancels
# 1 in `off`), and sigmoid = (1 + tanh) / 2 is accurate to an ulp of 1 only. Hence, as for the C++ kernel
# (tests/test_cpp_kernel.py): |kernel - reference| <= 1e-12 * (the entry's sum of term magnitude bounds), about
# 1e3 above the few-ulp differences these formulas produce.
RTOL = 1e-12


def _lambdas(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """Increasing rows of N+1 distinct points, uniform in [-8, 6]: reaches the saturated tails of both sigmoids."""
    lam = np.sort(rng.uniform(-8.0, 6.0, size=(b, n + 1)), axis=1)
    assert np.all(np.diff(lam, axis=1) > 0)
    return lam


def _term_scales(lam: np.ndarray, kind: int, p: float) -> tuple[np.ndarray, ...]:
    """Per-entry sums of the terms' magnitude bounds for value, grad, diag and off (see RTOL)."""
    a, b = lam[:, :-1], lam[:, 1:]
    q = reference.q_derivs(0.5 * (a + b), kind, p)[0]
    e, s, c = np.exp(q), np.abs(np.sinh(0.5 * (b - a))), np.cosh(0.5 * (b - a))
    q1, q2 = abs(p - 1.0), 0.5 * abs(p - 1.0)  # |q'| and |q''| bounds, all three kinds
    t_grad = e * (c + s * q1)
    t_off = e * (0.5 * s + 0.5 * s * (q1 * q1 + q2))
    t_diag = t_off + e * c * q1
    grad = np.zeros_like(lam)
    grad[:, 1:] += t_grad
    grad[:, :-1] += t_grad
    diag = np.zeros_like(lam)
    diag[:, 1:] += t_diag
    diag[:, :-1] += t_diag
    return np.sum(2.0 * s * e, axis=1), grad, diag, t_off


def _assert_mep_close(got, want, lam, kind, p):
    for name, g, w, scale in zip(("value", "grad", "diag", "off"), got, want, _term_scales(lam, kind, p)):
        assert g.dtype == np.float64 and g.shape == w.shape, name
        assert np.all(np.isfinite(g)), name
        err = np.abs(g - w)
        assert not np.any(err > RTOL * scale), f"{name}: max |got - want| / scale = {np.max(err / scale):.3g}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64, 4097])
def test_mep_matches_reference(b: int, n: int, kind: int) -> None:
    rng = np.random.default_rng([b, n, kind, 3])
    lam = _lambdas(rng, b, n)
    want = reference.mep_and_grad(lam, kind, 2.0, hessian=True)
    got = triton_backend.mep_and_grad(lam, kind, 2.0, hessian=True)
    assert isinstance(got, tuple) and len(got) == 4
    _assert_mep_close(got, want, lam, kind, 2.0)


@pytest.mark.parametrize("p", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("kind", KINDS)
def test_mep_other_exponents_and_first_order_call(kind: int, p: float) -> None:
    lam = _lambdas(np.random.default_rng([kind, int(4 * p)]), 64, 12)
    got = triton_backend.mep_and_grad(lam, kind, p, hessian=True)
    _assert_mep_close(got, reference.mep_and_grad(lam, kind, p, hessian=True), lam, kind, p)
    # the first-order launch runs the same arithmetic without the Hessian stores: bit-identical value and gradient
    first = triton_backend.mep_and_grad(lam, kind, p)
    assert len(first) == 2
    np.testing.assert_array_equal(first[0], got[0])
    np.testing.assert_array_equal(first[1], got[1])


def test_mep_through_the_dispatcher_and_edge_cases() -> None:
    lam = _lambdas(np.random.default_rng(5), 9, 6)
    spec = fast.ObjectiveSpec("mep", 0, 2.0)
    a = fast.objective_and_grad(lam, spec, hessian=True, backend="reference")
    b = fast.objective_and_grad(lam, spec, hessian=True, backend="triton")
    for x, y in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-12)
    value, grad, diag, off = triton_backend.mep_and_grad(np.empty((0, 6)), 1, 2.0, hessian=True)
    assert value.shape == (0,) and grad.shape == (0, 6) and diag.shape == (0, 6) and off.shape == (0, 5)
    with pytest.raises(ValueError, match="unknown lambda-space kind 7"):
        triton_backend.mep_and_grad(lam, 7, 2.0)
    with pytest.raises(ValueError, match="at least 2 points"):
        triton_backend.mep_and_grad(np.zeros((3, 1)), 0, 2.0)


# ------------------------------------------------------------------------------------------------ lower level
# (preset, p): MEP with p = 2 is constant for VE/EDM, so that family is exercised with p = 1
FAMILIES = [("sd21", 2.0), ("ddpm", 2.0), ("vp_linear", 2.0), ("vp_cosine", 2.0), ("flow", 2.0), ("edm", 1.0)]


def _psi(schedule: hso.NoiseSchedule, b: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(3, 16, b), rng.uniform(0.01, 0.03, b),
                     rng.uniform(0.96, min(1.0, schedule.t_max), b)], axis=1)


def _both(schedule, spec, psi, p):
    obj = fast.ObjectiveSpec("mep", schedule.kind, p)
    return (fast.lower_solve(psi, schedule, spec, obj, backend="reference"),
            fast.lower_solve(psi, schedule, spec, obj, backend="triton"))


def _assert_agree(ref, got):
    # as tests/test_backends.py: float64 both sides, the same algorithm and iterates (the kernel solves each Newton
    # system by the block-reduced Thomas sweep, the reference by a dense KKT solve, equal to rounding), so values
    # agree to 1e-9 relative and schedules to 1e-7 in t and lambda
    np.testing.assert_array_equal(ref.feasible, got.feasible)
    np.testing.assert_allclose(got.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(got.lambdas, ref.lambdas, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.t, ref.t, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.penalty, ref.penalty, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.fitness, got.objective + got.penalty, rtol=0, atol=0)
    assert got.iters.dtype == np.int64 and got.feasible.dtype == np.bool_


@pytest.mark.parametrize("n_int", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64])
@pytest.mark.parametrize("spacing", ["rank", "constrain"])
def test_lower_solve_agrees_with_reference(n_int, b, spacing):
    # other candidates than tests/test_backends.py draws for the same shapes; "constrain" at N = 10 holds
    # infeasible candidates (end points closer than N d), which keep the uniform schedule
    s = hso.NoiseSchedule.preset("sd21")
    gap = s.time_resolution if spacing == "rank" else max(hso.d_min(n_int), s.time_resolution) * (1 + 1e-12)
    spec = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=hso.d_min(n_int))
    _assert_agree(*_both(s, spec, _psi(s, b, 1000 + 7 * n_int + b), 2.0))


@pytest.mark.parametrize("preset, p", FAMILIES)
@pytest.mark.parametrize("init", sorted(hso.INIT_FAMILIES))
def test_every_family_and_init(preset, p, init):
    s = hso.NoiseSchedule.preset(preset)
    spec = fast.LowerSpec(n_intervals=8, gap=s.time_resolution, d_min=hso.d_min(8), p=p, init=init)
    _assert_agree(*_both(s, spec, _psi(s, 16, 5), p))


@pytest.mark.skipif(not triton_backend._INTERPRETED, reason="counts calls of a device helper: interpreter only")
def test_indefinite_hessians_take_the_bisection_shift(monkeypatch):
    """From time-uniform starts on the cosine schedule the t-Hessian is indefinite in early iterations: the Sturm
    count flags it and the shift comes from the bisected extreme eigenvalues; the iterates still match."""
    calls = []
    shift_of = triton_backend._shift_of

    def counting(*args):
        calls.append(1)
        return shift_of(*args)

    # under the interpreter device helpers are plain functions that the kernel looks up at run time
    monkeypatch.setattr(triton_backend, "_shift_of", counting)
    s = hso.NoiseSchedule.preset("vp_cosine")
    spec = fast.LowerSpec(n_intervals=8, gap=s.time_resolution, d_min=hso.d_min(8), init="time_uniform")
    _assert_agree(*_both(s, spec, _psi(s, 16, 3), 2.0))
    assert calls


def test_empty_batch_and_maxiter():
    s = hso.NoiseSchedule.preset("sd21")
    spec = fast.LowerSpec(n_intervals=5, gap=s.time_resolution, d_min=hso.d_min(5), maxiter=2)
    res = triton_backend.lower_solve(np.empty((0, 3)), s, spec)
    assert res.t.shape == (0, 6) and res.iters.shape == (0,)
    ref, got = _both(s, spec, _psi(s, 8, 9), 2.0)
    np.testing.assert_array_equal(got.iters, ref.iters)  # capped at maxiter = 2, like the reference
    np.testing.assert_allclose(got.t, ref.t, rtol=0, atol=1e-7)


def test_whole_search_is_the_same():
    a = hso.optimize("sd21", 6, "ddim", backend="reference")
    b = hso.optimize("sd21", 6, "ddim", backend="triton")
    np.testing.assert_array_equal(a.timesteps, b.timesteps)
    assert b.fitness == pytest.approx(a.fitness, rel=1e-9)
    assert b.backend == "triton"


# ------------------------------------------------------------------------------------------------ registry
def test_importing_hso_imports_neither_torch_nor_triton():
    code = ("import sys, hso, hso.fast, hso.fast.registry; "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cpu_without_the_interpreter_says_how_to_enable_it(monkeypatch):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the interpreter is not needed")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = registry.BACKENDS["triton"].probe()
    assert reason is not None and "TRITON_INTERPRET=1" in reason
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fast.get_backend("triton")
