"""Command line: ``hso optimize`` prints an optimised schedule, ``hso sweep`` a grid of them (JSON or CSV),
``hso plot`` draws them against baselines, ``hso evaluate`` scores schedules on real samplers, ``hso info`` says
what loaded.

Results go to stdout (a table or JSON), messages and errors to stderr; exit code 0 on success. Bad input (argparse's
own errors included) is one line ``hso: error: ...`` on stderr naming the option and its allowed values, exit code
2, nothing on stdout, and is refused before any search or sampling runs.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from typing import Any, Sequence

import numpy as np

from . import evaluation, library
from .baselines import MethodNotApplicable
from .check import check
from .diffusers import SUPPORTED, options_from_config
from .evaluation import DEFAULT_METHODS, QUICK
from .fast import show_config
from .measured import PORTED
from .methods import SCHEDULE_METHODS
from .optimize import (MAX_NFE, MAX_P, METHODS, SPACINGS, blend_weight_words, method_schedule, optimize,
                       optimize_many)
from .schedules import PRESETS, NoiseSchedule, diffusers_config
from .solvers import CONVENTIONS, SOLVERS, get_solver, sampler_label

__all__ = ["main"]

MAX_POPSIZE = 100_000  # the population (3 x popsize) lives in memory
MAX_SAMPLES = 100_000


class _BadInput(Exception):
    """Bad command-line input: main prints it as one line on stderr and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``hso: error: ... (see hso <command> --help)``, no usage block, no exit (main
    returns 2). Subparsers are of this class too (argparse makes them with the parent's class)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise _BadInput(f"{message} (see {self.prog} --help)")


def _int_option(lo: int, hi: int | None = None) -> Any:
    """An argparse type: an integer in [lo, hi] (or >= lo)."""
    rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {rng}, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {rng}, got {text!r}")
        return v
    return parse


def _float_option(positive: bool = False, hi: float | None = None) -> Any:
    """An argparse type: a finite number (NaN and inf refused), > 0 with ``positive``, <= ``hi``."""
    rng = f"a number in ({0 if positive else '-inf'}, {hi:g}]" if hi is not None else \
        "a finite number > 0" if positive else "a finite number"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text!r}") from None
        if not math.isfinite(v) or (positive and v <= 0) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text!r}")
        return v
    return parse


def _check_finite(results: Sequence[Any]) -> None:
    """Refuse to print a schedule whose objective or points are not finite (never a NaN / inf result)."""
    for r in results:
        values = (r.fitness, r.mep, r.penalty, *np.asarray(r.t).tolist(), *np.asarray(r.sigmas).tolist())
        if not all(math.isfinite(v) for v in values):
            raise RuntimeError(f"the {r.solver} NFE {r.nfe} schedule came out non-finite (objective {r.mep!r}, "
                               f"fitness {r.fitness!r}): the objective overflows float64 for these settings (a "
                               "large --p?); nothing was written")


def _search_options(parser: argparse.ArgumentParser) -> None:
    """--method / --objective / --spacing, shared by optimize, sweep and plot."""
    parser.add_argument("--method", default="auto", choices=METHODS,
                        help="auto (default: the measured best of hso's settings and the baselines), hso (the "
                             "measured best of hso's settings) or paper")
    parser.add_argument("--objective", default=None, choices=("mep", "dmn"),
                        help="default: the method's (mep, or dmn where the measured rule picks it)")
    parser.add_argument("--spacing", default=None, choices=SPACINGS, help="default: the method's")


