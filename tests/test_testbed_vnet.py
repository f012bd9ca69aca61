"""Test bed 5 ("a v network"): the shipped v-prediction MLP on SD's scaled-linear betas, as SD 2.x-v models are."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")  # the digits data ship with scikit-learn

from hso.schedules import NoiseSchedule  # noqa: E402
from hso.testbeds import as_model, load  # noqa: E402
from hso.testbeds.data import DIM, load_digits  # noqa: E402
from hso.testbeds.epsnet import V_TRAIN_SCHEDULE, DigitsVNet  # noqa: E402


@pytest.fixture(scope="module")
def net() -> DigitsVNet:
    return DigitsVNet.load()


def test_shipped_weights_load_and_describe(net: DigitsVNet) -> None:
    assert DigitsVNet.weights.stat().st_size <= 3 * 1024 * 1024
    assert load("vnet").n_params == net.n_params > 100_000
    d = net.describe()
    assert d["architecture"]["type"].startswith("v_prediction-prediction")
    assert d["trained_on"] == V_TRAIN_SCHEDULE
    assert "--only vnet" in d["training"]["command"] and "alpha_t z - sigma_t x" in d["training"]["loss"]
    # its own schedule is SD's, the library's "sd21" preset: the ratios end at 14.6, below DDPM's 156
    assert np.array_equal(net.schedule.log_alpha_table, NoiseSchedule.preset("sd21").log_alpha_table)
    lo, hi = net.ratio_range
    assert 14 < hi < 15


def test_v_learned_and_data_error_bounded_at_high_noise(net: DigitsVNet) -> None:
    """A v predictor's data prediction carries its error times sigma_t <= 1, not sigma_t / alpha_t: at the last
    training step its data error stays near the best linear denoiser's, where the epsilon network's is 3x worse."""
    ev = {int(k): v for k, v in net.meta["eval"].items()}
    assert ev[999]["x0_mse"] < 1.5 * ev[999]["x0_mse_linear"]
    assert ev[500]["x0_mse"] < ev[500]["x0_mse_linear"]
    # recompute one entry independently of the training script: timestep 500, fixed noise, x0 = alpha x_t - sigma v
    x = load_digits()
    sched = net.schedule
    t = np.full(x.shape[0], 0.501)
    a, s = sched.alpha(t)[:, None], sched.sigma(t)[:, None]
    z = np.random.default_rng(5).standard_normal(x.shape)
    xt = a * x + s * z
    x0 = a * xt - s * net.eps(xt, t)
    assert float(np.mean((x0 - x) ** 2)) == pytest.approx(ev[500]["x0_mse"], rel=0.1)


def test_outside_its_range_is_an_error(net: DigitsVNet, tmp_path) -> None:
    with pytest.raises(ValueError, match="scaled_linear betas"):
        net(np.zeros((2, DIM)), 100.0)  # DDPM's betas reach 156
    with pytest.raises(FileNotFoundError, match="--only vnet"):
        DigitsVNet.load(tmp_path / "nope.npz")


def test_training_the_v_target_runs() -> None:
    pytest.importorskip("torch")
    from hso.testbeds.train import train_epsnet

    params, _info = train_epsnet(epochs=3, width=32, n_res=1, emb_dim=16, log_every=0, prediction="v_prediction")
    out = DigitsVNet(params, {})(np.zeros((2, DIM)), 1.0)
    assert out.shape == (2, DIM) and np.all(np.isfinite(out))


def test_samples_are_digits(net: DigitsVNet) -> None:
    """DDIM with 50 steps on its own betas, in v-prediction, draws digits the shipped classifier is sure of."""
    from hso.baselines import baseline_schedule
    from hso.solvers import sample
    from hso.testbeds.classifier import DigitsClassifier

    sched = NoiseSchedule.preset("sd21")
    t = baseline_schedule("leading", sched, 50)
    z = np.random.default_rng(0).standard_normal((64, DIM))
    x = sample(as_model(net, sched, "v_prediction"), z, sched, t, "ddim", prediction="v_prediction",
               convention="jump")
    logits = DigitsClassifier.load().logits(np.clip(x, -1, 1))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.mean(p.max(axis=1) / p.sum(axis=1)) > 0.6
