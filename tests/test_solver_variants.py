"""Sampler variants (UniPC bh1 / bh2 and orders 1-3, DPM-Solver++ 2M / 3M): their options, how `hso.optimize`,
the diffusers path, the CLI and the ComfyUI node take them, and how the measured default chooses per variant."""
from __future__ import annotations

import json

import numpy as np
import pytest

import hso
from hso import cli
from hso.evaluation import Evaluation
from hso.evaluation.report import derive_diffusers_convention, derive_measured_rule, sampler_of
from hso.measured import measured_pick, nearest_sampler, rule_table
from hso.solvers import SAMPLER_DEFAULTS, sampler_label, sampler_options


def test_options_fill_in_the_defaults_and_name_the_variant():
    assert sampler_options("unipc") == {"order": 3, "variant": "bh1"}
    assert sampler_options("uni_pc", {"variant": "bh2"}) == {"order": 3, "variant": "bh2"}
    assert sampler_options("dpmpp", {"order": 3, "variant": None}) == {"order": 3}
    assert sampler_options("ddim", {}) == {}
    assert sampler_label("unipc") == "unipc" == sampler_label("unipc", {"order": 3, "variant": "bh1"})
    assert sampler_label("unipc", {"variant": "bh2", "order": 2}) == "unipc-bh2-o2"
    assert sampler_label("dpmsolver++", {"order": 3}) == "dpmsolver++-o3"
    assert sampler_label("euler") == "euler"


@pytest.mark.parametrize("solver,options,error,match", [
    ("unipc", {"order": 4}, ValueError, "order must be an integer in 1..3"),
    ("unipc", {"order": 2.0}, ValueError, "order must be an integer"),
    ("unipc", {"order": True}, ValueError, "order must be an integer"),
    ("dpmsolver++", {"variant": "bh2"}, ValueError, "has no variant option"),
    ("unipc", {"variant": "bh3"}, ValueError, "unknown UniPC variant"),
    ("ddim", {"order": 2}, ValueError, "ddim has no order option"),
    ("unipc", {"corrector": False}, ValueError, "unknown solver option 'corrector'"),
    ("unipc", [("order", 2)], TypeError, "must be a mapping"),
    ("deis", {"order": 2}, ValueError, "no sampler for solver 'deis'"),
])
def test_bad_options_get_one_clear_error(solver, options, error, match):
    with pytest.raises(error, match=match):
        sampler_options(solver, options)
    with pytest.raises(error, match=match):  # before any search runs
        hso.optimize("sd15", 6, solver, solver_options=options)


def test_the_result_records_the_options_and_the_variant_measured():
    res = hso.optimize("sd15", 8, "unipc", solver_options={"variant": "bh2", "order": 2})
    assert res.solver_options == {"order": 2, "variant": "bh2"}
    assert json.loads(res.to_json())["solver_options"] == {"order": 2, "variant": "bh2"}
    m = res.settings["measured"]
    pick = measured_pick("unipc", "stop", "sd15", 8, {"variant": "bh2", "order": 2})
    assert m["sampler"] == pick.sampler and m["pick"] in dict(pick.ranking)
    assert hso.optimize("sd15", 8, "unipc").solver_options == SAMPLER_DEFAULTS["unipc"]
    assert hso.optimize("sd15", 8, "ddim").solver_options == {}
    assert hso.optimize("sd15", 8, "deis").solver_options == {}  # no sampler in hso, no options


def test_every_measured_variant_has_its_own_ranking():
    rules = rule_table()["rules"]
    labels = {r["sampler"] for r in rules}
    assert {"unipc", "dpmsolver++", "ddim"} <= labels
    for r in rules:
        assert sampler_label(r["solver"], r["options"]) == r["sampler"]
        pick = measured_pick(r["solver"], r["convention"], r["noise"], r["nfe"], r["options"])
        assert pick.sampler == r["sampler"] and pick.measured
        assert [list(x) for x in pick.ranking] == r["ranking"]


