"""Derive the batch rule of ``backend="auto"`` from a GPU run's throughput table (``gpu_throughput.md``, written by
``python -m benchmarks.throughput --gpu`` inside ``benchmarks/gpu_check.sh``).

For each GPU backend whose agreement tests passed in that run (``--verified``, patterns ``backend:kernel:objective``),
kernel, objective and measured N, the crossover is the smallest measured batch B from which every measured batch ran
at least ``--margin`` times faster than cpp on the same machine (host arrays in and out, copies included); None when
no such B was measured. `hso.fast.registry.gpu_crossover` reads the result (``hso/fast/auto_rule.json``)::

    python -m benchmarks.auto_rule                       # the committed H200 run -> hso/fast/auto_rule.json + .md
    python -m benchmarks.auto_rule --table OUT/gpu_throughput.md --verified 'cuda:*:*' --out OUT

The margin (1.5) absorbs run-to-run noise and the spread of CPU core counts: the table's cpp ran on the GPU
machine's 16 cores, so on a machine with fewer cores the GPU pays earlier than the rule says, never later.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "benchmarks" / "results" / "gpu" / "2026-12-04-h200-throughput.md"
RULE = ROOT / "hso" / "fast" / "auto_rule.json"
REPORT = ROOT / "benchmarks" / "results" / "auto_rule.md"
MARGIN = 1.5
# the H200 run of 2026-12-04: CUDA passed every MEP test and the DM-NonUniform objective tests, but one
# DM-NonUniform lower-level case differed from the reference by 5e-7 in lambda (tolerance 1e-7); every Triton kernel
# failed to compile at N = 1 and its DM-NonUniform lower level disagreed (fixed since, not yet re-run on a GPU)
H200_VERIFIED = ("cuda:*:mep", "cuda:objective_and_grad:dmn")
H200_EVIDENCE = ("gpu_tests.log of the same run (../shared/gpu-runs/2026-12-04-h200): 30 failed, 740 passed; cuda "
                 "failed test_lower_solve_agrees_where_the_reference_is_stable[rank-7-vp_linear-2.0-cuda] (5e-7 in "
                 "lambda), every other failure was Triton's")

# the throughput table's section titles -> (kernel, objective) of the rule
SECTIONS = {
    "lower_solve, MEP": ("lower_solve", "mep"),
    "objective_and_grad, MEP with Hessian": ("objective_and_grad_hessian", "mep"),
    "objective_and_grad, MEP, value and gradient only (the kernel contract)": ("objective_and_grad", "mep"),
    "lower_solve, DM-NonUniform": ("lower_solve", "dmn"),
    "objective_and_grad, DM-NonUniform": ("objective_and_grad", "dmn"),
}


def parse_table(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header fields, rows) of a ``gpu_throughput.md``: rows with kernel, objective, N, B, backend and x cpp."""
    first = text.splitlines()[0]
    m = re.match(r"# Kernel throughput \((?P<date>[^,]+), commit (?P<commit>\w+), (?P<device>[^,]+), (?P<cpus>\d+) CPUs",
                 first)
    if m is None:
        raise ValueError(f"not a GPU throughput table (first line {first!r})")
    rows, section = [], None
    for line in text.splitlines():
        if line.startswith("## "):
            title = re.sub(r" \([^()]*/s\)$", "", line[3:])
            section = SECTIONS.get(title)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if section is None or len(cells) != 6 or not cells[0].isdigit():
            continue
        rows.append({"kernel": section[0], "objective": section[1], "N": int(cells[0]), "B": int(cells[1]),
                     "backend": cells[2], "x_cpp": float(cells[5])})
    return m.groupdict(), rows


def crossover(points: list[tuple[int, float]], margin: float) -> int | None:
    """Smallest B from which every measured (B, ratio) has ratio >= margin; None when the largest B does not."""
    best = None
    for b, ratio in sorted(points, reverse=True):
        if ratio < margin:
            break
        best = b
    return best


def derive(text: str, verified: tuple[str, ...], margin: float = MARGIN, evidence: str = "") -> dict[str, Any]:
    header, rows = parse_table(text)
    rules: dict[str, Any] = {}
    cells: dict[tuple, list[tuple[int, float]]] = {}
    for r in rows:
        if r["backend"] == "cpp":
            continue
        if not any(fnmatch.fnmatchcase(f"{r['backend']}:{r['kernel']}:{r['objective']}", v) for v in verified):
            continue
        cells.setdefault((r["backend"], r["kernel"], r["objective"], r["N"]), []).append((r["B"], r["x_cpp"]))
    for (backend, kernel, objective, n), points in sorted(cells.items()):
        rules.setdefault(backend, {}).setdefault(kernel, {}).setdefault(objective, []).append(
            [n, crossover(points, margin)])
    return {"device": header["device"], "date": header["date"], "commit": header["commit"],
            "cpu_cores": int(header["cpus"]), "margin": margin, "verified": list(verified), "evidence": evidence,
            "rules": rules}


def report(rule: dict[str, Any], table: str) -> str:
    lines = [f"# The batch rule of `backend=\"auto\"` ({rule['device']}, {rule['date']})", "",
             f"Derived by `python -m benchmarks.auto_rule` from `{table}` (commit {rule['commit']}; cpp on that "
             f"machine's {rule['cpu_cores']} cores, host arrays in and out). A GPU backend runs a call once its batch "
             f"reaches the smallest measured B from which every measured B was at least {rule['margin']}x cpp; "
             "between measured N the larger crossover of the two sides holds; outside them, and for backends or "
             "objectives whose agreement tests did not all pass in that run, the CPU stays the choice.", "",
             f"Verified in that run: {', '.join(rule['verified'])}. Evidence: {rule['evidence'] or '-'}.", "",
             "| backend | kernel | objective | N | crossover B |", "|---|---|---|---|---|"]
    for backend, kernels in rule["rules"].items():
        for kernel, objectives in kernels.items():
            for objective, cells in objectives.items():
                for n, b in cells:
                    lines.append(f"| {backend} | {kernel} | {objective} | {n} | {'never' if b is None else b} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.auto_rule", description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, default=TABLE, help="a gpu_throughput.md (default: the committed H200 run)")
    ap.add_argument("--verified", nargs="+", default=None,
                    help="backend:kernel:objective patterns whose agreement tests all passed in that run "
                         "(default: the H200 run's)")
    ap.add_argument("--margin", type=float, default=MARGIN)
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for auto_rule.json and auto_rule.md (default: hso/fast/ and benchmarks/results/)")
    args = ap.parse_args(argv)
    verified = tuple(args.verified) if args.verified else H200_VERIFIED
    evidence = H200_EVIDENCE if args.verified is None else ""
    rule = derive(args.table.read_text(), verified, args.margin, evidence)
    rel = args.table.resolve().relative_to(ROOT) if args.table.resolve().is_relative_to(ROOT) else args.table
    json_path, md_path = (RULE, REPORT) if args.out is None else (args.out / "auto_rule.json",
                                                                  args.out / "auto_rule.md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text = re.sub(r"\[\s+(\d+),\s+(\w+)\s+\]", r"[\1, \2]", json.dumps(rule, indent=1))  # one [N, B] per line
    json_path.write_text(text + "\n")
    md_path.write_text(report(rule, str(rel)))
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
