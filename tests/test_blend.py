"""The blend candidate (`hso.methods.BLEND`): the midpoint in lambda of a measured pair of schedules, the pair's
derivation from results, its lookup, and how `plan` and `method_schedule` make it."""
from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

import hso
from hso.baselines import MethodNotApplicable
from hso.evaluation import Evaluation
from hso.evaluation.report import derive_blend_pairs
from hso.measured import blend_pair, rule_table
from hso.methods import BLEND, BLEND_PARTNERS, CANDIDATE_ORDER, SCHEDULE_METHODS
from hso.optimize import DMN_RULE_MAX, blend_points, method_schedule, plan
from hso.schedules import PRESETS


def _ev(bed: str, preset: str, rmse: dict[tuple[str, int, str], float], solver: str = "unipc") -> Evaluation:
    rows = [{"method": m, "solver": solver, "convention": c, "nfe": n, "rmse": v} for (c, n, m), v in rmse.items()]
    return Evaluation(rows, {"testbed": bed, "schedule": hso.NoiseSchedule.preset(preset).describe()})


def test_blend_is_the_last_candidate_and_mixes_every_other():
    assert CANDIDATE_ORDER[-1] == BLEND and SCHEDULE_METHODS[BLEND].kind == "blend"
    assert BLEND_PARTNERS == CANDIDATE_ORDER[:-1]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_blend_points_are_the_midpoint_in_lambda(preset):
    sched = hso.NoiseSchedule.preset(preset)
    rng = np.random.default_rng(0)
    for n in (1, 4, 17):
        a = np.sort(rng.uniform(sched.t_min, sched.t_max, n + 1))[::-1]
        b = np.sort(rng.uniform(sched.t_min, sched.t_max, n + 1))[::-1]
        a[0] = b[0] = sched.t_max  # a shared end point is kept exactly (lambda may be -inf there)
        t = blend_points(sched, a, b)
        assert t[0] == sched.t_max and np.all(np.diff(t) < 0)
        assert np.all((t >= sched.t_min) & (t <= sched.t_max))
        lam = sched.lambda_(t[1:])
        want = 0.5 * (sched.lambda_(a[1:]) + sched.lambda_(b[1:]))
        np.testing.assert_allclose(lam, want, rtol=1e-9, atol=1e-9)
        # each point lies between the two it blends
        assert np.all(t <= np.maximum(a, b) + 1e-12) and np.all(t >= np.minimum(a, b) - 1e-12)
        np.testing.assert_array_equal(blend_points(sched, a, a), a)


