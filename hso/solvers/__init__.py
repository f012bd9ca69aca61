"""Solver conventions: how a sampler's NFE maps to schedule intervals (spec §3).

Two conventions exist and the optimiser must know which one the target sampler uses:

* ``"stop"``: the sampler integrates over N intervals and returns x at t_eps (no network call there); the
  DPM-Solver / UniPC code the paper used. Points: N + 1, network evaluations: N per evaluation-per-step.
* ``"jump"``: the sampler evaluates the network at every schedule point, the last one at t_eps, then jumps to
  sigma = 0 with the last data prediction; DDIM in the paper, and diffusers' multistep schedulers. Points: N + 1 =
  the evaluation points.

Heun-type solvers spend two evaluations per interval (one on the final jump to 0, k-diffusion style).
"""
from __future__ import annotations

from .samplers import (PREDICTIONS, SAMPLER_DEFAULTS, SampleOutput, canonical_prediction, final_data, initial_state,
                       prediction_for, sample, sampler_label, sampler_options, to_data_prediction)
from .spec import CONVENTIONS, SOLVERS, SolverSpec, get_solver

__all__ = ["SolverSpec", "SOLVERS", "get_solver", "CONVENTIONS", "sample", "SampleOutput", "PREDICTIONS",
           "SAMPLER_DEFAULTS", "to_data_prediction", "canonical_prediction", "prediction_for", "sampler_options",
           "sampler_label", "initial_state", "final_data"]
