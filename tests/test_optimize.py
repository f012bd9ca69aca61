"""hso.optimize: the authors' reference table (spec §8), the constrained mode, conventions, results, bad input."""
import json

import numpy as np
import pytest

import hso

# spec §8, from running the authors' code: (solver, NFE) -> (indices, t_eps*, T_max*)
REFERENCE = {
    ("ddim", 4): ([959, 708, 376, 29], 0.030, 0.960),
    ("ddim", 5): ([959, 782, 557, 291, 29], 0.030, 0.960),
    ("ddim", 6): ([959, 822, 655, 458, 238, 29], 0.030, 0.960),
    ("ddim", 8): ([999, 900, 785, 652, 500, 331, 153, 9], 0.010, 1.000),
    ("ddim", 10): ([999, 923, 839, 744, 638, 519, 391, 254, 115, 9], 0.010, 1.000),
    ("unipc", 4): ([959, 782, 557, 291, 29], 0.030, 0.960),
    ("unipc", 5): ([959, 818, 646, 442, 215, 13], 0.014, 0.960),
    ("unipc", 6): ([999, 882, 742, 577, 388, 182, 9], 0.010, 1.000),
    ("unipc", 8): ([999, 913, 816, 705, 579, 439, 288, 131, 9], 0.010, 1.000),
    ("unipc", 10): ([999, 931, 857, 774, 682, 580, 470, 351, 226, 102, 9], 0.010, 1.000),
}


# Triton under the CPU interpreter takes ~10 s a search: tests/test_triton.py covers its searches
TABLE_BACKENDS = [b for b in hso.fast.available_backends() if b != "triton"]


@pytest.mark.parametrize("backend", TABLE_BACKENDS)
@pytest.mark.parametrize("solver, nfe", sorted(REFERENCE))
def test_reproduces_the_authors_table(solver, nfe, backend):
    indices, t_eps, t_max = REFERENCE[solver, nfe]
    res = hso.optimize("sd21", nfe, solver, method="paper", seed=66, backend=backend)
    assert res.timesteps.tolist() == pytest.approx(indices, abs=20)
    # psi* on the same box limits (rho is not identifiable: the lower optimum does not depend on it)
    assert res.psi[1] == pytest.approx(t_eps, abs=2e-3)
    assert res.psi[2] == pytest.approx(t_max, abs=2e-3)
    assert res.convention == ("jump" if solver == "ddim" else "stop")
    assert len(res.t) == nfe + (0 if solver == "ddim" else 1)
    assert res.backend == backend


def test_reference_table_fitness_values():
    # the authors' fitness (MEP + penalty): 3.197 for DDIM 4, 3.33 + 2.6e5 for DDIM 8
    r4 = hso.optimize("sd21", 4, "ddim", method="paper")
    assert r4.fitness == pytest.approx(3.197, abs=1e-3) and r4.penalty == 0.0
    r8 = hso.optimize("sd21", 8, "ddim", method="paper")
    assert r8.mep == pytest.approx(3.33, abs=0.01) and r8.penalty == pytest.approx(2.6e5, rel=0.05)


@pytest.mark.parametrize("solver", ["unipc", "ddim"])
def test_constrain_respects_d_min_at_every_nfe(solver):
    lo = 2
    for nfe in range(lo, 21):
        res = hso.optimize("sd21", nfe, solver, spacing="constrain")
        gaps = -np.diff(res.t)
        assert gaps.min() >= hso.d_min(nfe) * (1 - 1e-12), (nfe, gaps.min())
        assert res.penalty == 0.0 and res.feasible
        assert np.all(np.diff(res.timesteps) < 0)


@pytest.mark.parametrize("solver, nfe", [("ddim", 4), ("ddim", 5), ("ddim", 6), ("unipc", 4)])
def test_constrain_agrees_with_rank_where_rank_is_feasible(solver, nfe):
    a = hso.optimize("sd21", nfe, solver, spacing="rank")
    b = hso.optimize("sd21", nfe, solver, spacing="constrain")
    assert a.penalty == 0.0
    np.testing.assert_array_equal(a.timesteps, b.timesteps)
    assert b.fitness == pytest.approx(a.fitness, rel=1e-9)


