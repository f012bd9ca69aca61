"""`hso.calibrate`: the measured-best schedule for a model, within a budget of network evaluations."""
from __future__ import annotations

import numpy as np
import pytest

import hso
from hso.evaluation.reference import initial_state, reference_solution
from hso.solvers import sample
from hso.testbeds import as_model, load


@pytest.fixture(scope="module")
def setup():
    sch = hso.NoiseSchedule.preset("sd21")
    gmm = load("gmm")
    return sch, gmm, as_model(gmm, sch, "epsilon")


class Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t):
        self.calls += x.shape[0]
        return self.model(x, t)


def test_calibrate_picks_by_measurement_within_budget_and_is_deterministic(setup):
    sch, gmm, model = setup
    m = Counting(model)
    r = hso.calibrate(m, sch, "unipc", 5, sample_shape=(64,), budget=600)
    assert r.nfe_spent == m.calls <= 600
    rmse = {c["name"]: c["rmse"] for c in r.candidates}
    # the default is the incumbent: run on every noise, replaced only by a challenger more than 2% better there,
    # with a per-noise lead beyond one standard error
    assert r.candidates[0]["name"] == "hso" and r.candidates[0]["noises"] == r.n_noise
    full = [c for c in r.candidates if c["noises"] == r.n_noise]
    best = min(full, key=lambda c: c["rmse"])
    clear = bool(r.duel) and r.duel["challenger"] == best["name"] and r.duel["lead"] > r.duel["lead_se"]
    assert r.method == (best["name"] if best["rmse"] < 0.98 * rmse["hso"] and clear else "hso")
    assert np.isclose(r.rmse, rmse[r.method])
    assert {"hso", "logSNR", "trailing"} <= {c["name"] for c in r.candidates}
    assert np.all(np.diff(r.t) < 0) and len(r.t) == 6 and r.convention == "stop"
    assert r.timesteps is not None and np.all(np.diff(r.timesteps) < 0)
    r2 = hso.calibrate(model, sch, "unipc", 5, sample_shape=(64,), budget=600)
    assert np.array_equal(r.t, r2.t) and r.candidates == r2.candidates
    assert "<- chosen" in r.report()
    # the last duel is reported: a challenger that ran on every noise, its RMSE ratio to the default's
    assert r.duel
    rival = next(c for c in r.candidates if c["name"] == r.duel["challenger"])
    assert rival["noises"] == r.n_noise and rival["name"] != "hso"
    assert np.isclose(r.duel["rmse_ratio"], rival["rmse"] / rmse["hso"]) and r.duel["lead_se"] >= 0
    assert "last duel: " + r.duel["challenger"] in r.report()
    from hso.fast.registry import get_backend
    assert r.backend == get_backend("auto").name and "mep" in r.objectives
    assert ("dmn" in r.objectives) == ("dmn" in get_backend("auto").lower_objectives)


def test_without_a_margin_the_lowest_measured_error_wins_and_candidates_follow_the_measured_ranking(setup):
    from hso.measured import measured_pick

    sch, gmm, model = setup
    r = hso.calibrate(model, sch, "ddim", 6, sample_shape=(64,), budget=600, margin=0.0, significance=0.0,
                      convention="jump")
    full = [c for c in r.candidates if c["noises"] == r.n_noise]
    assert r.method == min(full, key=lambda c: c["rmse"])["name"]
    rank = [name for name, _ in measured_pick("ddim", "jump", sch, 6).ranking]
    ranked = [c["name"] for c in r.candidates[1:] if c["name"] in rank]
    assert ranked == sorted(ranked, key=rank.index) and len(ranked) >= 3
    # unranked candidates (members of the DE population) come after every ranked one
    names = [c["name"] for c in r.candidates[1:]]
    assert all(names.index(a) < names.index(b) for a in ranked for b in names if b.startswith("hso_population"))


