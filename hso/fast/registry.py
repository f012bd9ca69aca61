"""The one backend registry of `hso.fast`: which engines exist, which loaded, and which one `auto` picks.

Compiled modules load lazily, on first use; a failed load is remembered and reported with the original error and a
fix-it hint (``hso info`` / `show_config`). Importing `hso` never compiles or loads anything.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Backend", "available_backends", "get_backend", "backend_status", "BACKENDS"]

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
    """

    name: str
    devices: tuple[str, ...]
    priority: int
    probe: Callable[[], str | None]
    mep: Callable[[], Callable[..., tuple]]

    def is_available(self) -> bool:
        return self.probe() is None


def _probe_reference() -> str | None:
    return None


def _reference_mep() -> Callable[..., tuple]:
    from .reference import mep_and_grad
    return mep_and_grad


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


BACKENDS: dict[str, Backend] = {
    "reference": Backend("reference", ("cpu",), 0, _probe_reference, _reference_mep),
    "cpp": Backend("cpp", ("cpu",), 10, _probe_cpp, _cpp_mep),
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
            return BACKENDS[available_backends()[0]]
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known backends: 'auto', {', '.join(map(repr, BACKENDS))}")
    backend = BACKENDS[name]
    reason = backend.probe()
    if reason is not None:
        raise RuntimeError(f"backend {name!r} is not available: {reason}")
    return backend


def backend_status() -> dict[str, dict[str, Any]]:
    """For every registered backend: whether it is available, why not, and build details."""
    out: dict[str, dict[str, Any]] = {}
    for b in BACKENDS.values():
        reason = b.probe()
        entry: dict[str, Any] = {"available": reason is None, "devices": list(b.devices)}
        if reason is not None:
            entry["reason"] = reason
        if b.name == "cpp" and reason is None:
            entry["build"] = dict(load_extension().build_info())
        out[b.name] = entry
    return out
