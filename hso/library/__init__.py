"""`hso.library`: precomputed HSO schedules, loaded instead of searched.

    >>> from hso import library
    >>> res = library.get("sd21", "unipc", 5)     # a ScheduleResult, equal to hso.optimize("sd21", 5, "unipc")
    >>> res.timesteps

The shipped file ``schedules.json`` (made by ``python -m hso.library.build``) holds every preset in
`hso.PRESETS` x solvers unipc, dpmsolver++, ddim, euler x NFE 3-20 x conventions "stop" and "jump", each made with
`hso.optimize`'s defaults (``method="auto"``, seed 66; every entry records the objective and spacing it resolved
to). Floats are stored with full precision, so a loaded result equals the search's bit for bit (the backend that
made it is recorded). Anything else -- another noise schedule, solver, NFE or setting -- is one `hso.optimize(...)`
call away.

The file is read once, on the first call, and never triggers a search.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np

from ..result import ScheduleResult
from ..solvers import CONVENTIONS, get_solver

__all__ = ["get", "available", "coverage", "provenance", "library_data", "entry_result", "FILENAME", "FORMAT",
           "FORMAT_VERSION"]

FILENAME = "schedules.json"
FORMAT = "hso-schedule-library"
FORMAT_VERSION = 2  # 2: entries record their source (a search or a measured baseline)


@functools.lru_cache(maxsize=1)
def library_data() -> dict[str, Any]:
    """The parsed library file (read once per process; `hso.library.build` clears it after writing)."""
    try:
        text = resources.files(__name__).joinpath(FILENAME).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as e:
        raise RuntimeError(f"the schedule library file {FILENAME} is missing from the hso package ({e}); "
                           f"regenerate it with `python -m hso.library.build`") from None
    data = json.loads(text)
    if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        raise RuntimeError(f"{FILENAME} is not a version-{FORMAT_VERSION} {FORMAT} file; regenerate it with "
                           f"`python -m hso.library.build`")
    return data


def _covered() -> str:
    c = library_data()["coverage"]
    return (f"presets {', '.join(c['presets'])}; solvers {', '.join(c['solvers'])}; NFE {min(c['nfe'])}-"
            f"{max(c['nfe'])}; conventions {', '.join(c['conventions'])} (hso.optimize defaults: method "
            f"{c['method']!r}, seed {c['seed']})")


def _preset_key(preset: Any) -> str:
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a preset name, got {type(preset).__name__}; for a custom NoiseSchedule "
                        f"use hso.optimize(schedule, nfe, solver)")
    # the same spelling rules as NoiseSchedule.preset
    key = preset.lower().replace("-", "_")
    if key not in library_data()["presets"]:
        raise ValueError(f"the schedule library has no preset {preset!r}; it covers {_covered()}. "
                         f"hso.optimize(...) computes a schedule for any other model in milliseconds")
    return key


def get(preset: str, solver: str, nfe: int, convention: str | None = None) -> ScheduleResult:
    """The shipped HSO schedule for a preset, solver, NFE and convention (no search).

    Equal to ``hso.optimize(preset, nfe, solver, convention=convention)`` with every other argument at its default,
    except ``wall_time`` and ``backend``, which are those of the run that generated the library.

    Args:
        preset: a preset name of `hso.PRESETS` (``"sd21"``, ``"sdxl"``, ``"edm"``, ``"flow"``, ...).
        solver: ``"unipc"``, ``"dpmsolver++"``, ``"ddim"`` or ``"euler"`` (or one of their aliases).
        nfe: number of network evaluations, 3-20.
        convention: ``"stop"`` or ``"jump"``; default: the solver's own (stop for UniPC / DPM-Solver++, jump for
            DDIM / Euler), as in `hso.optimize`.

    Returns:
        A new `ScheduleResult` (its arrays are the caller's to modify).

    Raises:
        TypeError: a preset that is not a name, a non-integer NFE.
        ValueError: a preset, solver, convention or NFE the library does not cover (the message says what it does
            cover; `hso.optimize` computes any other schedule).
    """
    key = _preset_key(preset)
    data = library_data()
    try:
        spec = get_solver(solver)
    except ValueError:
        spec = None
    if spec is None or spec.name not in data["coverage"]["solvers"]:
        raise ValueError(f"the schedule library has no solver {solver!r}; it covers {_covered()}. "
                         f"hso.optimize({key!r}, {nfe!r}, {solver!r}) computes it in milliseconds")
    if isinstance(nfe, bool) or not isinstance(nfe, (int, np.integer)):
        raise TypeError(f"nfe must be an integer, got {type(nfe).__name__}")
    conv = spec.default_convention if convention is None else convention
    if conv not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    index = data["presets"][key]["index"][spec.name][conv]
    if str(int(nfe)) not in index:
        raise ValueError(f"the schedule library has no NFE {nfe}; it covers {_covered()}. "
                         f"hso.optimize({key!r}, {int(nfe)}, {spec.name!r}) computes that schedule in milliseconds")
    return entry_result(data, key, spec.name, data["results"][index[str(int(nfe))]])


def entry_result(data: dict[str, Any], preset: str, solver: str, entry: dict[str, Any]) -> ScheduleResult:
    """A `ScheduleResult` from a stored entry, with the types `hso.optimize` returns."""
    meta = data["presets"][preset]
    settings = dict(entry["settings"])
    settings["bounds"] = [list(b) for b in settings["bounds"]]
    if isinstance(settings.get("mutation"), list):  # optimize stores a dithering range as a tuple
        settings["mutation"] = tuple(settings["mutation"])
    ts = entry["timesteps"]
    return ScheduleResult(
        t=np.array(entry["t"], dtype=np.float64), lambdas=np.array(entry["lambdas"], dtype=np.float64),
        sigmas=np.array(entry["sigmas"], dtype=np.float64),
        timesteps=None if ts is None else np.array(ts, dtype=np.int64),
        psi=np.array(entry["psi"], dtype=np.float64), fitness=float(entry["fitness"]), mep=float(entry["mep"]),
        penalty=float(entry["penalty"]), nit=int(entry["nit"]), nfev=int(entry["nfev"]),
        success=bool(entry["success"]), message=str(entry["message"]), wall_time=float(meta["wall_time"]),
        backend=str(meta["backend"]), convention=str(entry["convention"]), solver=solver, nfe=int(entry["nfe"]),
        objective=str(entry["objective"]), spacing=str(entry["spacing"]), d_min=float(entry["d_min"]),
        schedule=json.loads(json.dumps(meta["schedule"])), settings=settings, source=str(entry["source"]),
        solver_options=dict(entry.get("solver_options", {})))


def available() -> list[tuple[str, str, str, int]]:
    """Every shipped schedule as ``(preset, solver, convention, nfe)``, sorted.

    Returns:
        A list of keys, each one a valid `get` call ``get(preset, solver, nfe, convention)``.
    """
    data = library_data()
    return sorted((p, s, c, int(n)) for p, meta in data["presets"].items()
                  for s, by_conv in meta["index"].items() for c, by_nfe in by_conv.items() for n in by_nfe)


def coverage() -> dict[str, Any]:
    """What the library covers and how it was made.

    Returns:
        ``{"presets", "solvers", "conventions", "nfe", "method", "seed", "entries",
        "unique_schedules", "provenance"}``; ``entries`` counts `available()` keys, ``unique_schedules`` the
        distinct results behind them (identical results, e.g. of solvers whose searches coincide, are stored once).
    """
    data = library_data()
    out = json.loads(json.dumps(data["coverage"]))
    out["entries"] = sum(len(by_nfe) for meta in data["presets"].values() for by_conv in meta["index"].values()
                         for by_nfe in by_conv.values())
    out["unique_schedules"] = len(data["results"])
    out["provenance"] = provenance()
    return out


def provenance() -> dict[str, Any]:
    """How the shipped file was made: method, hso / numpy / scipy versions, command, date, git commit, backend."""
    return json.loads(json.dumps(library_data()["provenance"]))
