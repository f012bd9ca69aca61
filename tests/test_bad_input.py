"""Bad input gets one clear error and loses nothing: never a traceback, never a NaN result, never a silently
substituted default. CLI: one line on stderr naming the option or field and its allowed range, exit code 2, nothing
on stdout. Python: ValueError / TypeError before any work."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

import hso
from hso import cli
from hso.schedules import MU_RANGE, NoiseSchedule, betas_for

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}
UNET = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.0", "in_channels": 4, "out_channels": 4,
        "sample_size": 64, "cross_attention_dim": 1024}
FLUX = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
        "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15}


def _run(capsys, argv):
    rc = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _refused(capsys, argv, *needles):
    """Exit 2, nothing on stdout, exactly one non-empty line on stderr that contains every needle."""
    rc, out, err = _run(capsys, argv)
    assert rc == 2, (argv, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip() and err.endswith("\n"), err
    assert lines[0].startswith("hso: error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _config(tmp_path, cfg, name="scheduler_config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return path


# ------------------------------------------------------------------ 1. not a scheduler config
@pytest.mark.parametrize("cfg,needle", [
    (UNET, "'UNet2DConditionModel'"),
    ({}, "no _class_name ending in 'Scheduler'"),
    ({"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"]},
     "StableDiffusionPipeline"),
    ({"in_channels": 4, "sample_size": 64}, "none of the noise-schedule fields"),
])
def test_a_config_that_is_not_a_scheduler_config_is_refused(tmp_path, capsys, cfg, needle):
    path = _config(tmp_path, cfg)
    _refused(capsys, ["optimize", "--from-diffusers-config", path, "--solver", "ddim"], "not a diffusers scheduler",
             needle)
    with pytest.raises(ValueError, match="not a diffusers scheduler config"):
        NoiseSchedule.from_diffusers(cfg)


def test_a_flow_or_edm_config_without_class_name_is_read_by_its_fields_not_as_linear_betas():
    """A scheduler's own config mapping carries no _class_name: a FlowMatch one is told by its shift fields, an EDM
    one by its sigmas; with neither, hso refuses rather than guess linear betas."""
    flux = NoiseSchedule.from_diffusers({k: v for k, v in FLUX.items() if k != "_class_name"}, mu=0.5)
    assert flux.family == "flow"
    assert NoiseSchedule.from_diffusers({"sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5}).family == "edm"
    with pytest.raises(ValueError, match="no _class_name and none of the fields"):
        NoiseSchedule.from_diffusers({"shift": 3.0, "num_train_timesteps": 1000})
    with pytest.raises(ValueError, match="hso cannot read its noise schedule"):
        NoiseSchedule.from_diffusers({"_class_name": "ScoreSdeVeScheduler", "sigma_min": 0.01, "sigma_max": 1348.0})


def test_configs_with_beta_fields_and_no_class_name_still_load():
    sch = NoiseSchedule.from_diffusers(dict(SD))
    assert np.array_equal(sch.log_alpha_table, NoiseSchedule.preset("sd15").log_alpha_table)
    # a field the config leaves out takes the class's diffusers default (Heun: 0.00085-0.012, not 0.0001-0.02)
    heun = NoiseSchedule.from_diffusers({"_class_name": "HeunDiscreteScheduler", "beta_schedule": "linear"})
    assert heun.name == "diffusers(linear, 0.00085-0.012)"
    assert NoiseSchedule.from_diffusers({"_class_name": "DDIMScheduler"}).name == "diffusers(linear, 0.0001-0.02)"


REAL = ["DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler",
        "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
        "LCMScheduler", "TCDScheduler", "FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler",
        "EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"]


@pytest.mark.parametrize("name", REAL)
def test_real_diffusers_scheduler_configs_still_load(tmp_path, name):
    diffusers = pytest.importorskip("diffusers")
    sched = getattr(diffusers, name)()
    want = NoiseSchedule.from_diffusers(sched)
    assert want.family == ("flow" if name.startswith("FlowMatch") else "edm" if name.startswith("EDM")
                           else "vp_discrete")
    sched.save_config(tmp_path)  # the scheduler_config.json a pipeline folder holds (with _class_name)
    got = NoiseSchedule.from_diffusers(tmp_path)
    assert got.name == want.name and got.family == want.family
    t = np.linspace(got.t_min, got.t_max, 7)
    assert np.array_equal(got.lambda_(t), want.lambda_(t))
    # its config mapping (no _class_name) tells the family by its fields
    mapped = NoiseSchedule.from_diffusers(sched.config)
    assert mapped.family == want.family and np.array_equal(mapped.lambda_(t), want.lambda_(t))


# ------------------------------------------------------------------ 2. config fields and constructors
@pytest.mark.parametrize("fields,needle", [
    ({"beta_start": -0.5}, "'beta_start' must be a number in (0, 1), got -0.5"),
    ({"beta_start": "0.001"}, "'beta_start' must be a number in (0, 1), got '0.001'"),
    ({"beta_end": 1.5}, "'beta_end' must be a number in (0, 1)"),
    ({"beta_end": None}, "'beta_end' must be a number"),
    ({"beta_start": float("nan")}, "'beta_start'"),
    ({"beta_start": 10**400}, "'beta_start' must be a number in (0, 1), got 1000"),
    ({"beta_schedule": "linear", "beta_start": 0.5, "beta_end": 0.99}, "underflows to 0"),
    ({"num_train_timesteps": 1}, "'num_train_timesteps' must be an integer in [2, 1000000], got 1"),
    ({"num_train_timesteps": 999.5}, "'num_train_timesteps' must be an integer"),
    ({"num_train_timesteps": "1000"}, "'num_train_timesteps' must be an integer"),
    ({"num_train_timesteps": True}, "'num_train_timesteps' must be an integer"),
    ({"rescale_betas_zero_snr": "false"}, "'rescale_betas_zero_snr' must be true or false"),
    ({"trained_betas": ["0.1", "0.2"]}, "'trained_betas'"),
    ({"trained_betas": [0.1, 1.5]}, "'trained_betas': betas must lie in (0, 1)"),
    ({"trained_betas": [0.1]}, "'trained_betas': betas needs at least 2 entries"),
    ({"prediction_type": 3}, "'prediction_type' must be a string"),
])
def test_bad_vp_config_fields_name_the_field_and_range(tmp_path, capsys, fields, needle):
    cfg = {"_class_name": "DDIMScheduler", **SD, **fields}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))  # NaN is written as NaN, which Python's json reads back
    _refused(capsys, ["optimize", "--from-diffusers-config", path], needle)
    with pytest.raises((ValueError, TypeError)) as e:
        NoiseSchedule.from_diffusers(cfg)
    assert needle in str(e.value)


@pytest.mark.parametrize("cfg,needle", [
    ({**FLUX, "use_dynamic_shifting": False, "shift": 0.0}, "'shift' must be a number in [1e-12, 1e12], got 0.0"),
    ({**FLUX, "use_dynamic_shifting": False, "shift": -3}, "'shift' must be a number in [1e-12, 1e12]"),
    ({**FLUX, "use_dynamic_shifting": False, "shift": 1e13}, "'shift' must be a number in [1e-12, 1e12]"),
    ({**FLUX, "use_dynamic_shifting": False, "shift": "3"}, "'shift' must be a number"),
    ({**FLUX, "use_dynamic_shifting": "yes"}, "'use_dynamic_shifting' must be true or false"),
    ({"_class_name": "UniPCMultistepScheduler", **SD, "use_flow_sigmas": True, "flow_shift": 0},
     "'flow_shift' must be a number in [1e-12, 1e12]"),
    ({"_class_name": "EDMEulerScheduler", "sigma_min": -1.0}, "'sigma_min' must be a number in [1e-100, 1e100]"),
    ({"_class_name": "EDMEulerScheduler", "sigma_min": 80.0, "sigma_max": 0.002}, "'sigma_min' < 'sigma_max'"),
    ({"_class_name": "EDMEulerScheduler", "sigma_max": "80"}, "'sigma_max' must be a number"),
])
def test_bad_flow_and_edm_config_fields_name_the_field_and_range(tmp_path, capsys, cfg, needle):
    path = _config(tmp_path, cfg)
    _refused(capsys, ["optimize", "--from-diffusers-config", path, "--solver", "euler"], needle)
    with pytest.raises((ValueError, TypeError)) as e:
        NoiseSchedule.from_diffusers(cfg)
    assert needle in str(e.value)


@pytest.mark.parametrize("make,exc,needle", [
    (lambda: NoiseSchedule.vp_discrete(betas=[0.1, -0.2, 0.3]), ValueError, "betas must lie in (0, 1)"),
    (lambda: NoiseSchedule.vp_discrete(betas=[0.1, 0.0, 0.3]), ValueError, "entry 1 is 0.0"),
    (lambda: NoiseSchedule.vp_discrete(betas=["0.1", "0.2"]), TypeError, "betas must be a 1-D array of numbers"),
    (lambda: NoiseSchedule.vp_discrete(betas="0.1"), TypeError, "betas must be a 1-D array of numbers"),
    (lambda: NoiseSchedule.vp_discrete(betas=[0.1, np.inf]), ValueError, "non-finite"),
    (lambda: NoiseSchedule.vp_discrete(alphas_cumprod=[0.9, None]), TypeError, "alphas_cumprod must be a 1-D"),
    (lambda: NoiseSchedule.vp_discrete(beta_schedule="scaled_linear", beta_start=-0.5), ValueError,
     "beta_start must be a number in (0, 1), got -0.5"),
    (lambda: NoiseSchedule.vp_discrete(beta_schedule="linear", beta_end="0.02"), TypeError,
     "beta_end must be a number"),
    (lambda: NoiseSchedule.vp_discrete(beta_schedule="linear", num_train_timesteps=0), ValueError,
     "num_train_timesteps must be an integer in [2, 1000000]"),
    (lambda: NoiseSchedule.vp_discrete(beta_schedule="linear", rescale_betas_zero_snr="no"), TypeError,
     "rescale_betas_zero_snr must be true or false"),
    (lambda: betas_for("linear", 10**9), ValueError, "num_train_timesteps must be an integer in [2, 1000000]"),
    (lambda: NoiseSchedule.vp_linear("0.1", 20.0), TypeError, "beta_0 must be a number"),
    (lambda: NoiseSchedule.vp_linear(-0.1, 20.0), ValueError, "beta_0 must be a number >= 0"),
    (lambda: NoiseSchedule.vp_linear(0.1, float("nan")), ValueError, "beta_1 must be a finite number"),
    (lambda: NoiseSchedule.vp_linear(0.1, 1e5), ValueError, "beta_0 + beta_1 must be <= 1000"),
    (lambda: NoiseSchedule.edm(0.0, 80.0), ValueError, "sigma_min must be a number in [1e-100, 1e100]"),
    (lambda: NoiseSchedule.edm(0.002, 1e200), ValueError, "sigma_max must be a number in [1e-100, 1e100]"),
    (lambda: NoiseSchedule.edm(0.002, None), TypeError, "sigma_max must be a number"),
    (lambda: NoiseSchedule.flow(0.0), ValueError, "flow shift must be a number in [1e-12, 1e12]"),
    (lambda: NoiseSchedule.flow(1e300), ValueError, "flow shift must be a number in [1e-12, 1e12]"),
    (lambda: NoiseSchedule.flow(True), TypeError, "flow shift must be a number"),
])
def test_python_constructors_refuse_bad_numbers(make, exc, needle):
    with pytest.raises(exc) as e:
        make()
    assert needle in str(e.value)


# ------------------------------------------------------------------ 3. mu
@pytest.mark.parametrize("mu", ["710", "1000", "-745", "27.7", "-28", "nan", "inf"])
def test_mu_outside_its_range_is_refused(tmp_path, capsys, mu):
    path = _config(tmp_path, FLUX)
    line = _refused(capsys, ["optimize", "--from-diffusers-config", path, "--mu", mu], "mu")
    assert "Traceback" not in line
    if math.isfinite(float(mu)):
        assert "[-27.63, 27.63]" in line
        with pytest.raises(ValueError, match=r"mu must lie in \[-27.63, 27.63\]"):
            NoiseSchedule.from_diffusers(FLUX, mu=float(mu))


def test_mu_at_the_ends_of_its_range_gives_a_finite_schedule():
    for mu in MU_RANGE:
        sch = NoiseSchedule.from_diffusers(FLUX, mu=mu)
        res = hso.optimize(sch, 5, "euler", method="hso", maxiter=3)
        assert np.isfinite(res.fitness) and np.all(np.isfinite(res.t)) and np.all(np.isfinite(res.sigmas))
    with pytest.raises(TypeError, match="mu must be a number"):
        NoiseSchedule.from_diffusers(FLUX, mu="1.0")
    linear = {**FLUX, "time_shift_type": "linear"}
    assert NoiseSchedule.from_diffusers(linear, mu=2.0).params["shift"] == 2.0
    with pytest.raises(ValueError, match="linear.*must be a number in \\[1e-12, 1e12\\], got 0.0"):
        NoiseSchedule.from_diffusers(linear, mu=0.0)


# ------------------------------------------------------------------ 4. integer options (no falsy defaults)
@pytest.mark.parametrize("argv,needle", [
    (["evaluate", "--quick", "--samples", "0"], "--samples: must be an integer in [2, 100000], got '0'"),
    (["evaluate", "--samples", "1"], "--samples"),
    (["evaluate", "--samples", "-5"], "--samples"),
    (["evaluate", "--seed", "-1"], "--seed: must be an integer >= 0"),
    (["evaluate", "--nfe", "0"], "--nfe: NFE must lie in [1, 1000]"),
    (["evaluate", "--nfe", ""], "--nfe: bad NFE list ''"),
    (["evaluate", "--quick", "--nfe", ","], "names no NFE"),
    (["optimize", "--nfe", "0"], "--nfe: must be an integer in [1, 1000], got '0'"),
    (["optimize", "--nfe", "1001"], "--nfe"),
    (["optimize", "--nfe", "99999999999999999999"], "--nfe"),
    (["optimize", "--popsize", "0"], "--popsize: must be an integer in [1, 100000]"),
    (["optimize", "--popsize", "1000000000"], "--popsize"),
    (["optimize", "--maxiter", "-1"], "--maxiter: must be an integer >= 0"),
    (["optimize", "--seed", "-1"], "--seed: must be an integer >= 0"),
    (["sweep", "--seed", "-3"], "--seed"),
    (["sweep", "--nfe", "1-100000000000"], "NFE must lie in [1, 1000]"),
    (["sweep", "--nfe", "4-6,20-3"], "'20-3': it starts above its end"),
    (["plot", "--nfe", "0-4"], "NFE must lie in [1, 1000]"),
])
def test_integer_options_refuse_zero_negative_and_huge(capsys, tmp_path, argv, needle):
    if argv[0] == "plot":
        argv = [*argv, "--out", tmp_path / "x.png"]
    _refused(capsys, argv, needle)
    assert not (tmp_path / "x.png").exists()


def test_evaluate_quick_honours_an_explicit_nfe_equal_to_the_default(monkeypatch, capsys):
    seen = {}

    def fake_evaluate(*args, **kw):
        seen.update(kw)
        raise ValueError("stop here")

    import hso.evaluation
    monkeypatch.setattr(hso.evaluation, "evaluate", fake_evaluate)
    _refused(capsys, ["evaluate", "--quick", "--nfe", "4,5,6,8,10", "--samples", "2"], "stop here")
    assert seen["nfes"] == (4, 5, 6, 8, 10) and seen["n_samples"] == 2
    _refused(capsys, ["evaluate", "--quick"], "stop here")
    assert seen["nfes"] == (4, 6) and seen["n_samples"] == 128


# ------------------------------------------------------------------ 5. --preset with --from-diffusers-config
def test_preset_and_diffusers_config_together_are_refused(tmp_path, capsys):
    path = _config(tmp_path, {"_class_name": "DDIMScheduler", **SD})
    _refused(capsys, ["optimize", "--preset", "sdxl", "--from-diffusers-config", path], "--from-diffusers-config",
             "--preset")
    _refused(capsys, ["optimize", "--from-diffusers-config", path, "--preset", "sd21"], "--preset")


# ------------------------------------------------------------------ 6. argparse errors are one line
@pytest.mark.parametrize("argv,needle", [
    (["optimize", "--nfe", "abc"], "--nfe"),
    (["optimize", "--method", "foo"], "--method: invalid choice: 'foo'"),
    (["optimize", "--format", "yaml"], "--format"),
    (["optimize", "--convention", "both"], "--convention"),
    (["optimize", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["optimize", "--nfe"], "--nfe: expected one argument"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["sweep", "--format", "xml"], "--format"),
    (["evaluate", "--metric", "psnr"], "--metric"),
    (["plot", "--method", "x"], "--method"),
])
def test_argparse_errors_are_one_line_and_exit_2(capsys, argv, needle):
    line = _refused(capsys, argv, needle)
    assert "usage:" not in line and "--help" in line


def test_help_still_works(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["optimize", "--help"])
    assert e.value.code == 0
    assert "--from-diffusers-config" in capsys.readouterr().out


# ------------------------------------------------------------------ 7. --format diffusers is what diffusers runs
def test_format_diffusers_optimises_the_jump_convention(capsys):
    rc, out, err = _run(capsys, ["optimize", "--solver", "unipc", "--nfe", "5", "--format", "diffusers"])
    assert rc == 0
    got = json.loads(out)
    want = hso.optimize("sd21", 5, "unipc", convention="jump")
    assert got == {"timesteps": want.timesteps.tolist(), "convention": "jump", "solver": "unipc"}
    assert len(got["timesteps"]) == 5  # NFE evaluations, as a pipeline runs them
    assert err.count("\n") == 1 and "convention 'jump'" in err
    rc, out, err = _run(capsys, ["optimize", "--solver", "ddim", "--nfe", "4", "--format", "diffusers"])
    assert rc == 0 and err == "" and len(json.loads(out)["timesteps"]) == 4  # DDIM's own convention is jump


def test_format_diffusers_refuses_an_explicit_stop_convention(tmp_path, capsys):
    _refused(capsys, ["optimize", "--convention", "stop", "--format", "diffusers"], "--format diffusers",
             "convention 'jump'", "NFE + 1")
    path = _config(tmp_path, {"_class_name": "DPMSolverMultistepScheduler", **SD})
    _refused(capsys, ["optimize", "--from-diffusers-config", path, "--convention", "stop", "--format", "diffusers"],
             "--convention stop")
    _refused(capsys, ["optimize", "--preset", "vp_cosine", "--format", "diffusers"], "no diffusers timesteps")


# ------------------------------------------------------------------ 8. plot labels name the source
def test_plot_labels_name_the_schedules_source():
    cell = dict(solver="unipc", nfe=5, convention="stop")
    assert cli._result_label(SimpleNamespace(source="hso", **cell)) == "HSO search (unipc, NFE 5, stop)"
    assert cli._result_label(SimpleNamespace(source="time_quadratic", **cell)).startswith("time_quadratic (")
    blend = SimpleNamespace(source="blend", settings={"measured": {"blend": ["logSNR", "edm_rho7"]}}, **cell)
    assert cli._result_label(blend) == "blend of logSNR and edm_rho7 (unipc, NFE 5, stop, midpoint; measured default)"
    blend.settings["measured"]["blend_weight"] = 0.8
    assert cli._result_label(blend) == ("blend of logSNR and edm_rho7 (unipc, NFE 5, stop, weight 0.8 towards the "
                                        "second; measured default)")
    ported = cli._result_label(SimpleNamespace(source="hso_stop_ported", **{**cell, "convention": "jump"}))
    assert ported.startswith("HSO stop search, last point dropped")
    res = hso.optimize("sd21", 5, "unipc")
    assert ("HSO" in cli._result_label(res)) == res.source.startswith("hso")


# ------------------------------------------------------------------ 9. the spacing penalty is explained
def test_table_output_explains_the_spacing_penalty(capsys):
    rc, out, _ = _run(capsys, ["optimize", "--method", "hso", "--nfe", "12", "--maxiter", "5"])
    assert rc == 0
    res = hso.optimize("sd21", 12, "unipc", method="hso", maxiter=5)
    assert res.penalty > 0 and res.spacing == "rank"
    line = next(ln for ln in out.splitlines() if "spacing penalty" in ln)
    assert "gamma * sum(max(0, d_min - gap)^2)" in line and "only ranks" in line and "not a failure" in line
    rc, out, _ = _run(capsys, ["optimize"])  # the measured default for sd21 / unipc / 5: a baseline, no search
    if "no search ran" in out:
        assert "penalty" not in out


# ------------------------------------------------------------------ the other options
@pytest.mark.parametrize("argv,needle", [
    (["optimize", "--p", "nan"], "--p: must be a number in (0, 10]"),
    (["optimize", "--p", "0"], "--p"),
    (["optimize", "--p", "-1"], "--p"),
    (["optimize", "--p", "1e10"], "--p"),
    (["optimize", "--mu", "inf"], "--mu: must be a finite number"),
    (["optimize", "--mu", "0.5"], "--mu applies with --from-diffusers-config only"),
    (["optimize", "--solver", ""], "--solver '' names no solver"),
    (["optimize", "--preset", ""], "unknown preset ''"),
    (["optimize", "--preset", "sd99"], "unknown preset 'sd99'"),
    (["optimize", "--backend", "tpu"], "unknown backend 'tpu'"),
    (["optimize", "--from-diffusers-config", "/nonexistent/scheduler_config.json"], "no diffusers scheduler config"),
    (["sweep", "--convention", ""], "--convention '' names no convention"),
    (["sweep", "--convention", "stop,both"], "--convention: unknown convention 'both'"),
    (["sweep", "--solver", ","], "--solver ',' names no solver"),
    (["evaluate", "--methods", ""], "--methods '' names no schedule method"),
    (["evaluate", "--solvers", ""], "--solvers '' names no solver"),
    (["evaluate", "--conventions", ""], "--conventions '' names no convention"),
    (["evaluate", "--conventions", "up"], "--conventions: unknown convention 'up'"),
    (["evaluate", "--testbed", "nope"], "unknown test bed 'nope'"),
    (["evaluate", "--preset", "nope"], "unknown preset 'nope'"),
])
def test_other_bad_options_are_one_line(capsys, argv, needle):
    _refused(capsys, argv, needle)


@pytest.mark.parametrize("content,needle", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "its JSON is a list, not an object"),
    ('"DDIMScheduler"', "its JSON is a str"),
    (b"\xff\xfe\x00binary", "not UTF-8"),
    ('{"_class_name": 42}', "'_class_name' must be a string"),
])
def test_unreadable_or_invalid_config_files(tmp_path, capsys, content, needle):
    path = tmp_path / "scheduler_config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    _refused(capsys, ["optimize", "--from-diffusers-config", path], needle)
    _refused(capsys, ["optimize", "--from-diffusers-config", tmp_path], needle)  # the folder holding it


def test_a_folder_without_a_scheduler_config_names_the_scheduler_subfolder(tmp_path, capsys):
    (tmp_path / "scheduler").mkdir()
    _config(tmp_path / "scheduler", {"_class_name": "DDIMScheduler", **SD})
    _refused(capsys, ["optimize", "--from-diffusers-config", tmp_path], "no diffusers scheduler config",
             "scheduler/ subfolder")


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    afile = tmp_path / "f.txt"
    afile.write_text("keep me")
    _refused(capsys, ["evaluate", "--out", afile], "is a file, not a folder")
    _refused(capsys, ["evaluate", "--out", afile / "sub"], "cannot write")
    _refused(capsys, ["sweep", "--nfe", "3", "--out", tmp_path], "it is a folder")
    _refused(capsys, ["plot", "--nfe", "4", "--out", tmp_path / "s.txt"], "cannot write .txt")
    assert afile.read_text() == "keep me"


def test_a_non_finite_schedule_is_never_printed(monkeypatch, capsys):
    import importlib

    opt = importlib.import_module("hso.cli")  # where the command line finds optimize
    real = opt.optimize

    def inf_result(*args, **kw):
        import dataclasses
        return dataclasses.replace(real(*args, **kw), mep=float("inf"), fitness=float("inf"))

    monkeypatch.setattr(opt, "optimize", inf_result)
    _refused(capsys, ["optimize", "--format", "json"], "non-finite")
