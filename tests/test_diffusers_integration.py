"""hso schedules in real diffusers schedulers and pipelines, offline (small randomly initialised UNet2DModel)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

import hso  # noqa: E402
import hso.diffusers as hd  # noqa: E402
from hso.solvers import sample  # noqa: E402
from hso.testbeds import as_model, load  # noqa: E402

SD = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
ALL = ["DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler",
       "DEISMultistepScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "HeunDiscreteScheduler"]


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    net = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8).eval()
    return net.double()


@pytest.fixture(scope="module")
def noise():
    return torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 8, 8)))


def _make(name: str, **kw):
    cfg = dict(SD, **kw)
    if name in ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "DDIMScheduler"):
        cfg.setdefault("timestep_spacing", "trailing")
    if name == "DDIMScheduler":
        cfg.setdefault("set_alpha_to_one", True)
        cfg.setdefault("clip_sample", False)
    return getattr(diffusers, name)(**cfg)


def _loop(model, sched, x, steps=None, inputs=None):
    """What every diffusers pipeline does with its scheduler; returns the sample and the model's timesteps (and
    appends the model's inputs to `inputs` when given)."""
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sched.set_timesteps(steps)
    x = x * getattr(sched, "init_noise_sigma", 1.0)
    with torch.no_grad():
        for t in sched.timesteps:
            seen.append(float(t))
            inp = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
            if inputs is not None:
                inputs.append(inp)
            x = sched.step(model(inp, t), t, x).prev_sample
    return x, seen


def _unet_model(unet):
    return lambda x, t: unet(x, t).sample


def _stock_points(sched, steps):
    sched.set_timesteps(steps)
    ts = list(dict.fromkeys(int(v) for v in sched.timesteps))  # Heun repeats interior points
    return (np.asarray(ts, dtype=np.float64) + 1) / 1000


# ------------------------------------------------------------------ from_diffusers
def test_from_diffusers_matches_the_presets_and_reads_every_field(tmp_path):
    sd = hso.NoiseSchedule.from_diffusers(diffusers.DPMSolverMultistepScheduler(**SD, prediction_type="v_prediction"))
    assert np.array_equal(sd.log_alpha_table, hso.NoiseSchedule.preset("sd21").log_alpha_table)
    assert sd.prediction_type == "v_prediction"
    betas = np.linspace(1e-4, 0.02, 500)
    tb = hso.NoiseSchedule.from_diffusers(diffusers.DDIMScheduler(num_train_timesteps=500, trained_betas=betas))
    assert np.allclose(np.exp(2 * tb.log_alpha_table), np.cumprod(1 - betas), rtol=1e-12)
    zs = hso.NoiseSchedule.from_diffusers(diffusers.EulerDiscreteScheduler(**SD, rescale_betas_zero_snr=True))
    assert zs.lambda_(1.0) < -8  # terminal SNR ~ 0
    fl = hso.NoiseSchedule.from_diffusers(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    assert fl.family == "flow" and fl.params["shift"] == 3.0
    dyn = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with pytest.raises(ValueError, match="use_dynamic_shifting"):
        hso.NoiseSchedule.from_diffusers(dyn)
    assert np.isclose(hso.NoiseSchedule.from_diffusers(dyn, mu=0.5).params["shift"], np.exp(0.5))
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps({"_class_name": "PNDMScheduler", **SD}))
    assert np.array_equal(hso.NoiseSchedule.from_diffusers(path).log_alpha_table, sd.log_alpha_table)
    assert hso.NoiseSchedule.from_diffusers(tmp_path).family == "vp_discrete"
    with pytest.raises(ValueError, match="'beta_schedule' = 'sigmoid'"):
        hso.NoiseSchedule.from_diffusers({"beta_schedule": "sigmoid"})
    with pytest.raises(ValueError, match="timestep_type"):
        hso.NoiseSchedule.from_diffusers({"timestep_type": "continuous"})
    with pytest.raises(FileNotFoundError):
        hso.NoiseSchedule.from_diffusers(tmp_path / "nope.json")
    with pytest.raises(TypeError):
        hso.NoiseSchedule.from_diffusers(42)


