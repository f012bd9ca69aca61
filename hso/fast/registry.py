"""The one backend registry of `hso.fast`: which engines exist, which loaded, and which one `auto` picks.

Compiled modules load lazily, on first use; a failed load is remembered and reported with the original error and a
fix-it hint (``hso info`` / `show_config`). Importing `hso` never compiles or loads anything.
"""
from __future__ import annotations

import functools
import importlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import reference
from .codes import INIT_CODES, OBJECTIVE_CODES, schedule_code, schedule_tables
from .reference_dmn import resolve_trunc_num
from .reference_lower import LowerResult

__all__ = ["Backend", "available_backends", "get_backend", "resolve_backend", "gpu_crossover", "auto_rule",
           "backend_status", "BACKENDS", "INIT_CODES", "AUTO_RULE_FILE"]

_LOAD_ERRORS: dict[str, str] = {}
_MODULES: dict[str, Any] = {}


def load_extension() -> Any:
    """Import `hso._C` once; remember a failure (with its message) instead of retrying."""
    if "_C" in _MODULES:
        return _MODULES["_C"]
    if "_C" in _LOAD_ERRORS:
        return None
    try:
        _MODULES["_C"] = importlib.import_module("hso._C")
    except Exception as e:  # ImportError, or an OSError from a broken shared object
        _LOAD_ERRORS["_C"] = f"{type(e).__name__}: {e}"
        return None
    return _MODULES["_C"]


@dataclass(frozen=True)
class Backend:
    """One engine implementing the kernel contract (see `hso.fast.reference`).

    Attributes:
        name: registry key.
        devices: devices it runs on ("cpu", "cuda").
        priority: `auto` picks the available backend with the highest priority.
        probe: returns None when usable, else the reason it is not.
        mep: ``(lambdas, kind, p, hessian) -> (value, grad[, diag, off])``, loaded lazily.
        lower: the fused lower level ``(psi, schedule, lower_spec) -> LowerResult``, loaded lazily; None when
            the backend has none (the numpy driver then runs on the backend's objective).
        lower_objectives: the objectives its fused lower level takes; the others run the numpy driver.
        dmn: ``(lambdas, kind, p, trunc_num) -> (value, grad)``, loaded lazily; None: the numpy reference's.
        lower_many: the fused lower level over several problems in one call
            ``(psi, rows, [(schedule, lower_spec), ...]) -> LowerResult`` (contract
            `hso.fast.reference_lower.lower_solve_many`), loaded lazily; None: one `lower` call per problem.
    """

    name: str
    devices: tuple[str, ...]
    priority: int
    probe: Callable[[], str | None]
    mep: Callable[[], Callable[..., tuple]]
    lower: Callable[[], Callable[..., Any]] | None = None
    lower_objectives: tuple[str, ...] = ("mep",)
    dmn: Callable[[], Callable[..., tuple]] | None = None
    lower_many: Callable[[], Callable[..., Any]] | None = None

    def is_available(self) -> bool:
        return self.probe() is None


def _probe_reference() -> str | None:
    return None


def _reference_mep() -> Callable[..., tuple]:
    return reference.mep_and_grad


def _probe_cpp() -> str | None:
    if load_extension() is None:
        return (f"the compiled module hso._C did not load ({_LOAD_ERRORS['_C']}); "
                "rebuild it with `make install` (or `pip install -e .`) and check the CMake output")
    return None


def _cpp_mep() -> Callable[..., tuple]:
    mod = load_extension()
    if mod is None:
        raise RuntimeError(_probe_cpp())

    def mep(lambdas, kind, p=2.0, hessian=False):
        return mod.mep_and_grad(lambdas, int(kind), float(p), bool(hessian))
    return mep


def _entry(name: str) -> Callable[..., Any]:
    """The function `name` of `hso._C`, loading the module (a failed load raises with the reason and the fix)."""
    mod = load_extension()
    if mod is None:
        raise RuntimeError(_probe_cpp())
    return getattr(mod, name)


def _compiled_dmn(entry: str) -> Callable[[], Callable[..., tuple]]:
    """The DM-NonUniform objective of `hso._C` under `entry` ("dmn_and_grad" or its CUDA twin), loaded lazily."""
    def load() -> Callable[..., tuple]:
        kernel = _entry(entry)

        def dmn(lambdas, kind, p=2.0, trunc_num=None):
            return kernel(lambdas, int(kind), float(p), resolve_trunc_num(lambdas.shape[1] - 1, trunc_num))
        return dmn
    return load


def _probe_cuda() -> str | None:
    reason = _probe_cpp()
    if reason is not None:
        return reason
    mod = load_extension()
    if not mod.build_info()["cuda"]:
        return ("hso._C was built without CUDA (no CUDA compiler found at build time); rebuild with a CUDA toolkit "
                "and HSO_CUDA=ON")
    if mod.cuda_device_count() < 1:
        return "no CUDA device is visible (hso._C has CUDA kernels, but the runtime finds no GPU)"
    return None