def test_an_unmeasured_variant_takes_the_nearest_measured_one_unclaimed():
    rows = [{"solver": "unipc", "sampler": sampler_label("unipc", o), "options": sampler_options("unipc", o)}
            for o in ({}, {"variant": "bh2", "order": 2}, {"variant": "bh2", "order": 3})]
    near = lambda o: {r["sampler"] for r in nearest_sampler(rows, "unipc", o)[0]}  # noqa: E731
    assert near({"variant": "bh2", "order": 1}) == {"unipc-bh2-o2"}  # same variant, nearest order
    assert near({"variant": "bh1", "order": 2}) == {"unipc"}  # the only bh1 measured
    assert near({"variant": "bh2", "order": 3})  == {"unipc-bh2-o3"}
    assert nearest_sampler(rows, "unipc", {"variant": "bh2", "order": 3})[1]
    assert not nearest_sampler(rows, "unipc", {"variant": "bh2", "order": 1})[1]
    pick = measured_pick("unipc", "stop", "sd21", 6, {"variant": "bh1", "order": 1})
    assert pick is not None and not pick.measured and not pick.supported(pick.ranking[0][0])


def test_the_nearest_cell_takes_the_nearest_nfe_before_the_variant(monkeypatch):
    """A variant measured at NFE 4-10 only takes, at NFE 30, the default variant's NFE-30 ranking (not measured, not
    supported), not its own NFE-10 one; where the variant was measured at that NFE, its own."""
    import hso.measured as hm

    def row(sampler, options, nfe, first):
        return {"solver": "unipc", "sampler": sampler, "options": options, "convention": "stop", "noise": "sd21",
                "lambda_top": -4.0, "space": "vp", "nfe": nfe, "ranking": [[first, 1.0], ["logSNR", 1.5]]}
    bh2 = {"order": 2, "variant": "bh2"}
    rules = [row("unipc", SAMPLER_DEFAULTS["unipc"], n, f"base{n}") for n in (10, 30)]
    rules += [row("unipc-bh2-o2", bh2, 10, "bh2_10")]
    monkeypatch.setattr(hm, "rule_table", lambda: {"rules": rules})
    at30 = hm.measured_pick("unipc", "stop", "sd21", 30, bh2)
    assert (at30.ranking[0][0], at30.nfe, at30.sampler, at30.measured) == ("base30", 30, "unipc", False)
    assert not at30.supported("base30")
    at10 = hm.measured_pick("unipc", "stop", "sd21", 10, bh2)
    assert (at10.ranking[0][0], at10.sampler, at10.measured) == ("bh2_10", "unipc-bh2-o2", True)
    at12 = hm.measured_pick("unipc", "stop", "sd21", 12, bh2)  # NFE 10 is nearer: the variant's own, unclaimed
    assert (at12.ranking[0][0], at12.measured) == ("bh2_10", False)


def test_method_hso_reports_its_own_setting_as_measured():
    """method="hso" runs its rule's setting; the result says where that setting stands in the measured ranking of
    the cell (its worst ratio over the test beds), so a poor cell is never returned silently."""
    from hso.methods import SEARCH_SETTINGS

    for nfe, conv in ((6, "stop"), (30, "jump")):
        res = hso.optimize("ddpm", nfe, "unipc", method="hso", convention=conv)
        m = res.settings["measured"]
        pick = measured_pick("unipc", conv, "ddpm", nfe)
        assert m["pick"] in SEARCH_SETTINGS and m["worst_ratio"] == dict(pick.ranking)[m["pick"]]
        assert m["supported"] == (pick.measured and m["worst_ratio"] <= hso.measured.SUPPORT_RATIO)
        same = hso.optimize("ddpm", nfe, "unipc", method="paper", convention=conv,
                            **{k: v for k, v in SEARCH_SETTINGS[m["pick"]].items()})
        assert np.array_equal(same.t, res.t)  # the setting named is the search that ran
        text = cli._describe(res)
        assert f"# method hso: setting {m['pick']}, measured (NFE {nfe}" in text
    assert hso.optimize("ddpm", 6, "unipc", method="paper").settings["measured"] is None


