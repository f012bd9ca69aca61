"""The ComfyUI node, headless: model_sampling objects shaped like ComfyUI's, built from real diffusers configs, and
ComfyUI's Euler sampler loop (k-diffusion form) against `hso.solvers.sample` on the exact test-bed denoiser."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("sklearn")

import hso  # noqa: E402
import hso.comfyui as node  # noqa: E402
from hso.solvers import sample  # noqa: E402
from hso.testbeds import as_model, load  # noqa: E402


# ComfyUI's classes are matched by name (comfy/model_sampling.py); these carry the same fields
class ModelSamplingDiscrete:
    def __init__(self, scheduler):
        abar = scheduler.alphas_cumprod.double()
        self.sigmas = ((1 - abar) / abar) ** 0.5  # ComfyUI's table: float sigmas per training step


class ModelSamplingDiscreteFlow:
    def __init__(self, shift, multiplier=1000):
        self.shift, self.multiplier = shift, multiplier


class ModelSamplingFlux:
    def __init__(self, mu):
        self.shift = mu


class ModelSamplingContinuousEDM:
    def __init__(self, sigma_min, sigma_max, sigma_data=0.5):
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data


class Model:
    """A MODEL as ComfyUI hands it to a node: ``get_model_object("model_sampling")``."""

    def __init__(self, ms):
        self.ms = ms

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.ms


SD15 = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def _cases():
    sd15 = diffusers.DDPMScheduler(**SD15)
    # SD 2.1 and SDXL: the same betas (v-prediction changes the model's output, not its sigma table)
    sd21 = diffusers.EulerDiscreteScheduler(**SD15, prediction_type="v_prediction")
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    sd3 = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)  # SD3's scheduler config
    edm = diffusers.EDMEulerScheduler()
    return {
        "sd15 (eps)": (ModelSamplingDiscrete(sd15), hso.NoiseSchedule.from_diffusers(sd15)),
        "sd21 / sdxl (v)": (ModelSamplingDiscrete(sd21), hso.NoiseSchedule.from_diffusers(sd21)),
        "ddpm (eps)": (ModelSamplingDiscrete(ddpm), hso.NoiseSchedule.from_diffusers(ddpm)),
        "sd3 (flow, shift 3)": (ModelSamplingDiscreteFlow(3.0), hso.NoiseSchedule.from_diffusers(sd3)),
        "flux (flow, mu 1.15)": (ModelSamplingFlux(1.15),
                                 hso.NoiseSchedule.from_diffusers(
                                     diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), mu=1.15)),
        "edm": (ModelSamplingContinuousEDM(0.002, 80.0), hso.NoiseSchedule.from_diffusers(edm)),
    }


CASES = _cases()


@pytest.mark.parametrize("case", list(CASES))
def test_node_returns_the_optimised_sigmas_of_the_models_schedule(case):
    ms, noise = CASES[case]
    (sig,) = node.HSOScheduler().get_sigmas(Model(ms), 6, "euler", 1.0)
    assert isinstance(sig, torch.Tensor) and sig.dtype == torch.float32 and sig.shape == (7,)
    assert float(sig[-1]) == 0.0 and torch.all(sig[:-1] > sig[1:])
    # the same schedule hso optimises for the noise schedule read from diffusers' config (another path)
    res = hso.optimize(noise, 6, "euler", convention="jump")
    want = noise.sigma(res.t) if noise.family == "flow" else noise.edm_sigma(res.t)
    # the node reads the model's float32 sigma table; near timestep 0 (1 - abar = 1e-4 for DDPM) float32 moves
    # sigma by up to 1e-4 relative (measured 7.6e-5); the schedule itself (its timesteps) is the same
    np.testing.assert_allclose(sig[:-1].double().numpy(), want, rtol=2e-4)
    if noise.is_discrete:
        assert np.array_equal(node.noise_schedule_of(ms).timesteps_of_t(res.t), res.timesteps)


def _comfy_euler(denoised, sigmas, x):
    """ComfyUI's sample_euler (k-diffusion form, no churn): x += (x - D) / sigma * (sigma_next - sigma)."""
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (x - denoised(x, s)) / s * (s_next - s)
    return x


