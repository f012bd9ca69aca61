"""backend="auto" by measurement: the batch rule derived from a GPU run's throughput table, and the searches that
follow it (a stand-in GPU backend, so that the dispatch itself runs on a machine without one)."""
import json
import math

import numpy as np
import pytest

import hso
from benchmarks import auto_rule as derive_rule
from hso import fast
from hso.fast import registry


def test_committed_rule_is_the_one_the_committed_table_gives():
    """hso/fast/auto_rule.json is re-derived, not edited: the committed H200 table and verified set give it."""
    text = derive_rule.TABLE.read_text()
    rule = derive_rule.derive(text, derive_rule.H200_VERIFIED, derive_rule.MARGIN, derive_rule.H200_EVIDENCE)
    assert json.loads(json.dumps(rule)) == registry.auto_rule()
    assert registry.auto_rule()["device"] == "NVIDIA H200"


def test_every_crossover_holds_in_the_table_and_nothing_smaller_would():
    """Independent reading of the table: from each crossover on, every measured batch is >= margin x cpp, and the
    measured batch just below it is not (else the crossover would be smaller)."""
    _, rows = derive_rule.parse_table(derive_rule.TABLE.read_text())
    rule = registry.auto_rule()
    margin = rule["margin"]
    checked = 0
    for backend, kernels in rule["rules"].items():
        for kernel, objectives in kernels.items():
            for objective, cells in objectives.items():
                for n, b in cells:
                    pts = sorted((r["B"], r["x_cpp"]) for r in rows if (r["backend"], r["kernel"], r["objective"],
                                                                          r["N"]) == (backend, kernel, objective, n))
                    assert pts, (backend, kernel, objective, n)
                    if b is None:
                        assert pts[-1][1] < margin
                        continue
                    assert all(x >= margin for bb, x in pts if bb >= b)
                    below = [x for bb, x in pts if bb < b]
                    assert not below or below[-1] < margin
                    checked += 1
    assert checked >= 8


def test_unverified_backends_and_objectives_are_never_in_the_rule():
    """Triton (failed on the H200) and CUDA's DM-NonUniform lower level (one case off by 5e-7) stay out of auto."""
    rules = registry.auto_rule()["rules"]
    assert set(rules) == {"cuda"}
    assert "dmn" not in rules["cuda"]["lower_solve"]
    assert registry.gpu_crossover("triton", "lower_solve", "mep", 10) == math.inf
    assert registry.gpu_crossover("cuda", "lower_solve", "dmn", 10) == math.inf


def test_crossover_between_and_outside_the_measured_n():
    assert registry.gpu_crossover("cuda", "lower_solve", "mep", 10) == 16384
    # between N = 5 (65536) and N = 10 (16384): the larger; between 10 and 20 (never): never
    assert registry.gpu_crossover("cuda", "objective_and_grad", "mep", 7) == 65536
    assert registry.gpu_crossover("cuda", "objective_and_grad", "mep", 15) == math.inf
    # outside the measured N (5 .. 20) nothing was measured: the CPU stays
    assert registry.gpu_crossover("cuda", "lower_solve", "mep", 4) == math.inf
    assert registry.gpu_crossover("cuda", "lower_solve", "mep", 21) == math.inf


def test_without_a_gpu_auto_is_the_cpu_choice_at_any_batch():
    cpu = fast.get_backend("auto").name
    for batch in (1, 60, 16384, 10 ** 9):
        assert fast.resolve_backend("auto", "lower_solve", "mep", 10, batch).name == cpu


FAKE_RULE = {"device": "stand-in", "margin": 1.5, "rules": {"fakegpu": {"lower_solve": {"mep": [[2, 200], [30, 200]]}}}}


@pytest.fixture
def fake_gpu(monkeypatch):
    """A backend on device "cuda" that runs the numpy reference (so its results differ in the last bits from cpp's
    and show which one ran), with a crossover of 200 candidates."""
    probes = []

    def probe():
        probes.append(1)
        return None

    def mep_loader():
        mep = registry.BACKENDS["reference"].mep()

        def counted(*args, **kwargs):
            calls.append(1)
            return mep(*args, **kwargs)
        return counted

    fake = registry.Backend("fakegpu", ("cuda",), 4, probe, mep_loader)
    monkeypatch.setitem(registry.BACKENDS, "fakegpu", fake)
    monkeypatch.setattr(registry, "auto_rule", lambda: FAKE_RULE)
    monkeypatch.delenv("HSO_BACKEND", raising=False)
    return probes


