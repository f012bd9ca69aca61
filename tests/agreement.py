"""Shared checks of a backend against the float64 numpy reference (the kernel contract's twin).

MEP kernels: both sides evaluate the reference docstring's float64 formulas term by term in the same order; what
differs is the summation order of the value and the elementary functions (numpy's SIMD exp/tanh/log1p, the C
library's, or Triton's own from exp and log), each within a few ulps. Those rounding differences are relative to the
size of each term, not of the entry the terms add up to: an interior gradient entry is the difference of two
neighbouring terms (exactly zero for VE with p = 2, where J telescopes), in `off` Q1^2 + Q2 nearly cancels 1, and the
reference's sigmoid = (1 + tanh) / 2 is accurate to an ulp of 1 only, so Q1 and Q2 carry rounding of the size of
their bounds |p - 1| and |p - 1| / 2. Hence |kernel - reference| <= 1e-12 * (the entry's sum of term magnitude
bounds): about three orders of magnitude above the largest gaps measured (1e-15).

Lower level: float64 both sides, the same algorithm and iterates (kernels solve each Newton system by a
block-reduced Thomas sweep, the reference by a dense KKT solve, equal to rounding), so values agree to 1e-9 relative
and schedules to 1e-7 in t and lambda.
"""
from __future__ import annotations

import numpy as np

import hso
from hso.fast import reference

KINDS = (0, 1, 2)  # KIND_VP, KIND_VE, KIND_FLOW (hso/schedules.py)
MEP_RTOL = 1e-12
# (preset, p): MEP with p = 2 is constant for VE/EDM, so that family is exercised with p = 1
FAMILIES = [("sd21", 2.0), ("ddpm", 2.0), ("vp_linear", 2.0), ("vp_cosine", 2.0), ("flow", 2.0), ("edm", 1.0)]


def random_lambdas(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """Increasing rows of N+1 distinct points, uniform in [-8, 6]: reaches the saturated tails of both sigmoids."""
    lam = np.sort(rng.uniform(-8.0, 6.0, size=(b, n + 1)), axis=1)
    assert np.all(np.diff(lam, axis=1) > 0)
    return lam


def term_scales(lam: np.ndarray, kind: int, p: float) -> tuple[np.ndarray, ...]:
    """Per-entry sums of the terms' magnitude bounds for value, grad, diag and off (see the module docstring)."""
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


def assert_mep_close(got, want, lam: np.ndarray, kind: int, p: float) -> None:
    """(value, grad, diag, off) of a kernel against the reference's, within MEP_RTOL of the term scales."""
    for name, g, w, scale in zip(("value", "grad", "diag", "off"), got, want, term_scales(lam, kind, p)):
        assert g.dtype == np.float64 and g.shape == w.shape, name
        assert np.all(np.isfinite(g)), name
        err = np.abs(g - w)
        assert not np.any(err > MEP_RTOL * scale), f"{name}: max |got - want| / scale = {np.max(err / scale):.3g}"


def random_psi(schedule: hso.NoiseSchedule, b: int, seed: int) -> np.ndarray:
    """Candidates in the paper's box (T_max clipped to the schedule's domain)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(3, 16, b), rng.uniform(0.01, 0.03, b),
                     rng.uniform(0.96, min(1.0, schedule.t_max), b)], axis=1)


def solve_both(backend: str, schedule, spec, psi, p: float):
    """The lower level of the reference and of `backend` on the same candidates."""
    obj = hso.fast.ObjectiveSpec("mep", schedule.kind, p)
    return (hso.fast.lower_solve(psi, schedule, spec, obj, backend="reference"),
            hso.fast.lower_solve(psi, schedule, spec, obj, backend=backend))


def assert_lower_agree(ref, got) -> None:
    np.testing.assert_array_equal(ref.feasible, got.feasible)
    np.testing.assert_allclose(got.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(got.lambdas, ref.lambdas, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.t, ref.t, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.penalty, ref.penalty, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.fitness, got.objective + got.penalty, rtol=0, atol=0)
    assert got.iters.dtype == np.int64 and got.feasible.dtype == np.bool_
