"""Test bed 2 ("a trained network"): the shipped digits denoiser and the digits classifier."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")  # the digits data ship with scikit-learn

from hso.testbeds.classifier import DEFAULT_CLASSIFIER_WEIGHTS, DigitsClassifier  # noqa: E402
from hso.testbeds.data import DIM, load_digits  # noqa: E402
from hso.testbeds.network import DEFAULT_WEIGHTS, DigitsNet  # noqa: E402

MAX_BYTES = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def net() -> DigitsNet:
    return DigitsNet.load()


@pytest.fixture(scope="module")
def clf() -> DigitsClassifier:
    return DigitsClassifier.load()


def test_shipped_weights_load_and_describe(net: DigitsNet) -> None:
    assert DEFAULT_WEIGHTS.stat().st_size <= MAX_BYTES
    assert DEFAULT_CLASSIFIER_WEIGHTS.stat().st_size <= MAX_BYTES
    assert net.dim == DIM == 64 and net.name == "digits_net"
    # sigma_data is the measured std of the data the net was trained on
    assert net.sigma_data == pytest.approx(float(np.std(load_digits())), rel=1e-12)
    d = net.describe()
    assert d["n_params"] == net.n_params > 100_000
    t = d["training"]
    assert t["sigma_min"] == 0.002 and t["sigma_max"] == 3000.0
    for key in ("command", "final_loss", "epochs", "seed", "torch_version", "loss"):
        assert key in t


def test_missing_file_raises_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="hso.testbeds.train"):
        DigitsNet.load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="hso.testbeds.train"):
        DigitsClassifier.load(tmp_path / "nope.npz")


def test_output_shape_dtype_finite(net: DigitsNet) -> None:
    rng = np.random.default_rng(0)
    for sigma in (0.002, 0.05, 1.0, 80.0, 3000.0):
        y = load_digits()[:16] + sigma * rng.standard_normal((16, DIM))
        out = net(y, sigma)
        assert out.shape == (16, DIM) and out.dtype == np.float64
        assert np.all(np.isfinite(out))
    one = net(np.zeros(DIM), 1.0)  # a single row keeps its shape
    assert one.shape == (DIM,)


def test_scalar_and_per_row_sigma_agree(net: DigitsNet) -> None:
    rng = np.random.default_rng(1)
    y = rng.standard_normal((8, DIM))
    for sigma in (0.01, 0.7, 25.0):
        np.testing.assert_allclose(net(y, sigma), net(y, np.full(8, sigma)), rtol=1e-14, atol=0)
    # mixed sigmas row by row equal the single-row calls
    sig = np.geomspace(0.003, 2000.0, 8)
    rows = np.stack([net(y[i : i + 1], sig[i])[0] for i in range(8)])
    np.testing.assert_allclose(net(y, sig), rows, rtol=1e-13, atol=1e-15)


def test_numpy_forward_matches_torch(net: DigitsNet) -> None:
    torch = pytest.importorskip("torch")
    from hso.testbeds.train import build_torch_net

    mod = build_torch_net()
    rng = np.random.default_rng(2)
    y = rng.standard_normal((32, DIM)) * 3.0
    sigma = np.exp(rng.uniform(np.log(0.002), np.log(3000.0), 32))
    with torch.no_grad():
        ref = mod(torch.as_tensor(y), torch.as_tensor(sigma)).numpy()
    out = net(y, sigma)
    assert np.max(np.abs(out - ref)) <= 1e-10 * np.max(np.abs(ref))


def test_denoiser_beats_trivial_predictor(net: DigitsNet) -> None:
    x = load_digits()
    mu = x.mean(axis=0)
    trivial = np.mean((mu - x) ** 2)  # 0.293 per pixel
    rng = np.random.default_rng(3)
    # measured MSE / trivial with the shipped weights: 0.170 at sigma 0.5, 0.733 at sigma 2 (where the posterior
    # mean itself is far from x: the best linear denoiser reaches 0.766)
    for sigma, max_ratio in ((0.5, 0.25), (2.0, 0.8)):
        y = x + sigma * rng.standard_normal(x.shape)
        mse = np.mean((net(y, sigma) - x) ** 2)
        assert mse < max_ratio * trivial, (sigma, mse, trivial)
    # a real nonlinear denoiser: clearly better than the best linear (Gaussian) one at sigma 0.5 (measured 0.67x)
    y = x + 0.5 * rng.standard_normal(x.shape)
    cov = np.cov(x, rowvar=False, bias=True)
    linear = mu + (y - mu) @ np.linalg.solve(cov + 0.25 * np.eye(DIM), cov)
    assert np.mean((net(y, 0.5) - x) ** 2) < 0.8 * np.mean((linear - x) ** 2)


def test_near_identity_at_small_sigma(net: DigitsNet) -> None:
    x = load_digits()[:64]
    y = x + 1e-3 * np.random.default_rng(4).standard_normal(x.shape)
    # c_skip -> 1 and c_out ~ sigma: D - y is at most a few sigma (measured max 7.3e-3, RMS 2.6e-3)
    d = net(y, 1e-3) - y
    assert np.max(np.abs(d)) < 0.02 and np.sqrt(np.mean(d**2)) < 5e-3
    assert np.max(np.abs(net(y, 1e-5) - y)) < 1e-3  # measured 2.3e-4


def test_classifier_accuracy_and_features(clf: DigitsClassifier) -> None:
    x, labels = load_digits(with_labels=True)
    assert clf.predict(x).dtype == np.int64
    assert np.mean(clf.predict(x) == labels) >= 0.97
    assert clf.meta["heldout_accuracy"] >= 0.95
    f = clf.features(x[:10])
    assert f.shape == (10, clf.n_features) and clf.n_features == 64
    assert np.all(np.isfinite(f))


def test_bad_inputs_raise(net: DigitsNet, clf: DigitsClassifier) -> None:
    y = np.zeros((4, DIM))
    with pytest.raises(ValueError, match="shape"):
        net(np.zeros((4, DIM - 1)), 1.0)
    bad = y.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net(bad, 1.0)
    for s in (0.0, -1.0, np.nan, np.array([1.0, 1.0, 0.0, 1.0])):
        with pytest.raises(ValueError, match="sigma"):
            net(y, s)
    with pytest.raises(ValueError, match="sigma"):
        net(y, np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        clf.predict(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="NaN"):
        clf.features(np.full((1, DIM), np.nan))


def test_sample_grid_draws_confidently_classified_digits(tmp_path) -> None:
    """The README's sample grid command: hso's Heun sampler on the EDM grid gives digits the classifier is sure of
    (mean top-class probability measured 0.92 over 2000 samples; 0.6 leaves room for 32 samples, 20 steps)."""
    from hso.testbeds.classifier import DigitsClassifier
    from hso.testbeds.train import sample_grid_png

    x = sample_grid_png(tmp_path / "grid.png", n=32, steps=20)
    assert (tmp_path / "grid.png").stat().st_size > 2000 and np.all(np.isfinite(x))
    logits = DigitsClassifier.load().logits(x)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    assert np.mean(p.max(axis=1) / p.sum(axis=1)) > 0.6


def test_inference_modules_do_not_import_torch() -> None:
    code = "import sys, hso.testbeds.network, hso.testbeds.classifier; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