def test_constrain_fixes_the_drift():
    """From UniPC NFE 6 the paper's procedure violates d_min everywhere; the constrained search does not."""
    rank = hso.optimize("sd21", 6, "unipc", spacing="rank")
    con = hso.optimize("sd21", 6, "unipc", spacing="constrain")
    assert rank.penalty > 1e4
    assert con.penalty == 0.0 and con.mep < rank.fitness


def test_same_seed_same_bytes_and_json_roundtrip():
    a = hso.optimize("sd15", 6, "dpmsolver++", seed=3, popsize=5, maxiter=10)
    b = hso.optimize("sd15", 6, "dpmsolver++", seed=3, popsize=5, maxiter=10)
    da, db = a.to_dict(), b.to_dict()
    da.pop("wall_time"), db.pop("wall_time")
    assert da == db
    back = json.loads(a.to_json())
    assert back["timesteps"] == a.timesteps.tolist() and back["convention"] == "stop"
    assert back["schedule"]["name"] == "sd15"


def test_result_fields_and_conventions():
    stop = hso.optimize("sd21", 5, "unipc", method="hso")
    jump = hso.optimize("sd21", 5, "unipc", convention="jump", method="hso")
    assert len(stop.t) == 6 and len(stop.sigmas) == 6 and stop.sigmas[-1] > 0
    assert len(jump.t) == 5 and len(jump.sigmas) == 6 and jump.sigmas[-1] == 0.0
    for r in (stop, jump):
        np.testing.assert_allclose(r.sigmas[:len(r.t)], np.exp(-r.lambdas))
        assert np.all(np.diff(r.t) < 0) and np.all(np.diff(r.lambdas) > 0)
        np.testing.assert_allclose(r.log_snr, 2 * r.lambdas)
        assert r.x is r.psi and r.fun == r.fitness and r.nfev > 0 and r.nit >= 1
        assert "timestep" in r.table()
    heun = hso.optimize("sd21", 7, "heun", popsize=4, maxiter=5)
    assert len(heun.t) == 4  # 3 Heun steps (6 NFE) + the final Euler jump (1 NFE)


@pytest.mark.parametrize("preset", ["edm", "flow", "vp_linear", "vp_cosine", "ddpm", "sdxl"])
@pytest.mark.parametrize("objective", ["mep", "dmn"])
def test_every_family_and_objective(preset, objective):
    res = hso.optimize(preset, 6, "unipc", objective, popsize=5, maxiter=8)
    s = hso.NoiseSchedule.preset(preset)
    assert np.all(np.isfinite(res.t)) and np.all(np.diff(res.t) < 0)
    assert s.t_min <= res.t[-1] and res.t[0] <= s.t_max
    assert (res.timesteps is not None) == s.is_discrete


def test_default_p_is_the_papers_except_for_ve():
    assert hso.optimize("sd21", 4, "ddim").settings["p"] == 2.0
    edm = hso.optimize("edm", 4, "ddim", method="paper")  # (auto takes DM-NonUniform for DDIM on VE)
    assert edm.settings["p"] == 1.0 and hso.optimize("edm", 4, "ddim").settings["p"] == 1.0
    # with p = 1 MEP is sum 2 sinh(h/2): convex, minimised by equal lambda steps between the end points
    np.testing.assert_allclose(np.diff(edm.lambdas), np.diff(edm.lambdas)[0], rtol=1e-6)


