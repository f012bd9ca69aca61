"""Agreement of the compiled CPU kernel `hso._C.mep_and_grad` with its float64 numpy twin `hso.fast.reference`."""
from __future__ import annotations

import numpy as np
import pytest

from agreement import KINDS, assert_mep_close, random_lambdas
from hso.fast import reference

try:
    from hso import _C
except ImportError as exc:  # not built, or built but not loadable: say which
    pytest.skip(f"hso._C is not available ({exc}); build it with `make install`", allow_module_level=True)

@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("N", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("B", [1, 3, 64, 4097])
def test_matches_reference(B: int, N: int, kind: int, p: float) -> None:
    rng = np.random.default_rng([B, N, kind, int(p)])
    lam = random_lambdas(rng, B, N)
    want = reference.mep_and_grad(lam, kind, p, hessian=True)
    got = _C.mep_and_grad(lam, kind, p, hessian=True)
    got_first_order = _C.mep_and_grad(lam, kind, p)

    assert isinstance(got, tuple) and len(got) == 4
    assert isinstance(got_first_order, tuple) and len(got_first_order) == 2
    assert_mep_close(got, want, lam, kind, p)
    # The first-order call runs the same kernel without the Hessian outputs: bit-identical value and gradient.
    np.testing.assert_array_equal(got_first_order[0], got[0])
    np.testing.assert_array_equal(got_first_order[1], got[1])


def test_accepts_any_float64_convertible_layout() -> None:
    """Non-contiguous, Fortran-ordered, float32 and list inputs are converted, never misread."""
    lam = random_lambdas(np.random.default_rng(1), 5, 8)
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
    lam = random_lambdas(np.random.default_rng(2), 3, 4)
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
    cuda_entries = ("mep_and_grad_cuda", "dmn_and_grad_cuda", "lower_solve_cuda")
    assert [hasattr(_C, name) for name in cuda_entries] == [info["cuda"]] * 3
