"""Command line: ``hso optimize`` prints an optimised schedule, ``hso sweep`` a grid of them (JSON or CSV),
``hso plot`` draws them against baselines, ``hso evaluate`` scores schedules on real samplers, ``hso info`` says
what loaded.

Results go to stdout (a table or JSON), messages and errors to stderr; exit code 0 on success, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

__all__ = ["main"]


def _search_options(parser: argparse.ArgumentParser) -> None:
    """--method / --objective / --spacing, shared by optimize, sweep and plot."""
    from .optimize import METHODS, SPACINGS

    parser.add_argument("--method", default="auto", choices=METHODS,
                        help="auto (default: the measured best of hso's settings and the baselines), hso (the "
                             "measured best of hso's settings) or paper")
    parser.add_argument("--objective", default=None, choices=("mep", "dmn"),
                        help="default: the method's (mep, or dmn where the measured rule picks it)")
    parser.add_argument("--spacing", default=None, choices=SPACINGS, help="default: the method's")


def _grid_options(parser: argparse.ArgumentParser, nfe_default: str) -> None:
    """A grid of searches (preset, solvers, NFEs, conventions) and the search options, for sweep and plot."""
    from .schedules import PRESETS

    parser.add_argument("--preset", default="sd21", help=f"model noise schedule: {', '.join(PRESETS)}")
    parser.add_argument("--solver", default="unipc", help="comma-separated sampler names")
    parser.add_argument("--nfe", default=nfe_default, help="comma-separated NFEs or ranges, e.g. 3-20 or 4-6,8")
    parser.add_argument("--convention", default=None, help="stop, jump or stop,jump (default: each solver's own)")
    _search_options(parser)


def _parser() -> argparse.ArgumentParser:
    from .optimize import SPACINGS
    from .schedules import PRESETS
    from .solvers import SOLVERS

    ap = argparse.ArgumentParser(prog="hso", description="Hierarchical Schedule Optimization for diffusion samplers")
    sub = ap.add_subparsers(dest="command")
    op = sub.add_parser("optimize", help="optimise a schedule (default: SD 2.1, UniPC, NFE 5)")
    op.add_argument("--preset", default="sd21", help=f"model noise schedule: {', '.join(PRESETS)}")
    op.add_argument("--solver", default=None,
                    help=f"sampler: {', '.join(SOLVERS)} (default unipc; with --from-diffusers-config: the one "
                         "matching the scheduler class)")
    op.add_argument("--from-diffusers-config", default=None, metavar="PATH",
                    help="noise schedule from a local diffusers scheduler_config.json (or its folder) instead of "
                         "--preset; the convention then defaults to diffusers' 'jump'")
    op.add_argument("--mu", type=float, default=None, help="dynamic-shifting mu (flow schedulers that use it)")
    op.add_argument("--nfe", type=int, default=5, help="number of network evaluations")
    _search_options(op)
    op.add_argument("--convention", default=None, choices=("stop", "jump"),
                    help="stop at t_eps (paper's UniPC/DPM-Solver++) or jump to sigma 0 (DDIM, diffusers)")
    op.add_argument("--p", type=float, default=None,
                    help="node-weight exponent of the objective (default 2; 1 for EDM/VE schedules)")
    op.add_argument("--seed", type=int, default=66)
    op.add_argument("--popsize", type=int, default=20)
    op.add_argument("--maxiter", type=int, default=60)
    op.add_argument("--backend", default="auto")
    op.add_argument("--format", default="table", choices=("table", "json", "diffusers", "kdiffusion"),
                    help="table; json (everything); diffusers (timesteps= or, for flow, sigmas= to pass a "
                         "pipeline); kdiffusion (the sigma list)")
    sub.add_parser("info", help="versions and which backends loaded")
    ev = sub.add_parser("evaluate", help="score schedules with real samplers on a test bed (tables, JSON, plots)")
    ev.add_argument("--testbed", default="gmm", help="gmm (exact digits denoiser), net (the trained digits network) "
                    "or patches (exact denoiser of natural-image patches)")
    ev.add_argument("--preset", default="sd21", help=f"model noise schedule: {', '.join(PRESETS)}")
    ev.add_argument("--solvers", default="unipc,dpmsolver++,ddim", help="comma-separated sampler names")
    ev.add_argument("--nfe", default="4,5,6,8,10", help="comma-separated NFEs or ranges, e.g. 4-6,8,10")
    ev.add_argument("--methods", default=None, help="comma-separated schedule methods (default: all)")
    ev.add_argument("--conventions", default=None, help="stop,jump or one of them (default: each solver's own)")
    ev.add_argument("--samples", type=int, default=None, help="samples per run (default 512; 128 with --quick)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--quick", action="store_true", help="a small run: NFE 4,6, 128 samples, cheap methods")
    ev.add_argument("--metric", default="rmse", choices=("rmse", "rmse_end", "fd_pixel", "fd_feature"))
    ev.add_argument("--out", default=None, help="folder for results.json, table.md and the PNG plots")
    ev.add_argument("--format", default="table", choices=("table", "json"))
    sw = sub.add_parser("sweep", help="optimise a grid of schedules (solvers x conventions x NFEs) in one pass")
    _grid_options(sw, "3-20")
    sw.add_argument("--seed", type=int, default=66)
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
    return ap


def _int_list(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        try:
            out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
        except ValueError:
            raise ValueError(f"bad NFE list {text!r}: use numbers and ranges like 4-6,8") from None
    return out


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(filter(None, (p.strip() for p in text.split(","))))


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import DEFAULT_METHODS, QUICK, evaluate

    kw = dict(QUICK) if args.quick else {}
    if args.nfe != "4,5,6,8,10" or not args.quick:
        kw["nfes"] = tuple(_int_list(args.nfe))
    if args.methods is not None or not args.quick:
        kw["methods"] = _names(args.methods) or DEFAULT_METHODS
    if args.samples is not None or not args.quick:
        kw["n_samples"] = args.samples or 512
    ev = evaluate(args.testbed, args.preset, solvers=_names(args.solvers), conventions=_names(args.conventions),
                  seed=args.seed, progress=True, **kw)
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
        ValueError / TypeError: unknown preset, solver or convention; a bad or empty NFE list, an NFE < 1.
    """
    from .schedules import NoiseSchedule
    from .solvers import CONVENTIONS, get_solver

    sched = NoiseSchedule.preset(preset)
    names = list(dict.fromkeys(get_solver(n).name for n in _names(solvers) or ()))
    if not names:
        raise ValueError("no solver given")
    nfes = list(dict.fromkeys(_int_list(nfe)))
    if not nfes:
        raise ValueError(f"bad NFE list {nfe!r}: it names no NFE (use numbers and ranges like 3-20)")
    if min(nfes) < 1:
        raise ValueError(f"NFE must be >= 1, got {min(nfes)}")
    convs = list(dict.fromkeys(_names(conventions) or ())) or [None]  # None: each solver's own
    for c in convs:
        if c is not None and c not in CONVENTIONS:
            raise ValueError(f"unknown convention {c!r}; known: {', '.join(CONVENTIONS)}")
    return sched, [{"solver": s, "nfe": n, **({} if c is None else {"convention": c})}
                   for s in names for c in convs for n in nfes]