def test_callback_can_stop():
    seen = []
    res = hso.optimize("sd21", 5, "unipc", callback=lambda psi, f, nit: seen.append(nit) or nit >= 2)
    assert seen == [1, 2] and res.nit == 2 and not res.success


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(nfe=0), ValueError, "nfe must be >= 1"),
    (dict(nfe=5.0), TypeError, "nfe must be an integer"),
    (dict(nfe=True), TypeError, "nfe must be an integer"),
    (dict(nfe=2000), ValueError, "too large"),
    (dict(nfe=11, spacing="constrain", bounds=[(3, 16), (0.03, 0.03), (0.96, 0.96)]), ValueError, "too large"),
    (dict(solver="lms"), ValueError, "unknown solver 'lms'.*unipc"),
    (dict(objective="fid"), ValueError, "unknown objective 'fid'"),
    (dict(convention="halt"), ValueError, "unknown convention"),
    (dict(spacing="soft"), ValueError, "unknown spacing"),
    (dict(init="random"), ValueError, "unknown init family"),
    (dict(schedule="sd99"), ValueError, "unknown preset"),
    (dict(bounds=[(16, 3), (0.01, 0.03), (0.96, 1.0)]), ValueError, "inverted bounds for rho"),
    (dict(bounds=[(3, 16), (0.01, 0.97), (0.96, 1.0)]), ValueError, "t_eps must stay below T_max"),
    (dict(bounds=[(3, 16), (0.0001, 0.03), (0.96, 1.0)]), ValueError, "time domain"),
    (dict(bounds=[(3, 16), (0.01, np.nan), (0.96, 1.0)]), ValueError, "NaN"),
    (dict(bounds=[(3, 16), (0.01, 0.03)]), ValueError, "three"),
    (dict(solver="ddim", nfe=1), ValueError, "no interval"),
    (dict(solver="heun", nfe=6), ValueError, "heun with convention 'jump' needs NFE = 2 N \\+ 1"),
    (dict(p=float("nan")), ValueError, "p must be a positive number"),
    (dict(schedule="edm", objective="mep", p=2.0), ValueError, "constant for VE/EDM"),
    (dict(backend="tpu"), ValueError, "unknown backend 'tpu'"),
    (dict(mutation=(1.0, 0.5)), ValueError, "mutation must be"),
    (dict(mutation=3.0), ValueError, "mutation must be"),
    (dict(recombination=1.5), ValueError, "recombination must lie in"),
    (dict(tol=-1.0), ValueError, "tol must be"),
    (dict(seed=-3), ValueError, "seed must be >= 0"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
])
def test_bad_input_raises_clear_errors(kwargs, exc, msg):
    args = {"schedule": "sd21", "nfe": 5, **kwargs}
    with pytest.raises(exc, match=msg):
        hso.optimize(**args)


def test_optimize_many_equals_one_by_one(capsys):
    cfgs = [dict(schedule="sd21", nfe=n, solver=s, method="hso") for s in ("unipc", "dpmsolver++", "ddim")
            for n in (3, 5, 9)]
    cfgs.append(dict(schedule="edm", nfe=5, solver="euler", spacing="constrain"))
    many = hso.optimize_many(cfgs, progress=True)
    assert "hso: 10/10 searches" in capsys.readouterr().err
    for cfg, res in zip(cfgs, many):
        one = hso.optimize(**cfg)
        np.testing.assert_array_equal(res.t, one.t)
        assert res.fitness == one.fitness and res.nfev == one.nfev and res.nfe == cfg["nfe"]


def test_optimize_many_rejects_bad_configs_before_running():
    with pytest.raises(ValueError, match=r"config 1 .*unknown solver"):
        hso.optimize_many([dict(nfe=4), dict(nfe=4, solver="nope")])
    with pytest.raises(TypeError, match=r"config 0: unknown argument\(s\) \['steps'\]"):
        hso.optimize_many([dict(steps=4)])


