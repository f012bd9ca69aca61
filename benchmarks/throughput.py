"""Kernel throughput per backend, measured in one run: ``lower_solve`` and ``objective_and_grad``.

    .venv/bin/python -m benchmarks.throughput [--quick] [--repeats 5]
    python -m benchmarks.throughput --gpu     # on a GPU machine: cpp, cuda and triton (gpu_check.sh runs it)

* ``lower_solve`` (SD 2.1, paper box, spacing "rank"): candidate solves per second for B in 64 ... 65536 and
  N in 5, 10, 20, every available backend (the numpy reference up to B = 4096: it is the slow baseline).
* ``objective_and_grad`` (MEP with Hessian): candidate-intervals per second, same grid.
* The same two for the DM-NonUniform objective (its lower level on B <= 4096, the reference up to 1024, 3 repeats),
  and whole DM-NonUniform searches (SD 2.1 and EDM, UniPC, NFE 4/6/8/10), one run per backend.
* OpenMP scaling: the cpp lower_solve at B = 65536, N = 10 with OMP_NUM_THREADS = 1 and 2 (fresh processes).
* ``optimize_many`` over NFE 3-20 x {unipc, dpmsolver++, ddim} for SD 2.1, EDM and flow matching (one pass each,
  seconds).
* Peak resident memory of the largest lower_solve case (VmHWM of a fresh process, before and after it).

Ratios are against the numpy reference backend and the torch (autograd) twin in the same run. Results:
``benchmarks/results/throughput.md`` and a JSON
record appended to ``benchmarks/results/throughput.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import hso
from hso import fast

from .report import RESULTS, machine_info

BATCHES = (64, 1024, 4096, 16384, 65536)
QUICK_BATCHES = (64, 4096)
NS = (5, 10, 20)
REFERENCE_MAX_B = 4096
MANY_PRESETS = ("sd21", "edm", "flow")


def _psi(b: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(3, 16, b), rng.uniform(0.01, 0.03, b), rng.uniform(0.96, 1.0, b)], axis=1)


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (lazy loads, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def lower_cell(backend: str, b: int, n: int, repeats: int, objective: str = "mep") -> float:
    s = hso.NoiseSchedule.preset("sd21")
    spec = fast.LowerSpec(n_intervals=n, gap=s.time_resolution, d_min=hso.d_min(n), objective=objective)
    obj = fast.ObjectiveSpec(objective, s.kind)
    psi = _psi(b)
    return _median_time(lambda: fast.lower_solve(psi, s, spec, obj, backend=backend), repeats)


def objective_cell(backend: str, b: int, n: int, repeats: int, objective: str = "mep",
                   hessian: bool | None = None) -> float:
    lam = np.sort(np.random.default_rng(1).uniform(-6, 5, (b, n + 1)), axis=1)
    spec = fast.ObjectiveSpec(objective, 0)
    hessian = objective == "mep" if hessian is None else hessian
    return _median_time(lambda: fast.objective_and_grad(lam, spec, hessian=hessian, backend=backend), repeats)


# DM-NonUniform: BFGS on a non-smooth objective takes ~100x MEP's work per candidate, so its lower level is measured
# on smaller batches (the reference up to B = 1024) with fewer repeats
DMN_LOWER_BATCHES = (64, 1024, 4096)
DMN_REFERENCE_MAX_B = 1024
DMN_SEARCH_NFES = (4, 6, 8, 10)


def fused(backend: str, objective: str) -> bool:
    """Whether `backend` runs `objective`'s lower level in its own kernel (the reference's numpy driver is the
    baseline itself); timing any other backend's lower_solve would time the numpy driver again."""
    b = fast.BACKENDS[backend]
    return backend == "reference" or (b.lower is not None and objective in b.lower_objectives)


def grad_cell(backend: str, b: int, n: int, repeats: int, objective: str = "mep") -> float:
    """objective_and_grad as the kernel contract states it: value and gradient, no Hessian."""
    return objective_cell(backend, b, n, repeats, objective, hessian=False)


