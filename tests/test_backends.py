"""Every available backend agrees with the float64 reference on the lower level (the fused kernel contract)."""
import numpy as np
import pytest

import hso
from agreement import FAMILIES, assert_lower_agree, random_psi, solve_both
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

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_int", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64])
@pytest.mark.parametrize("spacing", ["rank", "constrain"])
def test_lower_solve_agrees_with_reference(backend, n_int, b, spacing):
    s = hso.NoiseSchedule.preset("sd21")
    gap = s.time_resolution if spacing == "rank" else max(hso.d_min(n_int), s.time_resolution) * (1 + 1e-12)
    spec = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=hso.d_min(n_int))
    assert_lower_agree(*solve_both(backend, s, spec, random_psi(s, b, 7 * n_int + b), 2.0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset, p", FAMILIES)
@pytest.mark.parametrize("init", sorted(hso.INIT_FAMILIES))
def test_every_family_and_init(backend, preset, p, init):
    s = hso.NoiseSchedule.preset(preset)
    spec = fast.LowerSpec(n_intervals=8, gap=s.time_resolution, d_min=hso.d_min(8), p=p, init=init)
    assert_lower_agree(*solve_both(backend, s, spec, random_psi(s, 16, 3), p))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_batch(backend):
    s = hso.NoiseSchedule.preset("sd15")
    spec = fast.LowerSpec(n_intervals=6, gap=s.time_resolution, d_min=hso.d_min(6))
    assert_lower_agree(*solve_both(backend, s, spec, random_psi(s, 4097, 11), 2.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_search_is_the_same(backend):
    a = hso.optimize("sd21", 6, "ddim", backend="reference")
    b = hso.optimize("sd21", 6, "ddim", backend=backend)
    np.testing.assert_array_equal(a.timesteps, b.timesteps)
    assert b.fitness == pytest.approx(a.fitness, rel=1e-9)