def _cuda_mep() -> Callable[..., tuple]:
    mod = load_extension()

    def mep(lambdas, kind, p=2.0, hessian=False):
        return mod.mep_and_grad_cuda(lambdas, int(kind), float(p), bool(hessian))
    return mep


def _compiled_lower(entry: str) -> Callable[[], Callable[..., Any]]:
    return lambda: _bind_lower(_entry(entry))


def _bind_lower(kernel: Callable[..., tuple]) -> Callable[..., Any]:
    def lower(psi, schedule, spec):
        fam, a, b, table = schedule_code(schedule)
        trunc = resolve_trunc_num(spec.n_intervals, spec.trunc_num)
        t, lam, obj, pen, iters, feas = kernel(
            psi, fam, a, b, table, spec.n_intervals, spec.gap, spec.d_min, spec.gamma, schedule.kind, spec.p,
            INIT_CODES[spec.init], spec.maxiter, spec.xtol, OBJECTIVE_CODES[spec.objective], trunc)
        return LowerResult(t=t, lambdas=lam, objective=obj, penalty=pen, fitness=obj + pen, iters=iters,
                           feasible=feas)
    return lower


def _compiled_lower_many(entry: str) -> Callable[[], Callable[..., Any]]:
    def load() -> Callable[..., Any]:
        kernel = _entry(entry)

        def lower_many(psi, rows, problems):
            # one row of numbers per problem; the vp tables back to back, each distinct schedule's once
            sched_rows, tables = schedule_tables([schedule for schedule, _ in problems])
            table = np.zeros((len(problems), 16))
            for k, ((schedule, spec), sched_row) in enumerate(zip(problems, sched_rows)):
                table[k] = (*sched_row, spec.n_intervals, spec.gap, spec.d_min, spec.gamma, schedule.kind, spec.p,
                            INIT_CODES[spec.init], spec.maxiter, spec.xtol, OBJECTIVE_CODES[spec.objective],
                            resolve_trunc_num(spec.n_intervals, spec.trunc_num))
            t, lam, obj, pen, iters, feas = kernel(psi, rows, table, tables)
            return LowerResult(t=t, lambdas=lam, objective=obj, penalty=pen, fitness=obj + pen, iters=iters,
                               feasible=feas)
        return lower_many
    return load


def _import_reason(name: str) -> str | None:
    """Import a module once (a failure is remembered); None when it imported, else why not and how to fix it."""
    if name not in _MODULES and name not in _LOAD_ERRORS:
        try:
            _MODULES[name] = importlib.import_module(name)
        except Exception as e:  # ImportError, or anything a broken install raises
            _LOAD_ERRORS[name] = f"{type(e).__name__}: {e}"
    if name in _LOAD_ERRORS:
        return (f"{name} did not import ({_LOAD_ERRORS[name]}); install the Triton extra with "
                "`pip install -e .[triton]` (torch first, as the Makefile does)")
    return None


def _probe_torch() -> str | None:
    return _import_reason("torch")


def _torch_mep() -> Callable[..., tuple]:
    from .reference_torch import mep_and_grad  # deferred: it imports torch (optional)
    return mep_and_grad


def _torch_dmn() -> Callable[..., tuple]:
    from .reference_torch import dmn_and_grad  # deferred: it imports torch (optional)
    return dmn_and_grad


def _probe_triton() -> str | None:
    """Triton and torch import (once; a failure is remembered); on a machine without a CUDA device the kernels
    need Triton's CPU interpreter, which TRITON_INTERPRET=1 turns on."""
    for name in ("triton", "torch"):
        reason = _import_reason(name)
        if reason is not None:
            return reason
    if _MODULES["torch"].cuda.is_available():
        return None
    knobs = getattr(_MODULES["triton"], "knobs", None)
    interpret = knobs.runtime.interpret if knobs is not None else os.environ.get("TRITON_INTERPRET") == "1"
    if not interpret:
        return ("no CUDA device is visible, and Triton's CPU interpreter is off; set TRITON_INTERPRET=1 in the "
                "environment before Python starts to run the Triton kernels on the CPU (slow: meant for tests)")
    return None


def _triton_mep() -> Callable[..., tuple]:
    from .triton import mep_and_grad  # deferred: it imports triton (optional)
    return mep_and_grad


def _triton_dmn() -> Callable[..., tuple]:
    from .triton import dmn_and_grad  # deferred: it imports triton (optional)
    return dmn_and_grad


def _triton_lower() -> Callable[..., Any]:
    from .triton import lower_solve  # deferred: it imports triton (optional)
    return lower_solve


def _triton_lower_many() -> Callable[..., Any]:
    from .triton import lower_solve_many  # deferred: it imports triton (optional)
    return lower_solve_many


