"""`hso evaluate`: schedule methods, reference solutions, metrics, the runner and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

import hso
from hso.cli import main
from hso.evaluation import METHODS, MethodNotApplicable, evaluate, make_schedule, reference_solution
from hso.evaluation.metrics import GaussianStats, frechet_distance, rmse
from hso.testbeds import load

diffusers = pytest.importorskip("diffusers")


# ------------------------------------------------------------------ methods
@pytest.mark.parametrize("preset", ["sd21", "ddpm", "vp_linear", "edm", "flow"])
@pytest.mark.parametrize("solver,nfe,conv", [("unipc", 5, "stop"), ("ddim", 6, "jump"), ("unipc", 4, "jump")])
def test_every_method_gives_a_valid_schedule(preset, solver, nfe, conv):
    sched = hso.NoiseSchedule.preset(preset)
    n_points = hso.get_solver(solver).n_intervals(nfe, conv) + 1
    for m in METHODS:
        if m == "hso_dmn":
            continue  # seconds per search; covered by the quality results
        try:
            t = make_schedule(m, sched, solver, nfe, conv)
        except MethodNotApplicable as e:
            assert (m in ("leading", "trailing", "ays") and (not sched.is_discrete or preset == "ddpm")
                    or m == "hso_p1" and preset == "edm" or m == "hso_stop_ported" and conv == "stop"
                    # the blend of a pair measured on a discrete model, one of them an integer spacing
                    or m == "blend" and not sched.is_discrete and "its partner" in str(e))
            continue
        assert t.shape == (n_points,)
        assert np.all(np.diff(t) < 0) and t[0] <= sched.t_max and t[-1] >= sched.t_min


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("steps", [4, 6, 10])
def test_diffusers_spacings_match_diffusers(spacing, steps):
    sched = hso.NoiseSchedule.preset("sd15")
    ds = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                 timestep_spacing=spacing, steps_offset=1)
    ds.set_timesteps(steps)
    t = make_schedule(spacing, sched, "ddim", steps, "jump")
    assert sched.timesteps_of_t(t).tolist() == ds.timesteps.tolist()


def test_ays_is_diffusers_list_at_ten_steps_and_log_linear_elsewhere():
    from diffusers.schedulers import AysSchedules

    sched = hso.NoiseSchedule.preset("sd21")
    assert sched.timesteps_of_t(make_schedule("ays", sched, "ddim", 10)).tolist() == \
        AysSchedules["StableDiffusionTimesteps"]
    t5 = make_schedule("ays", sched, "ddim", 5)
    assert np.isclose(t5[0], 1.0) and np.isclose(t5[-1], 0.025)
    # 19 points: every other one is an AYS knot, the ones between are log-sigma midpoints
    ten = make_schedule("ays", sched, "ddim", 10)
    nineteen = np.log(sched.edm_sigma(make_schedule("ays", sched, "ddim", 19)))
    np.testing.assert_allclose(nineteen[::2], np.log(sched.edm_sigma(ten)), atol=1e-9)
    np.testing.assert_allclose(nineteen[1::2], 0.5 * (nineteen[:-1:2] + nineteen[2::2]), atol=1e-9)
    with pytest.raises(MethodNotApplicable, match="Stable Diffusion"):
        make_schedule("ays", hso.NoiseSchedule.preset("ddpm"), "ddim", 10)
    with pytest.raises(ValueError, match="unknown schedule method"):
        make_schedule("karras", sched, "ddim", 10)


def test_hso_method_is_hso_optimize():
    sched = hso.NoiseSchedule.preset("sd21")
    assert np.array_equal(make_schedule("hso", sched, "unipc", 5), hso.optimize(sched, 5, "unipc").t)


# ------------------------------------------------------------------ reference and metrics
def test_reference_solution_is_converged_and_indexed():
    sched = hso.NoiseSchedule.preset("sd21")
    z = np.random.default_rng(0).standard_normal((4, 64))
    ref = reference_solution(load("gmm"), sched, z, [0.03, 0.01])
    assert ref.max_change < 1e-4
    assert ref.at(0.01).shape == (4, 64) and ref.clean.shape == (4, 64)
    with pytest.raises(KeyError):
        ref.at(0.02)
    with pytest.raises(ValueError, match="must lie in"):
        reference_solution(load("gmm"), sched, z, [1.5])


def test_reference_cache_returns_a_fresh_solve_for_any_subset_of_its_end_points(tmp_path):
    sched = hso.NoiseSchedule.preset("sd21")
    z = np.random.default_rng(0).standard_normal((4, 64))
    gmm = load("gmm")
    reference_solution(gmm, sched, z, [0.5, 0.3], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    cached = reference_solution(gmm, sched, z, [0.3], cache_dir=tmp_path)
    fresh = reference_solution(gmm, sched, z, [0.3])
    # bit-identical: the steps do not depend on the end points asked for
    assert np.array_equal(cached.at(0.3), fresh.at(0.3)) and np.array_equal(cached.clean, fresh.clean)
    assert fresh.max_change <= cached.max_change < 1e-4  # the bound over more end points holds for fewer
    # a new end point is a new solve (kept with the old ones); other noise or another schedule is another file
    other = reference_solution(gmm, sched, z, [0.2], cache_dir=tmp_path)
    assert np.array_equal(other.at(0.2), reference_solution(gmm, sched, z, [0.2]).at(0.2))
    again = reference_solution(gmm, sched, z, [0.5, 0.3, 0.2], cache_dir=tmp_path)
    assert np.array_equal(again.at(0.3), fresh.at(0.3))
    reference_solution(gmm, sched, z[:2], [0.3], cache_dir=tmp_path)
    reference_solution(gmm, hso.NoiseSchedule.preset("ddpm"), z, [0.3], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_frechet_distance_matches_the_textbook_formula():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 6)), 1.3 * rng.standard_normal((300, 6)) + 0.2
    sa, sb = GaussianStats.of(a), GaussianStats.of(b)
    textbook = (np.sum((sa.mean - sb.mean) ** 2) + np.trace(sa.cov + sb.cov)
                - 2 * np.trace(np.real(sqrtm(sa.cov @ sb.cov))))
    assert np.isclose(frechet_distance(sa, sb), textbook, rtol=1e-9)
    assert frechet_distance(sa, sa) < 1e-9
    assert rmse(a[:3], a[:3] + 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        rmse(a, b)


# ------------------------------------------------------------------ runner
@pytest.fixture(scope="module")
def small_eval():
    return evaluate("gmm", "sd21", solvers=("unipc", "ddim"), nfes=(4, 6), n_samples=64,
                    methods=("hso", "logSNR", "trailing", "ays"), conventions=("stop", "jump"))


def test_evaluation_rows_and_conventions(small_eval):
    ev = small_eval
    assert len(ev.rows) == 2 * 2 * 2 * 4
    for r in ev.rows:
        n = hso.get_solver(r["solver"]).n_intervals(r["nfe"], r["convention"])
        assert len(r["t"]) == n + 1 and r["nfe_spent"] == r["nfe"]
        assert all(np.isfinite(r[k]) and r[k] >= 0 for k in ("rmse", "rmse_end", "fd_pixel", "fd_feature"))
    # more steps, less error, for every method (the exact denoiser has no network error to hide behind)
    for m in ("hso", "logSNR"):
        for solver in ("unipc", "ddim"):
            e = {r["nfe"]: r["rmse"] for r in ev.rows if r["method"] == m and r["solver"] == solver
                 and r["convention"] == "jump"}
            assert e[6] < e[4]
    assert ev.meta["reference"]["max_change_vs_rtol_1e-7"] < 1e-4
    # the hso rows are the optimiser's schedules for the convention they ran with
    r = next(r for r in ev.rows if r["method"] == "hso" and r["solver"] == "unipc" and r["convention"] == "jump"
             and r["nfe"] == 4)
    assert np.allclose(r["t"], hso.optimize("sd21", 4, "unipc", convention="jump").t)


def test_evaluation_json_roundtrip_and_reports(small_eval, tmp_path):
    from hso.evaluation import Evaluation

    ev2 = Evaluation.from_json(small_eval.to_json())
    assert ev2.rows == json.loads(json.dumps(small_eval.rows))
    files = small_eval.save(tmp_path)
    assert {f.name for f in files} == {"results.json", "table.md", "error_vs_nfe.png", "schedules.png"}
    assert all(f.stat().st_size > 1000 for f in files if f.suffix == ".png")
    md = (tmp_path / "table.md").read_text()
    assert "| hso |" in md and "convention `stop`" in md and "convention `jump`" in md


def test_evaluation_skips_methods_that_do_not_apply():
    ev = evaluate("gmm", "edm", solvers=("ddim",), nfes=(4,), n_samples=16, methods=("hso", "trailing"))
    assert {r["method"] for r in ev.rows} == {"hso"}
    assert ev.skipped[0]["method"] == "trailing" and "discrete" in ev.skipped[0]["reason"]


@pytest.mark.parametrize("kw,match", [
    ({"testbed": "cifar"}, "unknown test bed"), ({"schedule": "sd9"}, "unknown preset"),
    ({"solvers": ("rk4",)}, "unknown solver"), ({"methods": ("karras",)}, "unknown schedule method"),
    ({"solvers": ("heun",), "nfes": (4,)}, "NFE = 2 N \\+ 1"), ({"n_samples": 1}, "n_samples"),
    ({"conventions": ("half",)}, "unknown convention"),
])
def test_evaluation_bad_input_fails_before_sampling(kw, match):
    with pytest.raises(ValueError, match=match):
        evaluate(**{"nfes": (4,), "n_samples": 8, **kw})


def test_cli_quick_writes_everything(tmp_path, capsys):
    """`hso evaluate --quick` as CI runs it (the acceptance check: well under 2 minutes)."""
    assert main(["evaluate", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "| hso |" in out.out and "sampler runs" in out.err
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["meta"]["n_samples"] == 128 and sorted(res["meta"]["nfes"]) == [4, 6]
    assert (tmp_path / "error_vs_nfe.png").exists()


def test_cli_errors_are_one_line_and_exit_2(capsys):
    assert main(["evaluate", "--testbed", "nope", "--quick"]) == 2
    assert capsys.readouterr().err.startswith("hso: error: unknown test bed")
    assert main(["evaluate", "--nfe", "4-x", "--quick"]) == 2


def test_replay_resamples_the_same_schedules_under_another_variant():
    """`evaluate(replay=...)`: the same points, no search; with the same options the same numbers, with UniPC bh2
    other ones."""
    ev = evaluate("gmm", "sd21", solvers=("unipc",), nfes=(4,), n_samples=16, methods=("hso_paper", "trailing"))
    same = evaluate("gmm", "sd21", solvers=("unipc",), nfes=(4,), n_samples=16, methods=("hso_paper", "trailing"),
                    replay=ev)
    assert [(r["method"], r["t"], r["rmse"]) for r in same.rows] == [(r["method"], r["t"], r["rmse"]) for r in ev.rows]
    assert same.meta["schedules"] == "replayed" and ev.meta["schedules"] == "made"
    bh2 = evaluate("gmm", "sd21", solvers=("unipc",), nfes=(4,), n_samples=16, methods=("hso_paper", "trailing"),
                   solver_options={"unipc": {"variant": "bh2"}}, replay=ev)
    assert [r["t"] for r in bh2.rows] == [r["t"] for r in ev.rows]
    assert all(r["solver_options"] == {"order": 3, "variant": "bh2"} for r in bh2.rows)
    assert all(a["rmse"] != b["rmse"] for a, b in zip(bh2.rows, ev.rows))
    with pytest.raises(ValueError, match="another noise schedule"):
        evaluate("gmm", "edm", solvers=("unipc",), nfes=(4,), n_samples=16, methods=("trailing",), replay=ev)