def test_budget_holds_where_the_default_ports_the_stop_search():
    """Every candidate spends exactly the NFE (the budget is never exceeded), also for "jump" on EDM noise, where
    the measured default is the "stop" search ported to "jump" and the DE population comes from the jump search."""
    sch = hso.NoiseSchedule.preset("edm")
    m = Counting(as_model(load("gmm"), sch, "epsilon"))
    r = hso.calibrate(m, sch, "ddim", 4, sample_shape=(64,), budget=307, convention="jump", objectives=("mep",))
    assert r.nfe_spent == m.calls <= 307
    assert all(len(c["t"]) == 4 for c in r.candidates) and len(r.t) == 4


def test_calibrated_choice_holds_on_held_out_noises(setup):
    """Scored on 128 fresh noises against the converged reference, the pick is within 10% of the best candidate
    (the benchmark measures the finer claims cell by cell)."""
    sch, gmm, model = setup
    r = hso.calibrate(model, sch, "dpmsolver++", 6, sample_shape=(64,), budget=1000, convention="jump")
    z = np.random.default_rng(99).standard_normal((128, 64))
    ref = reference_solution(gmm, sch, z, [], check_rtol=None)
    held = {}
    for c in r.candidates:
        t = np.asarray(c["t"])
        held[c["name"]] = np.sqrt(np.mean((sample(model, initial_state(sch, t[0], z), sch, t, "dpmsolver++",
                                                  convention="jump") - ref.clean) ** 2))
    assert held[r.method] <= 1.10 * min(held.values())


def test_refine_only_improves_on_its_noises(setup):
    sch, gmm, model = setup
    r = hso.calibrate(model, sch, "ddim", 4, sample_shape=(64,), budget=900, refine=True, population=0)
    assert r.nfe_spent <= 900
    if r.method.endswith("+refined"):
        assert r.rmse <= min(c["rmse"] for c in r.candidates if c["noises"] == r.n_noise) + 1e-12


@pytest.mark.parametrize("bad,match", [
    (lambda x, t: x[:, :10], "shape"),
    (lambda x, t: x * np.nan, "NaN"),
])
def test_broken_models_fail_on_the_probe(setup, bad, match):
    sch, _, _ = setup
    m = Counting(bad)
    with pytest.raises(ValueError, match=match):
        hso.calibrate(m, sch, "unipc", 5, sample_shape=(64,))
    assert m.calls == 1


def test_bad_arguments_spend_nothing(setup):
    sch, _, model = setup
    m = Counting(model)
    with pytest.raises(ValueError, match="too small"):
        hso.calibrate(m, sch, "unipc", 5, sample_shape=(64,), budget=50)
    with pytest.raises(ValueError, match="unknown solver"):
        hso.calibrate(m, sch, "rk4", 5, sample_shape=(64,))
    with pytest.raises(ValueError, match="NFE"):
        hso.calibrate(m, sch, "heun", 4, sample_shape=(64,))
    with pytest.raises(TypeError, match="callable"):
        hso.calibrate(42, sch, "unipc", 5, sample_shape=(64,))
    with pytest.raises(ValueError, match="margin"):
        hso.calibrate(m, sch, "unipc", 5, sample_shape=(64,), margin=-0.1)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="significance"):
            hso.calibrate(m, sch, "unipc", 5, sample_shape=(64,), significance=bad)
    assert m.calls == 0


def test_calibrate_pipeline_with_a_unet():
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=8).eval()
    sched = diffusers.DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=sched)
    import hso.diffusers as hd
    r = hd.calibrate_pipeline(pipe, nfe=4, budget=300, population=0)
    assert r.nfe_spent <= 300 and r.convention == "jump" and r.solver == "dpmsolver++"
    pipe.scheduler.set_timesteps()
    assert pipe.scheduler.timesteps.tolist() == r.timesteps.tolist()


