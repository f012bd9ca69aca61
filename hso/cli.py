"""Command line: ``hso optimize`` prints an optimised schedule, ``hso info`` what loaded.

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
    return ap


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
    if args.command == "info":
        from .fast import show_config
        show_config()
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