def dmn_search_rows(backends: list[str]) -> list[dict[str, Any]]:
    """Whole DM-NonUniform searches (SD 2.1 and EDM, UniPC, paper DE settings): one run per cell and backend."""
    rows = []
    for preset in ("sd21", "edm"):
        for nfe in DMN_SEARCH_NFES:
            for backend in backends:
                if not fused(backend, "dmn"):
                    continue
                t0 = time.perf_counter()
                res = hso.optimize(preset, nfe, "unipc", objective="dmn", backend=backend)
                sec = time.perf_counter() - t0
                rows.append({"preset": preset, "nfe": nfe, "backend": backend, "seconds": sec,
                             "fitness": res.fitness, "t": [round(float(x), 6) for x in res.t]})
                print(f"dmn search {preset} NFE {nfe:2d} {backend:9s} {sec:8.3f} s", file=sys.stderr)
    return rows


def _child(code: str, threads: int) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


_SCALING = """
import json, time, numpy as np, hso
from hso import fast


def peak_kib():
    # VmHWM of this process image (ru_maxrss would include the parent's peak: Linux keeps it across exec)
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM")).split()[1])


s = hso.NoiseSchedule.preset("sd21")
spec = fast.LowerSpec(n_intervals=10, gap=s.time_resolution, d_min=hso.d_min(10))
rng = np.random.default_rng(0)
b = 65536
psi = np.stack([rng.uniform(3, 16, b), rng.uniform(0.01, 0.03, b), rng.uniform(0.96, 1.0, b)], axis=1)
obj = fast.ObjectiveSpec("mep", s.kind)
fast.lower_solve(psi[:64], s, spec, obj, backend="cpp")
rss0 = peak_kib()
ts = []
for _ in range(3):
    t0 = time.perf_counter(); fast.lower_solve(psi, s, spec, obj, backend="cpp"); ts.append(time.perf_counter() - t0)
rss1 = peak_kib()
print(json.dumps({"seconds": float(np.median(ts)), "maxrss_kib_before": rss0, "maxrss_kib_after": rss1}))
"""


def measure(grid, backends: list[str], baselines: tuple[str, ...]) -> list[dict[str, Any]]:
    """Time every (kernel, objective, N, B, backend) cell of `grid`; ratios against `baselines` in the same run."""
    rows: list[dict[str, Any]] = []
    for kind, objective, cell, cell_batches, ref_max, repeats in grid:
        for n in NS:
            for b in cell_batches:
                for backend in backends:
                    if backend in ("reference", "torch") and b > ref_max:
                        continue
                    if kind == "lower_solve" and not fused(backend, objective):
                        continue
                    if backend == "triton" and b > REFERENCE_MAX_B and os.environ.get("TRITON_INTERPRET") == "1":
                        continue  # the CPU interpreter measures Python, not a kernel
                    sec = cell(backend, b, n, repeats, objective)
                    rows.append({"kernel": kind, "objective": objective, "backend": backend, "B": b, "N": n,
                                 "seconds": sec})
                    print(f"{kind:18s} {objective} {backend:9s} B={b:6d} N={n:3d} {sec * 1e3:9.3f} ms",
                          file=sys.stderr)
    base_of = {(r["backend"], r["kernel"], r["objective"], r["B"], r["N"]): r["seconds"] for r in rows
               if r["backend"] in baselines}
    for r in rows:
        for name in baselines:
            base = base_of.get((name, r["kernel"], r["objective"], r["B"], r["N"]))
            r[f"vs_{name}"] = None if base is None else base / r["seconds"]
        r["per_second"] = (r["B"] if r["kernel"] == "lower_solve" else r["B"] * r["N"]) / r["seconds"]
    return rows


# --gpu: the compiled engines only (cpp on the GPU machine's own cores as the baseline), batches up to 2^18; the DM-
# NonUniform lower level (up to a few milliseconds per candidate on one core) up to 8192
GPU_BATCHES = (1024, 4096, 16384, 65536, 262144)
GPU_DMN_LOWER_BATCHES = (1024, 4096, 8192)


