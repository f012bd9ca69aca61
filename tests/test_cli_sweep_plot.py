"""`hso sweep` (JSON / CSV grids) and `hso plot` (PNG against baselines): output, files, exit codes."""
from __future__ import annotations

import csv
import io
import json

import pytest

import hso
from hso import cli

GRID = ["--preset", "sd21", "--nfe", "3-5", "--solver", "unipc,ddim"]


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_sweep_json_matches_optimize(capsys):
    rc, out, err = _run(["sweep", *GRID], capsys)
    assert rc == 0 and err == ""
    data = json.loads(out)
    assert [(d["solver"], d["nfe"], d["convention"]) for d in data] == \
        [(s, n, c) for s, c in (("unipc", "stop"), ("ddim", "jump")) for n in (3, 4, 5)]
    cell = next(d for d in data if d["solver"] == "ddim" and d["nfe"] == 4)
    want = hso.optimize("sd21", 4, "ddim")
    assert cell["t"] == want.t.tolist() and cell["timesteps"] == want.timesteps.tolist()
    assert cell["fitness"] == want.fitness and cell["schedule"]["name"] == "sd21"


def test_sweep_both_conventions_and_settings(capsys):
    rc, out, _ = _run(["sweep", "--preset", "edm", "--nfe", "4", "--solver", "euler", "--convention", "stop,jump",
                       "--spacing", "constrain"], capsys)
    assert rc == 0
    data = json.loads(out)
    assert [d["convention"] for d in data] == ["stop", "jump"]
    assert all(d["spacing"] == "constrain" and d["penalty"] == 0.0 and d["timesteps"] is None for d in data)
    want = hso.optimize("edm", 4, "euler", convention="stop", spacing="constrain")
    assert data[0]["t"] == want.t.tolist()


def test_sweep_csv(capsys):
    rc, out, _ = _run(["sweep", *GRID, "--format", "csv"], capsys)
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0] == ("preset,solver,convention,nfe,source,objective,spacing,fitness,mep,penalty,psi,"
                                   "t,timesteps,sigmas")
    assert len(rows) == 6
    row = next(r for r in rows if r["solver"] == "unipc" and r["nfe"] == "5")
    want = hso.optimize("sd21", 5, "unipc")
    assert row["preset"] == "sd21" and row["convention"] == "stop" and row["source"] == want.source
    # full precision: the floats read back exactly
    assert [float(v) for v in row["t"].split()] == want.t.tolist()
    assert [int(v) for v in row["timesteps"].split()] == want.timesteps.tolist()
    assert float(row["fitness"]) == want.fitness and len(row["sigmas"].split()) == want.sigmas.size


def test_sweep_out_writes_the_file(tmp_path, capsys):
    path = tmp_path / "grid.json"
    rc, out, err = _run(["sweep", "--nfe", "3,4", "--out", str(path), "--progress"], capsys)
    assert rc == 0 and out == ""
    assert str(path) in err and "searches" in err  # the note and the progress line, both on stderr
    assert [d["nfe"] for d in json.loads(path.read_text())] == [3, 4]


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "schedules.png"
    rc, out, err = _run(["plot", "--preset", "sd21", "--solver", "unipc,ddim", "--nfe", "4,5", "--out", str(path)],
                        capsys)
    assert rc == 0 and out == "" and str(path) in err
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 1000


def test_plot_from_the_library_skips_inapplicable_baselines(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "edm.png"
    rc, out, err = _run(["plot", "--preset", "edm", "--nfe", "6", "--library", "--out", str(path)], capsys)
    assert rc == 0 and out == ""
    assert "skipped baseline 'trailing'" in err and path.stat().st_size > 1000


@pytest.mark.parametrize("args", [
    ["sweep", "--preset", "nope"], ["sweep", "--nfe", "5-x"], ["sweep", "--solver", "unipc,lms"],
    ["sweep", "--nfe", "0"], ["sweep", "--nfe", "20-3"], ["sweep", "--convention", "both"],
    ["sweep", "--solver", "ddim", "--nfe", "1"], ["sweep", "--out", "/nonexistent/dir/x.json", "--nfe", "3"],
    ["plot", "--preset", "nope"], ["plot", "--nfe", "5-x"], ["plot", "--solver", "lms"], ["plot", "--nfe", "0"],
    ["plot", "--baselines", "logSNR,nope"], ["plot", "--library", "--objective", "dmn"],
    ["plot", "--library", "--nfe", "25"],
])
def test_bad_input_is_one_line_and_exit_2(args, capsys, tmp_path):
    if args[0] == "plot":
        args = [*args, "--out", str(tmp_path / "x.png")]
    rc, out, err = _run(args, capsys)
    assert rc == 2 and out == ""
    assert err.startswith("hso: error: ") and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
