"""Samplers: convergence to an independent reference (scipy DOP853), conventions, array types, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import hso
from hso.evaluation.reference import initial_state, reference_solution
from hso.solvers import sample
from hso.testbeds import as_model

FAMILIES = ["sd21", "vp_linear", "edm", "flow"]


@pytest.fixture(scope="module")
def z():
    return np.random.default_rng(3).standard_normal((8, 64))


def _prediction(sched):
    return "flow" if sched.family == "flow" else "epsilon"


@pytest.fixture(scope="module")
def references(gmm, z):
    out = {}
    for name in FAMILIES:
        s = hso.NoiseSchedule.preset(name)
        out[name] = (s, reference_solution(gmm, s, z, [s.t_min, 0.05]))
    return out


def _run(gmm, z, sched, t, solver, **kw):
    pred = _prediction(sched)
    x = sample(as_model(gmm, sched, pred), initial_state(sched, float(t[0]), z), sched, t, solver, prediction=pred,
               **kw)
    return x


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("solver,kw,steps,tol", [
    # tolerances: about 3x the largest error measured over the four families (errors start at O(1))
    ("dpmsolver++", {"order": 3}, 160, 5e-3), ("unipc", {"order": 3}, 160, 1e-3),
    ("unipc", {"order": 2, "variant": "bh2"}, 160, 4e-3), ("heun", {}, 160, 4e-3), ("ipndm", {}, 160, 1.5e-3),
])
def test_high_step_counts_converge_to_the_reference(gmm, z, references, family, solver, kw, steps, tol):
    """Stop convention at t = 0.05 on a logSNR grid: every sampler reaches scipy's DOP853 solution."""
    sched, ref = references[family]
    lam = np.linspace(sched.lambda_(sched.t_max), sched.lambda_(0.05), steps + 1)
    t = sched.t_of_lambda(lam)
    t[0], t[-1] = sched.t_max, 0.05
    x = _run(gmm, z, sched, t, solver, convention="stop", **kw)
    y = x / float(sched.alpha(0.05))
    assert np.abs(y - ref.at(0.05)).max() < tol


@pytest.mark.parametrize("solver,kw,order", [
    ("ddim", {}, 1), ("euler", {}, 1), ("dpmsolver++", {"order": 2}, 2), ("heun", {}, 2),
    # a multistep method's first-order warm-up step leaves an O(h^2) global error, which caps 3M at 2
    ("dpmsolver++", {"order": 3}, 2),
    # UniC raises the order of UniP by one (Zhao et al. 2023): order-2 UniPC converges at order 3
    ("unipc", {"order": 2}, 3)])
def test_observed_order_of_convergence(gmm, z, references, solver, kw, order):
    """Doubling the steps divides the error by about 2^order (the solvers' orders, measured, not assumed)."""
    sched, ref = references["sd21"]
    errs = []
    for n in (80, 160):
        lam = np.linspace(sched.lambda_(sched.t_max), sched.lambda_(0.05), n + 1)
        t = sched.t_of_lambda(lam)
        t[0], t[-1] = sched.t_max, 0.05
        # no lower-order final steps here: they would cap the global order near the end point
        x = _run(gmm, z, sched, t, solver, convention="stop", lower_order_final=False, **kw)
        errs.append(np.abs(x / float(sched.alpha(0.05)) - ref.at(0.05)).max())
    rate = np.log2(errs[0] / errs[1])
    assert rate > order - 0.35, (errs, rate)


def test_ddim_equals_euler_in_edm_coordinates(gmm, z):
    """DDIM is Euler's method in (sigma/alpha, x/alpha): an identity, so the two samplers agree to rounding."""
    sched = hso.NoiseSchedule.preset("sd15")
    t = np.linspace(0.99, 0.02, 7)
    a = _run(gmm, z, sched, t, "ddim", convention="jump")
    b = _run(gmm, z, sched, t, "euler", convention="jump")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", ["ddim", "dpmsolver++", "unipc", "euler", "heun", "ipndm"])
