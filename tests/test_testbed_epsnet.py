"""Test bed 4 ("a plain epsilon network"): the shipped DDPM-betas epsilon-prediction MLP."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")  # the digits data ship with scikit-learn

from hso.schedules import NoiseSchedule  # noqa: E402
from hso.testbeds import as_model, load  # noqa: E402
from hso.testbeds.data import DIM, load_digits  # noqa: E402
from hso.testbeds.epsnet import DEFAULT_WEIGHTS, TRAIN_SCHEDULE, DigitsEpsNet, DigitsVNet  # noqa: E402

MAX_BYTES = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def net() -> DigitsEpsNet:
    return DigitsEpsNet.load()


def test_shipped_weights_load_and_describe(net: DigitsEpsNet) -> None:
    assert DEFAULT_WEIGHTS.stat().st_size <= MAX_BYTES
    assert load("epsnet").n_params == net.n_params > 100_000
    d = net.describe()
    assert d["trained_on"] == TRAIN_SCHEDULE == {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
                                                 "num_train_timesteps": 1000}
    for key in ("command", "epochs", "seed", "torch_version", "loss", "eval"):
        assert key in d["training"]
    # its own schedule is DDPM's, the library's "ddpm" preset
    assert np.array_equal(net.schedule.log_alpha_table, NoiseSchedule.preset("ddpm").log_alpha_table)
    lo, hi = net.ratio_range
    assert lo == pytest.approx(np.sqrt(1e-4 / (1 - 1e-4)), rel=1e-9) and 150 < hi < 160


def test_numpy_forward_matches_torch(net: DigitsEpsNet) -> None:
    torch = pytest.importorskip("torch")
    from hso.testbeds.train import EpsMLP

    with np.load(DEFAULT_WEIGHTS, allow_pickle=False) as data:
        p = {k: data[k].astype(np.float64) for k in data.files if k != "meta"}
    mod = EpsMLP(p["time_freq"], emb_dim=p["emb_w"].shape[1], width=p["in_w"].shape[1], n_res=len(net.res))
    mod = mod.to(torch.float64)
    with torch.no_grad():
        mod.freq.copy_(torch.as_tensor(p["time_freq"]))
        named = {"emb": mod.emb, "in": mod.inp, "out": mod.out, **{f"res{i}": m for i, m in enumerate(mod.res)}}
        for key, layer in named.items():
            layer.weight.copy_(torch.as_tensor(p[f"{key}_w"].T))
            layer.bias.copy_(torch.as_tensor(p[f"{key}_b"]))
        rng = np.random.default_rng(2)
        x = rng.standard_normal((32, DIM))
        t = rng.uniform(0.001, 1.0, 32)
        ref = mod(torch.as_tensor(x), torch.as_tensor(t)).numpy()
    assert np.max(np.abs(net.eps(x, t) - ref)) <= 1e-10 * np.max(np.abs(ref))


@pytest.mark.parametrize("cls, preset", [(DigitsEpsNet, "ddpm"), (DigitsVNet, "sd21")])
def test_on_its_own_schedule_the_model_is_the_network(cls, preset) -> None:
    """Called through the EDM form and `as_model` on its own betas, in its own prediction type, the model is the
    network's own output (the ratio -> timestep map is the schedule's exact inverse; for the v network
    x0 = alpha x - sigma v, and back)."""
    net = cls.load()
    sched = NoiseSchedule.preset(preset)
    model = as_model(net, sched, cls.prediction)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, DIM))
    for t in (0.001, 0.0371, 0.5, 0.9995, 1.0):
        np.testing.assert_allclose(model(x, t), net.eps(x, np.full(8, t)), rtol=1e-9, atol=1e-9)


def test_noise_prediction_learned_and_data_error_amplified_at_high_noise(net: DigitsEpsNet) -> None:
    """What the bed is for: a good noise predictor whose data prediction carries its error times sigma / alpha,
    large at the last training steps (where SD 2.1's ratio is 14.6, DDPM's is 156)."""
    ev = {int(k): v for k, v in net.meta["eval"].items()}
    assert ev[500]["eps_mse"] < 0.5 and ev[100]["eps_mse"] < 0.5  # a trivial predictor scores 1
    # recompute one entry independently of the training script: timestep 500, fixed noise
    x = load_digits()
    sched = net.schedule
    t = np.full(x.shape[0], 0.501)
    a, s = sched.alpha(t)[:, None], sched.sigma(t)[:, None]
    z = np.random.default_rng(5).standard_normal(x.shape)
    eps_mse = float(np.mean((net.eps(a * x + s * z, t) - z) ** 2))
    assert eps_mse == pytest.approx(ev[500]["eps_mse"], rel=0.1)
    # the data prediction's error grows by orders of magnitude towards timestep 999
    assert ev[999]["x0_mse"] > 10 * ev[500]["x0_mse"]
    assert ev[999]["x0_mse"] > 3 * ev[999]["x0_mse_linear"]


def test_samples_are_digits(net: DigitsEpsNet) -> None:
    """DDIM with 50 steps on its own betas draws digits the shipped classifier is sure of."""
    from hso.baselines import baseline_schedule
    from hso.solvers import sample
    from hso.testbeds.classifier import DigitsClassifier

    sched = NoiseSchedule.preset("ddpm")
    t = baseline_schedule("leading", sched, 50)
    z = np.random.default_rng(0).standard_normal((64, DIM))
    x = sample(as_model(net, sched, "epsilon"), z * sched.sigma(t[0]), sched, t, "ddim", prediction="epsilon",
               convention="jump")
    assert np.all(np.isfinite(x))
    logits = DigitsClassifier.load().logits(np.clip(x, -1, 1))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.mean(p.max(axis=1) / p.sum(axis=1)) > 0.6


def test_bad_inputs_raise(net: DigitsEpsNet, tmp_path) -> None:
    y = np.zeros((4, DIM))
    lo, hi = net.ratio_range
    for s in (0.5 * lo, 2 * hi, np.nan, 0.0):
        with pytest.raises(ValueError, match="trained on noise-to-signal ratios"):
            net(y, s)
    with pytest.raises(ValueError, match="shape"):
        net(np.zeros((4, DIM - 1)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        net(np.full((1, DIM), np.nan), 1.0)
    with pytest.raises(FileNotFoundError, match="--only epsnet"):
        DigitsEpsNet.load(tmp_path / "nope.npz")


def test_evaluation_refuses_a_schedule_outside_its_range() -> None:
    from hso.evaluation import evaluate

    with pytest.raises(ValueError, match="covers noise-to-signal ratios"):
        evaluate("epsnet", "edm", nfes=(4,), methods=("time_uniform",), n_samples=4)


def test_training_runs_and_writes_the_shipped_layout(tmp_path) -> None:
    pytest.importorskip("torch")
    from hso.testbeds.train import train_epsnet

    params, info = train_epsnet(epochs=3, width=32, n_res=1, emb_dim=16, log_every=0)
    net = DigitsEpsNet(params, {})
    assert net.n_params > 0 and np.all(np.isfinite(net(np.zeros((2, DIM)), 1.0)))
    assert info["architecture"]["width"] == 32


def test_inference_does_not_import_torch() -> None:
    code = "import sys, hso.testbeds.epsnet; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
