"""An evaluation's results (`Evaluation`) and their reports: markdown tables, JSON, PNG plots, the README's
quality summary and the measured rules derived from them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..baselines import BASELINES
from ..measured import CANDIDATE_ORDER, TOLERANCE, VARIANTS
from ..methods import BLEND_PARTNERS
from ..schedules import PRESETS, NoiseSchedule, kind_name_of_family
from ..solvers import sampler_label, sampler_options

__all__ = ["Evaluation", "markdown_table", "save", "plot_error_vs_nfe", "plot_schedules", "summary_markdown",
           "derive_auto_rule", "derive_measured_rule", "derive_blend_pairs", "derive_diffusers_convention", "noise_class", "valid_row", "sampler_of",
           "RULE_VARIANTS", "RULE_TOLERANCE", "BASELINE_NAMES", "SEARCH_RULE_MAX_NFE", "RULE_METRIC"]

# the settings `method="hso"` chooses among, as evaluation methods (all relative to the paper's procedure)
RULE_VARIANTS = VARIANTS
# a variant replaces an earlier one only if its geometric-mean ratio is lower by more than this factor
RULE_TOLERANCE = TOLERANCE
# method "hso"'s settings are ranked on NFE up to this (the paper's range): beyond it every setting's t_eps box
# (0.01-0.03) leaves the same floor (the state at t_eps, or the final jump from it, is off by the noise still left
# there, which more steps do not remove), so those cells rank the settings by the floor, not by their spacing
SEARCH_RULE_MAX_NFE = 10
# the schedules "the best baseline" ranges over
BASELINE_NAMES = tuple(BASELINES)
# the rows' field every derived rule ranks by (`derive_measured_rule`, `derive_blend_pairs`,
# `derive_diffusers_convention`, and the blend-weight sweep): "rmse" over all samples, or "rmse_wc" over the
# well-conditioned ones (`hso.evaluation.conditioning`; the report measures what that would change)
RULE_METRIC = "rmse"

METRIC_NAMES = {"rmse": "RMSE vs the reference sample", "rmse_end": "RMSE vs the reference at the same end point",
                "rmse_wc": "RMSE vs the reference sample, well-conditioned samples only",
                "fd_pixel": "Frechet distance (pixels)", "fd_feature": "Frechet distance (classifier features)"}


@dataclass
class Evaluation:
    """Rows of measurements (one per testbed x schedule x solver x convention x NFE x method) and the settings.

    Each row: ``method``, ``solver``, ``solver_options``, ``convention`` (the one the schedule was made for and the
    sampler ran with), ``nfe``, ``nfe_spent`` (evaluations the sampler made), ``t`` (schedule points),
    ``timesteps`` (discrete models), ``rmse`` (against the reference solution's clean sample from the same noise: the
    primary metric), ``rmse_end`` (against the reference at the schedule's own last point: integration error only,
    which for "stop" ignores the noise left at t_eps), ``fd_pixel``, ``fd_feature``, ``variance_ratio``,
    ``out_of_range``; with ``evaluate(well_conditioned=True)`` also ``rmse_wc`` (the RMSE over the samples
    `conditioning` does not flag).
    """

    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def cells(self) -> list[tuple[str, str, int]]:
        """(solver, convention, nfe) cells in run order."""
        return list(dict.fromkeys((r["solver"], r["convention"], r["nfe"]) for r in self.rows))

    def best(self, metric: str = "rmse") -> dict[tuple[str, str, int], str]:
        """The method with the lowest `metric` in every cell."""
        out: dict[tuple[str, str, int], str] = {}
        for cell in self.cells():
            rows = [r for r in self.rows if (r["solver"], r["convention"], r["nfe"]) == cell]
            out[cell] = min(rows, key=lambda r: r[metric])["method"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": self.rows, "skipped": self.skipped}

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_json(cls, text: str) -> Evaluation:
        d = json.loads(text)
        return cls(d["rows"], d["meta"], d.get("skipped", []))

    def markdown(self, metric: str = "rmse") -> str:
        return markdown_table(self, metric)

    def save(self, out_dir: str | Path, *, plots: bool = True) -> list[Path]:
        """Write ``results.json``, ``table.md`` and (with matplotlib) ``error_vs_nfe.png``, ``schedules.png``."""
        return save(self, Path(out_dir), plots=plots)


def _title(ev: Evaluation) -> str:
    m = ev.meta
    return f"test bed `{m['testbed']}`, noise schedule `{m['schedule']['name']}` ({m['schedule']['family']})"


def ties_best(value: float, best: float, rel: float = 1e-9) -> bool:
    """Whether ``value`` is the best up to rounding: the same schedule measured in two runs (e.g. calibrate's pick
    and the candidate it picked) can differ in the last bits, and counts as a tie."""
    return value <= best * (1.0 + rel)


def markdown_table(ev: Evaluation, metric: str = "rmse") -> str:
    """One table per (solver, convention): methods x NFE, the best of each column in bold."""
    lines = [f"### {METRIC_NAMES.get(metric, metric)}: {_title(ev)}", "",
             f"{ev.meta['n_samples']} samples, seed {ev.meta['seed']}; lower is better; **bold** = best in the "
             "column.", ""]
    groups = list(dict.fromkeys((r["solver"], r["convention"]) for r in ev.rows))
    for solver, conv in groups:
        rows = [r for r in ev.rows if r["solver"] == solver and r["convention"] == conv]
        nfes = sorted({r["nfe"] for r in rows})
        methods = list(dict.fromkeys(r["method"] for r in rows))
        val = {(r["method"], r["nfe"]): r[metric] for r in rows}
        best = {n: min(val[(m, n)] for m in methods if (m, n) in val) for n in nfes}
        opts = rows[0]["solver_options"]
        optstr = f" ({', '.join(f'{k} {v}' for k, v in opts.items())})" if opts else ""
        lines += [f"**{solver}**{optstr}, convention `{conv}`", "",
                  "| method | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
                  "|---|" + "---:|" * len(nfes)]
        for m in methods:
            cells = []
            for n in nfes:
                v = val.get((m, n))
                cells.append("" if v is None else (f"**{v:.4g}**" if ties_best(v, best[n]) else f"{v:.4g}"))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    if ev.skipped:
        lines += ["Not applicable here: " + "; ".join(f"`{s['method']}` ({s['reason']})" for s in ev.skipped), ""]
    tm = ev.meta.get("teacher_metrics")
    if tm:
        lines += [f"Reference clean samples: FD pixels {tm['fd_pixel']:.4g}, FD features {tm['fd_feature']:.4g} "
                  f"(the floor at infinite NFE for this sample count).", ""]
    return "\n".join(lines)


def plot_error_vs_nfe(ev: Evaluation, path: Path, metric: str = "rmse") -> Path:
    """Error vs NFE, one panel per (solver, convention), one line per method (log scale)."""
    import matplotlib  # deferred: matplotlib is optional (the eval extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib is optional (the eval extra)

    groups = sorted(dict.fromkeys((r["solver"], r["convention"]) for r in ev.rows), key=lambda g: (g[1], 0))
    ncols = len({g[0] for g in groups})
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.ravel()[len(groups):]:
        ax.set_visible(False)
    for ax, (solver, conv) in zip(axes.ravel(), groups):
        rows = [r for r in ev.rows if r["solver"] == solver and r["convention"] == conv]
        for m in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["nfe"], r[metric]) for r in rows if r["method"] == m)
            style = "-o" if m.startswith("hso") else "--."
            ax.plot(*zip(*pts), style, label=m, lw=2 if m.startswith("hso") else 1)
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_title(f"{solver} ({conv})")
        ax.grid(alpha=0.3, which="both")
    for row in axes:
        row[0].set_ylabel(METRIC_NAMES.get(metric, metric))
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.suptitle(_title(ev).replace("`", ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_schedules(ev: Evaluation, path: Path, nfe: int | None = None) -> Path:
    """The schedules of every method at one NFE, in t (top) and lambda (bottom), one column per solver."""
    import matplotlib  # deferred: matplotlib is optional (the eval extra)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib is optional (the eval extra)

    nfe = nfe or sorted({r["nfe"] for r in ev.rows})[len({r["nfe"] for r in ev.rows}) // 2]
    sched = _schedule_of(ev.meta["schedule"])
    groups = list(dict.fromkeys((r["solver"], r["convention"]) for r in ev.rows))
    fig, axes = plt.subplots(2, len(groups), figsize=(4.6 * len(groups), 6.4), squeeze=False)
    for j, (solver, conv) in enumerate(groups):
        rows = [r for r in ev.rows if r["solver"] == solver and r["convention"] == conv and r["nfe"] == nfe]
        for r in rows:
            t = np.asarray(r["t"])
            style = "-o" if r["method"].startswith("hso") else "--."
            axes[0][j].plot(t, style, label=r["method"], ms=4)
            if isinstance(sched, NoiseSchedule):
                axes[1][j].plot(sched.lambda_(t), style, label=r["method"], ms=4)
        axes[0][j].set_title(f"{solver} ({conv}), NFE {nfe}")
        axes[0][j].set_ylabel("t")
        axes[1][j].set_ylabel("lambda = log(alpha / sigma)")
        axes[1][j].set_xlabel("point index")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(_title(ev).replace("`", ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _schedule_of(desc: dict):
    """Rebuild a preset's noise schedule from its description (None when it is not a preset)."""
    name = desc.get("name")
    if name in PRESETS:
        s = NoiseSchedule.preset(name)
        if s.describe() == desc:
            return s
    return None