# ------------------------------------------------------------------ stock equivalence
@pytest.mark.parametrize("name", ALL)
def test_adapted_scheduler_with_the_stock_schedule_gives_the_stock_output(unet, noise, name):
    stock = _make(name)
    conv = "stop" if name == "DEISMultistepScheduler" else "jump"  # stock DEIS ends at sigma_min, no evaluation
    t = _stock_points(stock, 5)
    if conv == "stop":
        t = np.append(t, 1 / 1000)
    ref, seen_ref = _loop(_unet_model(unet), stock, noise, 5)  # 5 divides 1000: stock DDIM strides right
    adapted = hd.apply(_make(name), t, convention=conv)
    out, seen = _loop(_unet_model(unet), adapted, noise)
    assert seen == seen_ref
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_flow_match_euler_with_stock_sigmas(unet, noise):
    sch = hso.NoiseSchedule.flow(3.0)
    t = np.linspace(0.999, 0.05, 6)
    stock = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    stock.set_timesteps(sigmas=t.tolist())  # FlowMatch shifts custom sigmas itself: pass the unshifted time
    model = _unet_model(unet)
    seen_ref, x = [], noise.clone()
    with torch.no_grad():
        for ts in stock.timesteps:
            seen_ref.append(float(ts))
            x = stock.step(model(x, ts), ts, x).prev_sample
    out, seen = _loop(model, hd.apply(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), t), noise)
    np.testing.assert_allclose(seen, seen_ref, rtol=1e-6)
    torch.testing.assert_close(out, x, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ hso schedules run exactly
def _measured_convention(name: str, nfe: int, schedule: str = "sd15", **config) -> str:
    """The convention measured for the scheduler class with this config (its sampler variant included)."""
    from hso.measured import diffusers_convention

    if name == "HeunDiscreteScheduler":
        return "jump"
    return diffusers_convention(hd.SUPPORTED[name], schedule, nfe, hd.solver_options_for(_make(name, **config)))[0]


def _evaluated(res) -> list[int]:
    """The timesteps a sampler evaluates for a result: all of them, or all but the last ("stop")."""
    ts = res.timesteps.tolist()
    return ts[:-1] if res.convention == "stop" else ts


@pytest.mark.parametrize("name", ALL)
def test_optimize_pipeline_runs_the_optimised_timesteps(unet, noise, name):
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=_make(name))  # DDIMPipeline would convert to DDIM
    nfe = 5
    res = hd.optimize_pipeline(pipe, nfe=nfe)
    assert res.convention == _measured_convention(name, nfe) and res.solver == hd.SUPPORTED[name]
    assert type(pipe.scheduler).__name__ == name
    out, seen = _loop(_unet_model(unet), pipe.scheduler, noise)
    assert list(dict.fromkeys(int(v) for v in seen)) == _evaluated(res)
    assert torch.isfinite(out).all()


def test_optimize_pipeline_takes_the_measured_convention():
    """The convention optimize_pipeline installs is the committed measurement's, per solver and NFE: "stop" (ending
    at timestep 0, final_sigmas_type "sigma_min") where it measured better on every bed, else diffusers' "jump";
    Heun always "jump"; an explicit convention wins."""
    from hso.measured import rule_table

    entries = [e for e in rule_table()["diffusers"] if e["space"] == "vp"]
    assert {e["noise"] for e in entries} == {"sd21", "ddpm"}
    assert all(e["convention"] in ("stop", "jump") for e in entries)
    by_solver = {"unipc": "UniPCMultistepScheduler", "dpmsolver++": "DPMSolverMultistepScheduler",
                 "ddim": "DDIMScheduler"}
    betas = {"sd21": {}, "ddpm": dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)}
    # per (noise, solver): the smallest measured NFE of each choice (searches at NFE 50 take seconds each)
    first: dict[tuple, dict] = {}
    for e in sorted(entries, key=lambda e: e["nfe"]):
        first.setdefault((e["noise"], e["sampler"], e["convention"]), e)
    for e in first.values():
        name = by_solver[e["solver"]]
        # the measured sampler variant, as the scheduler's config says it (read by optimize_pipeline)
        variant = {k: v for k, v in (("solver_order", e["options"].get("order")),
                                     ("solver_type", e["options"].get("variant"))) if v is not None}
        sched = _make(name, **betas[e["noise"]], **variant)
        assert hd.solver_options_for(sched) == e["options"]
        res = hd.optimize_pipeline(sched, nfe=e["nfe"])
        assert res.convention == e["convention"], e
        # the choice is the lower worst ratio, "stop" needing a 2% margin
        w = e["worst"]
        assert (e["convention"] == "stop") == (w["stop"] * 1.02 < w["jump"])
        if e["convention"] == "stop":
            assert hd.optimize_pipeline(_make(name, **betas[e["noise"]], **variant), nfe=e["nfe"],
                                        convention="jump").convention == "jump"
    assert hd.optimize_pipeline(_make("HeunDiscreteScheduler"), nfe=5).convention == "jump"


