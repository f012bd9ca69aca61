"""The schedule methods: one table, name -> what produces it -> where it applies.

Every schedule the measured default ranks, the evaluation scores and `hso.calibrate` tries is one row here:

* ``"default"``: what `hso.optimize` returns for a method (``hso``: ``method="auto"``, the measured best;
  ``hso_search``: ``method="hso"``);
* ``"search"``: hso's search under one setting, given relative to the paper's procedure (``hso_paper``; the others
  change one setting: ``hso_constrain`` spacing "constrain", ``hso_p1`` MEP with p = 1, ``hso_dmn`` the
  DM-NonUniform objective);
* ``"ported"``: ``hso_stop_ported``, method "hso"'s "stop" search for the same NFE with its last point dropped, for
  convention "jump" (evaluate at the stop schedule's first NFE points, then jump to sigma 0);
* ``"baseline"``: the usual schedules of `hso.baselines`;
* ``"blend"``: two other candidates' points mixed in lambda (half log-SNR), the pair the committed results chose per
  cell (`hso.measured.blend_pair`), at the midpoint or, where a sweep measured a better one, at the cell's weight
  (`hso.measured.blend_weight`): where the test beds disagree on which schedule is best, a schedule between the two
  that cover them.

`hso.optimize.method_schedule` makes a row's points; `hso.optimize.plan` reads the rows when it walks the measured
ranking; `hso.measured` ranks `CANDIDATE_ORDER`; the evaluation scores `DEFAULT_METHODS`. This module is data: it
imports no search.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .baselines import BASELINES
from .solvers import get_solver

__all__ = ["Method", "SCHEDULE_METHODS", "SEARCH_SETTINGS", "PORTED", "BLEND", "BLEND_PARTNERS", "CANDIDATE_ORDER",
           "DEFAULT_METHODS",
           "CALIBRATE_CANDIDATES", "KINDS",
           "ported_applies"]

KINDS = ("default", "search", "ported", "baseline", "blend")


@dataclass(frozen=True)
class Method:
    """One schedule method.

    Attributes:
        name: the name the measured rule, the evaluation and the results use.
        kind: one of `KINDS`.
        options: the `hso.optimize` arguments of its search (a "search" row's relative to the paper's,
            ``method="paper"``; the "ported" row's is run with convention "stop"); empty for a baseline.
        not_on_ve: why the method does not apply to VE/EDM noise schedules ("" where it does).
        calibrate: the method's place among `hso.calibrate`'s candidates (None: not one). Where two candidates give
            the same points, calibrate keeps the earlier name (on EDM, logSNR before time_uniform).
    """

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    not_on_ve: str = ""
    calibrate: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown method kind {self.kind!r}; known: {', '.join(KINDS)}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def setting(self) -> dict[str, Any]:
        """A search's setting relative to the paper's (its options without ``method``); {} for the paper's own."""
        return {k: v for k, v in self.options.items() if k != "method"}

    def not_applicable(self, space: str, solver: str, convention: str) -> str:
        """Why the method does not apply to a lambda space (`NoiseSchedule.kind_name`), solver and convention; ""
        where it does (a baseline's own limits, such as integer spacings, are checked when it is made)."""
        if self.not_on_ve and space == "ve":
            return self.not_on_ve
        if self.kind == "ported" and not ported_applies(solver, convention):
            return (f"{self.name} is a schedule for convention 'jump' of a solver with one evaluation per step (a "
                    "'stop' schedule ported)")
        return ""


def ported_applies(solver: str, convention: str) -> bool:
    """Whether `PORTED` exists for this solver and convention: "jump", with one network evaluation per step (the
    "stop" schedule's first NFE points are then exactly the jump schedule's)."""
    return convention == "jump" and get_solver(solver).evals_per_step == 1


PORTED = "hso_stop_ported"
BLEND = "blend"

# the order is the evaluation's (its tables list methods so)
_ROWS = [
    Method("hso", "default", {"method": "auto"}),
    Method("hso_search", "default", {"method": "hso"}),
    Method("hso_paper", "search", {"method": "paper"}),
    Method("hso_dmn", "search", {"method": "paper", "objective": "dmn"}, calibrate=2),
    Method("hso_constrain", "search", {"method": "paper", "spacing": "constrain"}, calibrate=0),
    Method("hso_p1", "search", {"method": "paper", "p": 1.0},
           not_on_ve="MEP with p = 1 is already hso's default for VE/EDM schedules", calibrate=1),
    Method(PORTED, "ported", {"method": "hso"}, calibrate=10),
] + [Method(name, "baseline", calibrate=3 + ("logSNR", "time_uniform", "time_quadratic", "edm_rho7", "trailing",
                                             "leading", "ays").index(name))
     for name in BASELINES] + [Method(BLEND, "blend", calibrate=11)]
SCHEDULE_METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ROWS})

# hso's search settings the measured rule compares, relative to the paper's, in the rule's order of preference
# (a later one must be more than the rule's tolerance better to rank above an earlier one)
SEARCH_SETTINGS: Mapping[str, dict[str, Any]] = MappingProxyType(
    {name: SCHEDULE_METHODS[name].setting for name in ("hso_paper", "hso_constrain", "hso_p1", "hso_dmn")})
# every candidate of the measured rule, in its order of preference: hso's settings, the ported search, the baselines,
# the blend of two of them (last: it must measure better than each of the others)
CANDIDATE_ORDER = tuple(SEARCH_SETTINGS) + (PORTED,) + tuple(m.name for m in _ROWS if m.kind == "baseline") + (BLEND,)
# what a blend may mix: every other candidate
BLEND_PARTNERS = CANDIDATE_ORDER[:-1]
# what the evaluation scores by default: every row
DEFAULT_METHODS = tuple(SCHEDULE_METHODS)
# `hso.calibrate`'s candidates besides its incumbent (the default), in its order
CALIBRATE_CANDIDATES = tuple(sorted((m.name for m in _ROWS if m.calibrate is not None),
                                    key=lambda n: SCHEDULE_METHODS[n].calibrate))
