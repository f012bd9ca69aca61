"""The committed quality results: the README's section is generated from them, and they say what they claim."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

run = pytest.importorskip("benchmarks.quality.run")


@pytest.fixture(scope="module")
def results():
    res = run.load_results()
    if not res:
        pytest.fail("no committed results under benchmarks/quality/: run `python -m benchmarks.quality.run`")
    return res


def test_readme_quality_section_is_generated_from_committed_results(results):
    text = run.README.read_text()
    section = text.split(run.BEGIN, 1)[1].split(run.END, 1)[0].strip()
    assert section == run.readme_summary(results).strip(), \
        "README quality section is stale: run `python -m benchmarks.quality.run --readme-only`"
    assert run.REPORT.read_text() == run.readme_section(results) + "\n", \
        "benchmarks/quality/README.md is stale: run `python -m benchmarks.quality.run --readme-only`"


def test_committed_results_cover_the_promised_grid(results):
    results = run.base_results(results)
    names = {name for name, _ in results}
    assert {"gmm_sd21", "gmm_edm", "net_sd21", "net_edm"} <= names
    assert {f"{n}_nfe12-50" for n in ("gmm_sd21", "net_sd21", "epsnet_ddpm", "epsnet_sd21")} <= names
    assert {"epsnet_ddpm", "epsnet_sd21", "gmm_ddpm"} <= names
    for name, ev in results:
        grid = run.GRIDS["_nfe12-50" if name.endswith("_nfe12-50") else ""]
        assert tuple(ev.meta["nfes"]) == tuple(grid["nfes"]) and ev.meta["n_samples"] == grid["n_samples"]
        assert {r["convention"] for r in ev.rows} == set(grid["conventions"])
        assert {"unipc", "dpmsolver++", "ddim"} <= set(ev.meta["solvers"])
        methods = {r["method"] for r in ev.rows}
        assert {"hso", "hso_dmn", "time_uniform", "logSNR", "edm_rho7", "time_quadratic"} <= methods
        unipc = next(r for r in ev.rows if r["solver"] == "unipc")
        assert unipc["solver_options"] == {"order": 3, "variant": "bh1"}
        assert ev.meta["reference"]["max_change_vs_rtol_1e-7"] < 1e-3
        assert all(np.isfinite(r["rmse"]) for r in ev.rows)


def test_every_configuration_is_resampled_with_every_sampler_variant(results):
    """The variant results re-sample exactly the configuration's committed schedules, with the variant's options."""
    from hso.evaluation.report import sampler_of
    from hso.measured import CANDIDATE_ORDER
    from hso.solvers import sampler_label, sampler_options

    by_name = dict(results)
    for name, ev in run.base_results(results):
        for solver, options in run.SAMPLER_VARIANTS:
            label = sampler_label(solver, options)
            var = by_name.get(f"{name} {label}")
            assert var is not None, f"no {label} results for {name}: run `python -m benchmarks.quality.run --variants`"
            assert run.is_variant(var) and var.meta["n_samples"] == ev.meta["n_samples"]
            assert sampler_of(var, solver) == (label, sampler_options(solver, options))
            base = {(r["convention"], r["nfe"], r["method"]): r["t"] for r in ev.rows
                    if r["solver"] == solver and r["method"] in CANDIDATE_ORDER}
            mine = {(r["convention"], r["nfe"], r["method"]): r["t"] for r in var.rows}
            assert mine == base, (name, label)
            assert all(np.isfinite(r["rmse"]) for r in var.rows)


def test_auto_rule_is_the_one_the_committed_results_give(results):
    """`method="auto"` is decided by the measurements, not by taste: re-derive it from the committed results."""
    from hso.evaluation.report import derive_auto_rule
    from hso.optimize import AUTO_RULE

    rule, evidence = derive_auto_rule(run.rule_evaluations(results))
    measured = set(evidence)
    assert {k: v for k, v in AUTO_RULE.items() if k in measured} == rule
    # Euler takes DDIM's setting: the two are the same step (tests/test_samplers.py)
    for space in ("vp", "ve", "flow"):
        assert AUTO_RULE.get(("euler", "jump", space)) == AUTO_RULE.get(("ddim", "jump", space))
    assert all(k in measured or k[:2] == ("euler", "jump") for k in AUTO_RULE)


def test_the_search_rule_ranks_settings_in_the_papers_nfe_range_only(results):
    """Method "hso"'s setting is ranked on NFE <= SEARCH_RULE_MAX_NFE: the committed cells beyond it change nothing,
    and a synthetic cell beyond it, however lopsided, does not move the rule."""
    from hso.evaluation import Evaluation
    from hso.evaluation.report import SEARCH_RULE_MAX_NFE, derive_auto_rule

    evs = run.rule_evaluations(results)
    assert any(n > SEARCH_RULE_MAX_NFE for ev in evs for _, _, n in ev.cells())
    low = [ev for ev in evs if max(ev.meta["nfes"]) <= SEARCH_RULE_MAX_NFE]
    assert derive_auto_rule(evs)[0] == derive_auto_rule(low)[0]
    sched = low[0].meta["schedule"]

    def one(nfe, rmse):
        return Evaluation([{"method": m, "solver": "unipc", "solver_options": {"order": 3, "variant": "bh1"},
                            "convention": "stop", "nfe": nfe, "rmse": v} for m, v in rmse.items()],
                          {"testbed": "x", "schedule": sched})
    paper_wins = one(6, {"hso_paper": 1.0, "hso_constrain": 1.5, "hso_p1": 1.5, "hso_dmn": 1.5})
    dmn_far = one(SEARCH_RULE_MAX_NFE + 2, {"hso_paper": 1e3, "hso_constrain": 1e3, "hso_p1": 1e3, "hso_dmn": 1.0})
    assert derive_auto_rule([paper_wins, dmn_far])[0] == {}  # the paper's: no rule entry


def test_measured_rule_is_the_one_the_committed_results_give(results):
    """`method="auto"`'s table (hso/measured_rule.json) is derived from the committed results, not typed: re-derive
    it, and check its invariants against the rows themselves."""
    import json

    from hso.evaluation.report import valid_row
    from hso.measured import CANDIDATE_ORDER, SUPPORT_RATIO, measured_pick, rule_table

    assert rule_table() == json.loads(json.dumps(run.rule_data(results))), \
        "hso/measured_rule.json is stale: run `python -m benchmarks.quality.run --readme-only`"

    from hso.evaluation.report import sampler_of

    for name, ev in results:
        preset = ev.meta["schedule"]["name"]
        derived = run.derives_rule(ev)  # held-out beds and noise schedules only check the default's rows
        for solver, conv, nfe in ev.cells():
            label, options = sampler_of(ev, solver)
            cell = [r for r in ev.rows if (r["solver"], r["convention"], r["nfe"]) == (solver, conv, nfe)]
            rows = {r["method"]: r["rmse"] for r in cell if valid_row(r)}
            # a schedule whose integer timesteps collide is neither ranked nor the measure of the others
            invalid = {r["method"] for r in cell if not valid_row(r)}
            best = min(v for m, v in rows.items() if m in CANDIDATE_ORDER)
            pick = measured_pick(solver, conv, preset, nfe, options)
            # every measured noise schedule and sampler variant maps to itself; a held-out noise schedule takes the
            # nearest measured one's ranking, and none of its cells is measured
            assert pick.nfe == nfe and pick.sampler == label
            if preset in run.RULE_NOISES:
                assert pick.measured and pick.noise == preset
            else:
                assert not pick.measured and pick.noise in run.RULE_NOISES and not pick.supported(pick.ranking[0][0])
            ranked = dict(pick.ranking)
            # (a held-out schedule's ranking is another's: there the default passes over what collides, as below)
            assert set(ranked) <= set(CANDIDATE_ORDER) and (preset not in run.RULE_NOISES or not set(ranked) & invalid)
            # every recorded ratio bounds this bed's ratio (it is the worst over the beds; stored to 6 decimals)
            for m, worst in ranked.items():
                assert not derived or rows[m] / best <= worst + 1e-6
            # the first-ranked candidate is within the tolerance of the lowest worst ratio
            assert pick.ranking[0][1] <= min(ranked.values()) * 1.02 + 1e-6
            # and the default's row ("hso") is that candidate's schedule (every first-ranked candidate applies to
            # the measured noise schedules; on a held-out one the default takes the first in its order that applies,
            # `hso.measured.UNMEASURED_FIRST` first, e.g. not a blend with "leading" on a continuous schedule)
            first = (pick.ranking[0][0] if preset in run.RULE_NOISES
                     else next(m for m, _ in pick.order() if m in rows))
            if run.is_variant(ev):  # re-sampled candidates only: the default's row is measured in the configuration
                assert first in rows
                continue
            # (rel 1e-6: rows made in separate runs can differ in the last bits: the DM-NonUniform search is chaotic
            # in rounding (benchmarks/results/perturbation.md), and a run with another BLAS thread count sums the
            # denoiser's products in another order; measured up to 4e-11 relative, gmm_edm ddim jump NFE 8)
            assert rows["hso"] == pytest.approx(rows[first], rel=1e-6), (name, solver, conv, nfe, first)
            if pick.supported(first) and derived:
                assert rows["hso"] <= SUPPORT_RATIO * best * (1 + 1e-9)


def test_held_out_noise_schedules_are_scored_never_used_to_choose(results):
    """The configurations on noise schedules outside `RULE_NOISES` (the continuous VP SDEs) change no rule: the rules
    derived with and without them are the same, and the README names them as held out."""
    held = [name for name, ev in run.base_results(results) if ev.meta["schedule"]["name"] not in run.RULE_NOISES]
    assert {"gmm_vp_cosine", "patches_vp_cosine", "gmm_vp_linear_nfe12-50"} <= set(held)
    kept = [(name, ev) for name, ev in results if ev.meta["schedule"]["name"] in run.RULE_NOISES]
    assert len(kept) < len(results) and run.rule_data(kept) == run.rule_data(results)
    summary = run.readme_summary(results)
    assert all(f"`{name}`" in summary.split("held out", 1)[1].split(";", 1)[0] for name in held)


def test_calibration_rows_stay_within_their_budgets(results):
    """Every committed `hso.calibrate` row spent at most its budget of network evaluations."""
    from hso.evaluation.runner import MODEL_METHODS

    rows = [r for _, ev in results for r in ev.rows if r["method"] in MODEL_METHODS]
    assert rows
    for r in rows:
        assert 0 < r["nfe_calibration"] <= MODEL_METHODS[r["method"]], (r["method"], r["solver"], r["nfe"])


def test_merge_replaces_only_the_rerun_methods(results):
    from hso.evaluation import Evaluation

    _, ev = results[0]
    redo = ("hso", "calibrate")
    new_rows = [{**r, "rmse": -1.0} for r in ev.rows if r["method"] in redo]
    new = Evaluation(new_rows, {**ev.meta, "methods": list(redo), "wall_time_s": 1.5}, [])
    merged = run.merge(ev, new)
    assert [(r["solver"], r["convention"], r["nfe"], r["method"]) for r in merged.rows] == \
        [(r["solver"], r["convention"], r["nfe"], r["method"]) for r in ev.rows]
    assert all((r["rmse"] == -1.0) == (r["method"] in redo) for r in merged.rows)
    assert merged.meta["methods"] == ev.meta["methods"] and merged.meta["runs"][-1] == \
        {"methods": list(redo), "wall_time_s": 1.5}
    with pytest.raises(ValueError, match="different settings"):
        run.merge(ev, Evaluation(new_rows, {**new.meta, "n_samples": 7}, []))


def test_merge_replaces_only_the_rerun_conventions(results):
    """A run of some conventions (``--conventions stop``) replaces those rows only; the other convention's rows of
    the same methods stay, and the run is recorded with its conventions."""
    from hso.evaluation import Evaluation

    _, ev = results[0]
    assert {r["convention"] for r in ev.rows} == {"stop", "jump"}
    new_rows = [{**r, "rmse": -1.0} for r in ev.rows if r["convention"] == "stop"]
    new = Evaluation(new_rows, {**ev.meta, "wall_time_s": 2.5}, [])
    merged = run.merge(ev, new)
    assert sorted(map(json.dumps, merged.rows)) == sorted(
        map(json.dumps, [r for r in ev.rows if r["convention"] == "jump"] + new_rows))
    assert merged.meta["runs"][:-1] == ev.meta["runs"]  # the jump rows keep their runs' record
    assert merged.meta["runs"][-1] == {"methods": ev.meta["methods"], "conventions": ["stop"], "wall_time_s": 2.5}


def test_cross_validation_leaves_the_bed_out_of_the_blend_pairs_too(results):
    """The leave-one-bed-out rule may rank the blend only where the other beds choose the same pair: elsewhere the
    committed blend rows are a schedule that derivation would not have made."""
    from hso.evaluation.report import derive_measured_rule

    every = run.rule_evaluations(results)
    bed = "epsnet"
    full = run._pairs(every)
    loo = run._pairs([e for e in every if e.meta["testbed"] != bed])
    moved = {k for k, v in full.items() if loo.get(k) != v}
    assert moved and len(moved) < len(full)  # the bed decides some pairs, not all
    others = [e for e in run.rule_evaluations(run.base_results(results)) if e.meta["testbed"] != bed]
    stripped = [run._without_blends(e, moved) for e in others]
    assert sum(len(e.rows) for e in stripped) < sum(len(e.rows) for e in others)
    ranked = {(r["solver"], r["convention"], r["noise"], r["nfe"]): dict(r["ranking"])
              for r in derive_measured_rule(stripped) if r["sampler"] == r["solver"]}
    assert all("blend" not in ranked[k] for k in moved if k in ranked)
    assert any("blend" in v for k, v in ranked.items() if k not in moved)


def test_blend_weight_report_is_generated_from_its_committed_rows():
    """benchmarks/quality/blend_weights.md is what its json says; the json's summary (each cell's worst ratio per
    weight and variant, and the weight chosen) is re-derived from its rows and the committed results; and where a
    cell's weight is not the midpoint, the committed blend rows are the sweep's measurement at that weight."""
    bw = pytest.importorskip("benchmarks.quality.blend_weights")
    data = json.loads(bw.OUT_JSON.read_text())
    assert bw.OUT_MD.read_text() == bw.markdown(data["summary"], data["meta"])
    cells = bw.unsafe_cells()
    assert bw.summarise(cells, data["rows"]) == data["summary"]
    moved = [c for c in data["summary"] if c["weight"] != 0.5]
    assert moved, "no cell takes a weight other than the midpoint"
    checked = 0
    for c in moved:
        grid = bw._grid(c["nfe"])
        for r in data["rows"]:
            if (r["solver"], r["convention"], r["noise"], r["nfe"], r["weight"]) != \
                    (c["solver"], c["convention"], c["noise"], c["nfe"], c["weight"]):
                continue
            path = next(p for label, _, p in bw._samplers(r["bed"], r["noise"], grid, r["solver"])
                        if label == r["sampler"])
            rows = bw._cell_rows(path)[(r["solver"], r["convention"], r["nfe"])]
            best = min(x["rmse"] for m, x in rows.items() if m in bw.BLEND_PARTNERS and bw.valid_row(x))
            # rel 1e-3: the sweep mixes the partners' committed points, the evaluation the partners as the engine
            # makes them now; they agree to 1e-13 but where a DM-NonUniform partner's committed row comes from an
            # earlier session (its search moves by ulps' worth of input, benchmarks/results/perturbation.md):
            # dpmsolver++ "jump" NFE 12 on DDPM betas, 1.3e-4 in t, up to 5e-4 in this ratio
            assert rows["blend"]["rmse"] / best == pytest.approx(r["ratio"], rel=1e-3), (c, r["bed"], r["sampler"])
            checked += 1
    assert checked


def test_selection_report_is_generated_from_committed_replays():
    selection = pytest.importorskip("benchmarks.quality.selection")
    assert selection.load_selection(), "no committed replays: run `python -m benchmarks.quality.selection`"
    assert selection.OUT.read_text() == selection.markdown(), \
        "benchmarks/quality/selection.md is stale: run `python -m benchmarks.quality.selection`"


def test_default_budget_is_the_smallest_replayed_budget_never_worse_than_the_default():
    """`hso.calibrate`'s default budget, re-derived from the committed replay: the smallest replayed budget at which
    calibration's mean ratio to the best candidate is no worse than the default alone's in any configuration."""
    selection = pytest.importorskip("benchmarks.quality.selection")
    from hso.calibration import DEFAULT_BUDGET

    replays = selection.load_selection()
    assert len(replays) == len(run.CONFIGS)

    def never_worse(budget: int) -> bool:
        return all(d["rules"][f"calibrate|{budget}"]["mean_ratio"] <= d["rules"]["default only|0"]["mean_ratio"]
                   for d in replays.values())

    safe = [b for b in selection.BUDGETS if never_worse(b)]
    assert safe, "no replayed budget is never worse than the default alone"
    assert DEFAULT_BUDGET == min(safe)


def test_tails_counts_leads_that_come_from_a_few_noises():
    """Three cells of 20 noises: the challenger wins through one noise where the default fails badly; wins on every
    noise; loses. Only the first lead comes from a few noises, and that noise carries most of the default's error."""
    from benchmarks.quality.selection import tails

    tail, everywhere, behind = np.ones((2, 20)), np.ones((2, 20)), np.ones((2, 20))
    tail[0, 0], tail[1] = 100.0, 1.5
    everywhere[1] = 0.5
    behind[1] = 2.0
    cells = {i: (["hso", "other"], None, e) for i, e in enumerate((tail, everywhere, behind))}
    t = tails({"cells": cells}, top=0.05)
    assert (t["cells"], t["default_loses"], t["won_on_few_noises"]) == (3, 2, 1)
    assert t["top_share_max"] == pytest.approx(100.0 / 119.0)
    assert t["top_share_median"] == pytest.approx(1.0 / 20.0)