def save(ev: Evaluation, out_dir: Path, *, plots: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "results.json", out_dir / "table.md"]
    written[0].write_text(ev.to_json(indent=1) + "\n")
    written[1].write_text("\n\n".join(markdown_table(ev, m) for m in ("rmse", "fd_feature")) + "\n")
    if plots:
        written.append(plot_error_vs_nfe(ev, out_dir / "error_vs_nfe.png"))
        written.append(plot_schedules(ev, out_dir / "schedules.png"))
    return written


def summary_markdown(evs: list[Evaluation], labels: list[str] | None = None, within: float = 1.05) -> str:
    """The README's quality summary, generated from committed results: per evaluation and method, how many
    solver x NFE cells it wins and is within ``within`` x the best RMSE, and hso's ratio to the best baseline."""
    lines = ["| results | cells | method | best RMSE in | within 5% of best in | worst ratio to best |",
             "|---|---:|---|---:|---:|---:|"]
    for k, ev in enumerate(evs):
        label = labels[k] if labels else f"{ev.meta['testbed']} / {ev.meta['schedule']['name']}"
        cells = ev.cells()
        best = {c: min(r["rmse"] for r in ev.rows if (r["solver"], r["convention"], r["nfe"]) == c) for c in cells}
        for m in dict.fromkeys(r["method"] for r in ev.rows):
            ratios = [r["rmse"] / best[(r["solver"], r["convention"], r["nfe"])] for r in ev.rows if r["method"] == m]
            wins = sum(1 for x in ratios if ties_best(x, 1.0))
            close = sum(1 for x in ratios if x <= within)
            lines.append(f"| {label} | {len(cells)} | {m} | {wins} | {close} | {max(ratios):.2f}x |")
    return "\n".join(lines)


