"""Evidence: real samplers on real test beds, scored against converged reference solutions (``hso evaluate``).

* `methods` - the schedule methods compared (hso's and the baselines), one registry;
* `reference` - the converged probability-flow ODE solution from the same noise (scipy DOP853), and `conditioning`:
  which samples' solutions hang on a tiny change of their noise (left out of ``rmse_wc``);
* `metrics` - RMSE against the reference, Frechet distances in pixel and classifier-feature space;
* `runner` - `evaluate`: every solver x convention x NFE x method on a test bed, as an `Evaluation`;
* `report` - markdown tables, JSON, plots and the README's generated quality summary.

Needs the ``eval`` extra (scikit-learn, matplotlib); imported only when used, never by ``import hso``.
"""
from __future__ import annotations

from .methods import DEFAULT_METHODS, METHODS, MethodNotApplicable, make_schedule, register_method
from .reference import Conditioning, Reference, conditioning, initial_state, reference_solution
from .report import Evaluation
from .runner import DEFAULT_NFES, DEFAULT_SOLVERS, QUICK, evaluate

__all__ = ["evaluate", "Evaluation", "METHODS", "DEFAULT_METHODS", "DEFAULT_SOLVERS", "DEFAULT_NFES", "QUICK",
           "make_schedule", "register_method", "MethodNotApplicable", "reference_solution", "Reference",
           "initial_state", "conditioning", "Conditioning"]