@pytest.mark.parametrize("conv", ["stop", "jump"])
def test_evaluations_spent_match_the_convention(gmm, z, solver, conv):
    sched = hso.NoiseSchedule.preset("sd21")
    t = np.linspace(1.0, 0.01, 6)  # N = 5
    model = as_model(gmm, sched, "epsilon")
    out = sample(model, z, sched, t, solver, convention=conv, return_trajectory=True)
    spec = hso.get_solver(solver)
    assert spec.n_intervals(out.nfe, conv) == 5
    assert len(out.trajectory) == 6 + (conv == "jump")
    assert out.convention == conv


def test_lambdas_and_t_give_the_same_sample(gmm, z):
    sched = hso.NoiseSchedule.preset("sdxl")
    res = hso.optimize(sched, 5, "unipc")
    model = as_model(gmm, sched, "epsilon")
    a = sample(model, z, sched, res.t, "unipc")
    b = sample(model, z, sched, lambdas=res.lambdas, solver="unipc")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_prediction_types_are_interchangeable(gmm, z):
    sched = hso.NoiseSchedule.preset("sd21")
    t = np.linspace(1.0, 0.01, 6)
    outs = [sample(as_model(gmm, sched, p), z, sched, t, "unipc", prediction=p)
            for p in ("epsilon", "sample", "v_prediction")]
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=0, atol=1e-10)


def test_torch_tensors_work_like_numpy(gmm, z):
    torch = pytest.importorskip("torch")
    sched = hso.NoiseSchedule.preset("sd21")
    t = np.linspace(1.0, 0.01, 6)
    model = as_model(gmm, sched, "epsilon")
    ref = sample(model, z, sched, t, "dpmsolver++", order=3)
    out = sample(lambda x, tt: torch.from_numpy(model(x.numpy(), tt)), torch.from_numpy(z), sched, t, "dpmsolver++",
                 order=3)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ bad input
@pytest.fixture
def setup(gmm, z):
    sched = hso.NoiseSchedule.preset("sd21")
    return as_model(gmm, sched, "epsilon"), z, sched, np.linspace(1.0, 0.01, 5)


@pytest.mark.parametrize("kw,match", [
    ({"solver": "rk45"}, "unknown solver"),
    ({"solver": "deis"}, "no sampler"),
    ({"prediction": "score"}, "unknown prediction"),
    ({"convention": "half"}, "unknown convention"),
    ({"order": 4}, "order must be"),
    ({"solver": "ddim", "order": 2}, "no order option"),
    ({"variant": "bh3"}, "unknown UniPC variant"),
    ({"solver": "ddim", "variant": "bh1"}, "no variant"),
])
def test_bad_options_raise(setup, kw, match):
    model, z, sched, t = setup
    kw = {"solver": "unipc", **kw}
    with pytest.raises(ValueError, match=match):
        sample(model, z, sched, t, **kw)


def test_bad_schedules_raise(setup):
    model, z, sched, t = setup
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample(model, z, sched, t[::-1])
    with pytest.raises(ValueError, match="NaN"):
        sample(model, z, sched, [1.0, np.nan, 0.1])
    with pytest.raises(ValueError, match="at least 2 points"):
        sample(model, z, sched, [0.5])
    with pytest.raises(ValueError, match="domain"):
        sample(model, z, sched, [1.5, 0.5, 0.1])
    with pytest.raises(ValueError, match="exactly one"):
        sample(model, z, sched, t, lambdas=sched.lambda_(t))
    with pytest.raises(ValueError, match="v-prediction is defined for VP"):
        sample(model, z, hso.NoiseSchedule.preset("edm"), [0.9, 0.1], prediction="v_prediction")


def test_bad_models_raise_with_the_time(setup):
    model, z, sched, t = setup
    with pytest.raises(ValueError, match="shape"):
        sample(lambda x, tt: model(x, tt)[:, :10], z, sched, t)
    with pytest.raises(ValueError, match="NaN or inf at t=0.7525"):
        sample(lambda x, tt: model(x, tt) * (np.nan if tt < 0.8 else 1.0), z, sched, t)