def _replay(errors, budget, nfe=5, teach=33, **kw):
    """`select` on fixed per-noise errors (rows: candidates), with calibrate's budget accounting."""
    from hso.calibration import select

    state = {"used": 0, "spent": 1}

    def run_round(alive, k):
        idx = np.arange(state["used"], state["used"] + k) % errors.shape[1]
        state["used"] += k
        state["spent"] += k * (teach + len(alive) * nfe)
        return errors[np.ix_(alive, idx)]

    sel = select(errors.shape[0], run_round, lambda: budget - state["spent"], teach, nfe, **kw)
    return sel, state["spent"]


@pytest.mark.parametrize("better,wins", [(0.99, False), (0.97, True)])
def test_select_keeps_the_incumbent_unless_a_challenger_beats_the_margin(better, wins):
    # candidate 0 the incumbent; candidate 3 better by the given RMSE factor on every noise; the rest worse
    e = np.ones((6, 64)) * np.array([1.0, 1.3, 1.5, better ** 2, 2.0, 1.2])[:, None]
    sel, spent = _replay(e, 1000)
    assert spent <= 1000 and sel.runs[0] == sel.n_noise  # the incumbent ran on every noise
    assert sel.winner == (3 if wins else 0)
    plain, _ = _replay(e, 1000, incumbent=False)
    assert plain.winner == 3  # without the incumbent rule the lowest measured error wins


def test_a_lead_that_one_noise_makes_does_not_replace_the_incumbent():
    """The challenger is 5% worse than the default on every noise but one, where the default fails badly: its
    summed error is lower by far more than the margin, but the per-noise differences do not show a lead beyond
    one standard error, so the default stays; without the test (significance 0) the challenger wins."""
    e = np.ones((3, 64))
    e[1], e[2] = 1.05, 3.0
    e[0, 3] = 10.0  # on the second round's second noise
    sel, _ = _replay(e, 1000)
    assert sel.n_noise > 4 and sel.sse[1] < 0.98 ** 2 * sel.sse[0]
    lead = e[0, :sel.n_noise] - e[1, :sel.n_noise]
    assert 0 < lead.mean() < lead.std(ddof=1) / np.sqrt(sel.n_noise)
    assert sel.winner == 0
    assert sel.challenger == 1 and np.isclose(sel.lead, lead.mean())
    assert np.isclose(sel.lead_se, lead.std(ddof=1) / np.sqrt(sel.n_noise))
    assert _replay(e, 1000, significance=0.0)[0].winner == 1
    # the same lead spread over every noise is clear evidence
    steady = np.ones((3, 64))
    steady[1], steady[2] = 1.0 - (9.0 - 0.05 * (sel.n_noise - 1)) / sel.n_noise, 3.0
    assert _replay(steady, 1000)[0].winner == 1


def test_select_rejects_a_round_of_the_wrong_shape():
    from hso.calibration import select

    with pytest.raises(ValueError, match="shape"):
        select(3, lambda alive, k: np.ones(len(alive)), lambda: 1000, 33, 5)


def test_select_spends_at_most_the_budget_and_halves_the_field():
    e = np.random.default_rng(0).gamma(0.5, size=(12, 200))
    for budget in (307, 600, 1000, 3000):
        sel, spent = _replay(e, budget)
        assert spent <= budget
        assert sel.runs.max() == sel.n_noise and np.count_nonzero(sel.runs) == 12  # all ran in the first round
        assert sel.runs.min() == 2 and sel.n_noise <= 64


def test_first_round_keeps_half_the_budget_for_later_rounds():
    from hso.calibration import first_round

    assert first_round(14, 1000, 33, 5) == 14
    n = first_round(14, 307, 33, 10)  # two noises each: 2 * (33 + n * 10) <= 307 / 2
    assert n == 4 and 1 + 2 * (33 + n * 10) <= 307 // 2 < 1 + 2 * (33 + (n + 1) * 10)
    assert first_round(14, 150, 33, 10) == 2