def _grid_options(parser: argparse.ArgumentParser, nfe_default: str) -> None:
    """A grid of searches (preset, solvers, NFEs, conventions) and the search options, for sweep and plot."""
    parser.add_argument("--preset", default="sd21", help=f"model noise schedule: {', '.join(PRESETS)}")
    parser.add_argument("--solver", default="unipc", help="comma-separated sampler names")
    parser.add_argument("--nfe", default=nfe_default,
                        help=f"comma-separated NFEs (1-{MAX_NFE}) or ranges, e.g. 3-20 or 4-6,8")
    parser.add_argument("--convention", default=None, help="stop, jump or stop,jump (default: each solver's own)")
    _search_options(parser)


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="hso", description="Hierarchical Schedule Optimization for diffusion samplers")
    sub = ap.add_subparsers(dest="command")
    op = sub.add_parser("optimize", help="optimise a schedule (default: SD 2.1, UniPC, NFE 5)")
    source = op.add_mutually_exclusive_group()
    source.add_argument("--preset", default=None, help=f"model noise schedule: {', '.join(PRESETS)} (default sd21)")
    op.add_argument("--solver", default=None,
                    help=f"sampler: {', '.join(SOLVERS)} (default unipc; with --from-diffusers-config: the one "
                         "matching the scheduler class)")
    source.add_argument("--from-diffusers-config", default=None, metavar="PATH",
                        help="noise schedule from a local diffusers scheduler_config.json (or its folder) instead of "
                             "--preset; the convention then defaults to diffusers' 'jump'")
    op.add_argument("--order", type=_int_option(1, 4), default=None,
                    help="the sampler's multistep order (DPM-Solver++ 1-3: 2M, 3M; UniPC 1-3; default: the solver's, "
                         "or the scheduler config's solver_order)")
    op.add_argument("--variant", default=None, choices=("bh1", "bh2"),
                    help="UniPC's variant (default bh1, or the scheduler config's solver_type)")
    op.add_argument("--mu", type=_float_option(), default=None,
                    help="dynamic-shifting mu (flow schedulers that use it; exponential time shift: -27.63 to 27.63)")
    op.add_argument("--nfe", type=_int_option(1, MAX_NFE), default=5,
                    help=f"number of network evaluations (1-{MAX_NFE})")
    _search_options(op)
    op.add_argument("--convention", default=None, choices=("stop", "jump"),
                    help="stop at t_eps (paper's UniPC/DPM-Solver++) or jump to sigma 0 (DDIM, diffusers; the "
                         "default with --format diffusers)")
    op.add_argument("--p", type=_float_option(positive=True, hi=MAX_P), default=None,
                    help=f"node-weight exponent of the objective, in (0, {MAX_P:g}] (default 2; 1 for EDM/VE "
                         "schedules)")
    op.add_argument("--seed", type=_int_option(0), default=66)
    op.add_argument("--popsize", type=_int_option(1, MAX_POPSIZE), default=20)
    op.add_argument("--maxiter", type=_int_option(0), default=60)
    op.add_argument("--backend", default="auto")
    op.add_argument("--format", default="table", choices=("table", "json", "diffusers", "kdiffusion"),
                    help="table; json (everything); diffusers (timesteps= or, for flow, sigmas= to pass a "
                         "pipeline; convention jump: what a pipeline runs); kdiffusion (the sigma list)")
    sub.add_parser("info", help="versions and which backends loaded")
    ev = sub.add_parser("evaluate", help="score schedules with real samplers on a test bed (tables, JSON, plots)")
    ev.add_argument("--testbed", default="gmm", help="gmm (exact digits denoiser), net (the trained digits network), "
                    "patches (exact denoiser of natural-image patches), epsnet (a plain epsilon network, DDPM betas) "
                    "or vnet (the same predicting v, SD betas)")
    ev.add_argument("--preset", default="sd21", help=f"model noise schedule: {', '.join(PRESETS)}")
    ev.add_argument("--solvers", default="unipc,dpmsolver++,ddim", help="comma-separated sampler names")
    ev.add_argument("--nfe", default=None,
                    help=f"comma-separated NFEs (1-{MAX_NFE}) or ranges, e.g. 4-6,8,10 (default 4,5,6,8,10; "
                         "4,6 with --quick)")
    ev.add_argument("--methods", default=None, help="comma-separated schedule methods (default: all)")
    ev.add_argument("--conventions", default=None, help="stop,jump or one of them (default: each solver's own)")
    ev.add_argument("--samples", type=_int_option(2, MAX_SAMPLES), default=None,
                    help=f"samples per run, 2-{MAX_SAMPLES} (default 512; 128 with --quick)")
    ev.add_argument("--seed", type=_int_option(0), default=0)
    ev.add_argument("--quick", action="store_true", help="a small run: NFE 4,6, 128 samples, cheap methods")
    ev.add_argument("--metric", default="rmse", choices=("rmse", "rmse_end", "rmse_wc", "fd_pixel", "fd_feature"),
                    help="the table's metric; rmse_wc: RMSE over the well-conditioned samples only (one more "
                         "reference solve finds the samples whose solution hangs on a tiny change of their noise)")
    ev.add_argument("--out", default=None, help="folder for results.json, table.md and the PNG plots")
    ev.add_argument("--format", default="table", choices=("table", "json"))
    sw = sub.add_parser("sweep", help="optimise a grid of schedules (solvers x conventions x NFEs) in one pass")
    _grid_options(sw, "3-20")
    sw.add_argument("--seed", type=_int_option(0), default=66)
    sw.add_argument("--backend", default="auto")
    sw.add_argument("--format", default="json", choices=("json", "csv"))
    sw.add_argument("--out", default=None, help="write to this file instead of stdout")
    sw.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                    help="progress lines on stderr")
    pl = sub.add_parser("plot", help="draw HSO schedules against baseline schedules (t and lambda panels, PNG)")
    _grid_options(pl, "5")
    pl.add_argument("--baselines", default="logSNR,time_uniform,edm_rho7,trailing",
                    help="comma-separated schedule methods of hso.evaluation (empty: none)")
    pl.add_argument("--library", action="store_true", help="take the HSO schedules from hso.library (no search)")
    pl.add_argument("--out", default="schedules.png", help="PNG file to write")
    ck = sub.add_parser("check", help="lint a schedule (timesteps, sigmas or t) for a model and solver; exit 0 "
                                      "when no errors, 1 when errors were found, 2 on bad input")
    model = ck.add_mutually_exclusive_group()
    model.add_argument("--preset", default=None, help=f"model noise schedule: {', '.join(PRESETS)} (default sd21)")
    model.add_argument("--from-diffusers-config", default=None, metavar="PATH",
                       help="noise schedule from a local diffusers scheduler_config.json (or its folder)")
    ck.add_argument("--mu", type=_float_option(), default=None, help="dynamic-shifting mu (with "
                    "--from-diffusers-config, flow schedulers that use it)")
    ck.add_argument("--solver", default="unipc", help=f"sampler: {', '.join(SOLVERS)} (default unipc)")
    ck.add_argument("--nfe", type=_int_option(1, MAX_NFE), default=None,
                    help="the NFE you expect the schedule to spend (default: whatever it spends)")
    ck.add_argument("--convention", default=None, choices=("stop", "jump"),
                    help="default: jump for a list ending in 0, else the solver's own")
    points = ck.add_mutually_exclusive_group(required=True)
    points.add_argument("--timesteps", default=None, help="comma-separated integer model timesteps, e.g. 999,749,499")
    points.add_argument("--sigmas", default=None, help="comma-separated k-diffusion sigmas (flow: flow sigmas), "
                                                       "descending, optionally ending in 0")
    points.add_argument("--t", default=None, help="comma-separated normalised times, descending")
    ck.add_argument("--format", default="table", choices=("table", "json"))
    return ap


