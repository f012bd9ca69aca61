"""hso: Hierarchical Schedule Optimization for diffusion-model samplers (AAAI 2026), fast and general.

    >>> import hso
    >>> res = hso.optimize("sd21", nfe=5, solver="unipc")
    >>> res.timesteps            # integer model timesteps, strictly decreasing

Importing `hso` loads no compiled code; `hso.fast` picks and loads an engine on first use.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import fast, library
from .inits import INIT_FAMILIES, init_schedule
from .objectives import dmn, mep, spacing_penalty
from .optimize import SPACINGS, d_min, optimize, optimize_many
from .result import ScheduleResult
from .schedules import PRESETS, NoiseSchedule, betas_for
from .solvers import SOLVERS, get_solver


def evaluate(*args, **kwargs):  # noqa: ANN002, ANN003 - forwards to hso.evaluation.evaluate
    """Score schedules on real samplers and test beds; see `hso.evaluation.evaluate` (imported on first use)."""
    from .evaluation import evaluate as _evaluate
    return _evaluate(*args, **kwargs)


def calibrate(*args, **kwargs):  # noqa: ANN002, ANN003 - forwards to hso.calibration.calibrate
    """The measured-best schedule for your model; see `hso.calibration.calibrate` (imported on first use)."""
    from .calibration import calibrate as _calibrate
    return _calibrate(*args, **kwargs)


__all__ = ["optimize", "evaluate", "calibrate", "optimize_many", "NoiseSchedule", "ScheduleResult", "PRESETS",
           "SOLVERS", "SPACINGS", "INIT_FAMILIES", "betas_for", "d_min", "init_schedule", "get_solver", "mep", "dmn",
           "spacing_penalty", "fast", "library",
           "__version__"]