@pytest.mark.parametrize("case", list(CASES))
def test_sigmas_sample_like_hso_on_the_exact_denoiser(case):
    """ComfyUI's Euler on the node's SIGMAS, with the exact digits denoiser as the model, gives hso's own Euler
    sampler's samples on that schedule (from the same starting state)."""
    ms, _ = CASES[case]
    sch = node.noise_schedule_of(ms)
    gmm = load("gmm")
    sig = np.asarray(node.schedule_sigmas(ms, 5, "euler"), dtype=np.float64)
    res = hso.optimize(sch, 5, "euler", convention="jump")
    z = np.random.default_rng(0).standard_normal((4, 64))
    if sch.family == "flow":
        # ComfyUI's CONST models: x = (1 - s) x0 + s eps, the model's data prediction at flow sigma s
        def den(x, s):
            return gmm(x / (1 - s), s / (1 - s))
        start = sig[0] * z
        hso_start = start
    else:
        def den(x, s):
            return gmm(x, s)  # EDM form: x = x0 + sigma eps
        start = sig[0] * z
        hso_start = start * float(sch.alpha(res.t[0]))  # hso's VP state is alpha times ComfyUI's (EDM: alpha = 1)
    ours = _comfy_euler(den, sig, start)
    pred = "flow" if sch.family == "flow" else "epsilon"
    ref = sample(as_model(gmm, sch, pred), hso_start, sch, res.t, "euler", prediction=pred, convention="jump")
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_samplers_denoise_and_cache(monkeypatch):
    ms, noise = CASES["sd15 (eps)"]
    # every sampler name maps to a solver; Heun spends two evaluations per step but the last
    for name, solver in node.SAMPLERS.items():
        sig = node.schedule_sigmas(ms, 4, name)
        assert len(sig) == 5 and sig[-1] == 0.0
        nfe = 7 if solver == "heun" else 4
        res = hso.optimize(noise, nfe, solver, convention="jump", solver_options=node.SAMPLER_OPTIONS.get(name))
        np.testing.assert_allclose(sig[:-1], noise.edm_sigma(res.t), rtol=2e-4)
    # denoise < 1: the tail of the schedule for round(steps / denoise) steps, as BasicScheduler does
    tail = node.schedule_sigmas(ms, 4, "euler", 0.5)
    assert tail == node.schedule_sigmas(ms, 8, "euler")[-5:]
    assert node.schedule_sigmas(ms, 4, "euler", 0.0) == []
    # a repeated request is served from the cache: no search
    monkeypatch.setattr(node, "optimize", lambda *a, **k: (_ for _ in ()).throw(AssertionError("searched")))
    assert node.schedule_sigmas(ms, 4, "uni_pc") == node.schedule_sigmas(ms, 4, "uni_pc")


@pytest.mark.parametrize("args,match", [
    ((object(), 5, "euler"), "unknown model_sampling kind"),
    ((CASES["edm"][0], 0, "euler"), "steps must be an integer >= 1"),
    ((CASES["edm"][0], 5, "lms"), "unknown sampler 'lms'"),
    ((CASES["edm"][0], 5, "euler", 1.5), r"denoise must be in \[0, 1\]"),
])
def test_bad_input_gets_one_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        node.schedule_sigmas(*args)


def test_node_interface():
    spec = node.HSOScheduler.INPUT_TYPES()["required"]
    assert spec["model"] == ("MODEL",) and spec["steps"][0] == "INT" and spec["denoise"][0] == "FLOAT"
    assert list(spec["sampler"][0]) == list(node.SAMPLERS)
    assert node.HSOScheduler.RETURN_TYPES == ("SIGMAS",) and node.HSOScheduler.FUNCTION == "get_sigmas"
    assert node.NODE_CLASS_MAPPINGS == {"HSOScheduler": node.HSOScheduler}