def _nfe_list(text: str, option: str = "--nfe") -> list[int]:
    """NFEs from ``4-6,8``: each in [1, MAX_NFE], ascending ranges, at least one (duplicates dropped, order kept).

    Raises:
        ValueError: a part that is not a number or a range, a descending range, an NFE out of range, no NFE.
    """
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, dash, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise ValueError(f"{option}: bad NFE list {text!r}: use numbers and ranges like 4-6,8") from None
        if a > b:
            raise ValueError(f"{option}: bad NFE range {part!r}: it starts above its end (write {b}-{a})")
        if a < 1 or b > MAX_NFE:
            raise ValueError(f"{option}: NFE must lie in [1, {MAX_NFE}], got {a if a < 1 else b} in {text!r}")
        out.extend(range(a, b + 1))
    if not out:
        raise ValueError(f"{option}: bad NFE list {text!r}: it names no NFE (use numbers and ranges like 3-20)")
    return list(dict.fromkeys(out))


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(dict.fromkeys(filter(None, (p.strip() for p in text.split(",")))))


def _given_names(text: str | None, option: str, what: str) -> tuple[str, ...] | None:
    """A comma-separated list of an option that, when given, must name something (None: not given)."""
    names = _names(text)
    if names is not None and not names:
        raise ValueError(f"{option} {text!r} names no {what}")
    return names


