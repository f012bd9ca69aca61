"""`hso optimize --from-diffusers-config` and the diffusers / k-diffusion output formats."""
from __future__ import annotations

import json

import numpy as np
import pytest

import hso
from hso.cli import main

CONFIG = {"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
          "beta_end": 0.012, "num_train_timesteps": 1000, "prediction_type": "epsilon"}


def _run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_from_diffusers_config_picks_solver_and_jump_convention(tmp_path, capsys):
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps(CONFIG))
    rc, out, _ = _run(capsys, "optimize", "--from-diffusers-config", str(path), "--nfe", "6", "--format", "diffusers")
    assert rc == 0
    got = json.loads(out)
    want = hso.optimize("sd15", 6, "dpmsolver++", convention="jump")
    assert got == {"timesteps": want.timesteps.tolist(), "convention": "jump", "solver": "dpmsolver++"}
    rc, out, _ = _run(capsys, "optimize", "--from-diffusers-config", str(tmp_path), "--solver", "unipc",
                      "--convention", "stop", "--format", "json")
    assert rc == 0 and json.loads(out)["convention"] == "stop"


def test_kdiffusion_and_flow_formats(capsys):
    rc, out, _ = _run(capsys, "optimize", "--preset", "sd21", "--solver", "ddim", "--nfe", "5", "--format",
                      "kdiffusion")
    sig = json.loads(out)
    assert rc == 0 and sig[-1] == 0.0 and len(sig) == 6 and np.all(np.diff(sig) < 0)
    rc, out, _ = _run(capsys, "optimize", "--preset", "flow", "--solver", "euler", "--format", "diffusers")
    assert rc == 0 and np.allclose(json.loads(out)["sigmas"], hso.optimize("flow", 5, "euler").t)


@pytest.mark.parametrize("argv,msg", [
    (["--from-diffusers-config", "/nonexistent/scheduler_config.json"], "no diffusers scheduler config"),
    (["--preset", "edm", "--format", "diffusers"], "no diffusers timesteps"),
    (["--mu", "0.5"], "--mu applies"),
])
def test_errors_are_one_line_exit_2_and_nothing_on_stdout(capsys, argv, msg):
    rc, out, err = _run(capsys, "optimize", *argv)
    assert rc == 2 and out == "" and msg in err and err.count("\n") == 1


def test_unknown_scheduler_class_needs_a_solver(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**CONFIG, "_class_name": "LMSDiscreteScheduler"}))
    rc, out, err = _run(capsys, "optimize", "--from-diffusers-config", str(path))
    assert rc == 2 and "pass --solver" in err
    rc, out, err = _run(capsys, "optimize", "--from-diffusers-config", str(path), "--solver", "euler")
    assert rc == 0 and "convention jump" in out


def test_an_edm_scheduler_config_picks_its_solver_and_the_edm_noise_schedule(tmp_path, capsys):
    path = tmp_path / "scheduler_config.json"
    path.write_text(json.dumps({"_class_name": "EDMDPMSolverMultistepScheduler", "sigma_min": 0.002,
                                "sigma_max": 80.0, "sigma_data": 0.5, "prediction_type": "epsilon"}))
    rc, out, _ = _run(capsys, "optimize", "--from-diffusers-config", str(path), "--nfe", "5", "--format", "json")
    got = json.loads(out)
    assert rc == 0 and got["solver"] == "dpmsolver++" and got["convention"] == "jump"
    assert got["schedule"]["family"] == "edm"
    np.testing.assert_allclose(got["t"], hso.optimize("edm", 5, "dpmsolver++", convention="jump").t)
    rc, out, err = _run(capsys, "optimize", "--from-diffusers-config", str(path), "--format", "diffusers")
    assert rc == 2 and "hso.diffusers.apply" in err and out == ""
