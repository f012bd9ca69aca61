"""hso.check / hso check: published schedules pass, planted defects are flagged with their codes."""
from __future__ import annotations

import numpy as np
import pytest

import hso
from hso.check import CheckReport, check
from hso.cli import main

AYS = pytest.importorskip("diffusers.schedulers").AysSchedules


def karras(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> list[float]:
    r = np.linspace(0, 1, n)
    s = (sigma_max ** (1 / rho) + r * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return [*s.tolist(), 0.0]


SD = hso.NoiseSchedule.preset("sd21")
SD_SMIN, SD_SMAX = float(SD.edm_sigma(SD.t_min)), float(SD.edm_sigma(SD.t_max))


def errors(rep: CheckReport) -> list[str]:
    return [f.code for f in rep.errors]


# ---------------------------------------------------------------- good lists: no errors
@pytest.mark.parametrize("schedule, model, solver, nfe, kind", [
    (AYS["StableDiffusionTimesteps"], "sd15", "dpmsolver++", 9, "timesteps"),  # 10 points, dpmsolver++'s stop: 9
    (AYS["StableDiffusionXLTimesteps"], "sdxl", "ddim", 10, "timesteps"),  # ddim: jump, 10 points
    (AYS["StableDiffusionSigmas"], "sd15", "dpmsolver++", 10, "sigmas"),
    (AYS["StableDiffusionXLSigmas"], "sdxl", "euler", 10, "sigmas"),
    (karras(SD_SMIN, SD_SMAX, 10), "sd21", "dpmsolver++", 10, "sigmas"),
    (karras(0.002, 80.0, 10), "edm", "heun", 19, "sigmas"),  # Heun: 2 evals per step, last to 0 costs one
    ([999, 749, 499, 249], "sdxl", "euler", 4, "timesteps"),  # SDXL-Turbo / Lightning style
    ([999, 800, 600, 400, 200, 0], "sd21", "unipc", 5, "timesteps"),  # stop: NFE + 1 points
])
def test_published_lists_pass(schedule, model, solver, nfe, kind):
    rep = check(list(schedule), model, solver, nfe=nfe)
    assert rep.kind == kind
    assert rep.ok, str(rep)
    assert rep.nfe == nfe
    assert rep.mep is not None and rep.hso_mep is not None and rep.ratio == pytest.approx(rep.mep / rep.hso_mep)
    assert rep.hso is not None and "hso schedule" in str(rep)


def test_ays_timesteps_as_diffusers_runs_them():
    assert check(AYS["StableDiffusionTimesteps"], "sd15", "dpmsolver++", nfe=10, convention="jump").ok


def test_ays_convention_read_from_final_zero():
    rep = check(AYS["StableDiffusionSigmas"], "sd15", "dpmsolver++")
    assert rep.convention == "jump" and rep.nfe == 10


def test_hso_own_schedule_ratio_one():
    res = hso.optimize("sd21", 6, "unipc")
    rep = check(res, "sd21", "unipc", nfe=6)
    assert rep.ok and rep.ratio == pytest.approx(1.0, rel=1e-6)


# ---------------------------------------------------------------- planted defects
def test_duplicates():
    rep = check([999, 800, 600, 600, 200, 0], "sd21", "unipc", nfe=5)
    assert "duplicate_timesteps" in errors(rep) and not rep.ok


def test_ascending():
    rep = check([0, 200, 400, 600, 800, 999], "sd21", "unipc", nfe=5)
    assert "not_descending" in errors(rep)
    rep = check(karras(SD_SMIN, SD_SMAX, 6)[:-1][::-1], "sd21", "dpmsolver++", kind="sigmas")
    assert "not_descending" in errors(rep)


def test_non_finite():
    rep = check([14.6, float("nan"), 1.0, 0.1], "sd21", "dpmsolver++", kind="sigmas")
    assert "non_finite" in errors(rep)


def test_wrong_count_off_by_one():
    # 5 timesteps under UniPC's "stop" are 4 steps (NFE 4), not 5
    rep = check([999, 750, 500, 250, 0], "sd21", "unipc", nfe=5)
    f = next(f for f in rep.findings if f.code == "count_mismatch")
    assert f.severity == "error" and "NFE 4" in f.message and "6 points" in f.message
    # the same list under "jump" spends 5
    assert check([999, 750, 500, 250, 0], "sd21", "unipc", nfe=5, convention="jump").ok
    # Heun: 2 evaluations per step
    rep = check(karras(0.002, 80.0, 10), "edm", "heun", nfe=10)
    assert "count_mismatch" in errors(rep)


def test_final_zero_with_unipc():
    rep = check(karras(SD_SMIN, SD_SMAX, 8), "sd21", "unipc")
    assert "terminal_zero_division" in rep.codes and rep.ok
    assert "terminal_zero_division" not in check(karras(SD_SMIN, SD_SMAX, 8), "sd21", "dpmsolver++").codes


def test_sigmas_of_another_model():
    rep = check(karras(0.002, 80.0, 10), "sd21", "dpmsolver++")  # EDM sigmas on SD
    assert "out_of_range" in errors(rep) and "other_model" in rep.codes
    rep = check([1200, 900, 600, 300, 0], "sd21", "dpmsolver++", kind="timesteps")
    assert "out_of_range" in errors(rep) and "other_model" in rep.codes


def test_flow_unshifted_sigmas():
    unshifted = np.linspace(1.0, 1 / 8, 8).tolist()
    rep = check(unshifted, "flow", "euler", convention="jump")  # the preset's shift is 3
    assert "shift_mismatch" in rep.codes
    shifted = (3 * np.array(unshifted) / (1 + 2 * np.array(unshifted))).tolist()
    assert "shift_mismatch" not in check(shifted, "flow", "euler", convention="jump").codes


def test_float32_small_step():
    s = karras(SD_SMIN, SD_SMAX, 8)
    s.insert(3, s[3] * (1 + 1e-5))
    rep = check(s, "sd21", "unipc")
    assert "float32_step" in rep.codes


def test_collision_after_rounding():
    s = [SD_SMAX, 5.0, 1.0, 0.2, float(SD.edm_sigma(SD.t_min * 1.2)), SD_SMIN, 0.0]
    assert "timestep_collision" in check(s, "sd21", "dpmsolver++").codes


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, exc", [
    (dict(schedule=[999], solver="unipc"), ValueError),
    (dict(schedule=[[999, 500]], solver="unipc"), ValueError),
    (dict(schedule="999,500", solver="unipc"), TypeError),
    (dict(schedule=[999, 500], solver="nope"), ValueError),
    (dict(schedule=[999, 500], solver="unipc", nfe=0), ValueError),
    (dict(schedule=[999, 500], solver="unipc", convention="sideways"), ValueError),
    (dict(schedule=[999.5, 500], solver="unipc", kind="timesteps"), ValueError),
])
def test_bad_input(kwargs, exc):
    with pytest.raises(exc):
        check(kwargs.pop("schedule"), "sd21", **kwargs)


# ---------------------------------------------------------------- CLI
def test_cli_exit_codes(capsys):
    assert main(["check", "--preset", "sd21", "--solver", "unipc", "--nfe", "5",
                 "--timesteps", "999,800,600,400,200,0"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["check", "--preset", "sd21", "--solver", "unipc", "--nfe", "5",
                 "--timesteps", "999,800,600,600,200,0"]) == 1
    assert "duplicate_timesteps" in capsys.readouterr().out
    assert main(["check", "--solver", "unipc", "--timesteps", "999,x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hso: error:") and err.count("\n") == 1
    assert main(["check", "--solver", "nope", "--sigmas", "14,1,0"]) == 2
    assert main(["check", "--solver", "unipc"]) == 2  # no points


def test_cli_json(capsys):
    import json
    assert main(["check", "--preset", "sd15", "--solver", "dpmsolver++", "--format", "json",
                 "--sigmas", ",".join(map(str, AYS["StableDiffusionSigmas"]))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["nfe"] == 10 and out["ratio"] > 0
