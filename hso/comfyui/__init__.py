"""A ComfyUI node: "HSO Scheduler", the optimised schedule of the loaded model as ``SIGMAS`` for ``SamplerCustom``.

Install: ``pip install /path/to/hso`` (this repository) into ComfyUI's Python, then link this folder into
``ComfyUI/custom_nodes`` under a name that is not ``hso`` (ComfyUI imports a custom node under its folder's name)::

    ln -s "$(python -c 'import hso.comfyui, os; print(os.path.dirname(hso.comfyui.__file__))')" \\
          ComfyUI/custom_nodes/hso_scheduler

It follows ComfyUI's classic node interface (``INPUT_TYPES`` / ``RETURN_TYPES`` / ``FUNCTION`` / ``CATEGORY`` and the
module-level ``NODE_CLASS_MAPPINGS``), as ComfyUI's own scheduler nodes (BasicScheduler, AlignYourStepsScheduler)
use it in ComfyUI 0.3.x. It needs nothing from ComfyUI itself: the model's noise schedule is read from the object
``model.get_model_object("model_sampling")`` returns, by its attributes:

* discrete eps / v models (``ModelSamplingDiscrete``): the ``sigmas`` table (sigma_k = sqrt((1 - abar_k) / abar_k));
* flow models (``ModelSamplingDiscreteFlow``: SD3 and similar, ``shift``; ``ModelSamplingFlux``: ``shift`` is the
  exponent mu of Flux's time shift, so the flow shift is e^mu);
* EDM models (``ModelSamplingContinuousEDM``): ``sigma_min`` and ``sigma_max``.

ComfyUI's samplers evaluate the model at every sigma but the last, which is 0: hso's convention "jump". The sigmas
are the ones ComfyUI's samplers take: sigma / alpha for VP and EDM models, the flow sigma for flow models.
Results are cached per noise schedule, sampler, steps and denoise.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..optimize import MAX_NFE, optimize
from ..schedules import NoiseSchedule

__all__ = ["HSOScheduler", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "SAMPLERS", "SAMPLER_OPTIONS",
           "noise_schedule_of", "schedule_sigmas"]

# ComfyUI sampler name -> the hso solver whose schedule suits it
SAMPLERS: dict[str, str] = {"euler": "euler", "heun": "heun", "ddim": "ddim", "dpmpp_2m": "dpmsolver++",
                            "uni_pc": "unipc", "uni_pc_bh2": "unipc", "deis": "deis", "ipndm": "ipndm"}
# the variants ComfyUI's samplers run (`hso.solvers.sampler_options`; the others: the solver's defaults): uni_pc is
# UniPC bh1 order 3 (hso's default), uni_pc_bh2 the same with B(h) = e^h - 1
SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {"uni_pc_bh2": {"variant": "bh2", "order": 3}}


def _names(obj: Any) -> set[str]:
    return {k.__name__ for k in type(obj).__mro__}


def noise_schedule_of(model_sampling: Any) -> NoiseSchedule:
    """The hso noise schedule of a ComfyUI ``model_sampling`` object (see the module docstring).

    Raises:
        ValueError: a model_sampling of an unknown kind, or one whose fields are not a valid noise schedule.
    """
    names = _names(model_sampling)
    if "ModelSamplingFlux" in names:
        return NoiseSchedule.flow(float(np.exp(float(model_sampling.shift))), name="flux")
    if "ModelSamplingDiscreteFlow" in names:
        return NoiseSchedule.flow(float(model_sampling.shift), name="comfyui_flow")
    if "ModelSamplingContinuousEDM" in names or "ModelSamplingContinuousV" in names:
        return NoiseSchedule.edm(float(model_sampling.sigma_min), float(model_sampling.sigma_max),
                                     name="comfyui_edm")
    if "ModelSamplingDiscrete" in names or hasattr(model_sampling, "sigmas"):
        sig = np.asarray(getattr(model_sampling, "sigmas").detach().cpu().double().numpy()
                         if hasattr(getattr(model_sampling, "sigmas"), "detach") else model_sampling.sigmas,
                         dtype=np.float64).ravel()
        if sig.size < 2 or not np.all(np.isfinite(sig)) or np.any(sig <= 0) or np.any(np.diff(sig) <= 0):
            raise ValueError("model_sampling.sigmas must be at least 2 positive, finite, increasing values")
        return NoiseSchedule.vp_discrete(alphas_cumprod=1.0 / (1.0 + sig * sig), name="comfyui_discrete")
    raise ValueError(f"unknown model_sampling kind {type(model_sampling).__name__!r}: expected a discrete "
                     "(eps / v), flow (SD3, Flux) or EDM model's")


_CACHE: dict[tuple, tuple[float, ...]] = {}
_CACHE_SIZE = 256


def _sigmas(noise: NoiseSchedule, sampler: str, nfe: int) -> tuple[float, ...]:
    """The sampler's sigmas for a schedule (cached by the noise schedule's content, sampler and NFE)."""
    key = (noise.content_key(), sampler, nfe)
    if key not in _CACHE:
        res = optimize(noise, nfe, SAMPLERS[sampler], convention="jump",
                           solver_options=SAMPLER_OPTIONS.get(sampler))
        sig = noise.sigma(res.t) if noise.family == "flow" else noise.edm_sigma(res.t)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = tuple(float(v) for v in sig) + (0.0,)
    return _CACHE[key]


def schedule_sigmas(model_sampling: Any, steps: int, sampler: str = "euler", denoise: float = 1.0) -> list[float]:
    """The node's output as a plain list: ``steps + 1`` descending sigmas ending in 0 (an empty list for
    ``denoise == 0``).

    With ``denoise < 1`` the schedule is optimised for ``round(steps / denoise)`` steps and its last ``steps + 1``
    sigmas are returned, as ComfyUI's BasicScheduler does.

    Raises:
        ValueError: steps < 1, an unknown sampler name, denoise outside [0, 1], or an unknown model_sampling.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; the HSO scheduler supports {', '.join(SAMPLERS)}")
    if not isinstance(denoise, (int, float, np.floating)) or not 0.0 <= float(denoise) <= 1.0:
        raise ValueError(f"denoise must be in [0, 1], got {denoise!r}")
    if float(denoise) == 0.0:
        return []
    total = int(steps) if float(denoise) >= 1.0 else max(int(steps), int(round(int(steps) / float(denoise))))
    noise = noise_schedule_of(model_sampling)
    solver = SAMPLERS[sampler]
    nfe = 2 * total - 1 if solver == "heun" else total  # Heun: two evaluations per step, none at the last point
    return list(_sigmas(noise, sampler, nfe)[-(int(steps) + 1):])


class HSOScheduler:
    """ComfyUI node: MODEL, steps, sampler, denoise -> SIGMAS (the HSO-optimised schedule)."""

    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    DESCRIPTION = "Timestep schedule optimised by HSO for the loaded model, the step count and the sampler."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's interface
        return {"required": {"model": ("MODEL",),
                             "steps": ("INT", {"default": 10, "min": 1, "max": MAX_NFE}),
                             "sampler": (list(SAMPLERS), {"default": "euler"}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model: Any, steps: int, sampler: str, denoise: float = 1.0) -> tuple[Any]:
        import torch  # deferred: torch is optional (the diffusers / torch backends)

        ms = model.get_model_object("model_sampling") if hasattr(model, "get_model_object") else model
        return (torch.FloatTensor(schedule_sigmas(ms, steps, sampler, denoise)),)


NODE_CLASS_MAPPINGS = {"HSOScheduler": HSOScheduler}
NODE_DISPLAY_NAME_MAPPINGS = {"HSOScheduler": "HSO Scheduler"}
