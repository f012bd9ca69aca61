"""hso: Hierarchical Schedule Optimization for diffusion-model samplers (AAAI 2026), fast and general.

    >>> import hso
    >>> res = hso.optimize("sd21", nfe=5, solver="unipc")
    >>> res.timesteps            # integer model timesteps, strictly decreasing

Importing `hso` loads no compiled code; `hso.fast` picks and loads an engine on first use.
"""
from __future__ import annotations

import importlib

from . import fast, library
from .calibration import calibrate
from .check import CheckReport, check
from .inits import INIT_FAMILIES, init_schedule
from .objectives import dmn, mep, spacing_penalty
from .optimize import MAX_NFE, SPACINGS, Plan, d_min, max_nfe, optimize, optimize_many, plan
from .result import ScheduleResult
from .schedules import PRESETS, NoiseSchedule, betas_for
from .solvers import SOLVERS, get_solver
from .version import __version__


def evaluate(*args, **kwargs):  # noqa: ANN002, ANN003 - forwards to hso.evaluation.evaluate
    """Score schedules on real samplers and test beds; see `hso.evaluation.evaluate` (imported on first use)."""
    # the evaluation harness (and its `eval` extra: scikit-learn, matplotlib) loads only when used: the library does
    # not import its own test harness
    from .evaluation import evaluate as _evaluate
    return _evaluate(*args, **kwargs)


# submodules loaded on first attribute access (`import hso; hso.diffusers.apply(...)`), as numpy and scipy do: each
# pulls an optional heavy dependency (diffusers and torch, scikit-learn, matplotlib) that `import hso` must not
_LAZY_SUBMODULES = ("diffusers", "evaluation", "testbeds", "cli", "baselines", "measured", "comfyui")


def __getattr__(name: str):  # noqa: ANN202 - a module, loaded on first use
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


__all__ = ["optimize", "check", "CheckReport", "evaluate", "calibrate", "optimize_many", "NoiseSchedule", "ScheduleResult", "PRESETS",
           "SOLVERS", "SPACINGS", "MAX_NFE", "max_nfe", "plan", "Plan", "INIT_FAMILIES", "betas_for", "d_min", "init_schedule", "get_solver", "mep", "dmn",
           "spacing_penalty", "fast", "library",
           "__version__"]
