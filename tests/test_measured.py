"""The measured rules' mechanics, on hand-made evaluations (the committed tables are checked against the committed
results in test_quality_results.py)."""
from __future__ import annotations

import numpy as np
import pytest

import hso
from hso.evaluation import Evaluation
from hso.evaluation.report import derive_diffusers_convention, derive_measured_rule, noise_class
from hso.measured import (SAME_NOISE_LAMBDA, UNMEASURED_FIRST, diffusers_convention, measured_pick, nearest_noise,
                          rule_table, same_noise)


def _ev(bed: str, preset: str, rmse: dict[tuple[str, int, str], float]) -> Evaluation:
    """An evaluation with one solver ("unipc") whose rows are ``{(convention, nfe, method): rmse}``."""
    rows = [{"method": m, "solver": "unipc", "convention": c, "nfe": n, "rmse": v} for (c, n, m), v in rmse.items()]
    meta = {"testbed": bed, "schedule": hso.NoiseSchedule.preset(preset).describe()}
    return Evaluation(rows, meta)


def test_the_pick_minimises_the_worst_regret_over_the_beds():
    # bed a: logSNR best, hso_paper 1.5x; bed b: hso_paper best, logSNR 3x; time_uniform 1.2x on both
    a = _ev("a", "sd21", {("stop", 4, "hso_paper"): 1.5, ("stop", 4, "logSNR"): 1.0, ("stop", 4, "time_uniform"): 1.2})
    b = _ev("b", "sd21", {("stop", 4, "hso_paper"): 1.0, ("stop", 4, "logSNR"): 3.0, ("stop", 4, "time_uniform"): 1.2})
    (row,) = derive_measured_rule([a, b])
    assert row["noise"] == "sd21" and row["space"] == "vp" and row["nfe"] == 4
    assert row["lambda_top"] == pytest.approx(float(hso.NoiseSchedule.preset("sd21").lambda_(1.0)), abs=1e-6)
    assert row["ranking"] == [["time_uniform", 1.2], ["hso_paper", 1.5], ["logSNR", 3.0]]
    # an earlier candidate within 2% of a later one's worst ratio keeps its place (hso's settings come first)
    c = _ev("c", "sd21", {("stop", 4, "hso_paper"): 1.015, ("stop", 4, "logSNR"): 1.0})
    assert [m for m, _ in derive_measured_rule([c])[0]["ranking"]] == ["hso_paper", "logSNR"]


def test_each_noise_schedule_gets_its_own_picks():
    sd = _ev("a", "sd21", {("stop", 4, "hso_paper"): 1.0, ("stop", 4, "logSNR"): 2.0})
    dd = _ev("a", "ddpm", {("stop", 4, "hso_paper"): 2.0, ("stop", 4, "logSNR"): 1.0})
    rows = {r["noise"]: r["ranking"][0][0] for r in derive_measured_rule([sd, dd])}
    assert rows == {"sd21": "hso_paper", "ddpm": "logSNR"}
    assert noise_class(dd)[0] == "ddpm" and noise_class(dd)[1] < noise_class(sd)[1]


@pytest.mark.parametrize("preset,want", [("sd15", "sd21"), ("sdxl", "sd21"), ("sd21", "sd21"), ("ddpm", "ddpm"),
                                         ("vp_linear", "ddpm"), ("vp_cosine", "ddpm"), ("edm", "edm"),
                                         ("flow", "flow")])
def test_a_request_takes_the_nearest_measured_noise_schedule(preset, want):
    sched = hso.NoiseSchedule.preset(preset)
    assert measured_pick("unipc", "stop", sched, 5).noise == want
    # the choice is by lambda(t_max) among the measured schedules of the same lambda space
    rows = nearest_noise([r for r in rule_table()["rules"] if r["solver"] == "unipc"], sched)
    assert {r["noise"] for r in rows} == {want}


@pytest.mark.parametrize("preset,measured", [("sd15", True), ("sdxl", True), ("sd21", True), ("ddpm", True),
                                             ("edm", True), ("flow", True), ("vp_linear", False),
                                             ("vp_cosine", False), ("iddpm", False)])
def test_only_a_measured_noise_schedule_has_measured_or_supported_cells(preset, measured):
    """A noise schedule takes the nearest measured one's ranking, but its cells are measured (and can be supported)
    only when it is that schedule (the same lambda(t) on the same domain): otherwise the claim would be borrowed."""
    sched = hso.NoiseSchedule.preset(preset)
    picks = [measured_pick(s, c, sched, n) for s in ("unipc", "dpmsolver++", "ddim") for c in ("stop", "jump")
             for n in (4, 6, 10, 20, 50)]
    assert all(p.noise_measured is measured and p.measured is measured for p in picks)
    assert any(p.supported(p.ranking[0][0]) for p in picks) is measured
    assert same_noise(sched, picks[0].noise) is measured
    res = hso.optimize(sched, 6, "dpmsolver++")
    m = res.settings["measured"]
    assert m["noise_measured"] is measured and (m["supported"] is False or measured)
    if not measured and res.source != "hso":  # a measured baseline or blend says so in its message
        assert "this one was not measured" in res.message
    # the diffusers default convention is measured only there too
    assert diffusers_convention("dpmsolver++", sched, 6)[1] is measured