def gpu_main(args: argparse.Namespace) -> int:
    backends = [b for b in fast.available_backends() if b in ("cpp", "cuda", "triton")]
    big = GPU_BATCHES[-1]
    grid = (("lower_solve", "mep", lower_cell, GPU_BATCHES, big, args.repeats),
            ("value_and_grad", "mep", grad_cell, GPU_BATCHES, big, args.repeats),
            ("objective_and_grad", "mep", objective_cell, GPU_BATCHES, big, args.repeats),
            ("lower_solve", "dmn", lower_cell, GPU_DMN_LOWER_BATCHES, big, 3),
            ("objective_and_grad", "dmn", objective_cell, GPU_BATCHES, big, args.repeats))
    record = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeats": args.repeats,
              "profile": "gpu", "device": _gpu_name() or "no CUDA device visible", "baselines": ["cpp"],
              "rows": measure(grid, backends, ("cpp",))}
    _write(args.out, "gpu_throughput", record)
    return 0


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def _write(out: Path, stem: str, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{stem}.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    md = _markdown(record)
    (out / f"{stem}.md").write_text(md)
    print(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="B in 64 and 4096 only, no scaling run")
    ap.add_argument("--gpu", action="store_true",
                    help="GPU machine: cpp, cuda and triton only, B up to 262144, ratios against cpp; writes "
                         "gpu_throughput.md (benchmarks/gpu_check.sh runs it)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.gpu:
        return gpu_main(args)
    backends = fast.available_backends()
    batches = QUICK_BATCHES if args.quick else BATCHES
    dmn_batches = DMN_LOWER_BATCHES[:2] if args.quick else DMN_LOWER_BATCHES
    grid = (("lower_solve", "mep", lower_cell, batches, REFERENCE_MAX_B, args.repeats),
            ("objective_and_grad", "mep", objective_cell, batches, REFERENCE_MAX_B, args.repeats),
            ("value_and_grad", "mep", grad_cell, batches, REFERENCE_MAX_B, args.repeats),
            ("lower_solve", "dmn", lower_cell, dmn_batches, DMN_REFERENCE_MAX_B, 3),
            ("objective_and_grad", "dmn", objective_cell, batches, REFERENCE_MAX_B, args.repeats))
    rows = measure(grid, backends, ("reference", "torch"))

    cfgs = [dict(nfe=n, solver=s) for s in ("unipc", "dpmsolver++", "ddim") for n in range(3, 21)]
    many_by_preset, searches_by_preset = {}, {}
    for preset in MANY_PRESETS:
        # method="hso": 54 searches (MEP on SD 2.1 and flow matching, mostly DM-NonUniform on EDM); method="auto"
        # (the default): searches where the measured table picks an HSO setting, baseline points elsewhere
        for method, store in (("hso", searches_by_preset), ("auto", many_by_preset)):
            t0 = time.perf_counter()
            out = hso.optimize_many(cfgs, schedule=preset, method=method)
            store[preset] = {"seconds": time.perf_counter() - t0, "searches": sum(r.source == "hso" for r in out)}
            print(f"optimize_many {preset} method={method}: {store[preset]['seconds']:.2f} s "
                  f"({store[preset]['searches']} searches)", file=sys.stderr)
    many = searches_by_preset["sd21"]["seconds"]
    scaling = {}
    if not args.quick and "cpp" in backends:
        scaling = {str(k): _child(_SCALING, k) for k in (1, 2)}

    dmn_search = dmn_search_rows(backends)

    record = {"machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeats": args.repeats,
              "rows": rows, "optimize_many_54_seconds": many, "optimize_many_54_by_preset": searches_by_preset,
              "optimize_many_auto_by_preset": many_by_preset,
              "openmp_scaling_b65536_n10": scaling,
              "dmn_search": dmn_search}
    _write(args.out, "throughput", record)
    return 0


def _markdown(rec: dict[str, Any]) -> str:
    m = rec["machine"]
    baselines = rec.get("baselines", ["reference", "torch"])
    gpu = rec.get("profile") == "gpu"
    where = f"{rec['device']}, " if gpu else ""
    lines = [f"# Kernel throughput ({rec['date']}, commit {(m.get('git_commit') or '')[:7] or 'not recorded'}, {where}"
             f"{m.get('cpu_count')} CPUs, {m.get('platform')})", ""]
    if gpu:
        lines += ["Command: `bash benchmarks/gpu_check.sh` (`python -m benchmarks.throughput --gpu`). Median of "
                  f"{rec['repeats']} runs after a warm-up, each from host arrays to host arrays (the GPU backends' "
                  "times include the copies); ratios against the cpp backend on this machine's CPUs in the same run.",
                  ""]
    else:
        lines += ["Command: `.venv/bin/python -m benchmarks.throughput`. Median of "
                  f"{rec['repeats']} runs after a warm-up; ratios against the numpy reference and the torch (autograd) "
                  "twin in the same run.", ""]
    titles = {"mep": "MEP", "dmn": "DM-NonUniform"}
    for objective, kernel, unit in (("mep", "lower_solve", "solves/s"), ("mep", "objective_and_grad",
                                    "candidate-intervals/s"), ("mep", "value_and_grad", "candidate-intervals/s"),
                                    ("dmn", "lower_solve", "solves/s"),
                                    ("dmn", "objective_and_grad", "candidate-intervals/s")):
        extra = " with Hessian" if (objective, kernel) == ("mep", "objective_and_grad") else ""
        title = ("objective_and_grad, MEP, value and gradient only (the kernel contract)" if kernel == "value_and_grad"
                 else f"{kernel}, {titles[objective]}{extra}")
        lines += [f"## {title} ({unit})", "",
                  f"| N | B | backend | ms | {unit} | " + " | ".join(f"x {x}" for x in baselines) + " |",
                  "|---|---|---|---|---|" + "---|" * len(baselines)]
        for r in rec["rows"]:
            if r["kernel"] != kernel or r.get("objective", "mep") != objective:
                continue
            ratios = ["" if r.get(f"vs_{x}") is None else f"{r[f'vs_{x}']:.1f}" for x in baselines]
            lines.append(f"| {r['N']} | {r['B']} | {r['backend']} | {r['seconds'] * 1e3:.3f} | "
                         f"{r['per_second']:.3g} | " + " | ".join(ratios) + " |")
        lines.append("")
    if "optimize_many_54_by_preset" not in rec:
        return "\n".join(lines)
    lines.append("`optimize_many`, NFE 3-20 x (unipc, dpmsolver++, ddim), 54 schedules per preset: "
                 "`method=\"hso\"` (54 searches) "
                 + ", ".join(f"{k} {v['seconds']:.3f} s" for k, v in rec["optimize_many_54_by_preset"].items())
                 + "; `method=\"auto\"` (the default: searches only where the measured table picks an HSO setting) "
                 + ", ".join(f"{k} {v['seconds']:.3f} s ({v['searches']} searches)"
                             for k, v in rec["optimize_many_auto_by_preset"].items()) + ".")
    if rec.get("dmn_search"):
        lines += ["", "## Whole DM-NonUniform searches (UniPC, paper DE settings; one run per cell)", "",
                  "| preset | NFE | backend | s | x reference | fitness |", "|---|---|---|---|---|---|"]
        ref = {(r["preset"], r["nfe"]): r["seconds"] for r in rec["dmn_search"] if r["backend"] == "reference"}
        for r in rec["dmn_search"]:
            base = ref.get((r["preset"], r["nfe"]))
            ratio = "" if base is None else f"{base / r['seconds']:.1f}"
            lines.append(f"| {r['preset']} | {r['nfe']} | {r['backend']} | {r['seconds']:.3f} | {ratio} | "
                         f"{r['fitness']:.6g} |")
    sc = rec["openmp_scaling_b65536_n10"]
    if sc:
        one, two = sc["1"]["seconds"], sc["2"]["seconds"]
        lines += ["", f"OpenMP scaling, cpp lower_solve B = 65536, N = 10: 1 thread {one * 1e3:.1f} ms, 2 threads "
                  f"{two * 1e3:.1f} ms (x{one / two:.2f}); peak RSS of that process "
                  f"{sc['2']['maxrss_kib_after'] / 1024:.0f} MiB ({sc['2']['maxrss_kib_before'] / 1024:.0f} MiB "
                  "before the large case)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
