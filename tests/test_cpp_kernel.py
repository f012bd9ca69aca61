"""Agreement of the compiled CPU kernel `hso._C.mep_and_grad` with its float64 numpy twin `hso.fast.reference`."""
from __future__ import annotations

import numpy as np
import pytest

from hso.fast import reference

try:
    from hso import _C
except ImportError as exc:  # not built, or built but not loadable: say which
    pytest.skip(f"hso._C is not available ({exc}); build it with `make install`", allow_module_level=True)

KINDS = (0, 1, 2)  # KIND_VP, KIND_VE, KIND_FLOW (hso/schedules.py)

# Both sides evaluate the same float64 formulas (the reference docstring), term by term in the same order; what differs
# is the summation order of the value and the libm behind exp/tanh/log1p (numpy's SIMD versions vs the C library),
# each within an ulp or two. Those rounding differences are relative to the size of each term, not of the entry the
# terms add up to: an interior gradient entry is the difference of two neighbouring terms (exactly zero for VE with
# p = 2, where J telescopes), and in `off` Q1^2 + Q2 nearly cancels 1. Also sigmoid = (1 + tanh) / 2 is accurate to
# an ulp of 1, not of sigmoid, so Q1 and Q2 carry rounding of the size of their bounds |p - 1| and |p - 1| / 2. Hence
# the check |kernel - reference| <= 1e-12 * (sum over the entry's terms of their magnitude bound): three orders of
# magnitude above the largest gap measured on these inputs (1.3e-15, in the value).
RTOL = 1e-12


def _lambdas(rng: np.random.Generator, B: int, N: int) -> np.ndarray:
    """Increasing rows of N+1 distinct points, uniform in [-8, 6]: reaches the saturated tails of both sigmoids."""
    lam = np.sort(rng.uniform(-8.0, 6.0, size=(B, N + 1)), axis=1)
    assert np.all(np.diff(lam, axis=1) > 0)
    return lam


def _term_scales(lam: np.ndarray, kind: int, p: float) -> tuple[np.ndarray, ...]:
    """Per-entry sums of the terms' magnitude bounds for value, grad, diag and off (see RTOL)."""
    a, b = lam[:, :-1], lam[:, 1:]
    h = b - a
    q = reference.q_derivs(0.5 * (a + b), kind, p)[0]
    e, s, c = np.exp(q), np.sinh(0.5 * h), np.cosh(0.5 * h)
    q1, q2 = abs(p - 1.0), 0.5 * abs(p - 1.0)  # |q'| and |q''| bounds, all three kinds
    t_grad = e * (c + s * q1)
    t_off = e * (0.5 * s + 0.5 * s * (q1 * q1 + q2))
    t_diag = t_off + e * c * q1
    value = np.sum(2.0 * s * e, axis=1)
    grad = np.zeros_like(lam)
    grad[:, 1:] += t_grad
    grad[:, :-1] += t_grad
    diag = np.zeros_like(lam)
    diag[:, 1:] += t_diag
    diag[:, :-1] += t_diag
    return value, grad, diag, t_off


@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("B", [1, 3, 64, 4097])
def test_matches_reference(B: int, N: int, kind: int, p: float) -> None:
    rng = np.random.default_rng([B, N, kind, int(p)])
    lam = _lambdas(rng, B, N)
    want = reference.mep_and_grad(lam, kind, p, hessian=True)
    got = _C.mep_and_grad(lam, kind, p, hessian=True)
    got_first_order = _C.mep_and_grad(lam, kind, p)

    assert isinstance(got, tuple) and len(got) == 4
    assert isinstance(got_first_order, tuple) and len(got_first_order) == 2
    for name, g, w, scale in zip(("value", "grad", "diag", "off"), got, want, _term_scales(lam, kind, p)):
        assert g.dtype == np.float64 and g.shape == w.shape, name
        assert np.all(np.isfinite(g)), name
        err = np.abs(g - w)
        bad = err > RTOL * scale
        assert not bad.any(), f"{name}: max |got - want| / scale = {np.max(err / scale):.3g}"
    # The first-order call runs the same kernel without the Hessian outputs: bit-identical value and gradient.
    np.testing.assert_array_equal(got_first_order[0], got[0])
    np.testing.assert_array_equal(got_first_order[1], got[1])


def test_accepts_any_float64_convertible_layout() -> None:
    """Non-contiguous, Fortran-ordered, float32 and list inputs are converted, never misread."""
    lam = _lambdas(np.random.default_rng(1), 5, 8)
    want = _C.mep_and_grad(lam, 0, 2.0)
    wide = np.zeros((5, 18))
    wide[:, ::2] = lam
    for variant in (np.asfortranarray(lam), wide[:, ::2], lam.tolist()):
        got = _C.mep_and_grad(variant, 0, 2.0)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    lam32 = lam.astype(np.float32)
    want32 = _C.mep_and_grad(lam32.astype(np.float64), 0, 2.0)
    np.testing.assert_array_equal(_C.mep_and_grad(lam32, 0, 2.0)[1], want32[1])


def test_outputs_are_new_arrays() -> None:
    lam = _lambdas(np.random.default_rng(2), 3, 4)
    before = lam.copy()
    value, grad, diag, off = _C.mep_and_grad(lam, 2, 2.0, hessian=True)
    np.testing.assert_array_equal(lam, before)
    for out in (value, grad, diag, off):
        assert out.flags.owndata and out.flags.c_contiguous and out.flags.writeable
        assert not np.shares_memory(out, lam)


def test_empty_batch() -> None:
    value, grad, diag, off = _C.mep_and_grad(np.empty((0, 6)), 1, 2.0, hessian=True)
    assert value.shape == (0,) and grad.shape == (0, 6) and diag.shape == (0, 6) and off.shape == (0, 5)


@pytest.mark.parametrize(
    ("lam", "kind", "match"),
    [
        (np.linspace(-1.0, 1.0, 5), 0, "2-D"),
        (np.zeros((2, 3, 4)), 0, "2-D"),
        (np.zeros((4, 1)), 0, "at least 2 points"),
        (np.linspace(-1.0, 1.0, 10).reshape(2, 5), 7, "unknown lambda-space kind 7"),
        (np.linspace(-1.0, 1.0, 10).reshape(2, 5), -1, "unknown lambda-space kind -1"),
    ],
)
def test_rejects_bad_input(lam: np.ndarray, kind: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _C.mep_and_grad(lam, kind, 2.0)


def test_build_info() -> None:
    info = _C.build_info()
    assert set(info) == {"openmp", "cuda", "max_threads", "compiler"}
    assert isinstance(info["openmp"], bool) and isinstance(info["cuda"], bool)
    assert isinstance(info["max_threads"], int) and info["max_threads"] >= 1
    assert isinstance(info["compiler"], str) and info["compiler"]
    if info["cuda"]:
        # Must answer on machines without a GPU or driver, too.
        assert isinstance(_C.cuda_device_count(), int) and _C.cuda_device_count() >= 0
    else:
        assert not hasattr(_C, "mep_and_grad_cuda")