# auto prefers cpp: the optimiser's inputs live on the host and a generation is tens of candidates, where copying
# to a GPU costs more than solving. A batch large enough that a GPU backend was measured faster goes to it
# (`resolve_backend`, the measured rule in auto_rule.json).
BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", ("cpu",), 0, _probe_reference, _reference_mep),
    "cpp": Backend("cpp", ("cpu",), 10, _probe_cpp, _cpp_mep, _compiled_lower("lower_solve"), ("mep", "dmn"),
                   _compiled_dmn("dmn_and_grad"), _compiled_lower_many("lower_solve_many")),
    "cuda": Backend("cuda", ("cuda",), 5, _probe_cuda, _cuda_mep, _compiled_lower("lower_solve_cuda"),
                    ("mep", "dmn"), _compiled_dmn("dmn_and_grad_cuda"), _compiled_lower_many("lower_solve_many_cuda")),
    "triton": Backend("triton", ("cuda", "cpu"), 3, _probe_triton, _triton_mep, _triton_lower, ("mep", "dmn"),
                      _triton_dmn, _triton_lower_many),
    # autograd twin of the objectives (hso.fast.reference_torch): a cross-check and a benchmark baseline, never
    # picked by auto (numpy's reference is faster on the CPU, and the lower level runs the numpy driver)
    "torch": Backend("torch", ("cpu", "cuda"), -1, _probe_torch, _torch_mep, None, (), _torch_dmn),
}


def available_backends() -> list[str]:
    """Names of the backends that can run here, best first."""
    ok = [b for b in BACKENDS.values() if b.is_available()]
    return [b.name for b in sorted(ok, key=lambda b: -b.priority)]


def get_backend(name: str | None = "auto") -> Backend:
    """The backend called `name`; ``"auto"`` (or None) picks the best available one, and the ``HSO_BACKEND``
    environment variable overrides ``"auto"``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        RuntimeError: a known backend that cannot run here (the message says why and how to fix it).
    """
    if name is None or name == "auto":
        name = os.environ.get("HSO_BACKEND", "auto") or "auto"
        if name == "auto":
            # probe best first and stop at the first that runs: lower-priority probes may import heavy packages
            for backend in sorted(BACKENDS.values(), key=lambda b: -b.priority):
                if backend.is_available():
                    return backend
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known backends: 'auto', {', '.join(map(repr, BACKENDS))}")
    backend = BACKENDS[name]
    reason = backend.probe()
    if reason is not None:
        raise RuntimeError(f"backend {name!r} is not available: {reason}")
    return backend


AUTO_RULE_FILE = Path(__file__).with_name("auto_rule.json")


@functools.lru_cache(maxsize=1)
def auto_rule() -> dict[str, Any]:
    """The measured batch rule of ``auto`` (written by ``python -m benchmarks.auto_rule`` from a GPU run's throughput
    table): for each GPU backend, kernel and objective, ``[N, B]`` pairs, B the smallest measured batch from which
    every measured batch ran at least ``margin`` times faster than cpp on that machine (None: never)."""
    return json.loads(AUTO_RULE_FILE.read_text())


def gpu_crossover(backend: str, kernel: str, objective: str, n_intervals: int) -> float:
    """The batch size from which ``auto`` runs `kernel` on GPU backend `backend` for N intervals: the larger of the
    crossovers measured at the nearest N on each side; infinite outside the measured N or where either side never
    paid (the CPU stays the choice wherever nothing was measured)."""
    cells = auto_rule()["rules"].get(backend, {}).get(kernel, {}).get(objective, [])
    below = [(n, b) for n, b in cells if n <= n_intervals]
    above = [(n, b) for n, b in cells if n >= n_intervals]
    if not below or not above:
        return math.inf
    sides = (max(below)[1], min(above)[1])
    return math.inf if None in sides else float(max(sides))


def resolve_backend(name: str | None, kernel: str, objective: str, n_intervals: int, batch: int) -> Backend:
    """The backend a call of `kernel` ("lower_solve", "objective_and_grad" or "objective_and_grad_hessian") runs
    on: `name` itself, or for ``"auto"`` (and no ``HSO_BACKEND``) the `get_backend` choice, unless `batch` candidates
    of `objective` at `n_intervals` reach a GPU backend's measured crossover (`gpu_crossover`) and it is available.
    GPU backends are only probed once a batch is that large."""
    base = get_backend(name)
    if (name not in (None, "auto")) or os.environ.get("HSO_BACKEND", "auto") not in ("", "auto"):
        return base
    for backend in sorted(BACKENDS.values(), key=lambda b: -b.priority):
        if "cuda" in backend.devices and backend.name != base.name and \
                batch >= gpu_crossover(backend.name, kernel, objective, n_intervals) and backend.is_available():
            return backend
    return base


def backend_status() -> dict[str, dict[str, Any]]:
    """For every registered backend: whether it is available, why not, and build details."""
    out: dict[str, dict[str, Any]] = {}
    for b in BACKENDS.values():
        reason = b.probe()
        entry: dict[str, Any] = {"available": reason is None, "devices": list(b.devices)}
        if reason is not None:
            entry["reason"] = reason
        if b.name in ("cpp", "cuda") and load_extension() is not None:
            entry["build"] = dict(load_extension().build_info())
        out[b.name] = entry
    return out