@pytest.mark.parametrize("name,solver,kw", [
    ("DPMSolverMultistepScheduler", "dpmsolver++", {"solver_order": 2}),
    ("UniPCMultistepScheduler", "unipc", {"solver_order": 3, "solver_type": "bh1"}),
    ("UniPCMultistepScheduler", "unipc", {"solver_order": 2, "solver_type": "bh2"}),
    ("DDIMScheduler", "ddim", {}), ("EulerDiscreteScheduler", "euler", {}), ("HeunDiscreteScheduler", "heun", {})])
@pytest.mark.parametrize("conv", ["jump", "stop"])
def test_adapted_schedulers_equal_hso_samplers_on_hso_schedules(name, solver, kw, conv):
    """The exact denoiser through diffusers' adapted scheduler and through hso.solvers.sample: same numbers."""
    if solver == "heun" and conv == "stop":
        pytest.skip("Heun in diffusers always ends with the step to sigma 0")
    sch = hso.NoiseSchedule.preset("sd15")
    res = hso.optimize(sch, 7 if solver == "heun" else 5, solver, convention=conv)
    gmm = load("gmm")
    model = as_model(gmm, sch, "epsilon")
    z = np.random.default_rng(1).standard_normal((4, 64))
    adapted = hd.apply(_make(name, **kw), res)

    def dmodel(x, t):
        return torch.from_numpy(model(x.double().numpy(), (int(t) + 1) / 1000))

    inputs: list = []
    out, _ = _loop(dmodel, adapted, torch.from_numpy(z), inputs=inputs)
    # a discrete model runs the integer timesteps: the schedule points snapped to them
    t_run = sch.t_of_timesteps(res.timesteps)
    opts = {"order": kw["solver_order"]} if "solver_order" in kw else {}
    if "solver_type" in kw:
        opts["variant"] = kw["solver_type"]
    ours = sample(model, inputs[0].numpy(), sch, t_run, solver, convention=conv, **opts)
    if conv == "stop" and name == "EulerDiscreteScheduler":
        ours = ours / float(sch.alpha(t_run[-1]))  # Euler's state is sigma-space x / alpha
    np.testing.assert_allclose(out.numpy(), ours, rtol=0, atol=3e-5 * np.abs(ours).max())


def test_unipc_bh1_jump_is_repaired(unet, noise):
    stock = _make("UniPCMultistepScheduler", solver_type="bh1")
    bad, _ = _loop(_unet_model(unet), stock, noise, 5)
    assert not torch.isfinite(bad).all()  # diffusers' own bh1 on the jump to sigma 0
    res = hso.optimize("sd15", 5, "unipc", convention="jump")
    good, _ = _loop(_unet_model(unet), hd.apply(_make("UniPCMultistepScheduler", solver_type="bh1"), res), noise)
    assert torch.isfinite(good).all()


def test_ddim_pipeline_end_to_end(unet):
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=_make("DDIMScheduler", timestep_spacing="leading"))
    res = hd.optimize_pipeline(pipe, nfe=6, convention="jump")
    calls = []
    forward = pipe.unet.forward

    def spy(x, t, *a, **k):
        calls.append(int(t))
        return forward(x, t, *a, **k)

    pipe.unet.forward = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            img = pipe(batch_size=1, generator=torch.Generator().manual_seed(0), num_inference_steps=6,
                       output_type="np").images
    finally:
        pipe.unet.forward = forward
    assert calls == res.timesteps.tolist()
    assert np.all(np.isfinite(img))