def derive_auto_rule(evs: list[Evaluation]) -> tuple[dict[tuple[str, str, str], dict],
                                                    dict[tuple[str, str, str], dict]]:
    """The rule behind ``method="auto"``, derived from results: per (solver, convention, lambda space of the noise
    schedule), the geometric mean over all solver x NFE cells (NFE up to `SEARCH_RULE_MAX_NFE`) of all evaluations
    of each `RULE_VARIANTS` member's RMSE ratio to the cell's best variant; the rule takes the first variant in
    `RULE_VARIANTS` order (the paper's, then spacing "constrain", MEP p = 1, DM-NonUniform: from the paper's
    procedure to the costliest change) whose geometric mean is within `RULE_TOLERANCE` of the lowest. A variant that
    does not apply (p = 1 where it is already the family's default, VE) counts as the paper's row.

    The geometric mean rather than the count of cells won: the DM-NonUniform variant wins many cells by a little and
    loses some by several times; counting wins would pick it where its typical ratio is worse. The tolerance keeps
    the simpler setting where the two are within measurement noise of each other.

    Returns:
        (rule: key -> settings, only where they differ from the paper's;
         evidence: key -> {variant: (wins, geometric-mean ratio)}).
    """
    wins: dict[tuple[str, str, str], dict[str, list]] = {}
    for ev in evs:
        space = kind_name_of_family(ev.meta["schedule"]["family"])
        for cell in ev.cells():
            if sampler_of(ev, cell[0])[0] != cell[0] or cell[2] > SEARCH_RULE_MAX_NFE:
                continue  # another sampler variant (method "hso" is per solver), or beyond the paper's NFE range
            rows = {r["method"]: r["rmse"] for r in ev.rows if (r["solver"], r["convention"], r["nfe"]) == cell}
            if "hso_paper" not in rows:
                continue
            vals = {m: rows.get(m, rows["hso_paper"]) for m in RULE_VARIANTS}
            best = min(vals.values())
            acc = wins.setdefault(cell[:2] + (space,), {m: [0, []] for m in RULE_VARIANTS})
            for m, v in vals.items():
                acc[m][0] += ties_best(v, best)
                acc[m][1].append(v / best)
    rule, evidence = {}, {}
    for key, acc in wins.items():
        ev_k = {m: (int(w), float(np.exp(np.mean(np.log(r))))) for m, (w, r) in acc.items()}
        lowest = min(g for _, g in ev_k.values())
        winner = next(m for m, (_, g) in ev_k.items() if g <= lowest * RULE_TOLERANCE)
        evidence[key] = ev_k
        if RULE_VARIANTS[winner]:
            rule[key] = dict(RULE_VARIANTS[winner])
    return rule, evidence


