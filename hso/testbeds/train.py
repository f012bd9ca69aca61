"""Train the digits test beds' networks (PyTorch, CPU) and classifier (scikit-learn); write the shipped npz files.

Usage::

    python -m hso.testbeds.train [--out DIR] [--epochs N] [--seed 0] [--png PATH]   # denoiser and classifier
    python -m hso.testbeds.train --only epsnet                                      # the epsilon network

The epsilon network (`hso.testbeds.epsnet`) is a plain DDPM model: a residual MLP predicting the noise from
``(x_t, t)``, trained with the DDPM loss ``|eps_hat(x_t, t) - eps|^2``, t uniform over the 1000 training steps
(continuous, so fractional timesteps are in its training set), DDPM's linear betas, no preconditioning.

The denoiser is an EDM-preconditioned residual MLP (see `hso.testbeds.network`) trained with the EDM loss
``lambda(s) |D(x + s z, s) - x|^2``, ``lambda(s) = (s^2 + sd^2) / (s sd)^2``, sigma log-uniform over
[0.002, 3000] so one network covers VP (SD-like, sigma 0.03-15), EDM (0.002-80) and flow-matching (up to ~3000)
noise ranges. One "epoch" is one Adam step on the whole data set (tiled ``--repeat`` times, every row with its own
sigma and noise); the shipped weights are an exponential moving average of the iterates. The torch module lives
here only, so `hso.testbeds.network` (NumPy inference) never imports torch; `build_torch_net` loads an npz back
into the torch module so tests can check both forwards agree.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads made steps up to
# 10x slower whenever another process held a core. Only effective before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from torch import nn  # noqa: E402

from hso.inits import init_schedule  # noqa: E402
from hso.schedules import NoiseSchedule  # noqa: E402
from hso.solvers import sample  # noqa: E402
from hso.testbeds import as_model  # noqa: E402
from hso.testbeds.classifier import DigitsClassifier  # noqa: E402
from hso.testbeds.data import DIM, IMAGE_SHAPE, load_digits  # noqa: E402
from hso.testbeds.epsnet import NETWORKS, DigitsEpsNet  # noqa: E402
from hso.testbeds.network import DigitsNet  # noqa: E402

__all__ = [
    "EDMDenoiser",
    "EpsMLP",
    "train_epsnet",
    "evaluate_epsnet",
    "build_torch_net",
    "train_denoiser",
    "train_classifier",
    "evaluate_denoiser",
    "sample_grid_png",
    "main",
]

SIGMA_MIN, SIGMA_MAX = 0.002, 3000.0
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_PNG = Path(__file__).resolve().parents[2] / "benchmarks" / "quality" / "digits_net_samples.png"
EVAL_SIGMAS = (0.05, 0.5, 2.0, 10.0)


class EDMDenoiser(nn.Module):
    """The torch twin of `DigitsNet`: same parameters, same forward (see `hso.testbeds.network`)."""

    def __init__(self, sigma_data: float, freq: np.ndarray, emb_dim: int = 128, width: int = 448,
                 n_res: int = 3) -> None:
        super().__init__()
        self.sigma_data = float(sigma_data)
        self.register_buffer("freq", torch.as_tensor(np.asarray(freq), dtype=torch.float32))
        self.emb = nn.Linear(2 * len(freq), emb_dim)
        self.inp = nn.Linear(DIM + emb_dim, width)
        self.res = nn.ModuleList(nn.Linear(width, width) for _ in range(n_res))
        self.out = nn.Linear(width, DIM)
        # a small output layer starts D near c_skip * y, the right answer at both ends of the sigma range
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def raw(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        ang = 2.0 * math.pi * c_noise[:, None] * self.freq[None, :]
        emb = nn.functional.silu(self.emb(torch.cat([torch.cos(ang), torch.sin(ang)], dim=1)))
        h = nn.functional.silu(self.inp(torch.cat([x, emb], dim=1)))
        for layer in self.res:
            h = h + nn.functional.silu(layer(h))
        return self.out(h)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sd = self.sigma_data
        s2 = sigma * sigma
        c_skip = sd * sd / (s2 + sd * sd)
        c_out = sigma * sd / torch.sqrt(s2 + sd * sd)
        c_in = 1.0 / torch.sqrt(s2 + sd * sd)
        f = self.raw(c_in[:, None] * y, torch.log(sigma) / 4.0)
        return c_skip[:, None] * y + c_out[:, None] * f

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Parameters in `DigitsNet`'s npz layout (float32, weights as ``[n_in, n_out]``)."""
        def lin(prefix: str, layer: nn.Linear) -> dict[str, np.ndarray]:
            return {
                f"{prefix}_w": layer.weight.detach().T.contiguous().cpu().numpy().astype(np.float32),
                f"{prefix}_b": layer.bias.detach().cpu().numpy().astype(np.float32),
            }

        p = {"fourier_freq": self.freq.detach().cpu().numpy().astype(np.float32)}
        p.update(lin("emb", self.emb))
        p.update(lin("in", self.inp))
        for i, layer in enumerate(self.res):
            p.update(lin(f"res{i}", layer))
        p.update(lin("out", self.out))
        p["sigma_data"] = np.asarray(self.sigma_data, dtype=np.float64)
        return p


