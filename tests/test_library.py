"""The shipped schedule library (`hso.library`): coverage, exact agreement with `hso.optimize`, no search on load,
bad input, provenance, and the generator."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import hso
from hso import library
from hso.library import build as lib_build

perturbation = pytest.importorskip("benchmarks.perturbation")

SOLVERS = ("unipc", "dpmsolver++", "ddim", "euler")
CONVENTIONS = ("stop", "jump")
NFES = range(3, 21)

# a deterministic spread over presets, solvers, conventions (explicit and default) and NFEs
# (searches and measured baselines both; any DM-NonUniform entry must stay below N = 7, where that search is chaotic)
SAMPLE = [("sd21", "unipc", 5, None), ("sdxl", "ddim", 4, None), ("edm", "dpmsolver++", 6, "jump"),
          ("flow", "euler", 12, "stop"), ("vp_cosine", "unipc", 20, "jump"), ("ddpm", "ddim", 3, "stop"),
          ("vp_linear", "euler", 17, None)]


# The library was made on another machine: its last bits differ from a search here (libm, FMA contraction). How
# far they may differ is measured, per entry, by `python -m benchmarks.perturbation` (inputs moved by a few ulps,
# the whole grid re-run); each entry is held to SAFETY times the change measured there. Bit equality is promised
# only within one machine and build (test_same_seed_same_bytes).
_PERTURBATION = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" /
                            "perturbation.json").read_text(encoding="utf-8"))


def _study_entry(preset: str, solver: str, convention: str, nfe: int) -> dict:
    return _PERTURBATION["entries"][f"{preset}/{solver}/{convention}/{nfe}"]


def _assert_same(got: hso.ScheduleResult, want: hso.ScheduleResult) -> None:
    """The same schedule up to another machine's round-off, as the perturbation study measured it for this entry:
    t within the study's tolerance, the same integer timesteps (unless the study saw them move), the same labels
    and settings."""
    entry = _study_entry(want.schedule["name"], want.solver, want.convention, want.nfe)
    t_tol = perturbation.tolerance(entry)
    np.testing.assert_allclose(got.t, want.t, rtol=0, atol=t_tol)
    lam_scale = max(1.0, float(np.max(np.abs(want.lambdas))))
    np.testing.assert_allclose(got.lambdas, want.lambdas, rtol=0, atol=t_tol * 1e3 * lam_scale)
    np.testing.assert_allclose(got.psi, want.psi, rtol=0, atol=t_tol * 1e3)
    np.testing.assert_allclose(got.fitness, want.fitness, rtol=perturbation.SAFETY * max(entry["dfitness_rel"],
                                                                                           1e-10))
    assert (got.timesteps is None) == (want.timesteps is None)
    if want.timesteps is not None and not entry["timesteps_moved"]:
        assert got.timesteps.tolist() == want.timesteps.tolist()
    np.testing.assert_allclose(got.sigmas, want.sigmas, rtol=t_tol * 1e3 * lam_scale, atol=0)
    for f in ("convention", "solver", "nfe", "objective", "spacing", "d_min", "schedule", "settings", "source"):
        assert getattr(got, f) == getattr(want, f), f


def _boom(*args: object, **kwargs: object) -> None:
    raise AssertionError("hso.library.get must not run a search")


def _sd21_cells_by_pick():
    """A (solver, convention, NFE) of SD 2.1 whose measured default is an MEP search, and one whose is a baseline."""
    from hso.baselines import BASELINES
    from hso.measured import measured_pick
    cells = [(s, c, n) for s in ("unipc", "dpmsolver++", "ddim") for c in CONVENTIONS for n in (4, 5, 6, 8, 10)]
    first = {cell: measured_pick(cell[0], cell[1], "sd21", cell[2]).ranking[0][0] for cell in cells}
    search = next(cell for cell in cells if first[cell] in ("hso_paper", "hso_p1", "hso_constrain"))
    baseline = next(cell for cell in cells if first[cell] in BASELINES)
    return {"search": search, "baseline": baseline}


def test_get_runs_no_search(monkeypatch):
    cells = _sd21_cells_by_pick()
    want = {key: hso.optimize("sd21", n, s, convention=c) for key, (s, c, n) in cells.items()}
    assert want["search"].source == "hso" and want["baseline"].source != "hso"
    # patch every search entry point, then load from scratch (the file read is part of what must not search)
    monkeypatch.setattr(sys.modules["hso.optimize"], "optimize", _boom)
    monkeypatch.setattr(sys.modules["hso.optimize"], "optimize_many", _boom)
    monkeypatch.setattr(hso, "optimize", _boom)
    monkeypatch.setattr(hso, "optimize_many", _boom)
    for name in ("search", "search_many", "lower_solve"):
        monkeypatch.setattr(hso.fast, name, _boom)
    library.library_data.cache_clear()
    for key, (solver, conv, nfe) in cells.items():
        res = library.get("sd21", solver, nfe, conv)
        assert res.timesteps.tolist() == want[key].timesteps.tolist() and res.source == want[key].source
        assert res.convention == conv and res.solver == solver


@pytest.mark.parametrize("preset,solver,nfe,convention", SAMPLE)
def test_shipped_entries_equal_a_fresh_search(preset, solver, nfe, convention):
    got = library.get(preset, solver, nfe, convention)
    want = hso.optimize(preset, nfe, solver, convention=convention)
    _assert_same(got, want)


def test_coverage_is_complete_and_every_entry_is_consistent():
    keys = set(library.available())
    want = {(p, s, c, n) for p in hso.PRESETS for s in SOLVERS for c in CONVENTIONS for n in NFES}
    assert keys == want
    cov = library.coverage()
    assert cov["presets"] == list(hso.PRESETS) and cov["solvers"] == list(SOLVERS)
    assert cov["conventions"] == list(CONVENTIONS) and cov["nfe"] == list(NFES)
    assert (cov["method"], cov["seed"]) == ("auto", 66)
    assert cov["entries"] == len(want) and 0 < cov["unique_schedules"] <= len(want)
    for p, s, c, n in sorted(keys):
        r = library.get(p, s, n, c)
        assert (r.schedule["name"], r.solver, r.convention, r.nfe) == (p, s, c, n)
        n_int = hso.get_solver(s).n_intervals(n, c)
        assert r.t.shape == r.lambdas.shape == (n_int + 1,) and r.settings["n_intervals"] == n_int
        assert r.sigmas.shape == (n_int + 1 + (c == "jump"),)
        assert np.all(np.diff(r.t) < 0) and np.all(np.isfinite(r.lambdas))
        if r.timesteps is not None:
            assert np.all(np.diff(r.timesteps) < 0)


def test_default_convention_and_aliases():
    assert library.get("sd21", "unipc", 5).convention == "stop"
    assert library.get("sd21", "euler", 5).convention == "jump"
    assert library.get("SD21", "dpmpp", 6).solver == "dpmsolver++"
    assert library.get("sd21", "ddim", 6).t.tolist() == library.get("sd21", "ddim", 6, "jump").t.tolist()


def test_results_are_fresh_objects():
    a = library.get("edm", "unipc", 6)
    a.t[:] = 0.0
    a.settings["seed"] = -1
    b = library.get("edm", "unipc", 6)
    assert b.t[0] > 0 and b.settings["seed"] == 66


@pytest.mark.parametrize("args,exc,match", [
    (("nope", "unipc", 5), ValueError, r"no preset 'nope'.*covers presets sd15.*hso\.optimize"),
    (("sd21", "heun", 5), ValueError, r"no solver 'heun'.*solvers unipc, dpmsolver\+\+, ddim, euler.*hso\.optimize"),
    (("sd21", "lms", 5), ValueError, r"no solver 'lms'"),
    (("sd21", "unipc", 2), ValueError, r"no NFE 2.*NFE 3-20.*hso\.optimize\('sd21', 2, 'unipc'\)"),
    (("sd21", "unipc", 21), ValueError, r"no NFE 21"),
    (("sd21", "unipc", 5, "both"), ValueError, r"unknown convention 'both'; known: stop, jump"),
    (("sd21", "unipc", 5.0), TypeError, r"nfe must be an integer"),
    (("sd21", "unipc", True), TypeError, r"nfe must be an integer"),
    ((hso.NoiseSchedule.preset("sd21"), "unipc", 5), TypeError, r"preset name.*hso\.optimize"),
])
def test_bad_input_says_what_is_covered(args, exc, match):
    with pytest.raises(exc, match=match):
        library.get(*args)


def test_provenance_and_file():
    prov = library.provenance()
    assert prov["method"] == "HSO (AAAI 2026)" and prov["command"] == "python -m hso.library.build"
    for key in ("hso_version", "numpy", "scipy", "backend"):
        assert isinstance(prov[key], str) and prov[key]
    assert "git_commit" in prov and "git_dirty" in prov
    assert datetime.datetime.fromisoformat(prov["date"]).tzinfo is not None
    assert library.coverage()["provenance"] == prov
    path = resources.files("hso.library").joinpath(library.FILENAME)
    raw = path.read_bytes()
    assert len(raw) < 2_000_000
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-finite number {c} in the library"))


def test_generator_reproduces_the_shipped_entries(tmp_path):
    # one preset through the same code path as `python -m hso.library.build` (main: write, read back, check); flow
    # matching, whose 144 searches take seconds (EDM's DM-NonUniform ones take a minute)
    out = tmp_path / "lib.json"
    assert lib_build.main(["--presets", "flow", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["coverage"]["presets"] == ["flow"] and set(data["provenance"]) >= set(library.provenance())
    for s in SOLVERS:
        for c in CONVENTIONS:
            for n in NFES:
                got = library.entry_result(data, "flow", s,
                                       data["results"][data["presets"]["flow"]["index"][s][c][str(n)]])
                _assert_same(got, library.get("flow", s, n, c))


def test_same_seed_same_bytes():
    # what is promised bit for bit: the same machine and build give the same bytes, search after search (a
    # DM-NonUniform entry too, the kind that amplifies round-off most)
    for args in (("flow", 8, "unipc"), ("sd21", 6, "ddim")):
        a, b = hso.optimize(*args, convention="stop"), hso.optimize(*args, convention="stop")
        assert a.t.tobytes() == b.t.tobytes() and a.fitness == b.fitness and a.nfev == b.nfev


def test_the_perturbation_study_covers_the_library_and_holds_every_entry_to_it():
    keys = {f"{p}/{s}/{c}/{n}" for p, s, c, n in library.available()}
    assert set(_PERTURBATION["entries"]) == keys, "re-run `python -m benchmarks.perturbation`"
    assert _PERTURBATION["safety"] == perturbation.SAFETY and _PERTURBATION["floor"] == perturbation.FLOOR
    for key, entry in _PERTURBATION["entries"].items():
        p, s, c, n = key.split("/")
        assert library.get(p, s, int(n), c).source == entry["source"] and not entry["source_moved"]
    # the tolerance is the measured change times SAFETY: an entry the study saw still gets no more than that
    assert perturbation.tolerance({"dt": 0.0}) == perturbation.SAFETY * perturbation.FLOOR
    assert perturbation.tolerance({"dt": 1e-6}) == pytest.approx(1e-5)


def test_a_perturbed_schedule_moves_its_inputs_by_the_stated_ulps():
    base = hso.NoiseSchedule.preset("sd21")
    moved = perturbation.perturbed(base, 4)
    rel = np.abs(moved.log_alpha_table / base.log_alpha_table - 1)
    assert 0 < rel.max() <= 5 * np.finfo(float).eps and moved.params == base.params  # 4 ulps, + the quotient's rounding
    flow = perturbation.perturbed(hso.NoiseSchedule.preset("flow"), -1)
    assert flow.params["shift"] != 3.0 and abs(flow.params["shift"] / 3.0 - 1) <= 2 * np.finfo(float).eps


def test_generator_rejects_unknown_presets(tmp_path, capsys):
    assert lib_build.main(["--presets", "nope", "--out", str(tmp_path / "x.json")]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_missing_file_is_a_clear_error(monkeypatch):
    class Missing:
        def joinpath(self, name: str) -> Path:
            return Path("/nonexistent") / name

    monkeypatch.setattr(library.resources, "files", lambda pkg: Missing())
    library.library_data.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="python -m hso.library.build"):
            library.get("sd21", "unipc", 5)
    finally:
        monkeypatch.undo()
        library.library_data.cache_clear()


def test_a_default_lookup_loads_no_scipy_torch_or_triton():
    # embedders pay for what they use: `import hso` and a default schedule from the library load neither scipy
    # (scipy.optimize alone took 0.36 s of a 0.51 s import) nor torch nor triton; a search then loads scipy for its
    # polish
    # (it runs without triton installed, so it also holds the import rule for machines without that backend)
    code = ("import sys, hso, hso.fast, hso.fast.registry; r = hso.optimize('sd21', 20, 'dpmsolver++'); "
            "assert r.source, r; "
            "heavy = sorted(m for m in ('scipy', 'torch', 'triton') if m in sys.modules); assert not heavy, heavy; "
            "hso.optimize('sd21', 5, 'ddim', method='hso'); assert 'scipy.optimize' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
