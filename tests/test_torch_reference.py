"""The autograd twin (`hso.fast.reference_torch`, backend "torch") against the hand-derived numpy reference.

Independent evidence for the analytic formulas: the twin writes only the objectives' values and lets autograd
differentiate them (the MEP Hessian from three Hessian-vector products), so agreement checks every gradient and
Hessian formula of `hso.fast.reference` and `hso.fast.reference_dmn`.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agreement import KINDS, assert_mep_close, random_lambdas  # noqa: E402
from hso import fast  # noqa: E402
from hso.fast import reference, reference_torch  # noqa: E402
from hso.fast.reference_dmn import dmn_and_grad  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64])
def test_mep_autograd_equals_the_analytic_formulas(n, b):
    rng = np.random.default_rng(10 * n + b)
    for kind in KINDS:
        for p in (0.5, 1.0, 2.0, 3.0):
            lam = random_lambdas(rng, b, n)
            got = fast.objective_and_grad(lam, fast.ObjectiveSpec("mep", kind, p), hessian=True, backend="torch")
            want = reference.mep_and_grad(lam, kind, p, hessian=True)
            assert_mep_close(got[:3], want[:3], lam, kind, p)
            # autograd forms the mixed derivative through the chain rule of h and m, where the E C Q1 / 2 halves
            # of d/da and d/db cancel: its rounding is relative to E (C |Q1| + S ...), not to the result's E S
            lo, hi = lam[:, :-1], lam[:, 1:]
            q = reference.q_derivs(0.5 * (lo + hi), kind, p)[0]
            e, sh, ch = np.exp(q), np.abs(np.sinh(0.5 * (hi - lo))), np.cosh(0.5 * (hi - lo))
            scale = e * (ch * abs(p - 1.0) + sh * (1.0 + (p - 1.0) ** 2))
            assert np.all(np.abs(got[3] - want[3]) <= 1e-12 * scale)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10, 17])
def test_dmn_autograd_equals_the_analytic_gradient(n):
    rng = np.random.default_rng(n)
    lam = np.sort(rng.uniform(-6.0, 5.0, (32, n + 1)), axis=1)
    for kind in KINDS:
        for p, trunc in ((2.0, None), (1.0, 0), (1.5, 5)):
            v, g = fast.objective_and_grad(lam, fast.ObjectiveSpec("dmn", kind, p, trunc), backend="torch")
            want_v, want_g = dmn_and_grad(lam, kind, p, trunc)
            np.testing.assert_allclose(v, want_v, rtol=1e-12)
            assert np.all(np.abs(g - want_g) <= 1e-12 * np.abs(want_g).max(axis=1, keepdims=True))


def test_tensors_stay_tensors():
    lam = torch.sort(torch.rand(4, 6, dtype=torch.float64) * 6 - 3, dim=1).values
    out = reference_torch.mep_and_grad(lam, 0, 2.0, hessian=True)
    assert all(isinstance(x, torch.Tensor) and x.device == lam.device for x in out)
    assert out[1].shape == (4, 6) and out[3].shape == (4, 5)
    np.testing.assert_allclose(out[0].numpy(), reference.mep_and_grad(lam.numpy(), 0, 2.0)[0], rtol=1e-13)


def test_lower_level_on_the_torch_objective_is_the_reference():
    """The torch backend has no fused lower level: the numpy driver runs on its objective, to the same optimum."""
    import hso
    s = hso.NoiseSchedule.preset("sd21")
    spec = fast.LowerSpec(n_intervals=6, gap=s.time_resolution, d_min=hso.d_min(6))
    obj = fast.ObjectiveSpec("mep", s.kind)
    psi = np.array([[7.0, 0.02, 0.99], [3.5, 0.01, 1.0], [15.0, 0.03, 0.97]])
    a = fast.lower_solve(psi, s, spec, obj, backend="reference")
    b = fast.lower_solve(psi, s, spec, obj, backend="torch")
    np.testing.assert_allclose(b.lambdas, a.lambdas, rtol=0, atol=1e-7)
    np.testing.assert_allclose(b.objective, a.objective, rtol=1e-9)


def test_auto_never_picks_torch():
    assert fast.get_backend("auto").name != "torch"
    assert fast.available_backends()[-1] == "torch"