def _conventions(text: str | None, option: str) -> list[str | None]:
    """The conventions of a list option; [None] (each solver's own) when not given."""
    convs = _given_names(text, option, "convention")
    for c in convs or ():
        if c not in CONVENTIONS:
            raise ValueError(f"{option}: unknown convention {c!r}; known: {', '.join(CONVENTIONS)}")
    return list(convs) if convs else [None]


def _check_out_dir(path: str | None) -> None:
    """Refuse an output folder that cannot be made (a file in its place, an unwritable parent) before any work."""
    if path is None:
        return
    p = os.path.abspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        raise ValueError(f"--out {path!r} is a file, not a folder")
    while not os.path.exists(p):
        p = os.path.dirname(p)
    if not os.path.isdir(p) or not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path!r}: cannot write in {p!r}")


def _evaluate(args: argparse.Namespace) -> int:
    kw: dict[str, Any] = dict(QUICK) if args.quick else {"nfes": (4, 5, 6, 8, 10), "methods": DEFAULT_METHODS,
                                                         "n_samples": 512}
    if args.nfe is not None:
        kw["nfes"] = tuple(_nfe_list(args.nfe))
    methods = _given_names(args.methods, "--methods", "schedule method")
    if methods is not None:
        kw["methods"] = methods
    if args.samples is not None:
        kw["n_samples"] = args.samples
    solvers = _given_names(args.solvers, "--solvers", "solver")
    convs = _conventions(args.conventions, "--conventions")
    _check_out_dir(args.out)
    ev = evaluation.evaluate(args.testbed, args.preset, solvers=solvers,
                             conventions=None if convs == [None] else tuple(convs), seed=args.seed,
                             progress=True, well_conditioned=args.metric == "rmse_wc", **kw)
    if args.out:
        for path in ev.save(args.out):
            print(f"hso evaluate: wrote {path}", file=sys.stderr)
    print(ev.to_json(indent=1) if args.format == "json" else ev.markdown(args.metric))
    return 0


def _grid(preset: str, solvers: str, nfe: str, conventions: str | None) -> tuple[Any, list[dict[str, Any]]]:
    """Validate a preset x solvers x conventions x NFEs grid (before any search).

    Returns:
        ``(noise schedule, configs)``: one `optimize_many` config per cell, solver-major, then convention, then NFE.

    Raises:
        ValueError / TypeError: unknown preset, solver or convention; an empty list; a bad or empty NFE list, an
            NFE outside [1, MAX_NFE].
    """
    sched = NoiseSchedule.preset(preset)
    names = list(dict.fromkeys(get_solver(n).name for n in _given_names(solvers, "--solver", "solver") or ()))
    nfes = _nfe_list(nfe)
    convs = _conventions(conventions, "--convention")  # [None]: each solver's own
    return sched, [{"solver": s, "nfe": n, **({} if c is None else {"convention": c})}
                   for s in names for c in convs for n in nfes]


