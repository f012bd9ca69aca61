"""The measured default behind ``hso.optimize(method="auto")``: per (solver, convention, measured noise schedule,
NFE), which schedule sampled best in the committed quality results. A request takes the measured noise schedule
of its lambda space nearest to its own (`nearest_noise`: VP models by alpha at the noisy end, SD-like or
DDPM-like).

The candidates are the rows of `hso.methods` (`CANDIDATE_ORDER`): hso's search under each setting (`VARIANTS`: the
paper's, spacing "constrain", MEP p = 1, the DM-NonUniform objective), for convention "jump" also `PORTED` (the
"stop" search with its last point dropped), and the baselines of `hso.baselines`. For each measured cell (per noise
family the test beds of `benchmarks/quality/run.py`: exact denoisers of digits and of photograph patches, a trained
EDM-preconditioned network, and for VP a plain epsilon network, under SD's and DDPM's betas; RMSE against the
converged sample) every candidate's *worst* RMSE ratio to the cell's best schedule over the test beds is recorded,
and candidates are ranked by it (`hso.evaluation.report.derive_measured_rule`; ``python -m benchmarks.quality.run``
writes ``measured_rule.json`` and a test re-derives it from the committed results). A later candidate in
`CANDIDATE_ORDER` (hso's settings first, the baselines last) must be more than `TOLERANCE` better to rank above an
earlier one.

A cell is *supported* when its pick's worst ratio is at most `SUPPORT_RATIO`: the claim the README makes for it.
NFEs between or beyond the measured ones take the nearest measured NFE's ranking, and a sampler variant not measured
at that NFE the nearest variant measured there (`_nearest_cell`; not supported: not measured). So does a noise
schedule that is not one of the measured ones (`same_noise`: another lambda(t) or time domain, such as the cosine
VP schedule, which takes DDPM's ranking): its ranking is the nearest measured schedule's, no cell is measured or
supported for it, and the default tries that cell's blend first (`UNMEASURED_FIRST`, `default_order`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator, Mapping

import numpy as np

from .methods import BLEND, CANDIDATE_ORDER, PORTED, ported_applies
from .methods import SEARCH_SETTINGS as VARIANTS
from .schedules import as_schedule
from .solvers import SAMPLER_DEFAULTS, get_solver, sampler_label, sampler_options

__all__ = ["VARIANTS", "PORTED", "CANDIDATE_ORDER", "SUPPORT_RATIO", "TOLERANCE", "Pick", "measured_pick",
           "rule_table", "RULE_FILE", "ported_applies", "diffusers_convention",
           "nearest_noise", "nearest_sampler", "same_noise", "UNMEASURED_FIRST", "default_order", "SearchRule",
           "blend_pair"]

SUPPORT_RATIO = 1.1
TOLERANCE = 1.02
RULE_FILE = "measured_rule.json"
# solvers without their own measurements that take another's: Euler's step is DDIM's in other coordinates
SAME_AS = {"euler": "ddim"}
# `same_noise`: how far a model's half log-SNR may lie from a measured noise schedule's, at any time of its domain,
# for it to count as that schedule: rounding, not another schedule (a diffusers scheduler with SD's or DDPM's betas
# gives the presets' lambda exactly; the closest two distinct presets, DDPM's betas and the linear VP SDE, differ by
# 0.047 on their common domain)
SAME_NOISE_LAMBDA = 1e-3
# the candidate the default tries first on a noise schedule that was not measured (`Pick.order`): the nearest
# measured schedule's blend, two candidates' points mixed in lambda. A single pick is tuned to the measured schedule's
# time parametrisation and end points and can be far off elsewhere (up to 20x the best schedule on the cosine VP SDE,
# 123x on improved DDPM's cosine betas, with exact denoisers); the blend hedges between two. Chosen on the exact
# denoisers' held-out rows of the continuous VP SDEs (worst ratio 20.0x -> 3.9x for UniPC, 17.8x -> 4.8x for
# DPM-Solver++), then checked on the cosine betas (123x -> 6.9x) and on the trained network (7.5e4x -> 5.9x there,
# 10.7x -> 2.6x on the cosine VP SDE); `benchmarks/quality/README.md`, "On noise schedules that were not measured"
UNMEASURED_FIRST = BLEND


@dataclass(frozen=True)
class Pick:
    """The measured ranking for one request.

    Attributes:
        ranking: ``((candidate, worst ratio to the best schedule measured), ...)``, best first.
        nfe: the measured NFE the ranking comes from.
        measured: True when the request's own cell was measured: this NFE, this sampler variant and this noise
            schedule.
        noise: the measured noise schedule the ranking comes from (`nearest_noise`).
        sampler: the measured sampler variant it comes from (`nearest_sampler`, e.g. ``"unipc-bh2-o2"``);
            ``measured`` is False when that is not the requested one.
        noise_measured: whether the request's noise schedule is ``noise`` itself (`same_noise`); ``measured`` is
            False when not.
    """

    ranking: tuple[tuple[str, float], ...]
    nfe: int
    measured: bool
    noise: str = ""
    sampler: str = ""
    noise_measured: bool = True

    def order(self) -> tuple[tuple[str, float], ...]:
        """The order in which the default tries the candidates (`default_order`)."""
        return default_order(self.ranking, self.noise_measured)

    def supported(self, name: str) -> bool:
        """True when ``name`` was measured at this NFE within `SUPPORT_RATIO` of the best schedule on every bed."""
        return self.measured and dict(self.ranking).get(name, float("inf")) <= SUPPORT_RATIO


def default_order(ranking: Any, noise_measured: bool) -> tuple[tuple[str, float], ...]:
    """The order in which the default tries a cell's ranked candidates ``((name, worst ratio), ...)``: the measured
    ranking, except on a noise schedule that was not measured, where `UNMEASURED_FIRST` goes first (see there)."""
    ranking = tuple((str(name), float(ratio)) for name, ratio in ranking)
    if noise_measured:
        return ranking
    return (tuple(r for r in ranking if r[0] == UNMEASURED_FIRST)
            + tuple(r for r in ranking if r[0] != UNMEASURED_FIRST))


@lru_cache(maxsize=1)
def rule_table() -> dict[str, Any]:
    """The committed ``measured_rule.json`` (see the module docstring)."""
    return json.loads(resources.files("hso").joinpath(RULE_FILE).read_text(encoding="utf-8"))


class SearchRule(Mapping):
    """Method "hso"'s settings, ``(solver, convention, lambda space) -> setting relative to the paper's`` (only where
    one measured better than the paper's; `hso.evaluation.report.derive_auto_rule`), read from the committed
    ``measured_rule.json`` on first use. Euler takes DDIM's jump settings: the same step in other coordinates, and
    the convention Euler runs in (`SAME_AS`)."""

    def _table(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        return _search_rule()

    def __getitem__(self, key: tuple[str, str, str]) -> dict[str, Any]:
        return dict(self._table()[key])

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"SearchRule({self._table()!r})"


@lru_cache(maxsize=1)
def _search_rule() -> dict[tuple[str, str, str], dict[str, Any]]:
    rows = {(r["solver"], r["convention"], r["space"]): dict(r["setting"]) for r in rule_table()["search_rule"]}
    for solver, same in SAME_AS.items():
        rows.update({(solver, "jump", space): setting for (s, conv, space), setting in list(rows.items())
                     if s == same and conv == "jump"})
    return rows


def _measured_solver(solver: str) -> str:
    """The solver whose measurements a request takes: its own, or the one it is the same step as (`SAME_AS`)."""
    name = get_solver(solver).name
    return SAME_AS.get(name, name)


def nearest_noise(rows: list[dict[str, Any]], schedule: Any) -> list[dict[str, Any]]:
    """The rows of the measured noise schedule nearest to ``schedule`` among those of its lambda space: the one
    whose half log-SNR at the top of the time domain, lambda(t_max), is closest (SD's betas -2.68, DDPM's -5.05;
    a zero-terminal-SNR model, lambda = -inf, takes the lowest). Alpha at the noisy end is what changes the picks:
    a network's data prediction there carries its error times sigma / alpha."""
    rows = [r for r in rows if r["space"] == schedule.kind_name]
    tops = {r["noise"]: float(r["lambda_top"]) for r in rows}
    if len(tops) > 1:
        lam = float(schedule.lambda_(schedule.t_max))
        noise = (min(tops, key=lambda n: (abs(tops[n] - lam), n)) if math.isfinite(lam)
                 else min(tops, key=lambda n: (tops[n], n)))
        rows = [r for r in rows if r["noise"] == noise]
    return rows


@lru_cache(maxsize=16)
def _measured_schedule(name: str) -> Any:
    return as_schedule(name)


_SAME_NOISE: dict[tuple, bool] = {}  # `same_noise`'s answers by schedule content (every default request asks)


def same_noise(schedule: Any, noise: str) -> bool:
    """Whether a noise schedule is the measured preset ``noise``: the same family kind and time domain, and a half
    log-SNR within `SAME_NOISE_LAMBDA` of it at 257 times across the domain (SD 1.x, SD 2.x and SDXL share SD's
    betas; a diffusers scheduler built with a preset's betas is that preset)."""
    key = (schedule.content_key(), schedule.t_min, schedule.t_max, noise)
    known = _SAME_NOISE.get(key)
    if known is None:
        if len(_SAME_NOISE) >= 256:
            _SAME_NOISE.clear()
        known = _SAME_NOISE[key] = _same_noise(schedule, noise)
    return known


def _same_noise(schedule: Any, noise: str) -> bool:
    ref = _measured_schedule(noise)
    if schedule.kind_name != ref.kind_name or abs(schedule.t_min - ref.t_min) > 1e-9 \
            or abs(schedule.t_max - ref.t_max) > 1e-9:
        return False
    t = np.linspace(schedule.t_min, schedule.t_max, 257)
    a, b = schedule.lambda_(t), ref.lambda_(t)
    return bool(np.all(np.isclose(a, b, rtol=0.0, atol=SAME_NOISE_LAMBDA)))


def _nearest_nfe(rows: list[dict[str, Any]], nfe: int) -> dict[str, Any]:
    return min(rows, key=lambda r: (abs(r["nfe"] - nfe), -r["nfe"]))  # nearest measured NFE; ties: the larger


def nearest_sampler(rows: list[dict[str, Any]], solver: str, options: Any = None) -> tuple[list[dict[str, Any]], bool]:
    """The rows of one solver's measured variant nearest to the requested one (``options``, see
    `hso.solvers.sampler_options`), and whether it is the requested one: the same UniPC variant (bh1 / bh2) first,
    then the nearest order, then the solver's default options."""
    want = sampler_options(solver, options)
    label = sampler_label(solver, want)
    rows = [r for r in rows if r["solver"] == solver]
    measured = {r["sampler"]: r["options"] for r in rows}
    if not measured or label in measured:
        return [r for r in rows if r["sampler"] == label], bool(measured)

    def distance(name: str) -> tuple:
        o = measured[name]
        return (o.get("variant") != want.get("variant"), abs(o.get("order", 0) - want.get("order", 0)),
                o != SAMPLER_DEFAULTS.get(solver, {}), name)
    near = min(measured, key=distance)
    return [r for r in rows if r["sampler"] == near], False


def _nearest_cell(rows: list[dict[str, Any]], solver: str, options: Any, schedule: Any, nfe: int
                  ) -> tuple[dict[str, Any] | None, bool, bool]:
    """The measured row nearest to a request, and whether it is the request's own cell: the solver's rows on the
    nearest measured noise schedule (`nearest_noise`), then the nearest NFE measured with any of its variants, then
    the nearest variant measured at that NFE (`nearest_sampler`). The NFE comes first: a schedule's regime changes
    more with the NFE than with the variant (a variant measured at NFE 4-10 only takes the default variant's ranking
    at NFE 20, not its own NFE-10 one). Also whether it is the request's own cell (that NFE, that variant and that
    noise schedule), and whether its noise schedule is the request's (`same_noise`)."""
    sched = as_schedule(schedule)
    rows = nearest_noise([r for r in rows if r["solver"] == solver], sched)
    if not rows:
        return None, False, False
    at = _nearest_nfe(rows, nfe)["nfe"]
    rows, exact = nearest_sampler([r for r in rows if r["nfe"] == at], solver, options)
    own_noise = same_noise(sched, rows[0]["noise"])
    return rows[0], exact and at == nfe and own_noise, own_noise


def measured_pick(solver: str, convention: str, schedule: Any, nfe: int, options: Any = None) -> Pick | None:
    """The ranking for a solver (with its sampler ``options``, `hso.solvers.sampler_options`; default: the
    solver's), convention, noise schedule (a `NoiseSchedule` or a preset name; the measured one nearest to it,
    `nearest_noise`) and NFE; None where nothing was measured for that solver and convention in its lambda space.
    An unmeasured cell takes the nearest measured one's ranking (`_nearest_cell`; not ``measured``)."""
    solver = _measured_solver(solver)
    row, exact, own_noise = _nearest_cell([r for r in rule_table()["rules"] if r["convention"] == convention], solver,
                                          options, schedule, nfe)
    if row is None:
        return None
    return Pick(tuple((name, float(ratio)) for name, ratio in row["ranking"]), int(row["nfe"]), exact,
                str(row["noise"]), str(row["sampler"]), own_noise)


def _blend_row(solver: str, convention: str, schedule: Any, nfe: int) -> dict[str, Any] | None:
    """The measured blend cell a request takes (`blend_pair`, `blend_weight`): the solver's (any variant) rows for
    the convention, at the nearest measured noise schedule, then the nearest NFE; None where none was measured."""
    rows = nearest_noise([r for r in rule_table().get("blend_pairs", [])
                          if (r["solver"], r["convention"]) == (_measured_solver(solver), convention)],
                         as_schedule(schedule))
    return _nearest_nfe(rows, nfe) if rows else None


def blend_pair(solver: str, convention: str, schedule: Any, nfe: int) -> tuple[tuple[str, str], int, str] | None:
    """The two candidates `hso.methods.BLEND` mixes for a solver (any variant: the pair is chosen over all of the
    solver's measured variants together, so one blend schedule serves them all), convention, noise schedule (the
    measured one nearest to it, `nearest_noise`) and NFE (the nearest measured one): ``((first, second), measured
    NFE, measured noise)``, or None where nothing was measured for that solver and convention in its lambda space.
    The pair is derived from the committed results by `hso.evaluation.report.derive_blend_pairs`."""
    row = _blend_row(solver, convention, schedule, nfe)
    if row is None:
        return None
    first, second = row["pair"]
    return (str(first), str(second)), int(row["nfe"]), str(row["noise"])


def blend_weight(solver: str, convention: str, schedule: Any, nfe: int) -> float:
    """Where `hso.methods.BLEND` puts its points between its pair (`blend_pair`, the same measured cell): 0 at the
    first schedule, 1 at the second, in lambda (`hso.optimize.blend_points`). The midpoint, 0.5, except in the cells
    where a weight sweep measured a better one (`hso.evaluation.report.derive_blend_weights`); 0.5 where no pair
    was measured."""
    row = _blend_row(solver, convention, schedule, nfe)
    return 0.5 if row is None else float(row.get("weight", 0.5))


def diffusers_convention(solver: str, schedule: Any, nfe: int, options: Any = None) -> tuple[str, bool]:
    """The convention `hso.diffusers.optimize_pipeline` installs by default for a solver (with its sampler
    ``options``), noise schedule (a `NoiseSchedule` or a preset name) and NFE: ``("jump" or "stop", measured)``.
    "stop" (ending with a regular step to the schedule's last point, near the model's t_min; diffusers runs it with
    ``final_sigmas_type="sigma_min"``) only where the committed results measured it
    better than "jump" on every test bed of the nearest measured noise schedule
    (`hso.evaluation.report.derive_diffusers_convention`); other NFEs and variants take the nearest measured one's
    choice (``measured`` False); unmeasured solvers keep diffusers' own "jump"."""
    row, exact, _ = _nearest_cell(rule_table().get("diffusers", []), _measured_solver(solver), options, schedule,
                                  nfe)
    if row is None:
        return "jump", False
    return str(row["convention"]), exact