def build_torch_net(npz: str | Path | None = None, dtype: torch.dtype = torch.float64) -> EDMDenoiser:
    """Load an npz written by this module into the torch module (for checking it against the NumPy forward).

    Args:
        npz: the weights file; None uses the shipped ``digits_net.npz``.
        dtype: the module's dtype (float64 to compare with `DigitsNet` to round-off).

    Returns:
        The torch module in eval mode.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    net_np = DigitsNet.load(npz)
    with np.load(Path(npz) if npz is not None else WEIGHTS_DIR / "digits_net.npz", allow_pickle=False) as data:
        params = {k: data[k] for k in data.files if k != "meta"}
    mod = EDMDenoiser(net_np.sigma_data, params["fourier_freq"], emb_dim=params["emb_w"].shape[1],
                      width=params["in_w"].shape[1], n_res=len(net_np.res))
    mod = mod.to(dtype)
    with torch.no_grad():
        mod.freq.copy_(torch.as_tensor(params["fourier_freq"].astype(np.float64)))
        named = {"emb": mod.emb, "in": mod.inp, "out": mod.out}
        named.update({f"res{i}": layer for i, layer in enumerate(mod.res)})
        for key, layer in named.items():
            layer.weight.copy_(torch.as_tensor(params[f"{key}_w"].astype(np.float64).T))
            layer.bias.copy_(torch.as_tensor(params[f"{key}_b"].astype(np.float64)))
    return mod.eval()


def _stratified_log_sigma(n: int, gen: torch.Generator) -> torch.Tensor:
    # stratified log-uniform draws: the same marginal as i.i.d. log-uniform, lower-variance loss estimates
    u = (torch.randperm(n, generator=gen).to(torch.float64) + torch.rand(n, generator=gen, dtype=torch.float64)) / n
    return math.log(SIGMA_MIN) + u * (math.log(SIGMA_MAX) - math.log(SIGMA_MIN))


def _edm_loss(mod: EDMDenoiser, x: torch.Tensor, sigma: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    sd2 = mod.sigma_data**2
    weight = (sigma**2 + sd2) / (sigma**2 * sd2)
    d = mod(x + sigma[:, None] * z, sigma)
    return (weight[:, None] * (d - x) ** 2).mean()


def _fit(mod: nn.Module, ema_mod: nn.Module, step_loss: Any, epochs: int, lr: float, warmup: int, ema: float,
         log_every: int) -> tuple[list[float], float]:
    """The training loop both networks share: Adam, linear warm-up then cosine decay to 0, an EMA of the iterates
    (a plain average over the first steps, then the fixed decay) in ``ema_mod``. ``step_loss(step)`` draws the
    step's noise and returns the loss. Returns the per-step losses and the wall time."""
    opt = torch.optim.Adam(mod.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * min(k, epochs) / epochs))
    )
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(epochs):
        loss = step_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(ema, (step + 1) / (step + 10))
            for pe, p in zip(ema_mod.parameters(), mod.parameters()):
                pe.mul_(d).add_(p, alpha=1.0 - d)
        losses.append(loss.item())
        if log_every and ((step + 1) % log_every == 0 or step == 0):
            print(f"  step {step + 1:5d}/{epochs}  loss {np.mean(losses[-log_every:]):.4f}  "
                  f"lr {sched.get_last_lr()[0]:.2e}  {time.perf_counter() - t0:6.1f}s", flush=True)
    return losses, time.perf_counter() - t0