def test_a_tie_up_to_rounding_counts_as_best_for_both():
    """The same schedule measured in two runs differs in the last bits; both count as best in that cell."""
    from hso.evaluation import Evaluation
    from hso.evaluation.report import summary_markdown, ties_best

    assert ties_best(0.1 * (1 + 1e-15), 0.1) and not ties_best(0.1 * (1 + 1e-6), 0.1)
    rows = [{"solver": "ddim", "convention": "stop", "nfe": 5, "method": m, "rmse": v}
            for m, v in (("a", 0.1), ("b", 0.1 * (1 + 1e-15)), ("c", 0.2))]
    table = summary_markdown([Evaluation(rows, {}, [])], labels=["x"])
    assert "| x | 1 | a | 1 | 1 | 1.00x |" in table and "| x | 1 | b | 1 | 1 | 1.00x |" in table
    assert "| x | 1 | c | 0 | 0 | 2.00x |" in table


def test_remake_runs_every_configuration_once_per_row_stage_and_the_float32_networks_alone(capsys):
    from benchmarks.quality import remake
    a, b, alone = remake.groups()
    every = [name for name, *_ in run.runs()]
    assert sorted(a + b + alone) == sorted(every) and len(set(a + b + alone)) == len(every)
    assert alone and all(name.split("_")[0] in remake.ALONE for name in alone)
    assert not any(name.split("_")[0] in remake.ALONE for name in a + b)
    # the order the results depend on: weights before the blend's rows, those before the default's (which read
    # the rule the blend's rows give), the library and calibration after the default
    names = [name for name, _ in remake.stages(Path("/tmp"))]
    assert names == ["weights", "blend", "default", "library", "perturbation", "calibrate", "selection", "minimax"]
    assert remake.main(["--dry-run", "--from", "default", "--to", "library"]) == 0
    out = capsys.readouterr().out
    assert "== default" in out and "== library" in out and "== blend" not in out and "hso.library.build" in out
    assert out.count("--methods hso") == 3  # two groups side by side, then the float32 networks