def _check_out(path: str | None) -> None:
    """Refuse an output file whose folder does not exist before any search runs (not after seconds of work)."""
    import os

    if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(f"cannot write {path!r}: its folder does not exist")


def _csv(results: Sequence[Any]) -> str:
    """One row per schedule; list columns are space-separated, floats at full precision (repr)."""
    import csv
    import io

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
    from .optimize import optimize_many

    sched, configs = _grid(args.preset, args.solver, args.nfe, args.convention)
    _check_out(args.out)
    results = optimize_many(configs, schedule=sched, method=args.method, objective=args.objective,
                            spacing=args.spacing, seed=args.seed,
                            backend=args.backend, progress=args.progress)
    # JSON: a list with one result per line (the grid can hold hundreds)
    text = _csv(results) if args.format == "csv" else \
        "[\n" + ",\n".join(json.dumps(r.to_dict()) for r in results) + "\n]\n"
    _emit(text, args.out, f"{len(results)} schedules")
    return 0


def _plot(args: argparse.Namespace) -> int:
    import numpy as np

    from .evaluation.methods import METHODS, MethodNotApplicable, make_schedule

    sched, configs = _grid(args.preset, args.solver, args.nfe, args.convention)
    baselines = list(dict.fromkeys(_names(args.baselines) or ()))
    for m in baselines:
        if m not in METHODS:
            raise ValueError(f"unknown baseline {m!r}; known: {', '.join(METHODS)}")
    _check_out(args.out)
    if args.library and (args.method, args.objective, args.spacing) != ("auto", None, None):
        raise ValueError("--library holds hso.optimize's defaults only; drop --library to search with other settings")
    try:
        import matplotlib  # noqa: F401 - only to fail early, before any search
    except ImportError:
        raise ValueError("hso plot needs matplotlib: pip install 'hso[eval]'") from None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if args.library:
        from .library import get
        results = [get(args.preset, c["solver"], c["nfe"], c.get("convention")) for c in configs]
    else:
        from .optimize import optimize_many
        results = optimize_many(configs, schedule=sched, method=args.method, objective=args.objective,
                                spacing=args.spacing)

    # Figure + Agg canvas directly: no pyplot, so no global backend switch in the calling process
    fig = Figure(figsize=(12, 4.6))
    FigureCanvasAgg(fig)
    ax_t, ax_l = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab10"].colors
    for k, r in enumerate(results):
        x = np.linspace(0.0, 1.0, r.t.size)
        label = f"HSO {r.solver} NFE {r.nfe} ({r.convention})"
        for ax, y in ((ax_t, r.t), (ax_l, r.lambdas)):
            ax.plot(x, y, "o-", color=colors[k % len(colors)], lw=2, ms=5, label=label, zorder=3)
    # one baseline curve per distinct schedule: most baselines depend on the number of points only, so several
    # solvers / conventions would otherwise draw the same curve again
    base_colors = matplotlib.colormaps["Dark2"].colors
    for j, m in enumerate(baselines):
        drawn: set[bytes] = set()
        for r in results:
            try:
                t = make_schedule(m, sched, r.solver, r.nfe, r.convention)
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
    src = "library" if args.library else f"objective {args.objective}, spacing {args.spacing}"
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
    """(noise schedule, solver, convention) for ``hso optimize --from-diffusers-config``."""
    from .schedules import NoiseSchedule, _diffusers_config

    schedule = NoiseSchedule.from_diffusers(args.from_diffusers_config, mu=args.mu)
    solver = args.solver
    if solver is None:
        from .diffusers import SUPPORTED

        cls_name = _diffusers_config(args.from_diffusers_config)[1]
        if cls_name not in SUPPORTED:
            raise ValueError(f"scheduler class {cls_name or '(none)'!r} has no matching hso solver; pass --solver")
        solver = SUPPORTED[cls_name]
    return schedule, solver, args.convention or "jump"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in (None, "optimize"):
        if args.command is None:  # no arguments: the embedded default
            args = _parser().parse_args(["optimize"])
        from .optimize import optimize
        try:
            schedule, solver, convention = args.preset, args.solver or "unipc", args.convention
            if args.from_diffusers_config is not None:
                schedule, solver, convention = _from_diffusers_config(args)
            elif args.mu is not None:
                raise ValueError("--mu applies with --from-diffusers-config only")
            res = optimize(schedule, args.nfe, solver, args.objective, method=args.method, convention=convention,
                           spacing=args.spacing, p=args.p, seed=args.seed, popsize=args.popsize,
                           maxiter=args.maxiter, backend=args.backend)
        except (ValueError, TypeError, RuntimeError, FileNotFoundError) as e:
            print(f"hso: error: {e}", file=sys.stderr)
            return 2
        if args.format == "diffusers":
            if res.schedule["family"] == "flow":  # FlowMatch schedulers shift the sigmas they are given
                print(json.dumps({"sigmas": res.t.tolist(), "convention": res.convention, "solver": res.solver}))
            elif res.timesteps is not None:
                print(json.dumps({"timesteps": res.timesteps.tolist(), "convention": res.convention,
                                  "solver": res.solver}))
            else:
                edm = (" (diffusers' EDM schedulers take it through hso.diffusers.apply in Python)"
                       if res.schedule["family"] == "edm" else "")
                print(f"hso: error: the {res.schedule['family']} family has no diffusers timesteps{edm}; use --format "
                      "kdiffusion for its sigmas", file=sys.stderr)
                return 2
            return 0
        if args.format == "kdiffusion":
            print(json.dumps(res.k_diffusion_sigmas()))
            return 0
        if args.format == "json":
            print(res.to_json(indent=2))
        else:
            m = res.settings.get("measured")
            if res.psi.size:  # a search ran ("hso", or its "stop" schedule ported to "jump")
                ported = "" if res.source == "hso" else " (the 'stop' search's schedule without its last point)"
                print(f"# HSO schedule: {res.schedule['name']}, {res.solver}, NFE {res.nfe}, convention "
                      f"{res.convention}{ported}, objective {res.objective}, spacing {res.spacing}, "
                      f"p {res.settings['p']:g}")
                print(f"# psi* = (rho {res.psi[0]:.3f}, t_eps {res.psi[1]:.4f}, T_max {res.psi[2]:.4f}); fitness "
                      f"{res.mep:.4f} + penalty {res.penalty:.3g}; {res.nit} generations, {res.nfev} lower solves, "
                      f"{res.wall_time * 1e3:.1f} ms on backend {res.backend!r}")
            else:
                print(f"# schedule: {res.schedule['name']}, {res.solver}, NFE {res.nfe}, convention {res.convention}: "
                      f"the {res.source} baseline (no search ran; {res.objective} {res.mep:.4f} + penalty "
                      f"{res.penalty:.3g})")
            if m is not None:
                print(f"# method auto: measured pick {m['pick']} (NFE {m['nfe']}: worst RMSE ratio to the best "
                      f"baseline over the test beds {m['worst_ratio']:.3g}"
                      + ("" if m["supported"] else "; not a supported cell, consider hso.calibrate") + ")")
            print(res.table())
            if res.timesteps is not None:
                print(f"timesteps: {res.timesteps.tolist()}")
            print(f"sigmas: {[round(float(s), 6) for s in res.sigmas]}")
        return 0
    if args.command == "evaluate":
        try:
            return _evaluate(args)
        except (ValueError, TypeError) as e:
            print(f"hso: error: {e}", file=sys.stderr)
            return 2
    if args.command in ("sweep", "plot"):
        try:
            return _sweep(args) if args.command == "sweep" else _plot(args)
        except (ValueError, TypeError, RuntimeError, OSError) as e:
            print(f"hso: error: {e}", file=sys.stderr)
            return 2
    if args.command == "info":
        from .fast import show_config
        show_config()
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
