"""Re-make, in order, everything the committed quality results feed once a candidate's rows change (a candidate, the
blend's pairs or weights, or `hso.evaluation.report.RULE_METRIC`): the blend-weight sweep, the blend's rows, the
default's rows, the library, the perturbation study, the calibration rows and the selection replay, with the
README's generated sections regenerated between them (each stage reads the rule the previous ones wrote); last, the
schedules fitted to the beds where no candidate is safe (`minimax`, about 1.5 hours as two processes).

    python -m benchmarks.quality.remake --dry-run             # the stages and their commands, nothing run
    python -m benchmarks.quality.remake                       # all of it (hours on 2 cores)
    python -m benchmarks.quality.remake --from library        # from a stage on

Row stages run the exact-denoiser beds and the EDM-preconditioned network as two processes (one per core), then
the float32 epsilon and v networks alone (beside another harness process their rows did not reproduce).
Every command runs with one BLAS and one OpenMP thread; a failing command stops the run, naming it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .run import runs

ROOT = Path(__file__).resolve().parents[2]
ALONE = ("epsnet", "vnet")  # float32 networks: their rows are made with no other harness process running


def groups() -> list[list[str]]:
    """The configurations in the groups a row stage runs: two groups side by side, then the float32 networks'."""
    names = [(name, bed) for name, bed, _, _ in runs()]
    shared = [n for n, bed in names if bed not in ALONE]
    alone = [n for n, bed in names if bed in ALONE]
    return [shared[0::2], shared[1::2], alone]


def _rows(*args: str) -> list[list[list[str]]]:
    """A row stage: ``python -m benchmarks.quality.run <args> --only <group>``, the first two groups in parallel."""
    cmd = [sys.executable, "-m", "benchmarks.quality.run", *args, "--only"]
    a, b, alone = groups()
    return [[cmd + [",".join(a)], cmd + [",".join(b)]], [cmd + [",".join(alone)]]]


def stages(tmp: Path) -> list[tuple[str, list[list[list[str]]]]]:
    """(name, steps); each step is a list of commands run in parallel, the steps one after the other (``tmp``: a
    folder for the weight sweep's two shares)."""
    py = sys.executable
    readme = [[[py, "-m", "benchmarks.quality.run", "--readme-only"]]]
    part = [tmp / "weights_a.json", tmp / "weights_b.json"]
    weights = [py, "-m", "benchmarks.quality.blend_weights"]
    minimax = [py, "-m", "benchmarks.quality.minimax", "--leave-one-out"]
    return [
        ("weights", [[weights + ["--noises", "sd21,flow", "--partial", str(part[0])],
                      weights + ["--noises", "ddpm,edm", "--partial", str(part[1])]],
                     [weights + ["--combine", f"{part[0]},{part[1]}"]]] + readme),
        ("blend", _rows("--methods", "blend") + _rows("--variants", "--methods", "blend") + readme),
        ("default", _rows("--methods", "hso") + readme),
        ("library", [[[py, "-m", "hso.library.build"]]]),
        ("perturbation", [[[py, "-m", "benchmarks.perturbation"]]]),
        ("calibrate", _rows("--methods", "calibrate,calibrate_1000") + readme),
        ("selection", [[[py, "-m", "benchmarks.quality.selection"]]] + readme),
        # a measurement on the candidates' rows that the rule does not use (its test holds it to those rows)
        ("minimax", [[minimax + ["--share", f"{k}/2", "--partial", str(tmp / f"minimax_{k}.json")] for k in (0, 1)],
                     [minimax + ["--combine", f"{tmp / 'minimax_0.json'},{tmp / 'minimax_1.json'}"]]]),
    ]


def run_step(step: list[list[str]], env: dict[str, str]) -> None:
    """Run a step's commands side by side; raise naming the first that failed."""
    procs = [(cmd, subprocess.Popen(cmd, cwd=ROOT, env=env)) for cmd in step]
    failed = [cmd for cmd, p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"remake: failed: {' '.join(failed[0])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [name for name, _ in stages(Path("."))]
    ap.add_argument("--from", dest="start", default=names[0], choices=names, help="the first stage to run")
    ap.add_argument("--to", dest="stop", default=names[-1], choices=names, help="the last stage to run")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    if names.index(args.start) > names.index(args.stop):
        ap.error(f"--from {args.start} comes after --to {args.stop}")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="hso-remake-") as tmp:
        todo = stages(Path(tmp))[names.index(args.start):names.index(args.stop) + 1]
        for name, steps in todo:
            print(f"== {name}", flush=True)
            for step in steps:
                print("\n".join(("   " if len(step) == 1 else " | ") + " ".join(c) for c in step), flush=True)
                if not args.dry_run:
                    run_step(step, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