def _ev(options: dict | None, rmse: dict[str, float]) -> Evaluation:
    rows = [{"method": m, "solver": "unipc", "solver_options": options, "convention": c, "nfe": 6, "rmse": v}
            for (c, m), v in rmse.items()]
    return Evaluation(rows, {"testbed": "a", "schedule": hso.NoiseSchedule.preset("sd21").describe()})


def test_derivation_ranks_each_variant_on_its_own():
    bh1 = _ev(SAMPLER_DEFAULTS["unipc"], {("stop", "logSNR"): 1.0, ("stop", "leading"): 2.0,
                                          ("jump", "logSNR"): 3.0, ("jump", "leading"): 3.0})
    bh2 = _ev({"order": 2, "variant": "bh2"}, {("stop", "logSNR"): 2.0, ("stop", "leading"): 1.0,
                                                ("jump", "logSNR"): 1.0, ("jump", "leading"): 1.5})
    assert sampler_of(bh2, "unipc") == ("unipc-bh2-o2", {"order": 2, "variant": "bh2"})
    rules = derive_measured_rule([bh1, bh2])
    first = {(r["sampler"], r["convention"]): r["ranking"][0][0] for r in rules}
    assert first == {("unipc", "stop"): "logSNR", ("unipc", "jump"): "logSNR",
                     ("unipc-bh2-o2", "stop"): "leading", ("unipc-bh2-o2", "jump"): "logSNR"}
    conv = {r["sampler"]: r["convention"] for r in derive_diffusers_convention([bh1, bh2], rules)}
    assert conv == {"unipc": "stop", "unipc-bh2-o2": "jump"}


def test_the_diffusers_path_reads_the_variant_from_the_scheduler():
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    import hso.diffusers as hd

    sd = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)
    assert hd.solver_options_for(UniPCMultistepScheduler(**sd)) == {"order": 2, "variant": "bh2"}
    assert hd.solver_options_for(UniPCMultistepScheduler(**sd, solver_type="bh1", solver_order=3)) == \
        SAMPLER_DEFAULTS["unipc"]
    assert hd.solver_options_for(DPMSolverMultistepScheduler(**sd, solver_order=3)) == {"order": 3}
    assert hd.solver_options_for(DDIMScheduler(**sd)) == {}
    sched = UniPCMultistepScheduler(**sd)
    res = hd.optimize_pipeline(sched, 8)
    assert res.solver_options == {"order": 2, "variant": "bh2"}
    assert res.settings["measured"]["sampler"] == measured_pick(
        "unipc", res.convention, hso.NoiseSchedule.from_diffusers(sched), 8, res.solver_options).sampler
    # explicit options win over the config's, option by option
    assert hd.optimize_pipeline(sched, 8, solver_options={"order": 3}).solver_options == {"order": 3, "variant": "bh2"}
    assert hd.optimize_pipeline(sched, 8, solver_options={"variant": "bh1", "order": 3}).solver_options == \
        SAMPLER_DEFAULTS["unipc"]
    with pytest.raises(ValueError, match="unipc order must be an integer in 1..3, got 7"):
        hd.optimize_pipeline(sched, 8, solver_options={"order": 7})