def test_methods_hso_and_paper():
    """method="paper" is the paper's procedure; "hso" applies AUTO_RULE; explicit settings always win."""
    from hso.optimize import AUTO_RULE

    paper = hso.optimize("sd21", 6, "unipc", convention="jump", method="paper")
    explicit = hso.optimize("sd21", 6, "unipc", "mep", convention="jump", spacing="rank", p=2.0)
    np.testing.assert_array_equal(paper.t, explicit.t)
    ruled_hso = hso.optimize("sd21", 6, "unipc", convention="jump", method="hso")
    ruled = hso.optimize("sd21", 6, "unipc", convention="jump", method="paper",
                         **AUTO_RULE[("unipc", "jump", "vp")])
    np.testing.assert_array_equal(ruled_hso.t, ruled.t)
    assert ruled_hso.settings["method"] == "hso" and paper.settings["method"] == "paper"
    assert ruled_hso.source == "hso" and paper.settings["measured"] is None
    # method "hso" says where its setting stands in the measured ranking of the cell (tests/test_solver_variants.py)
    assert ruled_hso.settings["measured"]["pick"] == "hso_p1" and ruled_hso.settings["measured"]["nfe"] == 6
    # DPM-Solver++ "stop" on VP has no rule: "hso" is the paper's there; UniPC "stop" measured DM-NonUniform
    assert ("dpmsolver++", "stop", "vp") not in AUTO_RULE
    np.testing.assert_array_equal(hso.optimize("sd21", 5, "dpmsolver++", method="hso").t,
                                  hso.optimize("sd21", 5, "dpmsolver++", method="paper").t)
    assert hso.optimize("sd21", 5, "unipc", method="hso").objective == "dmn"
    # an explicit setting overrides the rule
    r = hso.optimize("sd21", 6, "unipc", convention="jump", p=2.0, spacing="rank")
    np.testing.assert_array_equal(r.t, paper.t)
    # the rule depends on the lambda space: DM-NonUniform for DDIM on EDM, not on SD; an explicit objective
    # other than the rule's drops the rule
    assert AUTO_RULE[("ddim", "stop", "ve")] == {"objective": "dmn"}
    assert hso.optimize("edm", 5, "ddim", convention="stop", method="hso").objective == "dmn"
    assert hso.optimize("sd21", 5, "ddim", convention="stop", method="hso").objective == "mep"
    explicit_mep = hso.optimize("edm", 5, "ddim", "mep", convention="stop")
    assert explicit_mep.objective == "mep" and explicit_mep.spacing == "rank"
    np.testing.assert_array_equal(explicit_mep.t, hso.optimize("edm", 5, "ddim", convention="stop",
                                                               method="paper").t)
    with pytest.raises(ValueError, match="unknown method"):
        hso.optimize("sd21", 5, "unipc", method="best")
    with pytest.raises(ValueError, match="unknown objective"):
        hso.optimize("sd21", 5, "unipc", "l2")


def _first_applicable(pick, sched, solver="unipc", nfe=5, convention="stop"):
    from hso.baselines import BASELINES, MethodNotApplicable, baseline_schedule
    from hso.optimize import method_schedule
    for name, _ in pick.ranking:
        if name == "blend":  # applies where its measured pair does
            try:
                method_schedule(name, sched, solver, nfe, convention)
                return name
            except MethodNotApplicable:
                continue
        if name not in BASELINES:  # hso's settings and the ported "stop" search apply everywhere measured
            return name
        try:
            baseline_schedule(name, sched, 5)
            return name
        except MethodNotApplicable:
            continue


@pytest.mark.parametrize("preset,solver,nfe,convention", [
    ("sd21", "unipc", 5, "stop"), ("sd21", "ddim", 5, "jump"), ("flow", "unipc", 6, "jump"),
    ("edm", "unipc", 4, "jump"), ("vp_linear", "ddim", 4, "stop"), ("edm", "dpmsolver++", 5, "jump"),
    ("flow", "ddim", 4, "stop")])