@pytest.mark.parametrize("preset", ["iddpm", "vp_cosine", "ddpm"])
def test_on_an_unmeasured_noise_schedule_the_default_tries_the_blend_first(preset):
    """Where the noise schedule was not measured the default hedges (`UNMEASURED_FIRST`, the measured blend) before
    the nearest schedule's ranking; where it was, the ranking's order stands."""
    measured = preset == "ddpm"
    firsts = set()
    for solver in ("unipc", "dpmsolver++", "ddim"):
        for conv in ("stop", "jump"):
            for nfe in (4, 8, 20, 50):
                pick = measured_pick(solver, conv, preset, nfe)
                order = pick.order()
                assert sorted(order) == sorted(pick.ranking)
                if measured or UNMEASURED_FIRST not in dict(pick.ranking):
                    assert order == pick.ranking
                    continue
                assert order[0][0] == UNMEASURED_FIRST
                assert [r for r in order if r[0] != UNMEASURED_FIRST] == \
                    [r for r in pick.ranking if r[0] != UNMEASURED_FIRST]
                res = hso.optimize(preset, nfe, solver, convention=conv)
                # the blend unless it does not apply here (a partner such as "leading" on a continuous schedule):
                # then the ranking's first valid candidate, as everywhere, with the blend named as passed over
                if res.source == UNMEASURED_FIRST:
                    assert "not measured" in res.message and res.settings["measured"]["pick"] == UNMEASURED_FIRST
                else:
                    assert res.settings["passed_over"][0].startswith(f"{UNMEASURED_FIRST}:")
                firsts.add(res.source)
    assert measured or UNMEASURED_FIRST in firsts


def test_same_noise_is_the_same_half_log_snr_on_the_same_domain():
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    sd = hso.NoiseSchedule.from_diffusers(DPMSolverMultistepScheduler(beta_schedule="scaled_linear",
                                                                      beta_start=0.00085, beta_end=0.012))
    assert same_noise(sd, "sd21") and not same_noise(sd, "ddpm")
    assert same_noise(hso.NoiseSchedule.from_diffusers(DDPMScheduler()), "ddpm")
    cos = hso.NoiseSchedule.from_diffusers(DDPMScheduler(beta_schedule="squaredcos_cap_v2"))
    assert not same_noise(cos, "ddpm") and not measured_pick("unipc", "stop", cos, 6).measured
    # flow matching: SD3's shift 3 is the measured schedule; Flux's dynamic shift (mu 1.15: shift 3.16, lambda 0.05
    # lower everywhere) and shift 1 are others
    from diffusers import FlowMatchEulerDiscreteScheduler

    assert same_noise(hso.NoiseSchedule.from_diffusers(FlowMatchEulerDiscreteScheduler(shift=3.0)), "flow")
    flux = hso.NoiseSchedule.from_diffusers(FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), mu=1.15)
    assert not same_noise(flux, "flow") and measured_pick("unipc", "stop", flux, 6).noise == "flow"
    assert not same_noise(hso.NoiseSchedule.from_diffusers(FlowMatchEulerDiscreteScheduler(shift=1.0)), "flow")
    # the linear VP SDE is DDPM's betas within 0.05 in lambda, but on another domain (t_min 1e-4): not the same;
    # on DDPM's domain it would differ by more than the tolerance still
    lin, ddpm = hso.NoiseSchedule.preset("vp_linear"), hso.NoiseSchedule.preset("ddpm")
    t = np.linspace(ddpm.t_min, ddpm.t_max, 257)
    assert 10 * SAME_NOISE_LAMBDA < np.abs(lin.lambda_(t) - ddpm.lambda_(t)).max() < 0.05
    # a shift of the tolerance's size is still the schedule; ten times that is not
    for shift, same in ((0.5 * SAME_NOISE_LAMBDA, True), (10 * SAME_NOISE_LAMBDA, False)):
        moved = hso.NoiseSchedule.vp_discrete(alphas_cumprod=1 / (1 + np.exp(-2 * (ddpm.lambda_(
            np.arange(1, 1001) / 1000) + shift))))
        assert same_noise(moved, "ddpm") is same


def test_zero_terminal_snr_takes_the_lowest_measured_alpha():
    zt = hso.NoiseSchedule.vp_discrete(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       rescale_betas_zero_snr=True)
    assert not np.isfinite(zt.lambda_(zt.t_max)) or zt.lambda_(zt.t_max) < -8
    assert measured_pick("unipc", "stop", zt, 5).noise == "ddpm"