def test_blend_points_refuse_mismatched_or_non_finite_input():
    with pytest.raises(ValueError, match="same length"):
        blend_points("sd21", [1.0, 0.5, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        blend_points("sd21", [1.0, np.nan, 0.0], [1.0, 0.5, 0.0])


def test_the_pair_has_the_lowest_worst_geometric_mean_over_the_beds():
    # bed a: logSNR best, time_uniform 3x; bed b: time_uniform best, logSNR 3x; edm_rho7 2x on both:
    # sqrt(1 * 3) = 1.73 < sqrt(2 * 3) = 2.45 < 2 * 2: the two that cover each other's failures
    a = _ev("a", "sd21", {("stop", 4, "logSNR"): 1.0, ("stop", 4, "time_uniform"): 3.0, ("stop", 4, "edm_rho7"): 2.0})
    b = _ev("b", "sd21", {("stop", 4, "logSNR"): 3.0, ("stop", 4, "time_uniform"): 1.0, ("stop", 4, "edm_rho7"): 2.0})
    (row,) = derive_blend_pairs([a, b])
    assert row["pair"] == ["time_uniform", "logSNR"]  # in BLEND_PARTNERS order
    assert row["proxy"] == pytest.approx(np.sqrt(3.0), abs=1e-6)
    assert (row["solver"], row["convention"], row["noise"], row["nfe"]) == ("unipc", "stop", "sd21", 4)
    # the blend's own rows never enter (the pair comes from the other candidates only)
    a2 = _ev("a", "sd21", {("stop", 4, "logSNR"): 1.0, ("stop", 4, "time_uniform"): 3.0, ("stop", 4, "edm_rho7"): 2.0,
                           ("stop", 4, BLEND): 0.1})
    assert derive_blend_pairs([a2, b]) == [row]


def test_committed_pairs_are_minimal_over_every_pair():
    """The committed pairs re-derived by brute force from their own recorded criterion: no other pair of the same
    cell has a lower worst geometric mean (checked on the committed results in test_quality_results.py too)."""
    from benchmarks.quality import run

    results = run.load_results()
    evs = run.rule_evaluations(results)
    pairs = {(r["solver"], r["convention"], r["noise"], r["nfe"]): r for r in derive_blend_pairs(evs)}
    assert pairs and list(pairs.values()) == sorted(pairs.values(), key=lambda r: (r["solver"], r["convention"],
                                                                                     r["space"], r["noise"], r["nfe"]))
    assert rule_table()["blend_pairs"] == list(pairs.values())
    from hso.evaluation.report import noise_class, valid_row
    cells: dict = {}
    for ev in evs:
        noise = noise_class(ev)[0]
        for solver, conv, nfe in ev.cells():
            rows = {r["method"]: r["rmse"] for r in ev.rows
                    if (r["solver"], r["convention"], r["nfe"]) == (solver, conv, nfe) and valid_row(r)}
            best = min(rows[m] for m in BLEND_PARTNERS if m in rows)
            cells.setdefault((solver, conv, noise, nfe), []).append({m: v / best for m, v in rows.items()})
    for key, row in pairs.items():
        beds = cells[key]
        common = [m for m in BLEND_PARTNERS if all(m in b for b in beds)]
        worst = {(a, b): max(np.sqrt(bed[a] * bed[b]) for bed in beds) for a, b in itertools.combinations(common, 2)}
        assert worst[tuple(row["pair"])] == pytest.approx(row["proxy"], abs=1e-6)
        assert row["proxy"] <= min(worst.values()) + 1e-6, key


@pytest.mark.parametrize("solver", ["unipc", "dpmsolver++", "ddim", "euler"])
@pytest.mark.parametrize("preset", ["sd21", "ddpm", "edm", "flow"])
def test_method_schedule_blends_the_measured_pair(preset, solver):
    for nfe in (4, 12):
        conv = "jump"
        (first, second), measured_nfe, noise = blend_pair(solver, conv, preset, nfe)
        assert noise == preset and measured_nfe == nfe
        assert first in BLEND_PARTNERS and second in BLEND_PARTNERS and first != second
        t = method_schedule(BLEND, preset, solver, nfe, conv)
        want = blend_points(preset, method_schedule(first, preset, solver, nfe, conv),
                            method_schedule(second, preset, solver, nfe, conv))
        np.testing.assert_array_equal(t, want)
        assert t.shape == (hso.solvers.get_solver(solver).n_intervals(nfe, conv) + 1,)


def test_euler_takes_ddims_pair_and_unmeasured_solvers_have_none():
    assert blend_pair("euler", "jump", "sd21", 6) == blend_pair("ddim", "jump", "sd21", 6)
    assert blend_pair("heun", "jump", "sd21", 6) is None
    with pytest.raises(MethodNotApplicable, match="no blend was measured"):
        method_schedule(BLEND, "sd21", "heun", 6, "jump")


def test_a_dm_nonuniform_partner_beyond_the_measured_range_is_not_applicable(monkeypatch):
    opt = importlib.import_module("hso.optimize")

    monkeypatch.setattr(opt, "blend_pair", lambda *a: (("hso_dmn", "logSNR"), 10, "edm"))
    with pytest.raises(MethodNotApplicable, match="DM-NonUniform search at N = 60"):
        method_schedule(BLEND, "edm", "unipc", 60, "stop")
    assert DMN_RULE_MAX < 60


def test_plan_makes_a_blend_pick_and_says_so(monkeypatch):
    """Where the measured ranking puts the blend first, the default returns its points, names the pair, and
    passes it over (with the reason) where it does not apply."""
    opt = importlib.import_module("hso.optimize")
    from hso.measured import Pick

    monkeypatch.setattr(opt, "measured_pick",
                        lambda *a, **k: Pick((("blend", 1.1), ("logSNR", 1.3)), 6, True, "ddpm", "dpmsolver++"))
    job = plan("ddpm", 6, "dpmsolver++", convention="stop")
    (first, second), _, _ = blend_pair("dpmsolver++", "stop", "ddpm", 6)
    assert job.source == BLEND and not job.is_search
    assert job.settings["measured"]["blend"] == [first, second]
    np.testing.assert_array_equal(job.baseline, method_schedule(BLEND, "ddpm", "dpmsolver++", 6, "stop"))
    res = job.run()
    assert res.source == BLEND and f"the blend of {first!r} and {second!r}" in res.message
    np.testing.assert_array_equal(res.t, job.baseline)
    # an unmeasured solver has no pair: the next candidate, with the reason
    monkeypatch.setattr(opt, "blend_pair", lambda *a: None)
    job = plan("ddpm", 6, "dpmsolver++", convention="stop")
    assert job.source == "logSNR"
    assert any(s.startswith("blend: no blend was measured") for s in job.settings["passed_over"])
