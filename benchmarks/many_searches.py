"""Many searches in one pass: the whole schedule library's grid under method "hso" as one `hso.optimize_many` call.

    python -m benchmarks.many_searches                      # every preset, cpp; appends to results/many_searches.md
    python -m benchmarks.many_searches --backend cuda --presets sd21,edm --out DIR
    python -m benchmarks.many_searches --backend triton --runs 2 --presets sd21 --out DIR   # the second run timed

The grid is the library's (`hso.library.build`): every preset x solver (unipc, dpmsolver++, ddim, euler) x convention
(stop, jump) x NFE 3-20, 144 searches per preset, 1152 in all, each with method "hso" (the search, not the measured
default, which is mostly a baseline or a blend). One `optimize_many` call runs them in lockstep, and every round of
their differential evolutions is one `lower_solve_many` call: one OpenMP loop (cpp) or one kernel launch (cuda)
over the populations of all pending searches, whatever their noise schedule, N and objective (triton: one launch
per objective, schedule family, lambda kind and padded width).

What is timed: the whole `optimize_many` call (planning, the searches with their polish, the results), wall clock.
With ``--runs K`` the call is made K times and the last is the row's time (the first is recorded too: on triton it
includes compiling the kernels). Reported with it: the number of searches and of lower-level candidates solved (the
sum of the searches' ``nfev``), and candidates per second. The polish (L-BFGS-B and a compass search per search)
is batched the same way, one `lower_solve_many` call per round of all searches' polish
(`hso.fast.batching.Rendezvous`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import hso
from hso.library.build import NFES, SOLVER_NAMES
from hso.schedules import PRESETS
from hso.solvers import CONVENTIONS

OUT = Path(__file__).resolve().parent / "results"


def configs(presets: list[str]) -> list[dict]:
    return [dict(schedule=p, solver=s, convention=c, nfe=n, method="hso")
            for p in presets for s in SOLVER_NAMES for c in CONVENTIONS for n in NFES]


def run(presets: list[str], backend: str, runs: int = 1) -> dict:
    cfgs = configs(presets)
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        results = hso.optimize_many(cfgs, backend=backend)
        walls.append(time.perf_counter() - t0)
    wall = walls[-1]
    solves = sum(int(r.nfev) for r in results)
    engines = sorted({r.backend for r in results})
    return {"presets": ",".join(presets), "backend": backend, "ran_on": ",".join(engines), "searches": len(cfgs),
            "solves": solves, "wall_s": wall, "runs": runs, "first_wall_s": walls[0],
            "solves_per_s": solves / wall if wall > 0 else float("nan"),
            "threads": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())), "machine": platform.node() or "?",
            "date": time.strftime("%Y-%m-%d")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.many_searches", description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated (default: every preset)")
    ap.add_argument("--backend", default="cpp")
    ap.add_argument("--out", type=Path, default=OUT, help="folder for many_searches.md / .jsonl (appended)")
    ap.add_argument("--runs", type=int, default=1, help="make the call this many times; the last is timed")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs must be at least 1, got {args.runs}")
    row = run(args.presets.split(","), args.backend, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "many_searches.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    md = args.out / "many_searches.md"
    if not md.exists():
        md.write_text("# Many searches in one pass (`python -m benchmarks.many_searches`)\n\n"
                      "One `hso.optimize_many` call over preset x solver x convention x NFE 3-20 with method "
                      "\"hso\"; wall clock of the whole call (made once, or the last of the runs the backend column "
                      "names); solves = lower-level candidates (sum of nfev).\n\n"
                      "| date | machine | presets | backend (ran on) | threads | searches | solves | wall s | "
                      "solves/s |\n|---|---|---|---|---|---:|---:|---:|---:|\n")
    timed = "" if args.runs == 1 else f", run {args.runs} of {args.runs} (the first: {row['first_wall_s']:.2f} s)"
    with open(md, "a") as f:
        f.write(f"| {row['date']} | {row['machine']} | {row['presets']} | {row['backend']} ({row['ran_on']}){timed} | "
                f"{row['threads']} | {row['searches']} | {row['solves']} | {row['wall_s']:.2f} | "
                f"{row['solves_per_s']:.0f} |\n")
    print(json.dumps(row), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
