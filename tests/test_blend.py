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
from hso.measured import blend_pair, blend_weight, rule_table
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


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_weighted_blend_moves_from_one_partner_to_the_other_in_lambda(preset):
    sched = hso.NoiseSchedule.preset(preset)
    rng = np.random.default_rng(1)
    a = np.sort(rng.uniform(sched.t_min, sched.t_max, 9))[::-1]
    b = np.sort(rng.uniform(sched.t_min, sched.t_max, 9))[::-1]
    # the midpoint is the default's blend, unchanged to the last bit
    np.testing.assert_array_equal(blend_points(sched, a, b, 0.5), blend_points(sched, a, b))
    prev = a
    for w in (0.2, 0.35, 0.65, 0.8):
        t = blend_points(sched, a, b, w)
        assert np.all(np.diff(t) < 0)
        want = (1 - w) * sched.lambda_(a) + w * sched.lambda_(b)
        np.testing.assert_allclose(sched.lambda_(t), want, rtol=1e-9, atol=1e-9)
        # a larger weight lies nearer b: between the previous blend and b, point by point
        lo, hi = np.minimum(prev, b), np.maximum(prev, b)
        assert np.all((t >= lo - 1e-12) & (t <= hi + 1e-12))
        prev = t


def test_blend_points_refuse_mismatched_or_non_finite_input():
    with pytest.raises(ValueError, match="same length"):
        blend_points("sd21", [1.0, 0.5, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        blend_points("sd21", [1.0, np.nan, 0.0], [1.0, 0.5, 0.0])
    for bad in (0.0, 1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="weight"):
            blend_points("sd21", [1.0, 0.5, 0.0], [1.0, 0.4, 0.0], bad)


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
    committed = rule_table()["blend_pairs"]
    assert [{k: v for k, v in r.items() if k != "weight"} for r in committed] == list(pairs.values())
    # each pair's weight: the sweep's choice where it made one, the midpoint elsewhere
    weights = run.blend_weights()
    assert [r["weight"] for r in committed] == [weights.get(k, 0.5) for k in pairs]
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


def _sweep_cell(samplers: dict[str, tuple[list[float], float]]) -> dict:
    return {"solver": "unipc", "convention": "stop", "noise": "ddpm", "nfe": 6,
            "samplers": {s: {"worst": w, "best_other": b} for s, (w, b) in samplers.items()}}


def test_the_blend_weight_is_the_best_mean_that_leaves_no_variant_worse():
    from hso.evaluation.report import derive_blend_weights

    weights = (0.2, 0.5, 0.8)
    # one variant: 0.8 is best and far below the midpoint
    moved = _sweep_cell({"unipc": ([2.0, 1.6, 1.1], 1.9)})
    # 0.8 helps one variant a lot but makes the other, where the blend is its pick, 10% worse: 0.2 is kept instead
    guarded = _sweep_cell({"unipc": ([1.3, 1.6, 1.1], 1.9), "unipc-bh2-o2": ([1.2, 1.2, 1.32], 2.0)})
    # within 2% of the midpoint: stays at 0.5
    flat = _sweep_cell({"unipc": ([1.59, 1.6, 1.58], 1.9)})
    # the blend worse than the best other candidate at every weight: nothing to gain, the midpoint stays
    useless = _sweep_cell({"unipc": ([3.0, 2.5, 2.8], 1.3)})
    got = [c["weight"] for c in derive_blend_weights([moved, guarded, flat, useless], weights)]
    assert got == [0.8, 0.2, 0.5, 0.5]


def test_a_blend_with_a_measured_weight_is_made_at_that_weight():
    """Every committed pair whose weight is not the midpoint: `method_schedule` mixes its pair at that weight (the
    baseline-only pairs, which need no search)."""
    rows = [r for r in rule_table()["blend_pairs"] if r["weight"] != 0.5
            and all(SCHEDULE_METHODS[m].kind == "baseline" for m in r["pair"])]
    assert rows, "no committed pair with a measured weight and two baseline partners"
    for r in rows[:6]:
        solver, conv, preset, nfe = r["solver"], r["convention"], r["noise"], r["nfe"]
        assert blend_weight(solver, conv, preset, nfe) == r["weight"]
        want = blend_points(preset, *(method_schedule(m, preset, solver, nfe, conv) for m in r["pair"]), r["weight"])
        np.testing.assert_array_equal(method_schedule(BLEND, preset, solver, nfe, conv), want)
        assert not np.array_equal(want, blend_points(preset, *(method_schedule(m, preset, solver, nfe, conv)
                                                               for m in r["pair"])))


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
                            method_schedule(second, preset, solver, nfe, conv), blend_weight(solver, conv, preset, nfe))
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
    """Where the measured ranking puts the blend first, planning runs nothing (the pair is looked up and checked,
    the next valid candidate becomes the fallback); running returns the blend's points and names the pair."""
    opt = importlib.import_module("hso.optimize")
    from hso.measured import Pick

    monkeypatch.setattr(opt, "measured_pick",
                        lambda *a, **k: Pick((("blend", 1.1), ("logSNR", 1.3)), 6, True, "ddpm", "dpmsolver++"))
    searched = []
    real_search = opt.fast.search
    monkeypatch.setattr(opt.fast, "search", lambda *a, **k: searched.append(1) or real_search(*a, **k))
    job = plan("ddpm", 6, "dpmsolver++", convention="stop")
    (first, second), _, _ = blend_pair("dpmsolver++", "stop", "ddpm", 6)
    assert job.source == BLEND and job.blend == (first, second) and not job.is_search and job.baseline is None
    assert job.fallback.source == "logSNR" and not searched
    assert job.settings["measured"]["blend"] == [first, second]
    res = job.run()
    assert res.source == BLEND and f"the blend of {first!r} and {second!r}" in res.message
    np.testing.assert_array_equal(res.t, method_schedule(BLEND, "ddpm", "dpmsolver++", 6, "stop"))
    # where no pair applies, planning passes the blend over with the reason
    monkeypatch.setattr(opt, "blend_pair", lambda *a: None)
    job = plan("ddpm", 6, "dpmsolver++", convention="stop")
    assert job.source == "logSNR" and not job.blend
    assert any(s.startswith("blend: no blend was measured") for s in job.settings["passed_over"])


def test_a_blend_whose_points_collide_runs_its_fallback(monkeypatch):
    """Collisions of integer timesteps are known only once the points are made: `run` then returns the fallback,
    with the blend named among the candidates passed over."""
    opt = importlib.import_module("hso.optimize")
    from hso.measured import Pick

    monkeypatch.setattr(opt, "measured_pick",
                        lambda *a, **k: Pick((("blend", 1.1), ("logSNR", 1.3)), 6, True, "ddpm", "dpmsolver++"))
    job = plan("ddpm", 6, "dpmsolver++", convention="stop")
    sched = hso.NoiseSchedule.preset("ddpm")
    monkeypatch.setattr(opt, "_blend_of", lambda *a: (np.array([1.0, 0.9, 0.9001, 0.5, 0.3, 0.1, 0.001]), ("a", "b")))
    res = job.run()
    assert res.source == "logSNR" and res.settings["passed_over"][0].startswith("blend: ")
    assert "passed over (not valid here): blend" in res.message
    assert np.all(np.diff(res.timesteps) < 0) and sched.is_discrete


def test_optimize_many_makes_blends_like_optimize(monkeypatch):
    opt = importlib.import_module("hso.optimize")
    from hso.measured import Pick

    monkeypatch.setattr(opt, "measured_pick",
                        lambda *a, **k: Pick((("blend", 1.1), ("logSNR", 1.3)), 6, True, "ddpm", "dpmsolver++"))
    configs = [{"schedule": "ddpm", "nfe": 6, "solver": "dpmsolver++", "convention": "stop"},
               {"schedule": "ddpm", "nfe": 5, "solver": "unipc", "convention": "jump", "method": "hso"}]
    many = hso.optimize_many(configs)
    for cfg, res in zip(configs, many):
        one = hso.optimize(**cfg)
        assert res.source == one.source
        np.testing.assert_array_equal(res.t, one.t)
    assert many[0].source == BLEND


@pytest.mark.parametrize("preset", ["sd21", "ddpm", "edm", "flow"])
def test_the_defaults_points_are_the_requests_own_for_every_solver(preset):
    """`method_schedule("hso", ...)` is the default's schedule for that very request: a blend depends on the solver,
    convention and NFE (its pair), not only on the engine's specs, so two requests that share the specs (UniPC and
    DPM-Solver++ at the same NFE) must not share a cached schedule."""
    for nfe, conv in ((4, "jump"), (6, "stop"), (12, "jump")):
        for solver in ("unipc", "dpmsolver++", "ddim"):
            want = hso.optimize(preset, nfe, solver, convention=conv).t
            np.testing.assert_array_equal(method_schedule("hso", preset, solver, nfe, conv), want)


def test_a_blends_partner_searches_run_on_the_requested_backend(monkeypatch):
    """`optimize(..., backend=...)` runs a blend's partner searches on that backend, not on "auto"."""
    opt = importlib.import_module("hso.optimize")
    from hso.measured import Pick

    monkeypatch.setattr(opt, "measured_pick",
                        lambda *a, **k: Pick((("blend", 1.1), ("logSNR", 1.3)), 6, True, "edm", "unipc"))
    monkeypatch.setattr(opt, "blend_pair", lambda *a: (("hso_paper", "logSNR"), 6, "edm"))
    monkeypatch.setattr(opt, "_SEARCHED", type(opt._SEARCHED)())  # no search cached by an earlier test
    used = []
    real_search = opt.fast.search
    monkeypatch.setattr(opt.fast, "search", lambda *a, backend="auto", **k: used.append(backend)
                        or real_search(*a, backend=backend, **k))
    res = hso.optimize("edm", 6, "unipc", convention="stop", backend="reference")
    assert res.source == BLEND and res.backend == "reference" and used == ["reference"]
    want = blend_points("edm", hso.optimize("edm", 6, "unipc", convention="stop", method="paper",
                                            backend="reference").t,
                        method_schedule("logSNR", "edm", "unipc", 6, "stop"), blend_weight("unipc", "stop", "edm", 6))
    np.testing.assert_array_equal(res.t, want)


@pytest.mark.parametrize("preset", ["sd21", "flow"])
def test_optimize_many_batches_blend_partners_and_equals_optimize(preset):
    """`optimize_many` runs blends' partner searches in its batch; every result equals `optimize`'s byte for byte,
    blends with search partners included."""
    cfgs = [dict(nfe=n, solver=s, convention=c) for s in ("unipc", "dpmsolver++") for n in (4, 6, 10)
            for c in ("stop", "jump")]
    many = hso.optimize_many(cfgs, schedule=preset)
    with_search_partner = 0
    for cfg, res in zip(cfgs, many):
        one = hso.optimize(preset, **cfg)
        assert res.source == one.source and res.settings == one.settings and res.t.tobytes() == one.t.tobytes()
        if res.source == BLEND:
            with_search_partner += any(SCHEDULE_METHODS[m].kind in ("search", "ported")
                                       for m in res.settings["measured"]["blend"])
    assert with_search_partner >= 2
