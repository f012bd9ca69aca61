"""`benchmarks.report` labels what it times: one section per `hso.optimize` method, the default's table lookups
marked as such, the fitness check only where a row solved the scipy baseline's problem (no timing here)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import hso

report = pytest.importorskip("benchmarks.report")


def _row(method: str, ran_source: str, spacing: str = "rank", wall: float = 0.01, fitness: float = 3.0) -> dict:
    searched = ran_source in ("hso", "hso_stop_ported")
    return {"method": method, "source": ran_source, "ran": f"ran-{method}-{ran_source}-{spacing}",
            "searched": searched, "same_problem_as_paper": searched and ran_source == "hso" and spacing == "rank",
            "objective": "mep", "spacing": spacing, "p": 2.0, "convention": "stop", "search_convention": "stop",
            "pick": None, "wall_median": wall, "walls": [wall] * 3, "fitness": fitness, "mep": fitness,
            "penalty": 0.0, "psi": [5.0, 0.01, 1.0] if searched else [], "t": [1.0, 0.5, 0.01],
            "timesteps": [999, 500, 9], "nfev": 500 if searched else 0, "nit": 10 if searched else 0}


def _record(with_paper: bool = True) -> dict:
    cell = {"solver": "unipc", "nfe": 4, "hso": {
        "paper": {"cpp": _row("paper", "hso")},
        "hso": {"cpp": _row("hso", "hso", spacing="constrain", fitness=2.9)},
        "auto": {"cpp": _row("auto", "time_quadratic", wall=1e-4, fitness=5e6)}}}
    if with_paper:
        cell["paper"] = {"wall_time": 5.0, "fitness": 3.0, "mep": 3.0, "psi": [5.0, 0.01, 1.0],
                         "t": [1.0, 0.5, 0.01], "timesteps": [999, 500, 9], "nfev": 9000,
                         "exact_at_psi": {"fitness": 3.0, "mep": 3.0, "penalty": 0.0}}
    machine = {"git_commit": "abc", "git_dirty": False, "platform": "linux", "cpu_count": 2, "loadavg_start": [1.0],
               "loadavg_end": [1.0], "python": "3", "numpy": "2", "scipy": "1"}
    config = {"preset": "sd21", "solvers": ["unipc"], "nfes": [4], "repeats": 3, "with_paper": with_paper,
              "quick": False, "backends": ["cpp"], "methods": list(report.METHODS)}
    return {"format": report.RECORD_FORMAT, "date": "today", "machine": machine, "config": config, "results": [cell]}


def _section(text: str, method: str) -> str:
    start = text.index(f'## `method="{method}"`')
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_one_labelled_section_per_method():
    text = report.markdown(_record())
    assert "paper settings" not in text  # the old header that labelled the default's timings as the paper's
    for method in report.METHODS:
        assert f'## `method="{method}"`' in text
    paper = _section(text, "paper")
    assert "| unipc | 4 | cpp | 10.0 | 5.00 | 500x |" in paper and "| ok |" in paper
    hso_ = _section(text, "hso")
    assert "ran-hso-hso-constrain" in hso_ and "n/a (other problem)" in hso_ and "500x" in hso_
    auto = _section(text, "auto")
    row = next(line for line in auto.splitlines() if "ran-auto-time_quadratic" in line)
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[5] == "5.00" and cols[6] == "-"  # no ratio for a lookup
    assert "n/a (no search)" in row
    # the summary keeps lookups apart from searches
    assert "| `auto` | cpp | table lookup, no search |" in text
    assert "| `paper` | cpp | search |" in text


def test_without_baseline():
    text = report.markdown(_record(with_paper=False))
    assert "baseline [s]" not in text and "not run (--with-paper to add it)" in text
    assert all(f'## `method="{m}"`' in text for m in report.METHODS)


def test_flags_only_rows_that_solved_the_baselines_problem():
    rec = _record()
    cell = rec["results"][0]
    cell["paper"]["fitness"] = cell["paper"]["exact_at_psi"]["fitness"] = 2.95  # the baseline beats "paper"
    text = report.markdown(rec)
    assert "**baseline lower**" in _section(text, "paper")
    # "hso" (spacing constrain, fitness 2.9) and "auto" (a lookup) are never checked against it
    assert "| unipc | 4 | paper | cpp | baseline lower |" in text
    assert "| unipc | 4 | hso |" not in text and "| unipc | 4 | auto |" not in text


def test_labels_follow_the_result():
    search = SimpleNamespace(source="hso", objective="mep", spacing="constrain", convention="jump",
                             settings={"p": 2.0, "measured": {"pick": "hso_constrain"}, "search_convention": "jump"})
    assert report.describe(search) == "search (MEP p=2, spacing constrain; pick hso_constrain)"
    assert report.searched(search) and not report.same_problem_as_paper(search)
    ported = SimpleNamespace(source="hso_stop_ported", objective="mep", spacing="rank", convention="jump",
                             settings={"p": 2.0, "measured": {"pick": "hso_stop_ported"}, "search_convention": "stop"})
    assert "hso_stop_ported" in report.describe(ported) and report.describe(ported).startswith("search")
    assert report.searched(ported) and not report.same_problem_as_paper(ported)
    lookup = SimpleNamespace(source="time_quadratic", objective="mep", spacing="rank", convention="stop",
                             settings={"p": 2.0, "measured": {"pick": "time_quadratic"}, "search_convention": "stop"})
    assert report.describe(lookup) == "no search, table lookup: baseline time_quadratic"
    assert not report.searched(lookup) and not report.same_problem_as_paper(lookup)


def test_labels_of_real_results():
    res = hso.optimize("sd21", 4, "unipc", method="paper")
    assert report.searched(res) and report.same_problem_as_paper(res) and res.nfev > 0
    res = hso.optimize("sd21", 4, "unipc")  # the default: whatever the measured table picks
    assert ("no search" in report.describe(res)) is (not report.searched(res))
    assert report.searched(res) is (res.nfev > 0)


def test_main_writes_a_method_level(tmp_path, monkeypatch):
    def fake_time(preset, nfe, solver, backend, repeats, method="paper"):
        return _row(method, "time_quadratic" if method == "auto" else "hso")

    def fake_paper(preset, nfe, solver):
        return dict(_record()["results"][0]["paper"], psi=[5.0, 0.01, 1.0])

    monkeypatch.setattr(report, "time_hso", fake_time)
    monkeypatch.setattr(report, "exact_at", lambda *a: {"fitness": 3.0, "mep": 3.0, "penalty": 0.0})
    monkeypatch.setattr(report.fast, "available_backends", lambda: ["cpp"])
    import benchmarks.paper_scipy as paper_scipy
    monkeypatch.setattr(paper_scipy, "paper_search", fake_paper)
    assert report.main(["--quick", "--with-paper", "--repeats", "1", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "search.jsonl").read_text().splitlines()[-1])
    assert rec["format"] == report.RECORD_FORMAT and rec["config"]["methods"] == list(report.METHODS)
    assert len(rec["results"]) == len(report.SOLVERS) * len(report.QUICK_NFES)
    for cell in rec["results"]:
        assert set(cell["hso"]) == set(report.METHODS)
        assert all(cell["hso"][m]["cpp"]["method"] == m for m in report.METHODS)
        assert "paper" in cell
    assert (tmp_path / "search.md").read_text() == report.markdown(rec)
    assert np.isfinite(rec["results"][0]["paper"]["wall_time"])