def _check_out(path: str | None) -> None:
    """Refuse an output file whose folder does not exist (or that is a folder) before any search runs (not after
    seconds of work)."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"--out: cannot write {path!r}: its folder does not exist")
    if os.path.isdir(path):
        raise ValueError(f"--out: cannot write {path!r}: it is a folder; give a file name")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f"--out: cannot write {path!r}: permission denied")


def _csv(results: Sequence[Any]) -> str:
    """One row per schedule; list columns are space-separated, floats at full precision (repr)."""

    def join(values: Any) -> str:
        return "" if values is None else " ".join(repr(v) for v in values.tolist())

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["preset", "solver", "convention", "nfe", "source", "objective", "spacing", "fitness", "mep",
                "penalty", "psi", "t", "timesteps", "sigmas"])
    for r in results:
        w.writerow([r.schedule.get("name"), r.solver, r.convention, r.nfe, r.source, r.objective, r.spacing,
                    repr(r.fitness), repr(r.mep), repr(r.penalty), join(r.psi), join(r.t), join(r.timesteps),
                    join(r.sigmas)])
    return buf.getvalue()


def _emit(text: str, out: str | None, what: str) -> None:
    """Text to stdout, or to the file ``out`` with a note on stderr."""
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"hso sweep: wrote {out} ({what})", file=sys.stderr)


def _sweep(args: argparse.Namespace) -> int:
    sched, configs = _grid(args.preset, args.solver, args.nfe, args.convention)
    _check_out(args.out)
    results = optimize_many(configs, schedule=sched, method=args.method, objective=args.objective,
                            spacing=args.spacing, seed=args.seed,
                            backend=args.backend, progress=args.progress)
    _check_finite(results)
    # JSON: a list with one result per line (the grid can hold hundreds)
    text = _csv(results) if args.format == "csv" else \
        "[\n" + ",\n".join(json.dumps(r.to_dict()) for r in results) + "\n]\n"
    _emit(text, args.out, f"{len(results)} schedules")
    return 0


def _measured(r: Any) -> dict[str, Any]:
    """A result's ``settings["measured"]`` (empty where it has none)."""
    return (getattr(r, "settings", None) or {}).get("measured") or {}


def _blend_pair(r: Any) -> list[str] | None:
    """The pair a blend result mixes (`hso.optimize.blend_points`); None for any other result."""
    return _measured(r).get("blend")


def _blend_where(r: Any) -> str:
    """Where a blend result's points lie between its pair (`hso.optimize.blend_weight_words`)."""
    return blend_weight_words(_measured(r).get("blend_weight", 0.5))


def _result_label(r: Any) -> str:
    """A legend label naming what made a result's schedule: the HSO search, its "stop" search ported to "jump", the
    blend (with its pair) or the baseline ``method="auto"`` returned where it measured better than every HSO
    setting."""
    cell = f"{r.solver}, NFE {r.nfe}, {r.convention}"
    if r.source == "hso":
        return f"HSO search ({cell})"
    if r.source == PORTED:
        return f"HSO stop search, last point dropped ({cell})"
    pair = _blend_pair(r)
    if pair:
        return f"blend of {pair[0]} and {pair[1]} ({cell}, {_blend_where(r)}; measured default)"
    return f"{r.source} ({cell}; measured default)"