# ------------------------------------------------------------------ kwargs, sigmas, errors
def test_pipeline_kwargs_and_k_diffusion_sigmas():
    res = hso.optimize("sd15", 5, "dpmsolver++", convention="jump")
    kw = hd.pipeline_kwargs(res, _make("DPMSolverMultistepScheduler"))
    stock = _make("DPMSolverMultistepScheduler")
    stock.set_timesteps(**kw)
    assert stock.timesteps.tolist() == res.timesteps.tolist()
    assert res.k_diffusion_sigmas()[-1] == 0.0 and len(res.k_diffusion_sigmas()) == 6
    stop = hso.optimize("sd15", 5, "unipc")
    assert stop.k_diffusion_sigmas()[-1] > 0 and len(stop.k_diffusion_sigmas()) == 6
    with pytest.raises(ValueError, match="use hso.diffusers.apply"):
        hd.pipeline_kwargs(res, _make("UniPCMultistepScheduler"))
    with pytest.raises(ValueError, match="'stop' schedule"):
        hd.pipeline_kwargs(stop, _make("DPMSolverMultistepScheduler"))
    flow = hso.optimize(hso.NoiseSchedule.flow(3.0), 5, "euler")
    kw = hd.pipeline_kwargs(flow, diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    assert np.allclose(kw["sigmas"], flow.t)  # the scheduler applies its shift to what it is given
    stock = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    stock.set_timesteps(**kw)
    assert np.allclose(stock.sigmas[:-1].numpy(), hso.NoiseSchedule.flow(3.0).sigma(flow.t), rtol=1e-6)


def test_bad_combinations_raise():
    res = hso.optimize("sd15", 5, "unipc", convention="jump")
    with pytest.raises(ValueError, match="another noise schedule"):
        hd.apply(diffusers.UniPCMultistepScheduler(beta_schedule="linear"), res)
    pndm = diffusers.PNDMScheduler(**SD)  # SD 1.x pipelines' default scheduler
    with pytest.raises(ValueError, match="cannot take a custom schedule") as refused:
        hd.apply(pndm, res)
    # the swap the message advises keeps the noise schedule and takes the schedule
    assert "UniPCMultistepScheduler.from_config(pipe.scheduler.config)" in str(refused.value)
    with pytest.warns(UserWarning, match="solver_options"):  # res was made for UniPC bh1 order 3, not diffusers' bh2
        swapped = hd.apply(diffusers.UniPCMultistepScheduler.from_config(pndm.config), res)
    swapped.set_timesteps(num_inference_steps=5)
    assert np.allclose(np.asarray(swapped.alphas_cumprod), np.asarray(pndm.alphas_cumprod))
    with pytest.raises(ValueError, match="always ends with a step to sigma 0"):
        pass_stop = hso.optimize("sd15", 6, "heun", convention="stop")
        hd.apply(_make("HeunDiscreteScheduler"), pass_stop)
    with pytest.raises(ValueError, match="optimised for convention"):
        hd.apply(_make("UniPCMultistepScheduler"), res, convention="stop")
    with pytest.raises(ValueError, match="not unique"):
        hd.apply(_make("DDIMScheduler"), [0.5, 0.4999, 0.1])
    with pytest.raises(TypeError):
        hd.apply(object(), res)
    with pytest.warns(UserWarning, match="optimised for 'unipc'"):
        hd.apply(_make("DDIMScheduler"), res)


def test_adapted_scheduler_saves_as_the_stock_class(tmp_path):
    adapted = hd.apply(_make("UniPCMultistepScheduler"), hso.optimize("sd15", 5, "unipc", convention="jump"))
    adapted.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert cfg["_class_name"] == "UniPCMultistepScheduler"
    assert type(hd.remove(adapted)).__mro__[1].__name__ != "_AdaptedFinalJump"


def test_flow_match_euler_runs_an_hso_schedule(unet, noise):
    """FlowMatchEuler (SD3/Flux style, shift 3) with the one-liner: the network sees exactly 1000 * sigma(t) and the
    adapted scheduler equals hso's Euler sampler on the exact denoiser."""
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0))
    res = hd.optimize_pipeline(pipe, nfe=6, convention="jump")
    sch = hso.NoiseSchedule.flow(3.0)
    assert res.schedule["family"] == "flow" and res.convention == "jump"
    out, seen = _loop(_unet_model(unet), pipe.scheduler, noise)
    np.testing.assert_allclose(seen, 1000 * sch.sigma(res.t), rtol=1e-6)
    assert torch.isfinite(out).all()
    model = as_model(load("gmm"), sch, "flow")
    z = np.random.default_rng(2).standard_normal((4, 64))
    got, _ = _loop(lambda x, t: torch.from_numpy(model(x.double().numpy(), float(sch.t_of_lambda(
        np.log1p(-float(t) / 1000) - np.log(float(t) / 1000))))), pipe.scheduler, torch.from_numpy(z))
    want = sample(model, z, sch, res.t, "euler", prediction="flow", convention="jump")
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=3e-5 * np.abs(want).max())


# ------------------------------------------------------------------ EDM schedulers (continuous sigmas, c_noise)
EDM = ["EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"]


