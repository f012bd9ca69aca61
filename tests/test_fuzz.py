"""A few hundred of `python -m benchmarks.fuzz`'s requests (API and CLI, good and bad): every one gives a valid
schedule or one clear error; the committed run is `benchmarks/results/fuzz.md`."""
from __future__ import annotations

import pytest

fuzz = pytest.importorskip("benchmarks.fuzz")


def test_fuzzed_requests_give_a_schedule_or_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # CLI plots land here
    record = fuzz.fuzz(150, seed=2026)
    assert record["defects"] == [], record["defects"][:5]
    counts = record["counts"]
    # the draw reaches every outcome it is meant to: valid schedules and refusals on both surfaces
    assert counts["api"]["ok"] > 10 and counts["api"]["refused"] > 10
    assert counts["cli"]["ok"] > 3 and counts["cli"]["refused"] > 3


def test_the_fuzz_classifies_defects(tmp_path, monkeypatch):
    # the checks can fail: an internal error, a traceback-like exit and a non-finite schedule are defects
    monkeypatch.chdir(tmp_path)
    import hso

    def boom(*args, **kwargs):
        raise RuntimeError("internal error: planted")

    monkeypatch.setattr(hso, "plan", boom)
    assert fuzz.run_api(("sd21", 5, "unipc", {}))[0] == "defect"
    monkeypatch.setattr(fuzz.cli, "main", lambda argv: 1)
    assert fuzz.run_cli(["optimize"])[0] == "defect"
