"""The measured default behind ``hso.optimize(method="auto")``: per (solver, convention, lambda space, NFE), which
schedule sampled best in the committed quality results.

The candidates are hso's search under each setting (`VARIANTS`: the paper's, spacing "constrain", MEP p = 1, the
DM-NonUniform objective), for convention "jump" also `PORTED` (the "stop" search with its last point dropped), and
the baselines of `hso.baselines`. For each measured cell (per noise family the test beds of
`benchmarks/quality/run.py`: exact denoisers of digits and of photograph patches, a trained EDM-preconditioned
network, and for VP a plain epsilon network, under SD's and DDPM's betas; RMSE against the converged sample) every
candidate's *worst* RMSE ratio to the cell's best schedule over the test beds is recorded, and candidates are
ranked by it (`hso.evaluation.report.derive_measured_rule`; ``python -m benchmarks.quality.run`` writes
``measured_rule.json`` and a test re-derives it from the committed results). A later candidate in `CANDIDATE_ORDER`
(hso's settings first, the baselines last) must be more than `TOLERANCE` better to rank above an earlier one.

A cell is *supported* when its pick's worst ratio is at most `SUPPORT_RATIO`: the claim the README makes for it.
NFEs between or beyond the measured ones take the nearest measured NFE's ranking (not supported: not measured).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from .baselines import BASELINES
from .solvers import get_solver

__all__ = ["VARIANTS", "PORTED", "CANDIDATE_ORDER", "SUPPORT_RATIO", "TOLERANCE", "Pick", "measured_pick",
           "rule_table", "RULE_FILE", "ported_applies", "diffusers_convention"]

# hso's search settings the measurement compares (the evaluation's method names)
VARIANTS: dict[str, dict[str, Any]] = {"hso_paper": {}, "hso_constrain": {"spacing": "constrain"},
                                       "hso_p1": {"p": 1.0}, "hso_dmn": {"objective": "dmn"}}
# for convention "jump": the "stop" schedule of method "hso" for the same NFE with its last point (t_eps) dropped,
# so the sampler evaluates at the stop schedule's first NFE points and then jumps to sigma 0
PORTED = "hso_stop_ported"
CANDIDATE_ORDER = tuple(VARIANTS) + (PORTED,) + tuple(BASELINES)
SUPPORT_RATIO = 1.1
TOLERANCE = 1.02
RULE_FILE = "measured_rule.json"
# solvers without their own measurements that take another's: Euler's step is DDIM's in other coordinates
SAME_AS = {"euler": "ddim"}


def ported_applies(solver: str, convention: str) -> bool:
    """Whether `PORTED` exists for this solver and convention: "jump", with one network evaluation per step (the
    "stop" schedule's first NFE points are then exactly the jump schedule's)."""
    return convention == "jump" and get_solver(solver).evals_per_step == 1


@dataclass(frozen=True)
class Pick:
    """The measured ranking for one request.

    Attributes:
        ranking: ``((candidate, worst ratio to the best schedule measured), ...)``, best first.
        nfe: the measured NFE the ranking comes from.
        measured: True when that is the requested NFE itself.
    """

    ranking: tuple[tuple[str, float], ...]
    nfe: int
    measured: bool

    def supported(self, name: str) -> bool:
        """True when ``name`` was measured at this NFE within `SUPPORT_RATIO` of the best schedule on every bed."""
        return self.measured and dict(self.ranking).get(name, float("inf")) <= SUPPORT_RATIO


@lru_cache(maxsize=1)
def rule_table() -> dict[str, Any]:
    """The committed ``measured_rule.json`` (see the module docstring)."""
    return json.loads(resources.files("hso").joinpath(RULE_FILE).read_text(encoding="utf-8"))


def measured_pick(solver: str, convention: str, space: str, nfe: int) -> Pick | None:
    """The ranking for a solver, convention, lambda space ("vp", "ve", "flow") and NFE; None where nothing was
    measured for that solver and convention in that space."""
    solver = SAME_AS.get(solver, solver)
    rows = [r for r in rule_table()["rules"]
            if (r["solver"], r["convention"], r["space"]) == (solver, convention, space)]
    if not rows:
        return None
    row = min(rows, key=lambda r: (abs(r["nfe"] - nfe), -r["nfe"]))  # nearest measured NFE; ties: the larger
    return Pick(tuple((name, float(ratio)) for name, ratio in row["ranking"]), int(row["nfe"]), row["nfe"] == nfe)


def diffusers_convention(solver: str, space: str, nfe: int) -> tuple[str, bool]:
    """The convention `hso.diffusers.optimize_pipeline` installs by default for a solver, lambda space and NFE:
    ``("jump" or "stop", measured)``. "stop" (ending at the model's t_min, run by diffusers with
    ``final_sigmas_type="sigma_min"``) only where the committed results measured it better than "jump" on every
    test bed of the space (`hso.evaluation.report.derive_diffusers_convention`); other NFEs take the nearest
    measured NFE's choice (``measured`` False); unmeasured solvers keep diffusers' own "jump"."""
    solver = SAME_AS.get(solver, solver)
    rows = [r for r in rule_table().get("diffusers", []) if (r["solver"], r["space"]) == (solver, space)]
    if not rows:
        return "jump", False
    row = min(rows, key=lambda r: (abs(r["nfe"] - nfe), -r["nfe"]))
    return str(row["convention"]), row["nfe"] == nfe