def _plot(args: argparse.Namespace) -> int:
    sched, configs = _grid(args.preset, args.solver, args.nfe, args.convention)
    baselines = list(_names(args.baselines) or ())  # empty: none
    for m in baselines:
        if m not in SCHEDULE_METHODS:
            raise ValueError(f"unknown baseline {m!r}; known: {', '.join(SCHEDULE_METHODS)}")
    _check_out(args.out)
    if args.library and (args.method, args.objective, args.spacing) != ("auto", None, None):
        raise ValueError("--library holds hso.optimize's defaults only; drop --library to search with other settings")
    try:
        import matplotlib  # noqa: F401 - only to fail early, before any search
    except ImportError:
        raise ValueError("hso plot needs matplotlib: pip install 'hso[eval]'") from None
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib is optional (eval extra)
    from matplotlib.figure import Figure  # deferred: matplotlib is optional (the eval extra)

    ext = os.path.splitext(args.out)[1][1:].lower()
    if ext and ext not in FigureCanvasAgg.get_supported_filetypes():
        raise ValueError(f"--out {args.out!r}: matplotlib cannot write .{ext} files; use .png (or "
                         f"{', '.join('.' + e for e in sorted(FigureCanvasAgg.get_supported_filetypes()))})")

    if args.library:
        results = [library.get(args.preset, c["solver"], c["nfe"], c.get("convention")) for c in configs]
    else:
        results = optimize_many(configs, schedule=sched, method=args.method, objective=args.objective,
                                spacing=args.spacing)

    # Figure + Agg canvas directly: no pyplot, so no global backend switch in the calling process
    fig = Figure(figsize=(12, 4.6))
    FigureCanvasAgg(fig)
    ax_t, ax_l = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"].colors
    for k, r in enumerate(results):
        x = np.linspace(0.0, 1.0, r.t.size)
        label = _result_label(r)
        for ax, y in ((ax_t, r.t), (ax_l, r.lambdas)):
            ax.plot(x, y, "o-", color=colors[k % len(colors)], lw=2, ms=5, label=label, zorder=3)
    # one baseline curve per distinct schedule: most baselines depend on the number of points only, so several
    # solvers / conventions would otherwise draw the same curve again
    base_colors = matplotlib.colormaps["Dark2"].colors
    for j, m in enumerate(baselines):
        drawn: set[bytes] = set()
        for r in results:
            try:
                t = method_schedule(m, sched, r.solver, r.nfe, r.convention)
            except MethodNotApplicable as e:
                print(f"hso plot: skipped baseline {m!r}: {e}", file=sys.stderr)
                break
            if t.tobytes() in drawn:
                continue
            x = np.linspace(0.0, 1.0, t.size)
            for ax, y in ((ax_t, t), (ax_l, sched.lambda_(t))):
                ax.plot(x, y, "x--", color=base_colors[j % len(base_colors)], lw=1, ms=5,
                        label=None if drawn else m, zorder=2)
            drawn.add(t.tobytes())
    src = "library" if args.library else ", ".join(
        [f"method {args.method}"] + [f"{k} {v}" for k, v in (("objective", args.objective), ("spacing", args.spacing))
                                     if v is not None])
    ax_t.set(xlabel="step i / N", ylabel="t (normalised time)", title=f"{args.preset}: schedule in t ({src})")
    ax_l.set(xlabel="step i / N", ylabel="lambda = log(alpha / sigma)", title=f"{args.preset}: schedule in lambda")
    for ax in (ax_t, ax_l):
        ax.grid(alpha=0.3)
    ax_l.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"hso plot: wrote {args.out}", file=sys.stderr)
    return 0


def _from_diffusers_config(args: argparse.Namespace) -> tuple:
    """(noise schedule, solver, convention, sampler options) for ``hso optimize --from-diffusers-config``: the
    solver and its options (``solver_order``, ``solver_type``) from the scheduler class and config unless given
    (``--order`` / ``--variant`` win over the config's, option by option)."""
    schedule = NoiseSchedule.from_diffusers(args.from_diffusers_config, mu=args.mu)
    solver, options = args.solver, None
    if solver is None:
        config, cls_name = diffusers_config(args.from_diffusers_config)
        if cls_name not in SUPPORTED:
            raise ValueError(f"scheduler class {cls_name or '(none)'!r} has no matching hso solver; pass --solver")
        solver = SUPPORTED[cls_name]
        options = options_from_config(solver, config, _given_options(args)) or None
    else:
        options = _given_options(args)
    return schedule, solver, args.convention or "jump", options