def test_cli_takes_the_variant_and_reads_it_from_a_config(tmp_path, capsys):
    assert cli.main(["optimize", "--preset", "sd15", "--nfe", "6", "--order", "2", "--variant", "bh2",
                     "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["solver_options"] == {"order": 2, "variant": "bh2"}
    cfg = tmp_path / "scheduler_config.json"
    cfg.write_text(json.dumps({"_class_name": "UniPCMultistepScheduler", "beta_schedule": "scaled_linear",
                               "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000,
                               "solver_order": 2, "solver_type": "bh2"}))
    assert cli.main(["optimize", "--from-diffusers-config", str(cfg), "--nfe", "6", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["solver_options"] == {"order": 2, "variant": "bh2"}
    assert cli.main(["optimize", "--from-diffusers-config", str(cfg), "--nfe", "6", "--order", "3",
                     "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["solver_options"] == {"order": 3, "variant": "bh2"}
    assert cli.main(["optimize", "--preset", "sd15", "--solver", "ddim", "--order", "2"]) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.strip() == "hso: error: ddim has no order option"


def test_comfyui_uni_pc_bh2_gets_the_bh2_schedule():
    import hso.comfyui as node

    from diffusers import DDIMScheduler

    abar = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod.double()

    class ModelSamplingDiscrete:  # ComfyUI's class, matched by name: a float sigma per training step
        sigmas = ((1 - abar) / abar) ** 0.5

    ms = ModelSamplingDiscrete()
    noise = node.noise_schedule_of(ms)
    for name, opts in (("uni_pc", None), ("uni_pc_bh2", {"variant": "bh2", "order": 3})):
        res = hso.optimize(noise, 6, "unipc", convention="jump", solver_options=opts)
        want = list(noise.edm_sigma(res.t)) + [0.0]
        assert node.schedule_sigmas(ms, 6, name) == pytest.approx(want, rel=1e-12)


def test_apply_warns_when_the_scheduler_runs_another_variant():
    import warnings

    from diffusers import UniPCMultistepScheduler

    import hso.diffusers as hd

    sd = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    bh1 = hso.optimize("sd15", 6, "unipc", convention="jump")
    with pytest.warns(UserWarning, match=r"runs \{'order': 2, 'variant': 'bh2'\}; optimise with solver_options"):
        hd.apply(UniPCMultistepScheduler(**sd), bh1)
    bh2 = hso.optimize("sd15", 6, "unipc", convention="jump", solver_options={"variant": "bh2", "order": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hd.apply(UniPCMultistepScheduler(**sd), bh2)
        hd.apply(UniPCMultistepScheduler(**sd, solver_type="bh1", solver_order=3), bh1)


def test_a_config_variant_without_an_hso_sampler_is_one_clear_error():
    from diffusers import UniPCMultistepScheduler

    import hso.diffusers as hd

    sched = UniPCMultistepScheduler(solver_order=4)
    with pytest.raises(ValueError, match=r"solver_order=4, solver_type='bh2'.*pass solver_options="):
        hd.optimize_pipeline(sched, 6)
    # chosen explicitly, it is optimised for and installed
    assert hd.optimize_pipeline(sched, 6, solver_options={"order": 3}).solver_options == {"order": 3, "variant": "bh2"}


def test_calibrate_starts_from_the_variants_default_and_samples_with_it():
    """`hso.calibrate` with UniPC bh2: its incumbent is `hso.optimize`'s default for bh2, and the result records
    the options it sampled with; `calibrate_pipeline` takes them from the scheduler."""
    from hso.calibration import candidate_schedules, default_objectives

    sched = hso.NoiseSchedule.preset("sd15")
    opts = {"order": 2, "variant": "bh2"}
    cands = candidate_schedules(sched, "unipc", 6, "jump", default_objectives(), 0, opts)
    want = hso.optimize(sched, 6, "unipc", convention="jump", solver_options=opts).t
    np.testing.assert_array_equal(cands[0][1], sched.t_of_timesteps(sched.timesteps_of_t(want)))
    default = candidate_schedules(sched, "unipc", 6, "jump", default_objectives(), 0)
    assert default[0][0] == "hso"
    with pytest.raises(ValueError, match="unknown solver option"):
        hso.calibrate(lambda x, t: x, sched, "unipc", 6, sample_shape=(4,), solver_options={"bogus": 1})