def test_minimax_report_is_generated_from_its_committed_rows():
    """benchmarks/quality/minimax.md is what its json says; the json covers exactly the unsafe cells of the committed
    results (the same starts), and every optimised schedule keeps its start's end points, descends strictly and
    has a finite ratio on every bed."""
    mm = pytest.importorskip("benchmarks.quality.minimax")
    data = json.loads(mm.OUT_JSON.read_text())
    assert mm.OUT_MD.read_text() == mm.markdown(data["rows"], data["meta"])
    cells = {(c["solver"], c["convention"], c["noise"], c["nfe"]): c for c in mm.unsafe_cells()}
    rows = {(r["solver"], r["convention"], r["noise"], r["nfe"]): r for r in data["rows"]}
    assert rows.keys() == cells.keys()
    for key, r in rows.items():
        c = cells[key]
        assert (r["start"], r["beds"]) == (c["start"], c["beds"])
        assert r["start_worst"] == pytest.approx(c["start_worst"], rel=1e-12)
        assert r["candidate_loo"].keys() == set(r["beds"])
        for b, v in r["candidate_loo"].items():
            assert v["pick"] == c["candidate_loo"][b]["pick"]
            assert v["ratio"] == pytest.approx(c["candidate_loo"][b]["ratio"], rel=1e-12)
            assert v["ratio"] >= 1.0 - 1e-12  # a ratio to the best candidate on that bed
        fits = [r["all"]] + list(r.get("leave_one_out", {}).values())
        start = np.asarray(c["candidates"][c["start"]])
        for fit in fits:
            t = np.asarray(fit["t"])
            assert t.shape == start.shape and np.all(np.diff(t) < 0), key
            assert t[[0, -1]] == pytest.approx(start[[0, -1]], rel=1e-12, abs=1e-15), key
            for half in ("fit", "held"):
                assert set(fit["ratios"][half]) == set(r["beds"])
                assert all(np.isfinite(v) and v > 0 for v in fit["ratios"][half].values()), key


