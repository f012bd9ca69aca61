"""CLI (scriptable output, exit codes) and the backend registry."""
import dataclasses
import json
import os
import sys

import numpy as np
import pytest

import hso
from hso import cli, fast
from hso.fast import registry
from hso.optimize import blend_weight_words


def test_cli_default_prints_the_sd21_schedule(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "sd21" in out and "timesteps: [" in out


@pytest.mark.parametrize("preset,solver,nfe,convention", [("sd21", "unipc", 5, "stop"), ("sd21", "unipc", 5, "jump"),
                                                           ("ddpm", "dpmsolver++", 6, "stop")])
def test_cli_says_what_the_measured_default_picked(preset, solver, nfe, convention, capsys):
    """The text output names the pick: a baseline ("no search ran"), a blend (with its pair) or an HSO search
    (with psi)."""
    res = hso.optimize(preset, nfe, solver, convention=convention)
    assert cli.main(["optimize", "--preset", preset, "--solver", solver, "--nfe", str(nfe),
                     "--convention", convention]) == 0
    out = capsys.readouterr().out
    assert f"measured pick {res.settings['measured']['pick']} (NFE {nfe}" in out
    if res.source == "blend":
        first, second = res.settings["measured"]["blend"]
        where = blend_weight_words(res.settings["measured"]["blend_weight"])
        assert f"the blend of {first} and {second} ({where} in lambda" in out and "psi*" not in out
    elif res.source == "hso":
        assert "# HSO schedule" in out and "psi* = (rho" in out
    elif res.source == "hso_stop_ported":
        assert "# HSO schedule" in out and "the 'stop' search's schedule without its last point" in out
    else:
        assert f"the {res.source} baseline (no search ran" in out and "psi*" not in out
    assert f"timesteps: {res.timesteps.tolist()}" in out


def test_cli_json_is_parseable_and_matches_python(capsys):
    assert cli.main(["optimize", "--preset", "sd21", "--solver", "ddim", "--nfe", "4", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["timesteps"] == hso.optimize("sd21", 4, "ddim").timesteps.tolist()
    assert data["convention"] == "jump"


@pytest.mark.parametrize("args", [["optimize", "--nfe", "0"], ["optimize", "--solver", "lms"],
                                  ["optimize", "--preset", "nope"], ["optimize", "--backend", "tpu"]])
def test_cli_errors_are_one_line_and_exit_2(args, capsys):
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("hso: error: ") and captured.err.count("\n") == 1


def test_cli_info(capsys):
    assert cli.main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"]["reference"]["available"] is True
    assert info["auto"] in fast.available_backends()


def test_registry_contract(monkeypatch):
    assert "reference" in fast.available_backends()
    assert fast.get_backend("reference").name == "reference"
    with pytest.raises(ValueError, match="unknown backend 'nope'; known backends: 'auto', 'reference'"):
        fast.get_backend("nope")
    monkeypatch.setenv("HSO_BACKEND", "reference")
    assert fast.get_backend("auto").name == "reference"
    monkeypatch.delenv("HSO_BACKEND")
    assert fast.get_backend("auto").name == fast.available_backends()[0]


def test_failed_extension_load_is_reported(monkeypatch):
    monkeypatch.setattr(registry, "_MODULES", {})
    monkeypatch.setattr(registry, "_LOAD_ERRORS", {"_C": "ImportError: simulated"})
    # and no Triton either, so that the reference is what is left
    monkeypatch.setitem(registry.BACKENDS, "triton",
                        dataclasses.replace(registry.BACKENDS["triton"], probe=lambda: "simulated"))
    assert [b for b in fast.available_backends() if b != "torch"] == ["reference"]
    with pytest.raises(RuntimeError, match="simulated.*make install"):
        fast.get_backend("cpp")
    assert hso.optimize("sd21", 4, "ddim").backend == "reference"  # auto falls back


@pytest.mark.skipif("cpp" not in fast.available_backends(), reason="hso._C did not build/load here")
def test_backends_agree_through_the_dispatcher():
    lam = np.sort(np.random.default_rng(0).uniform(-5, 4, (64, 11)), axis=1)
    spec = fast.ObjectiveSpec("mep", 0, 2.0)
    a = fast.objective_and_grad(lam, spec, hessian=True, backend="reference")
    b = fast.objective_and_grad(lam, spec, hessian=True, backend="cpp")
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_a_reader_that_stops_early_is_not_an_error():
    """``hso optimize ... | head``: the closed pipe ends the output quietly (exit 0, nothing on stderr), never with
    "hso: error: Broken pipe" (as it did) or a traceback at the interpreter's final flush."""
    import shutil
    import subprocess

    exe = shutil.which("hso") or os.path.join(os.path.dirname(sys.executable), "hso")
    # 74 KB of JSON, more than a pipe holds (64 KiB): the writer is still writing when the reader goes, one byte in
    proc = subprocess.Popen([exe, "optimize", "--preset", "edm", "--solver", "ddim", "--nfe", "1000", "--format",
                             "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert os.read(proc.stdout.fileno(), 1) == b"{"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""
