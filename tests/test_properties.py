"""Property-based invariants (hypothesis): valid inputs always give finite, monotone, in-bounds, unique schedules."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hso

FAST = dict(popsize=2, maxiter=3, polish=False)  # a few generations: the invariants hold at every generation


def _valid_nfe(solver: str, nfe: int) -> int:
    spec = hso.get_solver(solver)
    if spec.evals_per_step == 2:
        return 2 * max(1, (nfe - 1) // 2) + 1  # odd, for Heun's final jump
    return max(nfe, 2) if spec.default_convention == "jump" else nfe


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preset=st.sampled_from(sorted(hso.PRESETS)), solver=st.sampled_from(sorted(hso.SOLVERS)),
       nfe=st.integers(1, 50), spacing=st.sampled_from(hso.SPACINGS), seed=st.integers(0, 2**31 - 1))
def test_results_are_valid_schedules(preset, solver, nfe, spacing, seed):
    nfe = _valid_nfe(solver, nfe)
    res = hso.optimize(preset, nfe, solver, spacing=spacing, seed=seed, **FAST)
    box = res.settings["bounds"]
    assert np.all(np.isfinite(res.t)) and np.all(np.isfinite(res.lambdas)) and np.isfinite(res.fitness)
    assert np.all(np.diff(res.t) < 0) and np.all(np.diff(res.lambdas) > 0)
    assert box[1][0] - 1e-12 <= res.t[-1] <= box[1][1] + 1e-12
    assert box[2][0] - 1e-12 <= res.t[0] <= box[2][1] + 1e-12
    if res.timesteps is not None:
        assert len(set(res.timesteps.tolist())) == len(res.timesteps)
        assert np.all(np.diff(res.timesteps) < 0) and res.timesteps.min() >= 0
    if spacing == "constrain":
        assert res.penalty == 0.0
    again = hso.optimize(preset, nfe, solver, spacing=spacing, seed=seed, **FAST)
    np.testing.assert_array_equal(res.t, again.t)


@settings(max_examples=25, deadline=None)
@given(beta_start=st.floats(1e-5, 1e-3), beta_end=st.floats(5e-3, 0.05), n=st.integers(50, 2000),
       kind=st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2"]), nfe=st.integers(2, 20),
       zero_snr=st.booleans())
def test_random_discrete_models(beta_start, beta_end, n, kind, nfe, zero_snr):
    s = hso.NoiseSchedule.vp_discrete(beta_schedule=kind, beta_start=beta_start, beta_end=beta_end,
                                      num_train_timesteps=n, rescale_betas_zero_snr=zero_snr)
    t = np.linspace(s.t_min, s.t_max, 64)
    np.testing.assert_allclose(s.t_of_lambda(s.lambda_(t)), t, atol=1e-9)
    if nfe * (1.0 / n) > 0.99:
        return
    res = hso.optimize(s, nfe, "ddim", **FAST)
    assert len(set(res.timesteps.tolist())) == nfe
    assert np.all(np.diff(res.timesteps) < 0)