def _cell_ratios(evs: list[Evaluation], names: tuple[str, ...], sampler: Callable[[Evaluation, str], str],
                 metric: str = RULE_METRIC) -> tuple[dict[tuple, list[dict[str, float]]], dict[str, float]]:
    """Per (``sampler(ev, solver)``, convention, lambda space, measured noise schedule, NFE), one dict per
    evaluation of that cell: each of ``names`` measured there (valid rows only) -> its RMSE ratio to the best of
    them (``metric``: the rows' field to compare, ``"rmse_wc"`` for the well-conditioned samples only); cells
    without a baseline row are left out. Also each measured noise schedule's lambda(t_max)."""
    cells: dict[tuple, list[dict[str, float]]] = {}
    tops: dict[str, float] = {}
    for ev in evs:
        space = kind_name_of_family(ev.meta["schedule"]["family"])
        noise, tops[noise] = noise_class(ev)
        for solver, conv, nfe in ev.cells():
            rows = {r["method"]: r[metric] for r in ev.rows
                    if (r["solver"], r["convention"], r["nfe"]) == (solver, conv, nfe) and valid_row(r)}
            if not any(m in rows for m in BASELINE_NAMES):
                continue
            best = min(rows[m] for m in names if m in rows)
            cells.setdefault((sampler(ev, solver), conv, space, noise, nfe), []).append(
                {m: rows[m] / best for m in names if m in rows})
    return cells, tops


def derive_measured_rule(evs: list[Evaluation], metric: str = RULE_METRIC) -> list[dict]:
    """The table behind ``method="auto"`` (`hso.measured`), derived from results: per (solver, convention, measured
    noise schedule (`noise_class`), NFE), every candidate of `hso.measured.CANDIDATE_ORDER` measured in that cell of
    every evaluation on that noise schedule, ranked by its worst RMSE ratio to the cell's best schedule (the best of
    all candidates measured there, `valid_row`) over those evaluations: the pick minimises the largest regret over
    the test beds. A candidate ranks
    above an earlier one in `CANDIDATE_ORDER` only when its worst ratio is lower by more than `RULE_TOLERANCE`
    (so hso's own search is kept where a baseline is not clearly better). ``metric``: the rows' field the ratios
    compare (`RULE_METRIC`; the report also ranks by ``"rmse_wc"``).

    Returns:
        ``[{"solver", "convention", "space", "noise", "lambda_top", "nfe", "ranking": [[candidate, worst ratio],
        ...]}]``, sorted by key.
    """
    samplers: dict[str, tuple[str, dict]] = {}

    def label(ev: Evaluation, solver: str) -> str:
        name, options = sampler_of(ev, solver)
        samplers[name] = (solver, options)
        return name

    cells, tops = _cell_ratios(evs, CANDIDATE_ORDER, label, metric)
    out = []
    for key in sorted(cells):
        per_bed = cells[key]
        common = [m for m in CANDIDATE_ORDER if all(m in bed for bed in per_bed)]
        worst = {m: max(bed[m] for bed in per_bed) for m in common}
        ranking: list[str] = []
        left = list(common)
        while left:  # repeatedly: the lowest worst ratio, or an earlier candidate within the tolerance of it
            low = min(worst[m] for m in left)
            pick = next(m for m in left if worst[m] <= low * RULE_TOLERANCE)
            ranking.append(pick)
            left.remove(pick)
        out.append({"solver": samplers[key[0]][0], "sampler": key[0], "options": samplers[key[0]][1],
                    "convention": key[1], "space": key[2], "noise": key[3],
                    "lambda_top": round(tops[key[3]], 6), "nfe": int(key[4]),
                    "ranking": [[m, round(float(worst[m]), 6)] for m in ranking]})
    return out


