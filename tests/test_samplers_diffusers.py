"""The samplers against diffusers' own schedulers: same model, same integer schedule, same noise -> same sample.

diffusers keeps its sigmas in float32, so agreement is to float32 tolerance (relative ~1e-5), not bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import hso  # noqa: E402
from hso.solvers import sample  # noqa: E402
from hso.testbeds import as_model  # noqa: E402

SD = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
RTOL = 2e-5  # float32 sigmas inside diffusers


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(7).standard_normal((16, 64))


def _run_diffusers(scheduler, model, z: np.ndarray, steps: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """A plain DDPMPipeline-style loop with a real diffusers scheduler; the model takes integer timesteps.

    Returns the final sample, the timesteps the model was called at, and the first model input: the initial state
    in the model's own (VP) coordinates, which for the sigma-space schedulers (Euler, Heun) is not the noise itself
    (they start from ``init_noise_sigma * z``).
    """
    scheduler.set_timesteps(steps)
    x = torch.from_numpy(z.copy()) * scheduler.init_noise_sigma
    seen, first = [], None
    for ts in scheduler.timesteps:
        seen.append(int(ts))
        inp = scheduler.scale_model_input(x, ts).double().numpy()
        first = inp if first is None else first
        out = torch.from_numpy(model(inp, (int(ts) + 1) / 1000.0))
        x = scheduler.step(out, ts, x).prev_sample
    return x.double().numpy(), seen, first


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=RTOL * scale)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("steps", [4, 8])
def test_ddim_trailing_matches_diffusers(gmm, noise, prediction, steps):
    sch = hso.NoiseSchedule.preset("sd21")
    model = as_model(gmm, sch, prediction)
    ref, ts, x_init = _run_diffusers(diffusers.DDIMScheduler(**SD, prediction_type=prediction, set_alpha_to_one=True,
                                                     clip_sample=False, timestep_spacing="trailing"), model, noise, steps)
    ours = sample(model, x_init, sch, sch.t_of_timesteps(ts), "ddim", prediction=prediction, convention="jump")
    _close(ours, ref)


def test_ddim_stride_pitfall_is_real(gmm, noise):
    """diffusers' DDIM steps to t - 1000 // n, which is not the next timestep when n does not divide 1000: the
    stock scheduler then integrates a different schedule from the one it evaluates at (issue 5 repairs this)."""
    sch = hso.NoiseSchedule.preset("sd21")
    model = as_model(gmm, sch, "epsilon")
    ref, ts, x_init = _run_diffusers(diffusers.DDIMScheduler(**SD, set_alpha_to_one=True, clip_sample=False,
                                                             timestep_spacing="trailing"), model, noise, 7)
    assert ts[0] - 1000 // 7 != ts[1]
    ours = sample(model, x_init, sch, sch.t_of_timesteps(ts), "ddim", convention="jump")
    assert np.abs(ours - ref).max() > 100 * RTOL * np.abs(ref).max()


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [5, 8])
def test_dpmsolver_multistep_matches_diffusers(gmm, noise, order, steps):
    sch = hso.NoiseSchedule.preset("sd15")
    model = as_model(gmm, sch, "epsilon")
    ref, ts, x_init = _run_diffusers(diffusers.DPMSolverMultistepScheduler(
        **SD, solver_order=order, algorithm_type="dpmsolver++", solver_type="midpoint", final_sigmas_type="zero",
        lower_order_final=True), model, noise, steps)
    ours = sample(model, x_init, sch, sch.t_of_timesteps(ts), "dpmsolver++", order=order, convention="jump")
    _close(ours, ref)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [5, 9])
def test_unipc_stop_convention_matches_diffusers(gmm, noise, variant, order, steps):
    """diffusers' final_sigmas_type="sigma_min" ends at table entry 0 (t = 0.001) without a final evaluation:
    exactly the paper's "stop" convention on the points timesteps + [0]."""
    sch = hso.NoiseSchedule.preset("sd15")
    model = as_model(gmm, sch, "epsilon")
    ref, ts, x_init = _run_diffusers(diffusers.UniPCMultistepScheduler(
        **SD, solver_order=order, solver_type=variant, predict_x0=True, final_sigmas_type="sigma_min",
        lower_order_final=True), model, noise, steps)
    ours = sample(model, x_init, sch, sch.t_of_timesteps(ts + [0]), "unipc", order=order, variant=variant,
                  convention="stop")
    _close(ours, ref)


@pytest.mark.parametrize("order", [2, 3])
def test_unipc_jump_convention_matches_diffusers(gmm, noise, order):
    """With final_sigmas_type="zero" diffusers' bh2 UniPC is the "jump" convention (bh1 there returns NaN: its
    B(h) = -h is infinite on the jump to sigma 0; `hso` jumps with the data prediction and has no such case)."""
    sch = hso.NoiseSchedule.preset("sd15")
    model = as_model(gmm, sch, "epsilon")
    ref, ts, x_init = _run_diffusers(diffusers.UniPCMultistepScheduler(
        **SD, solver_order=order, solver_type="bh2", final_sigmas_type="zero"), model, noise, 6)
    ours = sample(model, x_init, sch, sch.t_of_timesteps(ts), "unipc", order=order, variant="bh2", convention="jump")
    _close(ours, ref)
    bh1 = sample(model, x_init, sch, sch.t_of_timesteps(ts), "unipc", order=order, variant="bh1", convention="jump")
    assert np.all(np.isfinite(bh1))


@pytest.mark.parametrize("steps", [4, 9])
def test_euler_matches_diffusers(gmm, noise, steps):
    sch = hso.NoiseSchedule.preset("sd15")
    model = as_model(gmm, sch, "epsilon")
    ref, ts, x_init = _run_diffusers(diffusers.EulerDiscreteScheduler(**SD, final_sigmas_type="zero",
                                                              timestep_spacing="trailing"), model, noise, steps)
    ours = sample(model, x_init, sch, sch.t_of_timesteps(ts), "euler", convention="jump")
    _close(ours, ref)


def test_heun_matches_diffusers(gmm, noise):
    sch = hso.NoiseSchedule.preset("sd15")
    model = as_model(gmm, sch, "epsilon")
    sched = diffusers.HeunDiscreteScheduler(**SD, timestep_spacing="trailing")
    ref, ts, x_init = _run_diffusers(sched, model, noise, 5)
    points = list(dict.fromkeys(ts))  # Heun lists every interior timestep twice
    out = sample(model, x_init, sch, sch.t_of_timesteps(points), "heun", convention="jump", return_trajectory=True)
    assert out.nfe == len(ts) == 2 * (len(points) - 1) + 1
    _close(out.x, ref)


def test_flow_match_euler_matches_diffusers(gmm, noise):
    """FlowMatchEulerDiscrete with custom sigmas on a shift-3 flow model (velocity prediction)."""
    sch = hso.NoiseSchedule.flow(3.0)
    model = as_model(gmm, sch, "flow")
    t = np.linspace(0.999, 0.02, 6)
    sig = sch.sigma(t)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(sigmas=sig.tolist())
    x = torch.from_numpy(noise.copy())
    for i, ts in enumerate(sched.timesteps):
        out = torch.from_numpy(model(x.double().numpy(), float(t[i])))
        x = sched.step(out, ts, x).prev_sample
    ours = sample(model, noise, sch, t, "euler", prediction="flow", convention="jump")
    _close(ours, x.double().numpy())