def test_auto_returns_the_measured_pick(preset, solver, nfe, convention):
    """method="auto" (the default) returns the schedule the measured table ranks first: a baseline's own points
    (no search) or the search under the picked setting, equal to that setting asked for explicitly."""
    from hso.baselines import BASELINES, baseline_schedule
    from hso.measured import PORTED, VARIANTS, measured_pick
    from hso.solvers import get_solver

    sched = hso.NoiseSchedule.preset(preset)
    res = hso.optimize(preset, nfe, solver, convention=convention)
    pick = measured_pick(solver, convention, sched, nfe)
    want = _first_applicable(pick, sched, solver, nfe, convention)
    m = res.settings["measured"]
    assert m["pick"] == want and m["nfe"] == nfe and m["worst_ratio"] == dict(pick.ranking)[want]
    assert m["supported"] == (m["worst_ratio"] <= 1.1)
    n = get_solver(solver).n_intervals(nfe, convention)
    if want == PORTED:  # the "stop" search of method "hso", its last point dropped
        stop = hso.optimize(preset, nfe, solver, convention="stop", method="hso")
        assert res.source == PORTED and res.convention == "jump" and res.settings["search_convention"] == "stop"
        np.testing.assert_array_equal(res.t, stop.t[:-1])
        np.testing.assert_array_equal(res.psi, stop.psi)
        assert res.sigmas[-1] == 0.0 and len(res.sigmas) == len(res.t) + 1
    elif want == "blend":  # the measured pair's points, mixed in lambda at the measured weight
        from hso.measured import blend_weight
        from hso.optimize import method_schedule
        assert res.source == want and res.psi.size == 0 and res.nit == res.nfev == 0
        np.testing.assert_array_equal(res.t, method_schedule("blend", sched, solver, nfe, convention))
        assert "the blend of {!r} and {!r}".format(*m["blend"]) in res.message
        assert m["blend_weight"] == blend_weight(solver, convention, sched, nfe)
    elif want in BASELINES:
        assert res.source == want and res.psi.size == 0 and res.nit == res.nfev == 0
        np.testing.assert_array_equal(res.t, baseline_schedule(want, sched, n))
        value = hso.fast.objective_and_grad(res.lambdas[None], hso.fast.ObjectiveSpec(res.objective, sched.kind,
                                                                                      res.settings["p"]))[0][0]
        assert res.mep == pytest.approx(value, rel=1e-12) and res.fitness == res.mep + res.penalty
        assert want in res.message
    else:
        assert res.source == "hso" and res.psi.size == 3 and res.nfev > 0
        np.testing.assert_array_equal(res.t, hso.optimize(preset, nfe, solver, convention=convention,
                                                          method="paper", **VARIANTS[want]).t)
    assert len(res.t) == n + 1 and np.all(np.diff(res.t) < 0)
    if res.timesteps is not None:
        assert np.all(np.diff(res.timesteps) < 0)
    assert json.loads(res.to_json())["source"] == res.source


def test_auto_skips_baselines_that_do_not_apply_and_search_arguments_ask_for_a_search():
    # a cell of the DDPM-like table (which continuous VP models such as vp_linear take) whose first pick is one of
    # diffusers' integer spacings: the discrete model gets it, the continuous one (no integer timesteps) the next
    # applicable candidate
    from hso.measured import measured_pick, rule_table
    integer = ("leading", "trailing", "ays")
    cells = [(r["solver"], r["convention"], r["nfe"]) for r in rule_table()["rules"]
             if r["noise"] == "ddpm" and r["ranking"][0][0] in integer and r["solver"] != "unipc"]
    assert cells, "the measured table has no DDPM-like cell picking an integer spacing first"
    solver, conv, nfe = cells[0]
    pick = measured_pick(solver, conv, "vp_linear", nfe)
    assert pick.noise == "ddpm"
    assert hso.optimize("ddpm", nfe, solver, convention=conv).source == pick.ranking[0][0]
    cont = hso.optimize("vp_linear", nfe, solver, convention=conv)
    want = next(m for m, _ in pick.ranking if m not in integer)
    assert cont.settings["measured"]["pick"] == want
    # any HSO search argument given explicitly (here the population) asks for a search: no measured pick
    searched = hso.optimize("sd21", 5, "unipc", popsize=6, maxiter=4)
    assert searched.source == "hso" and searched.settings["measured"] is None
    # the same value as the default is not a request for a search
    assert hso.optimize("sd21", 5, "unipc", popsize=20).source == hso.optimize("sd21", 5, "unipc").source
    # unmeasured NFE: the nearest measured one (ties: the larger), not claimed as supported
    r7 = hso.optimize("sd21", 7, "unipc")
    assert r7.settings["measured"]["nfe"] == 8 and not r7.settings["measured"]["supported"]
    assert hso.optimize("sd21", 11, "unipc").settings["measured"]["nfe"] == 12  # a tie: the larger
    r60 = hso.optimize("sd21", 60, "unipc").settings["measured"]
    assert r60["nfe"] == 50 and not r60["supported"]
    # unmeasured solvers: an HSO search with method "hso"'s settings
    heun = hso.optimize("sd21", 7, "heun", popsize=4, maxiter=5)
    assert heun.source == "hso" and heun.settings["measured"] is None