def _given_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The sampler options given on the command line (``--order``, ``--variant``), None when neither is."""
    given = {k: v for k, v in (("order", args.order), ("variant", args.variant)) if v is not None}
    return given or None


def _optimize(args: argparse.Namespace) -> int:
    """``hso optimize``: every input checked (schedule, solver, convention against the format) before the search."""
    note = ""
    if args.solver is not None and not args.solver.strip():
        raise ValueError("--solver '' names no solver")
    if args.from_diffusers_config is not None:
        schedule, solver, convention, options = _from_diffusers_config(args)
    else:
        if args.mu is not None:
            raise ValueError("--mu applies with --from-diffusers-config only")
        schedule = NoiseSchedule.preset("sd21" if args.preset is None else args.preset)
        solver, convention = "unipc" if args.solver is None else args.solver, args.convention
        options = _given_options(args)
    if args.format == "diffusers":
        family = schedule.family
        if family != "flow" and not schedule.is_discrete:
            edm = (" (diffusers' EDM schedulers take it through hso.diffusers.apply in Python)"
                   if family == "edm" else "")
            raise ValueError(f"--format diffusers: the {family} family has no diffusers timesteps{edm}; use --format "
                             "kdiffusion for its sigmas")
        # a pipeline evaluates the model at every timestep (or sigma) it is given, then steps to sigma 0: "jump"
        if args.convention == "stop":
            raise ValueError("--format diffusers needs convention 'jump': a diffusers pipeline evaluates the model at "
                             "every timestep it is given and then steps to sigma 0, so a 'stop' schedule (NFE + 1 "
                             "points) would run NFE + 1 evaluations; drop --convention stop, or install a 'stop' "
                             "schedule with hso.diffusers.apply in Python")
        if convention is None:
            convention = "jump"
            if get_solver(solver).default_convention != "jump":
                note = (f"hso: note: --format diffusers: optimised for convention 'jump' ({args.nfe} evaluations, "
                        f"then the step to sigma 0, as a diffusers pipeline runs it), not {solver}'s default 'stop'")
    res = optimize(schedule, args.nfe, solver, args.objective, method=args.method, convention=convention,
                   spacing=args.spacing, p=args.p, seed=args.seed, popsize=args.popsize, maxiter=args.maxiter,
                   backend=args.backend, solver_options=options)
    _check_finite([res])
    if note:  # after the search: a failed one prints its one error line only
        print(note, file=sys.stderr)
    if args.format == "diffusers":
        if res.schedule["family"] == "flow":  # FlowMatch schedulers shift the sigmas they are given
            print(json.dumps({"sigmas": res.t.tolist(), "convention": res.convention, "solver": res.solver}))
        else:
            print(json.dumps({"timesteps": res.timesteps.tolist(), "convention": res.convention,
                              "solver": res.solver}))
        return 0
    if args.format == "kdiffusion":
        print(json.dumps(res.k_diffusion_sigmas()))
        return 0
    if args.format == "json":
        print(res.to_json(indent=2))
        return 0
    print(_describe(res))
    print(res.table())
    if res.timesteps is not None:
        print(f"timesteps: {res.timesteps.tolist()}")
    print(f"sigmas: {[round(float(s), 6) for s in res.sigmas]}")
    return 0


def _describe(res: Any) -> str:
    """The '#' header lines of the table output: what made the schedule and, for a search, its objective and its
    spacing penalty (explained: a large penalty is not a failure)."""
    m = res.settings.get("measured")
    want = sampler_label(res.solver, res.solver_options)
    lines = []
    if res.psi.size:  # a search ran ("hso", or its "stop" schedule ported to "jump")
        ported = " (the 'stop' search's schedule without its last point)" if res.source == PORTED else ""
        lines.append(f"# HSO schedule: {res.schedule['name']}, {want}, NFE {res.nfe}, convention "
                     f"{res.convention}{ported}, objective {res.objective}, spacing {res.spacing}, "
                     f"p {res.settings['p']:g}")
        lines.append(f"# psi* = (rho {res.psi[0]:.3f}, t_eps {res.psi[1]:.4f}, T_max {res.psi[2]:.4f}); "
                     f"{res.objective} {res.mep:.4f}; {res.nit} generations, {res.nfev} lower solves, "
                     f"{res.wall_time * 1e3:.1f} ms on backend {res.backend!r}")
        gamma = res.settings.get("gamma", 1e9)
        if res.penalty > 0:
            use = ("with spacing 'rank' (the paper's) it only ranks the search's candidates: not a failure, the "
                   "schedule is the best candidate by objective + penalty" if res.spacing == "rank"
                   else "it ranks the search's candidates")
            lines.append(f"# spacing penalty {res.penalty:.3g} = gamma * sum(max(0, d_min - gap)^2), gamma "
                         f"{gamma:g}, d_min {res.d_min:g}: some gaps are below d_min; {use}")
        else:
            lines.append(f"# spacing penalty 0: every gap is at least d_min {res.d_min:g}")
    else:
        pair = _blend_pair(res)
        what = (f"the blend of {pair[0]} and {pair[1]} ({_blend_where(res)} in lambda; no search of its own"
                if pair else f"the {res.source} baseline (no search ran")
        lines.append(f"# schedule: {res.schedule['name']}, {want}, NFE {res.nfe}, convention "
                     f"{res.convention}: {what}; its {res.objective} {res.mep:.4f})")
    if m is not None:
        where = [f"NFE {m['nfe']}"] + ([] if not m.get("noise") else [f"{m['noise']}-like noise"]
                                        if m.get("noise_measured", True) else
                                        [f"taken from {m['noise']} noise, the nearest measured, as this noise "
                                         "schedule was not"])
        if m.get("sampler") and m["sampler"] != want:
            where.append(f"measured with {m['sampler']}, the nearest measured variant of {want}")
        ratio = ("" if m.get("worst_ratio") is None
                 else f": worst RMSE ratio to the best schedule over the test beds {m['worst_ratio']:.3g}")
        auto = res.settings.get("method", "auto") == "auto"  # else method "hso": its own setting's measured place
        lines.append((f"# method auto: measured pick {m['pick']}" if auto else f"# method hso: setting {m['pick']}, "
                      "measured") + f" ({', '.join(where)}{ratio}"
                     + ("" if m["supported"] else
                        f"; not a supported cell, consider {'' if auto else 'method auto or '}hso.calibrate") + ")")
    return "\n".join(lines)


def _check(args: argparse.Namespace) -> int:
    """``hso check``: the report on stdout; exit 0 without errors, 1 with errors (2: bad input, from main)."""
    kind, text = next((k, v) for k, v in (("timesteps", args.timesteps), ("sigmas", args.sigmas), ("t", args.t))
                      if v is not None)
    try:
        values = [float(v) for v in filter(None, (p.strip() for p in text.split(",")))]
    except ValueError:
        raise ValueError(f"--{kind}: not a comma-separated list of numbers: {text!r}") from None
    if args.from_diffusers_config is not None:
        model = NoiseSchedule.from_diffusers(args.from_diffusers_config, mu=args.mu)
    else:
        if args.mu is not None:
            raise ValueError("--mu applies with --from-diffusers-config only")
        model = NoiseSchedule.preset("sd21" if args.preset is None else args.preset)
    rep = check(values, model, args.solver, nfe=args.nfe, convention=args.convention, kind=kind)
    if args.format == "json":
        print(json.dumps({"ok": rep.ok, "kind": rep.kind, "solver": rep.solver, "convention": rep.convention,
                          "nfe": rep.nfe, "findings": [f.__dict__ for f in rep.findings], "objective": rep.objective,
                          "p": rep.p, "mep": rep.mep, "hso_mep": rep.hso_mep, "ratio": rep.ratio,
                          "hso": None if rep.hso is None else rep.hso.to_dict()}))
    else:
        print(rep)
    return 0 if rep.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input: one line on stderr, nothing on stdout)."""
    try:
        args = _parser().parse_args(argv)
        if args.command is None:  # no arguments: the embedded default
            args = _parser().parse_args(["optimize"])
        if args.command == "info":
            show_config()
            return 0
        run = {"optimize": _optimize, "evaluate": _evaluate, "sweep": _sweep, "plot": _plot,
               "check": _check}[args.command]
        return run(args)
    except _BadInput as e:
        print(f"hso: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader stopped reading (``hso optimize | head``): its choice, not an error; the rest of the output
        # goes nowhere, so that the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, RuntimeError, OSError) as e:
        print(f"hso: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (an OSError's with its file name)."""
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.strerror and not isinstance(e, FileNotFoundError):
        text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