def derive_blend_pairs(evs: list[Evaluation], metric: str = RULE_METRIC) -> list[dict]:
    """The pair `hso.methods.BLEND` mixes, derived from results: per (solver, convention, measured noise schedule,
    NFE), over every evaluation of that cell (all of the solver's sampler variants together, so that one blend
    schedule serves them all), the two `BLEND_PARTNERS` whose geometric mean of RMSE ratios to the cell's best
    partner, sqrt(r_a r_b), has the lowest worst case. That is what a blend would measure if the log of the error
    were linear between the two schedules: the pair is chosen so that where one of them fails, the other does not,
    and neither fails badly where the other is best. The blend's own rows do not enter (no circularity: the pairs
    come from the other candidates' results only).

    Returns:
        ``[{"solver", "convention", "space", "noise", "lambda_top", "nfe", "pair": [first, second], "proxy": worst
        sqrt(r_a r_b)}]``, sorted by key; the pair in `BLEND_PARTNERS` order.
    """
    cells, tops = _cell_ratios(evs, BLEND_PARTNERS, lambda ev, solver: solver, metric)
    out = []
    for key in sorted(cells):
        per_bed = cells[key]
        common = [m for m in BLEND_PARTNERS if all(m in bed for bed in per_bed)]
        if len(common) < 2:
            continue
        proxy, a, b = min(((max(float(np.sqrt(bed[a] * bed[b])) for bed in per_bed), a, b)
                           for i, a in enumerate(common) for b in common[i + 1:]), key=lambda c: c[0])
        out.append({"solver": key[0], "convention": key[1], "space": key[2], "noise": key[3],
                    "lambda_top": round(tops[key[3]], 6), "nfe": int(key[4]), "pair": [a, b],
                    "proxy": round(proxy, 6)})
    return out


def derive_blend_weights(summary: list[dict], weights: tuple[float, ...], tolerance: float = RULE_TOLERANCE
                         ) -> list[dict]:
    """The weight `hso.methods.BLEND` uses per cell, derived from a weight sweep
    (`benchmarks/quality/blend_weights.py`):
    per (solver, convention, noise, NFE) and sampler variant of the solver, each swept weight's worst RMSE ratio over
    the rule beds, and the best other candidate's (``{"solver", "convention", "noise", "nfe", "samplers": {label:
    {"worst": [per weight], "best_other": x}}}``). What a weight gives a variant is the better of its blend and the
    best other candidate, R_s(w) = min(worst_s(w), best_other_s): the measured default takes the blend only where it
    is better. The weight is the one with the lowest geometric mean of R_s over the variants (one blend schedule
    serves them all) among those that leave no variant more than ``tolerance`` worse than the midpoint does; the
    midpoint (0.5) stays unless that mean is lower by more than ``tolerance``.

    Returns:
        ``[{"solver", "convention", "noise", "nfe", "weight"}]`` for every cell of ``summary``.
    """
    mid = weights.index(0.5)
    out = []
    for cell in summary:
        per = [[min(w, v["best_other"]) for w in v["worst"]] for v in cell["samplers"].values()]
        score = [float(np.exp(np.mean(np.log([r[i] for r in per])))) for i in range(len(weights))]
        safe = [i for i in range(len(weights)) if all(r[i] <= tolerance * r[mid] for r in per)]
        best = min(safe, key=lambda i: (score[i], abs(weights[i] - 0.5)))
        weight = weights[best] if score[best] * tolerance < score[mid] else 0.5
        out.append({"solver": cell["solver"], "convention": cell["convention"], "noise": cell["noise"],
                    "nfe": cell["nfe"], "weight": weight})
    return out


def sampler_of(ev: Evaluation, solver: str) -> tuple[str, dict]:
    """The sampler variant an evaluation ran ``solver`` with: (`hso.solvers.sampler_label`, its options)."""
    opts = next((r.get("solver_options") for r in ev.rows if r["solver"] == solver), None)
    opts = sampler_options(solver) if opts is None else dict(opts)  # rows without options ran the defaults
    return sampler_label(solver, opts), opts