def test_optimize_many_mixes_baselines_and_searches_in_order():
    cfgs = [dict(nfe=5), dict(nfe=6, convention="jump", schedule="flow"), dict(nfe=4, solver="ddim"),
            dict(nfe=5, method="paper")]
    many = hso.optimize_many(cfgs, schedule="sd21")
    for cfg, r in zip(cfgs, many):
        one = hso.optimize(**{"schedule": "sd21", **cfg})
        assert r.source == one.source
        np.testing.assert_array_equal(r.t, one.t)


def test_rules_never_choose_dm_nonuniform_beyond_its_measured_size():
    """A measured rule picks the DM-NonUniform objective only up to DMN_RULE_MAX intervals (its lower level grows
    like N^3; nothing was measured beyond NFE 50): a search argument at NFE 941 must not start an hours-long search
    (found by the fuzz: `hso optimize --preset sdxl --nfe 941 --popsize 4`). Asked for explicitly, it stays."""
    from hso.optimize import AUTO_RULE, DMN_RULE_MAX

    assert AUTO_RULE[("unipc", "stop", "vp")] == {"objective": "dmn"}
    assert hso.plan("sdxl", DMN_RULE_MAX, "unipc", method="hso").objective.name == "dmn"
    assert hso.plan("sdxl", DMN_RULE_MAX + 1, "unipc", method="hso").objective.name == "mep"
    assert hso.plan("sdxl", 941, "unipc", popsize=4).objective.name == "mep"
    assert hso.plan("sdxl", 941, "unipc", "dmn", popsize=4).objective.name == "dmn"
    # the default (measured picks at the nearest measured NFE) at large NFE: no DM-NonUniform search anywhere
    for preset in ("sd21", "ddpm", "edm", "flow"):
        for solver in ("unipc", "dpmsolver++", "ddim", "euler"):
            for conv in ("stop", "jump"):
                job = hso.plan(preset, 200, solver, convention=conv)
                assert not (job.is_search and job.objective.name == "dmn"), (preset, solver, conv)


def test_concurrent_requests_give_the_sequential_results():
    # a server calls hso from many threads at once: library lookups, MEP and DM-NonUniform searches (the compiled
    # lower level, its OpenMP team and the polish's threads) must not share state between calls
    from concurrent.futures import ThreadPoolExecutor
    reqs = [("sd21", 6, "unipc", "auto", "jump"), ("sd21", 5, "unipc", "paper", "stop"),
            ("sd21", 5, "ddim", "hso", "jump"), ("edm", 5, "unipc", "hso", "stop"),
            ("flow", 8, "euler", "hso", "jump"), ("sdxl", 12, "dpmsolver++", "auto", "stop"),
            ("sd21", 5, "unipc", "hso", "stop"), ("ddpm", 10, "ddim", "paper", "jump")]

    def run(r):
        preset, nfe, solver, method, conv = r
        res = hso.optimize(preset, nfe, solver, method=method, convention=conv)
        return np.asarray(res.t), res.objective

    alone = [run(r) for r in reqs]
    assert any(obj == "dmn" for _, obj in alone)  # the heavy lower level is among them
    with ThreadPoolExecutor(8) as ex:
        together = list(ex.map(run, reqs * 2))
    for i, (t, obj) in enumerate(together):
        assert obj == alone[i % len(reqs)][1]
        np.testing.assert_array_equal(t, alone[i % len(reqs)][0], err_msg=str(reqs[i % len(reqs)]))