@pytest.mark.parametrize("name", EDM)
def test_edm_scheduler_with_the_stock_schedule_gives_the_stock_output(unet, noise, name):
    stock = getattr(diffusers, name)()
    stock.set_timesteps(6)
    sch = hso.NoiseSchedule.from_diffusers(stock)
    t = np.clip(sch.t_of_lambda(-np.log(stock.sigmas[:-1].double().numpy())), sch.t_min, sch.t_max)
    ref, seen_ref = _loop(_unet_model(unet), stock, noise, 6)
    out, seen = _loop(_unet_model(unet), hd.apply(getattr(diffusers, name)(), t, convention="jump"), noise)
    assert seen == seen_ref
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def _edm_denoiser(sched, sch):
    """The exact digits-mixture denoiser as an EDM network: input scaled by c_in, conditioned on c_noise, output F
    with D = c_skip x + c_out F (the scheduler's own `precondition_outputs`, epsilon parametrisation)."""
    model = as_model(load("gmm"), sch, "sample")
    sd = sched.config.sigma_data

    def net(inp, c_noise):
        sigma = float(np.exp(4.0 * float(c_noise)))
        x = inp.double().numpy() * np.sqrt(sigma ** 2 + sd ** 2)
        d = model(x, float(sch.t_of_lambda(-np.log(sigma))))
        c_skip, c_out = sd ** 2 / (sigma ** 2 + sd ** 2), sigma * sd / np.sqrt(sigma ** 2 + sd ** 2)
        return torch.from_numpy((d - c_skip * x) / c_out)

    return net, model


@pytest.mark.parametrize("name,solver", [("EDMEulerScheduler", "euler"),
                                         ("EDMDPMSolverMultistepScheduler", "dpmsolver++")])
@pytest.mark.parametrize("conv", ["jump", "stop"])
def test_edm_schedulers_equal_hso_samplers_on_hso_schedules(name, solver, conv):
    """An hso schedule in diffusers' EDM schedulers, the exact denoiser behind EDM preconditioning: the same numbers
    as hso.solvers.sample on the EDM noise schedule, and the network sees the scheduler's c_noise of each sigma."""
    sched = getattr(diffusers, name)()
    sch = hso.NoiseSchedule.from_diffusers(sched)
    res = hso.optimize(sch, 5, solver, convention=conv)
    adapted = hd.apply(sched, res)
    net, model = _edm_denoiser(adapted, sch)
    z = torch.from_numpy(np.random.default_rng(3).standard_normal((4, 64)))
    out, seen = _loop(net, adapted, z)
    n_eval = len(res.t) - (conv == "stop")
    np.testing.assert_allclose(seen, 0.25 * np.log(np.float32(sch.sigma(res.t[:n_eval]))), rtol=1e-6)
    # the initial noise follows the schedule's first sigma (stock EDM schedulers would use sigma_max)
    assert adapted.init_noise_sigma == pytest.approx(np.sqrt(float(np.float32(sch.sigma(res.t[0]))) ** 2 + 1))
    x_start = z.numpy() * float(adapted.init_noise_sigma)
    ours = sample(model, x_start, sch, res.t, solver, prediction="sample", convention=conv)
    np.testing.assert_allclose(out.numpy(), ours, rtol=0, atol=3e-5 * np.abs(ours).max())


def test_optimize_pipeline_with_an_edm_scheduler(unet, noise):
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.EDMDPMSolverMultistepScheduler())
    res = hd.optimize_pipeline(pipe, nfe=5, convention="jump")
    assert res.schedule["family"] == "edm" and res.solver == "dpmsolver++" and res.convention == "jump"
    assert type(pipe.scheduler).__name__ == "EDMDPMSolverMultistepScheduler"
    out, seen = _loop(_unet_model(unet), pipe.scheduler, noise)
    assert len(seen) == 5 and torch.isfinite(out).all()
    np.testing.assert_allclose(np.exp(4 * np.asarray(seen)), res.sigmas[:-1], rtol=1e-5)