def valid_row(row: dict) -> bool:
    """Whether a row's schedule is one the model can run: on a discrete model, integer timesteps strictly
    decreasing. The evaluation samples a baseline at its continuous points, but a model conditioned on integer
    timesteps cannot tell two that round alike apart (logSNR or EDM rho = 7 at NFE 50 on SD), `hso.optimize` passes
    such a candidate over, and the rules neither rank it nor measure the others against it."""
    ts = row.get("timesteps")
    return ts is None or bool(np.all(np.diff(np.asarray(ts)) < 0))


def noise_class(ev: Evaluation) -> tuple[str, float]:
    """The measured noise schedule an evaluation ran on, as the measured rule keys it: its name, and its half
    log-SNR at the top of the time domain, lambda(t_max) (what tells SD's betas, alpha(t_max) = 0.068, from DDPM's,
    0.0064; `hso.measured` maps a request to the measured schedule of its space with the nearest value)."""
    sched = _schedule_of(ev.meta["schedule"])
    if sched is None:
        raise ValueError(f"evaluation on a noise schedule that is not a preset: {ev.meta['schedule']}")
    return sched.name, float(sched.lambda_(sched.t_max))


def derive_diffusers_convention(evs: list[Evaluation], rules: list[dict] | None = None,
                                metric: str = RULE_METRIC) -> list[dict]:
    """What `hso.diffusers.optimize_pipeline` installs by default, derived from results: per (solver, measured noise
    schedule (`noise_class`), NFE) measured in both conventions, the default's "jump" schedule (NFE evaluations,
    then diffusers' step to sigma 0) or its "stop" schedule (a regular step to its last point, near t_min, where
    the sample keeps that noise; diffusers runs it with ``final_sigmas_type="sigma_min"``).
    Each is scored on every evaluation of the space by its RMSE ratio to the best schedule of *either* convention
    in that evaluation (both are measured against the same clean reference), and the one with the lower worst ratio
    over the evaluations wins; "stop" replaces diffusers' own "jump" only when lower by more than `RULE_TOLERANCE`.

    Args:
        evs: the evaluations.
        rules: the measured table (`derive_measured_rule` of ``evs`` when None): its first-ranked candidate per cell
            is the default's schedule.
        metric: the rows' field the ratios compare (`RULE_METRIC`).

    Returns:
        ``[{"solver", "sampler", "options", "space", "noise", "lambda_top", "nfe", "convention",
        "worst": {"jump": ratio, "stop": ratio}}]``, sorted by key.
    """
    rules = derive_measured_rule(evs, metric) if rules is None else rules
    first = {(r["sampler"], r["convention"], r["noise"], r["nfe"]): r["ranking"][0][0] for r in rules}
    tops = {r["noise"]: (r["space"], r["lambda_top"]) for r in rules}
    samplers = {r["sampler"]: (r["solver"], r["options"]) for r in rules}
    worst: dict[tuple[str, str, int], dict[str, float]] = {}
    for ev in evs:
        noise = noise_class(ev)[0]
        by_cell: dict[tuple[str, str, int], dict[str, float]] = {}
        labels = {solver: sampler_of(ev, solver)[0] for solver, _, _ in ev.cells()}
        for r in ev.rows:
            if r["method"] in CANDIDATE_ORDER and valid_row(r):  # schedule methods the model can run
                by_cell.setdefault((labels[r["solver"]], r["convention"], r["nfe"]), {})[r["method"]] = r[metric]
        for (solver, conv, nfe), rows in by_cell.items():
            other = by_cell.get((solver, "jump" if conv == "stop" else "stop", nfe))
            pick = first.get((solver, conv, noise, nfe))
            if conv != "jump" or other is None or pick not in rows:
                continue
            pick_stop = first.get((solver, "stop", noise, nfe))
            if pick_stop not in other:
                continue
            best = min(min(rows.values()), min(other.values()))
            acc = worst.setdefault((solver, noise, nfe), {"jump": 0.0, "stop": 0.0})
            acc["jump"] = max(acc["jump"], rows[pick] / best)
            acc["stop"] = max(acc["stop"], other[pick_stop] / best)
    out = []
    for (solver, noise, nfe), w in sorted(worst.items()):
        conv = "stop" if w["stop"] * RULE_TOLERANCE < w["jump"] else "jump"
        out.append({"solver": samplers[solver][0], "sampler": solver, "options": samplers[solver][1],
                    "space": tops[noise][0], "noise": noise, "lambda_top": tops[noise][1],
                    "nfe": int(nfe), "convention": conv, "worst": {k: round(float(v), 6) for k, v in w.items()}})
    return out