calls: list[int] = []  # objective calls of the stand-in GPU backend


def test_auto_goes_to_the_gpu_from_its_crossover_on(fake_gpu, monkeypatch):
    cpu = fast.get_backend("auto").name
    assert fast.resolve_backend("auto", "lower_solve", "mep", 8, 199).name == cpu
    assert fake_gpu == []  # below every crossover the GPU backend is not even probed
    assert fast.resolve_backend("auto", "lower_solve", "mep", 8, 200).name == "fakegpu"
    assert fast.resolve_backend("auto", "lower_solve", "dmn", 8, 10 ** 6).name == cpu  # no rule: CPU
    assert fast.resolve_backend("cpp" if cpu == "cpp" else "reference", "lower_solve", "mep", 8, 10 ** 6).name == cpu
    monkeypatch.setenv("HSO_BACKEND", cpu)  # the environment's choice wins over the rule
    assert fast.resolve_backend("auto", "lower_solve", "mep", 8, 10 ** 6).name == cpu


def test_lower_solve_auto_runs_where_the_rule_says(fake_gpu):
    s = hso.NoiseSchedule.preset("sd21")
    lower = fast.LowerSpec(n_intervals=6, gap=s.time_resolution, d_min=hso.d_min(6))
    obj = fast.objective_spec(lower, s.kind)
    psi = np.tile([7.0, 0.02, 0.98], (256, 1)) + np.linspace(0, 1e-3, 256)[:, None] * [1.0, 1.0, 0.0]
    calls.clear()
    big = fast.lower_solve(psi, s, lower, obj, backend="auto")
    assert calls
    assert np.array_equal(big.t, fast.lower_solve(psi, s, lower, obj, backend="fakegpu").t)
    calls.clear()
    small = fast.lower_solve(psi[:50], s, lower, obj, backend="auto")
    assert not calls
    cpu = fast.get_backend("auto").name
    assert np.array_equal(small.t, fast.lower_solve(psi[:50], s, lower, obj, backend=cpu).t)


def test_optimize_many_reports_the_backend_it_ran_and_matches_optimize_on_it(fake_gpu):
    """A round of `optimize_many` is one lower-level call, so the rule counts a round's candidates of one objective
    together. With popsize 5 one search is 15 candidates: two UniPC and two DDIM MEP searches (two groups of 30,
    each below a crossover of 50, together 60) run on the GPU backend and say so; a DM-NonUniform search (no rule)
    stays on the CPU; and every result equals `optimize` asked for the backend it reports by name: same bytes."""
    FAKE_RULE["rules"]["fakegpu"]["lower_solve"]["mep"] = [[2, 50], [30, 50]]
    try:
        cfgs = ([dict(nfe=6, solver=solver, method="paper", seed=seed) for solver in ("unipc", "ddim")
                 for seed in (1, 2)] + [dict(nfe=6, solver="unipc", objective="dmn", seed=1)])
        calls.clear()
        many = hso.optimize_many(cfgs, schedule="sd21", popsize=5, maxiter=4)
        assert calls  # the stand-in really ran
        cpu = fast.get_backend("auto").name
        assert [r.backend for r in many] == ["fakegpu"] * 4 + [cpu]
        for cfg, got in zip(cfgs, many):
            calls.clear()
            alone = hso.optimize("sd21", popsize=5, maxiter=4, **cfg)
            assert alone.backend == cpu and not calls  # 15 candidates: below the crossover
            named = hso.optimize("sd21", popsize=5, maxiter=4, backend=got.backend, **cfg)
            assert np.array_equal(got.t, named.t) and got.fitness == named.fitness
    finally:
        FAKE_RULE["rules"]["fakegpu"]["lower_solve"]["mep"] = [[2, 200], [30, 200]]