def train_denoiser(epochs: int = 3000, seed: int = 0, width: int = 448, n_res: int = 3, emb_dim: int = 128,
                   n_freq: int = 32, repeat: int = 1, lr: float = 2e-3, warmup: int = 100, ema: float = 0.998,
                   log_every: int = 250) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train the denoiser on all 1797 digits.

    Args:
        epochs: Adam steps; each step sees every image ``repeat`` times with fresh sigma and noise.
        seed: seeds torch and the Fourier frequencies; the run is deterministic for a fixed seed and thread count.
        width / n_res / emb_dim / n_freq: architecture (hidden width, residual layers, noise embedding, frequencies).
        repeat: tiling of the data set per step (batch = 1797 * repeat).
        lr: peak Adam learning rate (linear warm-up over ``warmup`` steps, then cosine decay to 0).
        ema: decay of the exponential moving average whose weights are exported.
        log_every: progress print interval (steps).

    Returns:
        ``(params, info)``: npz-ready parameters (EMA weights) and training information.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_np = np.asarray(load_digits(), dtype=np.float64)
    sigma_data = float(x_np.std())
    # Fourier frequencies ~ N(0, 1) cycles per unit of c_noise; c_noise spans [-1.55, 2.0] over the sigma range
    freq = np.random.default_rng(seed).standard_normal(n_freq)
    mod = EDMDenoiser(sigma_data, freq, emb_dim=emb_dim, width=width, n_res=n_res)
    ema_mod = EDMDenoiser(sigma_data, freq, emb_dim=emb_dim, width=width, n_res=n_res)
    ema_mod.load_state_dict(mod.state_dict())
    x = torch.tensor(x_np, dtype=torch.float32).repeat(repeat, 1)
    n = x.shape[0]

    def step_loss(step: int) -> torch.Tensor:
        sigma = torch.exp(_stratified_log_sigma(n, gen)).to(torch.float32)
        z = torch.randn(n, DIM, generator=gen)
        return _edm_loss(mod, x, sigma, z)

    losses, seconds = _fit(mod, ema_mod, step_loss, epochs, lr, warmup, ema, log_every)
    info = {
        "sigma_data": sigma_data,
        "train_loss_last100": float(np.mean(losses[-100:])),
        "train_seconds": seconds,
        "architecture": {"width": width, "residual_layers": n_res, "hidden_layers": 1 + n_res,
                         "noise_embedding": emb_dim, "fourier_frequencies": n_freq, "activation": "silu"},
        "optimizer": f"Adam(lr={lr}), {warmup}-step linear warm-up, cosine decay to 0; EMA {ema} weights exported",
        "batch": n,
        "repeat": repeat,
    }
    return ema_mod.numpy_params(), info


class EpsMLP(nn.Module):
    """The torch twin of `DigitsEpsNet`: same parameters, same forward."""

    def __init__(self, freq: np.ndarray, emb_dim: int = 128, width: int = 384, n_res: int = 3) -> None:
        super().__init__()
        self.register_buffer("freq", torch.as_tensor(np.asarray(freq), dtype=torch.float32))
        self.emb = nn.Linear(2 * len(freq), emb_dim)
        self.inp = nn.Linear(DIM + emb_dim, width)
        self.res = nn.ModuleList(nn.Linear(width, width) for _ in range(n_res))
        self.out = nn.Linear(width, DIM)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ang = 2.0 * math.pi * t[:, None] * self.freq[None, :]
        emb = nn.functional.silu(self.emb(torch.cat([torch.cos(ang), torch.sin(ang)], dim=1)))
        h = nn.functional.silu(self.inp(torch.cat([x, emb], dim=1)))
        for layer in self.res:
            h = h + nn.functional.silu(layer(h))
        return self.out(h)

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Parameters in `DigitsEpsNet`'s npz layout (float32, weights as ``[n_in, n_out]``)."""
        p = {"time_freq": self.freq.detach().cpu().numpy().astype(np.float32)}
        named = {"emb": self.emb, "in": self.inp, "out": self.out}
        named.update({f"res{i}": layer for i, layer in enumerate(self.res)})
        for key, layer in named.items():
            p[f"{key}_w"] = layer.weight.detach().T.contiguous().cpu().numpy().astype(np.float32)
            p[f"{key}_b"] = layer.bias.detach().cpu().numpy().astype(np.float32)
        return p