def test_the_diffusers_convention_is_the_lower_worst_ratio_against_both_conventions():
    # "stop"'s default beats "jump"'s on both beds by more than 2%: stop
    a = _ev("a", "sd21", {("stop", 6, "logSNR"): 1.0, ("jump", 6, "logSNR"): 1.5, ("jump", 6, "trailing"): 1.4})
    b = _ev("b", "sd21", {("stop", 6, "logSNR"): 1.1, ("jump", 6, "logSNR"): 1.6, ("jump", 6, "trailing"): 1.3})
    rules = derive_measured_rule([a, b])
    first = {r["convention"]: r["ranking"][0][0] for r in rules}
    assert first == {"stop": "logSNR", "jump": "trailing"}
    (row,) = derive_diffusers_convention([a, b], rules)
    assert row["convention"] == "stop" and row["noise"] == "sd21"
    # worst over beds of each default's ratio to the best schedule of either convention
    assert row["worst"] == {"jump": pytest.approx(1.4), "stop": pytest.approx(1.0)}
    # within the 2% margin, diffusers' own "jump" stays
    c = _ev("c", "sd21", {("stop", 6, "logSNR"): 1.01, ("jump", 6, "trailing"): 1.0})
    assert derive_diffusers_convention([c])[0]["convention"] == "jump"


def test_diffusers_convention_lookup():
    for e in rule_table()["diffusers"]:
        assert diffusers_convention(e["solver"], e["noise"], e["nfe"], e["options"]) == (e["convention"], True)
    # unmeasured solvers keep diffusers' "jump"; unmeasured NFEs take the nearest measured one, not claimed
    assert diffusers_convention("deis", "sd21", 5) == ("jump", False)
    conv, measured = diffusers_convention("unipc", "sd21", 7)
    assert not measured and conv in ("stop", "jump")


def test_every_derivation_ranks_by_the_metric_it_is_given():
    """`RULE_METRIC` is the default of every derivation; given "rmse_wc", the rule, the blend pairs and the
    diffusers convention rank by that field. Bed b's RMSE is set by one sample (time_uniform's rmse 3.0) that its
    well-conditioned RMSE leaves out."""
    from hso.evaluation.report import RULE_METRIC, derive_blend_pairs

    def ev(bed, rmse, wc):
        e = _ev(bed, "sd21", rmse)
        for r in e.rows:
            r["rmse_wc"] = wc[(r["convention"], r["nfe"], r["method"])]
        return e

    a = ev("a", {("stop", 4, "logSNR"): 1.0, ("stop", 4, "time_uniform"): 1.1, ("stop", 4, "edm_rho7"): 1.2},
           {("stop", 4, "logSNR"): 1.0, ("stop", 4, "time_uniform"): 1.1, ("stop", 4, "edm_rho7"): 1.2})
    b = ev("b", {("stop", 4, "logSNR"): 1.0, ("stop", 4, "time_uniform"): 3.0, ("stop", 4, "edm_rho7"): 1.2},
           {("stop", 4, "logSNR"): 2.0, ("stop", 4, "time_uniform"): 1.0, ("stop", 4, "edm_rho7"): 1.2})
    assert RULE_METRIC == "rmse" and derive_measured_rule([a, b]) == derive_measured_rule([a, b], "rmse")
    assert derive_measured_rule([a, b])[0]["ranking"][0][0] == "logSNR"  # worst 1.0 by RMSE
    assert derive_measured_rule([a, b], "rmse_wc")[0]["ranking"][0][0] == "time_uniform"  # worst 1.1
    # the pair with the lowest worst sqrt(r_a r_b): (logSNR, edm_rho7) by RMSE, (time_uniform, edm_rho7) by rmse_wc
    assert derive_blend_pairs([a, b])[0]["pair"] == ["logSNR", "edm_rho7"]
    assert derive_blend_pairs([a, b], "rmse_wc")[0]["pair"] == ["time_uniform", "edm_rho7"]
    # the diffusers convention scores each convention's default by the same field
    j = {("jump", 4, "logSNR"): 1.3, ("jump", 4, "time_uniform"): 1.3, ("jump", 4, "edm_rho7"): 1.3}
    a2 = ev("a", {**_rows(a), **j}, {**_rows(a, "rmse_wc"), **j})
    b2 = ev("b", {**_rows(b), **j}, {**_rows(b, "rmse_wc"), **j})
    by_rmse = derive_diffusers_convention([a2, b2])[0]["worst"]
    by_wc = derive_diffusers_convention([a2, b2], metric="rmse_wc")[0]["worst"]
    assert by_rmse["stop"] == pytest.approx(1.0) and by_wc["stop"] == pytest.approx(1.1)


def _rows(e, field="rmse"):
    """An evaluation's rows as ``{(convention, nfe, method): value}``."""
    return {(r["convention"], r["nfe"], r["method"]): r[field] for r in e.rows}
