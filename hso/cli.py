"""Command line: ``hso optimize`` prints an optimised schedule, ``hso evaluate`` scores schedules on real samplers,
``hso info`` says what loaded.

Results go to stdout (a table or JSON), messages and errors to stderr; exit code 0 on success, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from .optimize import SPACINGS
    from .schedules import PRESETS
    from .solvers import SOLVERS

    ap = argparse.ArgumentParser(prog="hso", description="Hierarchical Schedule Optimization for diffusion samplers")
    sub = ap.add_subparsers(dest="command")
    op = sub.add_parser("optimize", help="optimise a schedule (default: SD 2.1, UniPC, NFE 5)")
    op.add_argument("--preset", default="sd21", help=f"model noise schedule: {', '.join(PRESETS)}")
    op.add_argument("--solver", default="unipc", help=f"sampler: {', '.join(SOLVERS)}")
    op.add_argument("--nfe", type=int, default=5, help="number of network evaluations")
    op.add_argument("--objective", default="mep", choices=("mep", "dmn"))
    op.add_argument("--convention", default=None, choices=("stop", "jump"),
                    help="stop at t_eps (paper's UniPC/DPM-Solver++) or jump to sigma 0 (DDIM, diffusers)")
    op.add_argument("--spacing", default="rank", choices=SPACINGS)
    op.add_argument("--p", type=float, default=None,
                    help="node-weight exponent of the objective (default 2; 1 for EDM/VE schedules)")
    op.add_argument("--seed", type=int, default=66)
    op.add_argument("--popsize", type=int, default=20)
    op.add_argument("--maxiter", type=int, default=60)
    op.add_argument("--backend", default="auto")
    op.add_argument("--format", default="table", choices=("table", "json"))
    sub.add_parser("info", help="versions and which backends loaded")
    ev = sub.add_parser("evaluate", help="score schedules with real samplers on a test bed (tables, JSON, plots)")
    ev.add_argument("--testbed", default="gmm", help="gmm (exact digits denoiser) or net (the trained network)")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in (None, "optimize"):
        if args.command is None:  # no arguments: the embedded default
            args = _parser().parse_args(["optimize"])
        from .optimize import optimize
        try:
            res = optimize(args.preset, args.nfe, args.solver, args.objective, convention=args.convention,
                           spacing=args.spacing, p=args.p, seed=args.seed, popsize=args.popsize,
                           maxiter=args.maxiter, backend=args.backend)
        except (ValueError, TypeError, RuntimeError) as e:
            print(f"hso: error: {e}", file=sys.stderr)
            return 2
        if args.format == "json":
            print(res.to_json(indent=2))
        else:
            print(f"# HSO schedule: {args.preset}, {res.solver}, NFE {res.nfe}, convention {res.convention}, "
                  f"objective {res.objective}, spacing {res.spacing}")
            print(f"# psi* = (rho {res.psi[0]:.3f}, t_eps {res.psi[1]:.4f}, T_max {res.psi[2]:.4f}); fitness "
                  f"{res.mep:.4f} + penalty {res.penalty:.3g}; {res.nit} generations, {res.nfev} lower solves, "
                  f"{res.wall_time * 1e3:.1f} ms on backend {res.backend!r}")
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
    if args.command == "info":
        from .fast import show_config
        show_config()
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
