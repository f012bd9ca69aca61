"""Every available backend agrees with the float64 reference on the lower level (the fused kernel contract)."""
import numpy as np
import pytest

import hso
from hso import fast

def _backend_params():
    """Every registered backend but the reference; those that cannot run here are skipped with the reason."""
    out = []
    for name, backend in fast.BACKENDS.items():
        if name in ("reference", "triton"):  # triton: tests/test_triton.py (its CPU interpreter is slow)
            continue
        reason = backend.probe()
        out.append(pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=f"{name}: {reason}")))
    return out


BACKENDS = _backend_params()

# (preset, p): MEP with p = 2 is constant for VE/EDM, so that family is exercised with p = 1
FAMILIES = [("sd21", 2.0), ("ddpm", 2.0), ("vp_linear", 2.0), ("vp_cosine", 2.0), ("flow", 2.0), ("edm", 1.0)]


def _psi(schedule, b, seed):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(3, 16, b), rng.uniform(0.01, 0.03, b),
                     rng.uniform(0.96, min(1.0, schedule.t_max), b)], axis=1)


def _both(backend, schedule, spec, psi, p):
    obj = fast.ObjectiveSpec("mep", schedule.kind, p)
    return (fast.lower_solve(psi, schedule, spec, obj, backend="reference"),
            fast.lower_solve(psi, schedule, spec, obj, backend=backend))


def _assert_agree(ref, got):
    # float64 both sides, same algorithm and iterates: values agree to 1e-9 relative, schedules to 1e-7 in lambda
    np.testing.assert_array_equal(ref.feasible, got.feasible)
    np.testing.assert_allclose(got.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(got.lambdas, ref.lambdas, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.t, ref.t, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.penalty, ref.penalty, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_int", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64])
@pytest.mark.parametrize("spacing", ["rank", "constrain"])
def test_lower_solve_agrees_with_reference(backend, n_int, b, spacing):
    s = hso.NoiseSchedule.preset("sd21")
    gap = s.time_resolution if spacing == "rank" else max(hso.d_min(n_int), s.time_resolution) * (1 + 1e-12)
    spec = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=hso.d_min(n_int))
    _assert_agree(*_both(backend, s, spec, _psi(s, b, 7 * n_int + b), 2.0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset, p", FAMILIES)
@pytest.mark.parametrize("init", sorted(hso.INIT_FAMILIES))
def test_every_family_and_init(backend, preset, p, init):
    s = hso.NoiseSchedule.preset(preset)
    spec = fast.LowerSpec(n_intervals=8, gap=s.time_resolution, d_min=hso.d_min(8), p=p, init=init)
    _assert_agree(*_both(backend, s, spec, _psi(s, 16, 3), p))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_batch(backend):
    s = hso.NoiseSchedule.preset("sd15")
    spec = fast.LowerSpec(n_intervals=6, gap=s.time_resolution, d_min=hso.d_min(6))
    _assert_agree(*_both(backend, s, spec, _psi(s, 4097, 11), 2.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_search_is_the_same(backend):
    a = hso.optimize("sd21", 6, "ddim", backend="reference")
    b = hso.optimize("sd21", 6, "ddim", backend=backend)
    np.testing.assert_array_equal(a.timesteps, b.timesteps)
    assert b.fitness == pytest.approx(a.fitness, rel=1e-9)