class _Net(torch.nn.Module):
    """A callable as a pipeline's network: ``net(x, t).sample`` (the parameter only gives `unet_model` the device
    and dtype to run in)."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.scale = fn, torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x, t):
        class Out:
            sample = self.fn(x, t[0])
        return Out()


@pytest.mark.parametrize("name", EDM)
def test_unet_model_behind_an_edm_scheduler_returns_the_data_prediction(name):
    """The exact denoiser as an EDM network (c_in, c_noise, c_skip/c_out): `unet_model` undoes the
    preconditioning through the scheduler's own methods and returns the exact denoiser's output."""
    sched = getattr(diffusers, name)()
    sch = hso.NoiseSchedule.from_diffusers(sched)
    net, exact = _edm_denoiser(sched, sch)
    pipe = diffusers.DDPMPipeline(unet=_Net(net), scheduler=sched)
    model = hd.unet_model(pipe)
    x = np.random.default_rng(4).standard_normal((3, 64)) * 5.0
    for t in (0.05, 0.5, 0.95):
        np.testing.assert_allclose(model(x, t), exact(x, t), rtol=1e-5, atol=1e-5)


def test_calibrate_pipeline_with_an_edm_scheduler():
    sched = diffusers.EDMEulerScheduler()
    sch = hso.NoiseSchedule.from_diffusers(sched)
    net, exact = _edm_denoiser(sched, sch)
    pipe = diffusers.DDPMPipeline(unet=_Net(net), scheduler=sched)
    r = hd.calibrate_pipeline(pipe, nfe=5, budget=300, population=0, sample_shape=(64,))
    assert r.prediction == "sample" and r.solver == "euler" and r.nfe_spent <= 300
    # the same calibration on the exact denoiser directly: the same pick and errors
    direct = hso.calibrate(exact, sch, "euler", 5, sample_shape=(64,), budget=300, population=0,
                           prediction="sample", convention="jump")
    assert r.method == direct.method
    np.testing.assert_allclose([c["rmse"] for c in r.candidates], [c["rmse"] for c in direct.candidates], rtol=1e-4)
    assert type(pipe.scheduler).__name__ == "EDMEulerScheduler"
    pipe.scheduler.set_timesteps()
    np.testing.assert_allclose(pipe.scheduler.sigmas[:-1].double().numpy(), r.sigmas[:-1], rtol=1e-6)


# ------------------------------------------------------------------ flow pipelines at any resolution (dynamic shifting)
def test_flow_pipeline_runs_the_schedule_of_each_resolutions_mu():
    """A real (tiny, random) StableDiffusion3Pipeline with dynamic shifting: at two resolutions the transformer sees
    exactly the schedule optimised for the mu the pipeline computes for that resolution, never a fixed one."""
    pytest.importorskip("transformers")  # the SD3 pipeline class needs it; prompt embeddings are passed directly
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

    torch.manual_seed(0)
    tr = diffusers.SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                         caption_projection_dim=16, pooled_projection_dim=16, out_channels=4,
                                         pos_embed_max_size=16).eval()
    cfg = dict(use_dynamic_shifting=True, base_image_seq_len=4, max_image_seq_len=16, base_shift=0.5, max_shift=1.15)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(**cfg)
    pipe = diffusers.StableDiffusion3Pipeline(transformer=tr, scheduler=sched, vae=None, text_encoder=None,
                                              tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                              text_encoder_3=None, tokenizer_3=None)
    res = hd.optimize_pipeline(pipe, nfe=5)
    assert res.schedule["params"]["shift"] == pytest.approx(np.exp(0.5))  # the base resolution's, returned
    seen: list[float] = []
    forward = tr.forward

    def spy(*a, **k):
        seen.append(float(k["timestep"].flatten()[0]))
        return forward(*a, **k)

    tr.forward = spy
    emb, pooled = torch.randn(1, 3, 16), torch.randn(1, 16)
    runs = {}
    for hw in (32, 64):  # latents 4x4 and 8x8: 4 and 16 patches, mu 0.5 and 1.15
        seen.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe(prompt_embeds=emb, pooled_prompt_embeds=pooled, height=hw, width=hw, guidance_scale=1.0,
                 num_inference_steps=5, output_type="latent", generator=torch.Generator().manual_seed(0))
        mu = calculate_shift((hw // 8 // 2) ** 2, 4, 16, 0.5, 1.15)
        want = hso.optimize(hso.NoiseSchedule.from_diffusers(sched, mu=mu), 5, "euler", convention=res.convention)
        noise = hso.NoiseSchedule.from_diffusers(sched, mu=mu)
        n_eval = len(want.t) - (want.convention == "stop")
        np.testing.assert_allclose(seen, 1000 * noise.sigma(want.t[:n_eval]), rtol=1e-6)
        assert pipe.scheduler.hso_result.schedule == want.schedule
        runs[hw] = list(seen)
    assert not np.allclose(runs[32], runs[64])  # each resolution its own schedule
    assert sorted(pipe.scheduler.hso_results) == pytest.approx([0.5, 1.15])
    with pytest.raises(ValueError, match="needs the mu"):
        pipe.scheduler.set_timesteps(5)