def test_minimax_warp_starts_at_its_start_and_keeps_every_schedule_ordered():
    """`benchmarks.quality.minimax.Warp`: x = 0 is the start schedule (to rounding); any x, free gaps or the smooth
    warp, gives a strictly descending schedule with the start's end points."""
    mm = pytest.importorskip("benchmarks.quality.minimax")
    from hso.schedules import as_schedule

    rng = np.random.default_rng(3)
    for noise, n in (("ddpm", 5), ("edm", 11), ("flow", 31), ("sd21", 51)):
        sched = as_schedule(noise)
        t0 = np.sort(rng.uniform(sched.t_min, sched.t_max, n + 1))[::-1]
        t0[0], t0[-1] = sched.t_max, sched.t_min
        warp = mm.Warp(sched, t0)
        assert warp.dim == (n if n <= mm.FREE_MAX else mm.SMOOTH_TERMS)
        assert warp.t(np.zeros(warp.dim)) == pytest.approx(t0, rel=1e-9, abs=1e-12)
        for _ in range(20):
            t = warp.t(rng.normal(scale=2.0, size=warp.dim))
            assert np.all(np.diff(t) < 0) and t[[0, -1]] == pytest.approx(t0[[0, -1]], rel=1e-12)


def test_minimax_headline_cell_re_measures(tmp_path):
    """The committed numbers are measurements: the fitted schedule of UniPC "stop" NFE 4 on EDM (0.53x the best
    candidate on every bed) re-sampled on the exact mixture with its noises and a fresh converged reference gives
    the committed held-out ratio (rel 1e-6, the harness's `RESAMPLE_RTOL`: the same schedules, noises and
    sampler; only the reference solve's and BLAS's last bits may differ)."""
    mm = pytest.importorskip("benchmarks.quality.minimax")
    data = json.loads(mm.OUT_JSON.read_text())
    key = ("unipc", "stop", "edm", 4)
    row = next(r for r in data["rows"] if (r["solver"], r["convention"], r["noise"], r["nfe"]) == key)
    cell = next(c for c in mm.unsafe_cells() if (c["solver"], c["convention"], c["noise"], c["nfe"]) == key)
    bed = mm.Bed("gmm", "edm", run.GRIDS[""]["n_samples"], cache_dir=tmp_path)
    held = slice(bed.z.shape[0] // 2, bed.z.shape[0])
    best = min(bed.rmse(np.asarray(t), "unipc", "stop", held) for t in cell["candidates"].values())
    ratio = bed.rmse(np.asarray(row["all"]["t"]), "unipc", "stop", held) / best
    assert ratio == pytest.approx(row["all"]["ratios"]["held"]["gmm"], rel=run.RESAMPLE_RTOL)
    assert ratio < 0.6  # below every committed candidate on this bed