def epsnet_time_frequencies(n_freq: int = 16) -> np.ndarray:
    """Fixed log-spaced frequencies, 0.25 .. 32 cycles over the model time (0, 1]: the shortest period is about
    30 training steps, so the network is smooth in t as DDPM's sinusoidal embeddings are."""
    return np.geomspace(0.25, 32.0, n_freq)


def train_epsnet(epochs: int = 3000, seed: int = 0, width: int = 384, n_res: int = 3, emb_dim: int = 128,
                 n_freq: int = 16, lr: float = 2e-3, warmup: int = 100, ema: float = 0.998,
                 log_every: int = 250, prediction: str = "epsilon") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train the epsilon network on all 1797 digits with the DDPM loss (see the module docstring); with
    ``prediction="v_prediction"`` the v network (`DigitsVNet`: target ``alpha_t z - sigma_t x0`` on SD's betas).

    Returns:
        ``(params, info)``: npz-ready parameters (EMA weights) and training information.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sched = NETWORKS[prediction].train_schedule()
    x = torch.tensor(np.asarray(load_digits(), dtype=np.float64), dtype=torch.float32)
    n = x.shape[0]
    freq = epsnet_time_frequencies(n_freq)
    mod = EpsMLP(freq, emb_dim=emb_dim, width=width, n_res=n_res)
    ema_mod = EpsMLP(freq, emb_dim=emb_dim, width=width, n_res=n_res)
    ema_mod.load_state_dict(mod.state_dict())

    def step_loss(step: int) -> torch.Tensor:
        # stratified uniform timesteps k in [0, 999] (continuous), t = (k + 1) / 1000
        u = (rng.permutation(n) + rng.random(n)) / n
        t_np = (1.0 + 999.0 * u) / 1000.0
        a = torch.tensor(sched.alpha(t_np), dtype=torch.float32)
        s = torch.tensor(sched.sigma(t_np), dtype=torch.float32)
        z = torch.randn(n, DIM, generator=gen)
        pred = mod(a[:, None] * x + s[:, None] * z, torch.tensor(t_np, dtype=torch.float32))
        target = a[:, None] * z - s[:, None] * x if prediction == "v_prediction" else z
        return ((pred - target) ** 2).mean()

    losses, seconds = _fit(mod, ema_mod, step_loss, epochs, lr, warmup, ema, log_every)
    info = {"train_loss_last100": float(np.mean(losses[-100:])), "train_seconds": seconds,
            "architecture": {"width": width, "residual_layers": n_res, "hidden_layers": 1 + n_res,
                             "time_embedding": emb_dim, "time_frequencies": n_freq, "activation": "silu"},
            "optimizer": f"Adam(lr={lr}), {warmup}-step linear warm-up, cosine decay to 0; EMA {ema} weights "
                         "exported", "batch": n}
    return ema_mod.numpy_params(), info


def evaluate_epsnet(net: DigitsEpsNet, seed: int = 1234) -> dict[str, Any]:
    """Per timestep of `EVAL_TIMESTEPS`: the network's noise-prediction MSE and the per-pixel MSE of its data
    prediction (against the best linear denoiser's), float64, fixed noise."""
    x = np.asarray(load_digits(), dtype=np.float64)
    rng = np.random.default_rng(seed)
    sched = net.schedule
    mu, cov = x.mean(axis=0), np.cov(x, rowvar=False, bias=True)
    out = {}
    for k in EVAL_TIMESTEPS:
        t = np.full(x.shape[0], (k + 1) / 1000.0)
        a, s = float(sched.alpha(t[0])), float(sched.sigma(t[0]))
        z = rng.standard_normal(x.shape)
        xt = a * x + s * z
        r = s / a
        lin = mu + (xt / a - mu) @ np.linalg.solve(cov + r * r * np.eye(DIM), cov)
        x0 = net(xt / a, r)
        # the noise the data prediction implies (the epsilon network's own output)
        eps = (xt - a * x0) / s
        out[str(k)] = {"eps_mse": float(np.mean((eps - z) ** 2)),
                       "x0_mse": float(np.mean((x0 - x) ** 2)),
                       "x0_mse_linear": float(np.mean((lin - x) ** 2))}
    return out


EVAL_TIMESTEPS = (0, 100, 500, 900, 999)


def evaluate_denoiser(net: DigitsNet, seed: int = 1234, repeat: int = 4) -> dict[str, Any]:
    """Quality numbers for a denoiser on the digits (float64, fixed noise).

    Args:
        net: the denoiser.
        seed: seed of the evaluation noise.
        repeat: tiling of the data for the EDM-weighted loss estimate.

    Returns:
        ``edm_loss`` (EDM-weighted loss, stratified log-uniform sigma over the training range) and ``mse``: per
        sigma in `EVAL_SIGMAS`, the per-pixel MSE of the network, of the data mean, of the identity ``y`` and of
        the best linear (Gaussian) denoiser ``mu + C (C + s^2 I)^-1 (y - mu)``.
    """
    x = np.asarray(load_digits(), dtype=np.float64)
    rng = np.random.default_rng(seed)
    xr = np.tile(x, (repeat, 1))
    n = xr.shape[0]
    u = (rng.permutation(n) + rng.random(n)) / n
    sigma = np.exp(math.log(SIGMA_MIN) + u * (math.log(SIGMA_MAX) - math.log(SIGMA_MIN)))
    sd2 = net.sigma_data**2
    weight = (sigma**2 + sd2) / (sigma**2 * sd2)
    d = net(xr + sigma[:, None] * rng.standard_normal(xr.shape), sigma)
    edm_loss = float(np.mean(weight[:, None] * (d - xr) ** 2))
    mu = x.mean(axis=0)
    cov = np.cov(x, rowvar=False, bias=True)
    mse = {}
    for s in EVAL_SIGMAS:
        y = x + s * rng.standard_normal(x.shape)
        lin = mu + (y - mu) @ np.linalg.solve(cov + s * s * np.eye(DIM), cov)  # C symmetric: (C+s^2)^-1 C = C(..)^-1
        mse[str(s)] = {
            "net": float(np.mean((net(y, s) - x) ** 2)),
            "mean": float(np.mean((mu - x) ** 2)),
            "identity": float(np.mean((y - x) ** 2)),
            "linear": float(np.mean((lin - x) ** 2)),
        }
    return {"edm_loss": edm_loss, "mse": mse}


def train_classifier(seed: int = 0, hidden: tuple[int, ...] = (128, 64), activation: str = "tanh",
                     test_size: float = 0.2) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train the digits classifier with scikit-learn's MLPClassifier on a stratified split.

    Args:
        seed: ``random_state`` of the split and the classifier.
        hidden: hidden layer sizes (the last one is the feature dimension).
        activation: hidden activation.
        test_size: held-out fraction; the shipped weights never saw it.

    Returns:
        ``(arrays, info)``: npz-ready arrays and ``info`` with the held-out accuracy.
    """
    import sklearn  # deferred: scikit-learn is optional (the eval extra)
    from sklearn.model_selection import train_test_split  # deferred: scikit-learn is optional (the eval extra)
    from sklearn.neural_network import MLPClassifier  # deferred: scikit-learn is optional (the eval extra)

    x, labels = load_digits(with_labels=True)
    x_tr, x_te, y_tr, y_te = train_test_split(np.asarray(x), np.asarray(labels), test_size=test_size,
                                              random_state=seed, stratify=labels)
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation=activation, alpha=1e-3, max_iter=1000,
                        random_state=seed)
    clf.fit(x_tr, y_tr)
    arrays: dict[str, np.ndarray] = {"n_layers": np.asarray(len(clf.coefs_)), "activation": np.asarray(activation)}
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        arrays[f"w{i}"] = w.astype(np.float32)
        arrays[f"b{i}"] = b.astype(np.float32)
    # accuracy of the exported float32 weights through the NumPy inference actually shipped
    exported = DigitsClassifier([arrays[f"w{i}"] for i in range(len(clf.coefs_))],
                                [arrays[f"b{i}"] for i in range(len(clf.coefs_))], activation)
    info = {
        "model": f"sklearn MLPClassifier(hidden_layer_sizes={hidden}, activation={activation!r}, alpha=1e-3, "
                 f"max_iter=1000, random_state={seed})",
        "sklearn_version": sklearn.__version__,
        "split": f"stratified train_test_split(test_size={test_size}, random_state={seed})",
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
        "heldout_accuracy": float(np.mean(exported.predict(x_te) == y_te)),
        "train_accuracy": float(np.mean(exported.predict(x_tr) == y_tr)),
        "full_accuracy": float(np.mean(exported.predict(x) == labels)),
        "n_iter": int(clf.n_iter_),
        "feature_dim": int(hidden[-1]),
    }
    return arrays, info


def sample_grid_png(path: str | Path = DEFAULT_PNG, n: int = 64, steps: int = 40, net: DigitsNet | None = None,
                    seed: int = 0) -> np.ndarray:
    """Draw samples with a Heun probability-flow ODE solver and save them as an image grid.

    The ODE ``dy/dsigma = (y - D(y, sigma)) / sigma`` is integrated on the EDM rho = 7 grid from 80 to 0.002
    (``steps`` points), starting at ``y = 80 z`` with ``z`` from ``numpy.random.default_rng(seed)``.

    Args:
        path: output PNG (folders are created).
        n: number of samples (shown on a square-ish grid).
        steps: grid points of the sigma schedule.
        net: the denoiser; None loads the shipped weights.
        seed: seed of the starting noise.

    Returns:
        The samples, float64 ``[n, 64]``.
    """
    import matplotlib  # deferred: matplotlib is optional (the eval extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib is optional (the eval extra)

    net = net if net is not None else DigitsNet.load()
    edm = NoiseSchedule.edm(0.002, 80.0)
    t = init_schedule(edm, steps - 1, 1.0, 0.0, family="edm_rho", rho=7.0)[0]  # the EDM grid 80 -> 0.002
    z = np.random.default_rng(seed).standard_normal((n, DIM))
    # Heun between the grid points, then the data prediction at 0.002 (EDM's last step to sigma 0)
    samples = sample(as_model(net, edm, "sample"), 80.0 * z, edm, t, "heun", prediction="sample", convention="jump")
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w = IMAGE_SHAPE
    pad = 1
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.0)  # mid-grey separators
    for i, img in enumerate(np.clip(samples, -1.0, 1.0).reshape(n, h, w)):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 6 * canvas.shape[0] / canvas.shape[1]), dpi=100)
    ax.imshow(canvas, cmap="gray", vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{net.name}: {n} samples, Heun, {steps}-point EDM grid 80 -> 0.002", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return samples


def _save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)


def main(argv: list[str] | None = None) -> int:
    """Command line: train both models, write the npz files and the sample grid, print a summary."""
    ap = argparse.ArgumentParser(prog="python -m hso.testbeds.train", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for the two npz files")
    ap.add_argument("--epochs", type=int, default=3000, help="denoiser Adam steps (one pass over the data each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=448)
    ap.add_argument("--res-layers", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="data tiling per step (batch = 1797 * repeat)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (results are reproducible per count)")
    ap.add_argument("--png", type=str, default=str(DEFAULT_PNG), help="sample grid output ('' to skip)")
    ap.add_argument("--only", choices=("both", "denoiser", "classifier", "epsnet", "vnet"), default="both",
                    help="both: the denoiser and the classifier; epsnet: the epsilon network; vnet: the v network")
    args = ap.parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else argv

    torch.set_num_threads(args.threads)  # the budget is 2 CPU cores; matmul blocking depends on the thread count
    torch.use_deterministic_algorithms(True)
    command = " ".join(["python -m hso.testbeds.train", shlex.join(argv_used)]).strip()
    t_start = time.perf_counter()

    if args.only in ("both", "classifier"):
        arrays, cinfo = train_classifier(seed=args.seed)
        cmeta = {"command": command, "seed": args.seed, **cinfo}
        _save_npz(args.out / "digits_classifier.npz", arrays, cmeta)
        print(f"classifier: held-out accuracy {cinfo['heldout_accuracy']:.4f} "
              f"(full set {cinfo['full_accuracy']:.4f}), {cinfo['n_iter']} iterations", flush=True)

    if args.only in ("both", "denoiser"):
        print(f"denoiser: {args.epochs} steps, width {args.width}, {args.res_layers} residual layers", flush=True)
        params, info = train_denoiser(epochs=args.epochs, seed=args.seed, width=args.width,
                                      n_res=args.res_layers, repeat=args.repeat, lr=args.lr)
        net = DigitsNet(params, {})
        ev = evaluate_denoiser(net)
        meta = {
            "command": command,
            "seed": args.seed,
            "epochs": args.epochs,
            "loss": "EDM: mean over rows and pixels of (s^2+sd^2)/(s sd)^2 (D(x+s z, s) - x)^2, "
                    "sigma log-uniform (stratified) over [0.002, 3000]",
            "final_loss": ev["edm_loss"],
            "sigma_min": SIGMA_MIN,
            "sigma_max": SIGMA_MAX,
            "torch_version": torch.__version__,
            "n_params": net.n_params,
            "eval_mse": ev["mse"],
            **info,
        }
        path = args.out / "digits_net.npz"
        _save_npz(path, params, meta)
        print(f"denoiser: final EDM loss (EMA weights, float64) {ev['edm_loss']:.4f}, "
              f"train loss (last 100 steps) {info['train_loss_last100']:.4f}, {info['train_seconds']:.0f}s", flush=True)
        for s, row in ev["mse"].items():
            print(f"  sigma {s:>5}: MSE net {row['net']:.4f}  linear {row['linear']:.4f}  "
                  f"mean {row['mean']:.4f}  identity {row['identity']:.4f}")
        if args.png:
            sample_grid_png(args.png, net=DigitsNet.load(path))
            print(f"samples: {args.png}")
    nets = {c.train_option: c for c in NETWORKS.values()}
    if args.only in nets:
        cls = nets[args.only]
        what = cls.prediction
        print(f"{what} network: {args.epochs} steps, width {args.width}, {args.res_layers} residual layers",
              flush=True)
        params, info = train_epsnet(epochs=args.epochs, seed=args.seed, width=args.width, n_res=args.res_layers,
                                    lr=args.lr, prediction=cls.prediction)
        net = cls(params, {})
        ev = evaluate_epsnet(net)
        betas = ", ".join(f"{k} {v}" for k, v in cls.trained_on.items())
        target = "alpha_t z - sigma_t x" if cls.prediction == "v_prediction" else "z"
        meta = {"command": command, "seed": args.seed, "epochs": args.epochs,
                "loss": f"DDPM: mean over rows and pixels of (net(alpha_t x + sigma_t z, t) - {target})^2, timestep "
                        f"uniform (stratified, continuous) over [0, 999], {betas}",
                "torch_version": torch.__version__, "n_params": net.n_params, "eval": ev, **info}
        _save_npz(args.out / cls.weights.name, params, meta)
        print(f"{what} network: train loss (last 100 steps) {info['train_loss_last100']:.4f}, "
              f"{info['train_seconds']:.0f}s", flush=True)
        for k, row in ev.items():
            print(f"  timestep {k:>4}: eps MSE {row['eps_mse']:.4f}  x0 MSE {row['x0_mse']:.4f} "
                  f"(best linear {row['x0_mse_linear']:.4f})")
    print(f"total {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
