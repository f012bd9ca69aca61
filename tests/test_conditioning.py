"""`hso.evaluation.conditioning`: which samples' converged solutions hang on a tiny change of their noise, checked
against the closed form of Gaussian data and a symmetric two-mode mixture; the well-conditioned RMSE in
`evaluate`; and the committed quality results' annotation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hso.evaluation import evaluate
from hso.evaluation.reference import conditioning
from hso.schedules import as_schedule
from hso.solvers import initial_state
from hso.testbeds.gmm import GaussianMixtureDenoiser


class GaussianData:
    """The exact denoiser of N(0, c^2 I): linear, so the ODE's end point is a fixed multiple of the noise."""

    def __init__(self, c: float, dim: int = 4) -> None:
        self.c, self.dim, self.name = c, dim, f"gaussian_{c}"

    def __call__(self, y: np.ndarray, s: float) -> np.ndarray:
        return np.asarray(y) * (self.c ** 2 / (self.c ** 2 + s ** 2))

    def gain(self, sched) -> float:
        """d clean / d z: the initial state's scale, the ODE's y(s_min) / y(s_top) = sqrt((c^2 + s_min^2) /
        (c^2 + s_top^2)) (dy/ds = y s / (c^2 + s^2)), then the denoiser's shrinkage at s_min."""
        top, low = sched.t_max, sched.t_min
        s_top, s_min = float(sched.edm_sigma(top)), float(sched.edm_sigma(low))
        y_top = float(initial_state(sched, top, np.ones(1))[0]) / float(sched.alpha(top))
        c2 = self.c ** 2
        return y_top * np.sqrt((c2 + s_min ** 2) / (c2 + s_top ** 2)) * c2 / (c2 + s_min ** 2)


@pytest.mark.parametrize("preset", ["edm", "sd21", "flow"])
def test_gaussian_data_amplifies_every_sample_by_the_closed_form_gain(preset):
    sched = as_schedule(preset)
    den = GaussianData(0.5)
    z = np.random.default_rng(3).standard_normal((12, den.dim))
    cond = conditioning(den, sched, z)
    np.testing.assert_allclose(cond.amplification, den.gain(sched), rtol=1e-4)
    assert cond.well.all() and cond.describe()["ill_conditioned"] == []


def test_a_sample_on_the_boundary_between_two_modes_is_ill_conditioned():
    den = GaussianMixtureDenoiser([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], np.stack([0.01 * np.eye(2)] * 2))
    z = np.random.default_rng(4).standard_normal((16, 2))
    z[:, 0] = np.where(z[:, 0] < 0, -1, 1) * np.maximum(np.abs(z[:, 0]), 0.5)  # clearly on one side
    z[5, 0] = 0.0  # on the symmetry plane: the ODE keeps it there, any change sends it to one mode
    cond = conditioning(den, as_schedule("edm"), z)
    assert cond.describe()["ill_conditioned"] == [5]
    assert cond.amplification[5] > 1e3 * np.median(cond.amplification)


@pytest.mark.parametrize("kw, match", [({"step": 0.0}, "step must be positive"),
                                       ({"step": float("nan")}, "step must be positive"),
                                       ({"factor": 0.5}, "factor must be at least 1")])
def test_conditioning_bad_input_is_one_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        conditioning(GaussianData(0.5), as_schedule("edm"), np.zeros((2, 4)), **kw)


def test_evaluate_scores_the_well_conditioned_samples_and_records_them():
    den = GaussianData(0.5, dim=64)  # the digits' size: `evaluate` also scores sample statistics
    ev = evaluate(den, "edm", solvers=["ddim"], nfes=[4], methods=["edm_rho7", "time_uniform"], n_samples=8,
                  well_conditioned=True)
    assert ev.meta["conditioning"]["ill_conditioned"] == []
    for r in ev.rows:  # every sample is well-conditioned: the same samples, the same number
        assert r["rmse_wc"] == r["rmse"]
    plain = evaluate(den, "edm", solvers=["ddim"], nfes=[4], methods=["edm_rho7"], n_samples=8)
    assert "conditioning" not in plain.meta and "rmse_wc" not in plain.rows[0]


def test_committed_results_carry_the_well_conditioned_rmse():
    """Every committed row is annotated; a configuration's ill-conditioned samples are the same in every results
    file (they depend on the denoiser, noise schedule and noise, not on the sampler); where there are none, the
    well-conditioned RMSE is the RMSE (re-sampled: to `RESAMPLE_RTOL`, the bound `annotate` enforced)."""
    from benchmarks.quality import run
    by_config: dict[str, dict] = {}
    files = 0
    for name, bed, preset, grid in run.runs():
        paths = [run.config_dir(bed, preset, grid) / "results.json"]
        paths += [run.variant_path(bed, preset, grid, s, o) for s, o in run.SAMPLER_VARIANTS]
        for path in paths:
            if not path.exists():
                continue
            files += 1
            d = json.loads(path.read_text())
            cond = d["meta"]["conditioning"]
            assert by_config.setdefault(name, cond) == cond, path
            for r in d["rows"]:
                assert np.isfinite(r["rmse_wc"]), (path, r["method"])
                if not cond["ill_conditioned"]:
                    assert abs(r["rmse_wc"] - r["rmse"]) <= run.RESAMPLE_RTOL * r["rmse"], (path, r["method"])
    assert files >= 30


def test_cli_metric_rmse_wc_scores_the_well_conditioned_samples(capsys):
    """`hso evaluate --metric rmse_wc`: the table is of the well-conditioned RMSE, and the JSON carries it with
    the ill-conditioned samples."""
    from hso.cli import main
    argv = ["evaluate", "--testbed", "gmm", "--preset", "edm", "--solvers", "ddim", "--nfe", "4", "--methods",
            "edm_rho7,time_uniform", "--samples", "16", "--metric", "rmse_wc"]
    assert main(argv) == 0
    assert "well-conditioned samples only" in capsys.readouterr().out
    assert main(argv + ["--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "ill_conditioned" in res["meta"]["conditioning"]
    assert all(np.isfinite(r["rmse_wc"]) for r in res["rows"])
