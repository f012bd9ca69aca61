"""One agreement test over every backend of the registry (Triton included, on its CPU interpreter here): each
objective and each lower level against the float64 numpy reference, on one small grid of every lambda-space kind.

The backend-specific suites (test_backends.py, test_dmn_backends.py, test_cpp_kernel.py, test_torch_reference.py,
test_triton.py) go further on each; this one is the contract every backend, present or future, must meet. Backends
that cannot run here are skipped with the reason (CUDA without a GPU).
"""
import numpy as np
import pytest

import hso
from agreement import KINDS, assert_lower_agree, assert_mep_close, random_lambdas, random_psi
from hso import fast


def _every_backend():
    out = []
    for name, backend in fast.BACKENDS.items():
        reason = backend.probe()
        out.append(pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=f"{name}: {reason}")))
    return out


EVERY_BACKEND = _every_backend()


@pytest.mark.parametrize("backend", EVERY_BACKEND)
@pytest.mark.parametrize("objective", ["mep", "dmn"])
def test_objective_and_gradient(backend, objective):
    rng = np.random.default_rng(5)
    for kind in KINDS:
        for n_int in (1, 5):
            lam = random_lambdas(rng, 3, n_int)
            p = 1.0 if kind == 1 else 2.0
            spec = fast.ObjectiveSpec(objective, kind, p)
            if objective == "mep":
                got = fast.objective_and_grad(lam, spec, backend=backend, hessian=True)
                want = fast.objective_and_grad(lam, spec, backend="reference", hessian=True)
                assert_mep_close(got, want, lam, kind, p)
            else:
                got_v, got_g = fast.objective_and_grad(lam, spec, backend=backend)
                want_v, want_g = fast.objective_and_grad(lam, spec, backend="reference")
                np.testing.assert_allclose(got_v, want_v, rtol=1e-12)
                scale = np.abs(want_g).max(axis=1, keepdims=True)  # entries are sums of terms of either sign
                assert np.all(np.abs(got_g - want_g) <= 1e-12 * scale)


@pytest.mark.parametrize("backend", EVERY_BACKEND)
@pytest.mark.parametrize("objective", ["mep", "dmn"])
@pytest.mark.parametrize("preset", ["sd21", "edm", "flow"])
def test_lower_level(backend, objective, preset):
    s = hso.NoiseSchedule.preset(preset)
    p = 1.0 if s.kind_name == "ve" else 2.0
    # DM-NonUniform: N <= 5, where its quasi-Newton iterations are stable under rounding (test_dmn_backends.py)
    n_int = 6 if objective == "mep" else 4
    spec = fast.LowerSpec(n_intervals=n_int, gap=s.time_resolution, d_min=hso.d_min(n_int), objective=objective, p=p)
    obj = fast.ObjectiveSpec(objective, s.kind, p)
    psi = random_psi(s, 8, 17)
    want = fast.lower_solve(psi, s, spec, obj, backend="reference")
    got = fast.lower_solve(psi, s, spec, obj, backend=backend)
    assert_lower_agree(want, got)


def test_the_objective_spec_is_the_lower_specs_own():
    """The two specs share objective, p and trunc_num: a mismatch (trunc_num included, which a fused kernel would
    take from the lower spec and the numpy driver from the objective spec) is refused, never silently resolved."""
    s = hso.NoiseSchedule.preset("sd21")
    spec = fast.LowerSpec(n_intervals=6, gap=s.time_resolution, d_min=hso.d_min(6), objective="dmn", trunc_num=2)
    psi = random_psi(s, 2, 3)
    assert fast.objective_spec(spec, s.kind) == fast.ObjectiveSpec("dmn", s.kind, 2.0, 2)
    for wrong in (fast.ObjectiveSpec("dmn", s.kind, 2.0, 3), fast.ObjectiveSpec("dmn", s.kind, 1.0, 2),
                  fast.ObjectiveSpec("mep", s.kind, 2.0), fast.ObjectiveSpec("dmn", 1, 2.0, 2)):
        with pytest.raises(ValueError, match="must match"):
            fast.lower_solve(psi, s, spec, wrong, backend="reference")
