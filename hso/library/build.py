"""``python -m hso.library.build``: regenerate the shipped schedule library ``hso/library/schedules.json``.

One `hso.optimize_many` pass per preset over solvers x conventions x NFE 3-20 with `hso.optimize`'s defaults,
then a compact JSON file: provenance, coverage, per-preset index and noise schedule, and the distinct results
(one line each, floats as repr so they load bit-exactly). The written file is read back and checked against the
in-memory results before the command reports success.

    python -m hso.library.build [--out PATH] [--backend auto] [--presets sd21,edm]
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy

from ..optimize import optimize_many
from ..result import ScheduleResult
from ..schedules import PRESETS, NoiseSchedule
from ..solvers import CONVENTIONS
from ..version import __version__
from . import FILENAME, FORMAT, FORMAT_VERSION, entry_result, library_data

__all__ = ["build", "write", "main", "SOLVER_NAMES", "NFES", "COMMAND"]

SOLVER_NAMES = ("unipc", "dpmsolver++", "ddim", "euler")
NFES = tuple(range(3, 21))
COMMAND = "python -m hso.library.build"
DEFAULTS = {"method": "auto", "seed": 66}  # hso.optimize's defaults (each entry records its resolved settings)
# fields that are the same for every entry of a preset (stored once per preset) or given by the lookup key
_PER_PRESET = ("wall_time", "backend", "schedule", "solver")


def _git_commit() -> tuple[str | None, bool | None]:
    """(HEAD commit, working tree dirty) of the checkout this package lives in, or (None, None)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, dirty


def _provenance(backend: str, wall: float) -> dict[str, Any]:
    commit, dirty = _git_commit()
    return {"method": "HSO (AAAI 2026)", "paper": "arXiv 2511.11688", "hso_version": __version__,
            "command": COMMAND, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": commit, "git_dirty": dirty, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "backend": backend,
            "wall_time_s": wall}


def build(*, backend: str = "auto", presets: Sequence[str] = tuple(PRESETS),
          log: Any = None) -> tuple[dict[str, Any], dict[tuple[str, str, str, int], ScheduleResult]]:
    """Run every search of the library.

    Args:
        backend: engine for the searches (recorded in the file).
        presets: preset names to cover (default: every one in `hso.PRESETS`).
        log: file for one timing line per preset (None: silent).

    Returns:
        ``(data, results)``: the library as a JSON-ready dict, and every result by
        ``(preset, solver, convention, nfe)``.

    Raises:
        ValueError: an unknown preset or backend (before any search).
    """
    unknown = [name for name in presets if name not in PRESETS]
    if unknown or not presets:
        raise ValueError(f"unknown preset(s) {unknown}; known: {', '.join(PRESETS)}")
    schedules = {name: NoiseSchedule.preset(name) for name in presets}
    grid = [(s, c, n) for s in SOLVER_NAMES for c in CONVENTIONS for n in NFES]
    t_all = time.perf_counter()
    results: dict[tuple[str, str, str, int], ScheduleResult] = {}
    stored: list[dict[str, Any]] = []
    where: dict[str, int] = {}  # canonical JSON of an entry -> its index in `stored`
    preset_meta: dict[str, Any] = {}
    engine = None
    for name, sched in schedules.items():
        t0 = time.perf_counter()
        # one NoiseSchedule object for the whole grid, so that search_many batches equal lower-level specs together
        out = optimize_many([dict(solver=s, convention=c, nfe=n) for s, c, n in grid], schedule=sched,
                            backend=backend, **DEFAULTS)
        index: dict[str, dict[str, dict[str, int]]] = {s: {c: {} for c in CONVENTIONS} for s in SOLVER_NAMES}
        for (s, c, n), res in zip(grid, out):
            results[(name, s, c, n)] = res
            entry = {k: v for k, v in res.to_dict().items() if k not in _PER_PRESET}
            key = json.dumps(entry, sort_keys=True, allow_nan=False)
            # solvers whose searches coincide give identical entries: store them once
            if key not in where:
                where[key] = len(stored)
                stored.append(entry)
            index[s][c][str(n)] = where[key]
        engine = out[0].backend
        preset_meta[name] = {"schedule": out[0].schedule, "backend": out[0].backend, "wall_time": out[0].wall_time,
                             "index": index}
        if log is not None:
            print(f"hso.library.build: {name}: {len(out)} schedules in {time.perf_counter() - t0:.2f} s "
                  f"(backend {engine})", file=log, flush=True)
    wall = time.perf_counter() - t_all
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "provenance": _provenance(str(engine), wall),
            "coverage": {"presets": list(schedules), "solvers": list(SOLVER_NAMES), "conventions": list(CONVENTIONS),
                         "nfe": list(NFES), **DEFAULTS},
            "presets": preset_meta, "results": stored}
    return data, results


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def write(data: dict[str, Any], path: str | Path) -> int:
    """Write the library compactly, one line per preset and per result (small, yet readable in a diff).

    Returns:
        The file size in bytes.
    """
    lines = ["{"]
    for k in ("format", "format_version", "provenance", "coverage"):
        lines.append(f"{_dumps(k)}:{_dumps(data[k])},")
    lines.append('"presets":{')
    lines.append(",\n".join(f"{_dumps(k)}:{_dumps(v)}" for k, v in data["presets"].items()))
    lines.append('},"results":[')
    lines.append(",\n".join(_dumps(r) for r in data["results"]))
    lines.append("]}")
    text = "\n".join(lines) + "\n"
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def _check(path: Path, results: dict[tuple[str, str, str, int], ScheduleResult]) -> None:
    """Read the written file back and require every entry to rebuild its result exactly."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for (preset, solver, conv, nfe), want in results.items():
        got = entry_result(data, preset, solver, data["results"][data["presets"][preset]["index"][solver][conv][str(nfe)]])
        for f in want.__dataclass_fields__:
            a, b = getattr(want, f), getattr(got, f)
            same = (np.array_equal(a, b) and (a.dtype == b.dtype)) if isinstance(a, np.ndarray) else a == b
            if not same or type(a) is not type(b):
                raise RuntimeError(f"{path}: {preset}/{solver}/{conv}/NFE {nfe}: field {f!r} does not round-trip "
                                   f"({a!r} != {b!r})")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: regenerate the library file, print timing and size."""
    ap = argparse.ArgumentParser(prog=COMMAND, description="regenerate hso's shipped schedule library")
    ap.add_argument("--out", default=str(Path(__file__).with_name(FILENAME)), help="output file (default: the "
                    "package's own)")
    ap.add_argument("--backend", default="auto", help="search engine (recorded in the file)")
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all; a "
                    "partial file is for inspection, the shipped one covers every preset)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        presets = [p.strip() for p in args.presets.split(",") if p.strip()]
        data, results = build(backend=args.backend, presets=presets, log=sys.stdout)
    except (ValueError, TypeError, RuntimeError) as e:
        print(f"{COMMAND}: error: {e}", file=sys.stderr)
        return 2
    path = Path(args.out)
    try:
        size = write(data, path)
    except OSError as e:
        print(f"{COMMAND}: error: {e}", file=sys.stderr)
        return 2
    _check(path, results)
    library_data.cache_clear()  # this process may have loaded the old file
    print(f"hso.library.build: wrote {path}: {len(results)} entries, {len(data['results'])} distinct results, "
          f"{size / 1e6:.3f} MB; searches {data['provenance']['wall_time_s']:.1f} s, total "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
