"""Use hso schedules in diffusers pipelines: one call, the right path for every scheduler, the pitfalls repaired.

    >>> import hso.diffusers
    >>> res = hso.diffusers.optimize_pipeline(pipe, nfe=5)   # reads the scheduler, optimises, installs
    >>> image = pipe(prompt).images[0]                        # runs exactly res.timesteps

How each scheduler gets the schedule (diffusers 0.3x-0.4x):

| scheduler | hso solver | how |
|---|---|---|
| DPMSolverMultistep, DPMSolverSinglestep, UniPCMultistep, DEISMultistep, EulerDiscrete, FlowMatchEulerDiscrete | dpmsolver++ / unipc / deis / euler | adapted subclass: the stock ``set_timesteps`` runs, then its ``timesteps`` and ``sigmas`` are replaced by the schedule's |
| HeunDiscrete | heun | the same, with Heun's doubled interior points |
| DDIM | ddim | adapted subclass whose ``step`` goes to the schedule's next point (stock DDIM steps to ``t - 1000 // n``, which is another schedule whenever the points are not evenly strided) |
| EDMEuler, EDMDPMSolverMultistep | euler / dpmsolver++ | adapted subclass: the schedule's sigmas (EDM noise schedule from the scheduler's ``sigma_min`` / ``sigma_max``), as timesteps the scheduler's own ``precondition_noise`` of them, and ``init_noise_sigma`` from the schedule's first sigma (stock: from ``sigma_max``, whatever the schedule) |

Everything else (model-output conversion, solver orders, thresholding, eta) stays diffusers' own code, so an adapted
scheduler given the stock schedule returns the stock outputs (tested). Conventions (spec §3): a ``"jump"`` schedule
(every point is an evaluation, then the step to sigma = 0) is installed with a final sigma of 0; a ``"stop"`` schedule
(the paper's UniPC/DPM-Solver code) evaluates at all points but the last and ends at the last one, x at t_eps.
Repaired: UniPC's ``bh1`` variant and DEIS return NaN on a step to sigma = 0 (UniPC's B(h) = -h and DEIS's e^h are
infinite there; stock DEIS never ends at 0); the adapted schedulers return the data prediction for that step, as
every solver's last step to sigma 0 does.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np

from .calibration import calibrate
from .measured import diffusers_convention
from .optimize import optimize
from .result import ScheduleResult
from .schedules import NoiseSchedule
from .solvers import SAMPLER_DEFAULTS, canonical_prediction, sampler_options, to_data_prediction

__all__ = ["apply", "optimize_pipeline", "calibrate_pipeline", "unet_model", "solver_for", "solver_options_for",
           "pipeline_kwargs", "remove", "SUPPORTED"]

# scheduler class -> the hso solver whose schedule suits it
SUPPORTED: dict[str, str] = {
    "DPMSolverMultistepScheduler": "dpmsolver++",
    "DPMSolverSinglestepScheduler": "dpmsolver++",
    "UniPCMultistepScheduler": "unipc",
    "DEISMultistepScheduler": "deis",
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler",
    "HeunDiscreteScheduler": "heun",
    "FlowMatchEulerDiscreteScheduler": "euler",
    "EDMEulerScheduler": "euler",
    "EDMDPMSolverMultistepScheduler": "dpmsolver++",
}
_FLOW_SIGMAS = ("FlowMatchEulerDiscreteScheduler",)


def _scheduler_of(target: Any) -> Any:
    sched = getattr(target, "scheduler", target)
    if not hasattr(sched, "set_timesteps") or not hasattr(sched, "config"):
        raise TypeError(f"expected a diffusers pipeline or scheduler, got {type(target).__name__}")
    return sched


def _stock_name(sched: Any) -> str:
    for klass in type(sched).__mro__:
        if klass.__name__ in SUPPORTED and not getattr(klass, "_hso_adapted", False):
            return klass.__name__
    raise ValueError(f"{type(sched).__name__} cannot take a custom schedule through hso; supported: "
                     f"{', '.join(SUPPORTED)}. Swap the scheduler first, keeping the model's noise schedule: "
                     "pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)")


def solver_for(target: Any) -> str:
    """The hso solver name matching a pipeline's or scheduler's sampler (e.g. UniPCMultistep -> "unipc").

    Raises:
        ValueError: a scheduler hso cannot drive (the message lists the supported ones).
    """
    return SUPPORTED[_stock_name(_scheduler_of(target))]


def solver_options_for(target: Any) -> dict[str, Any]:
    """The sampler options (`hso.solvers.sampler_options`) a pipeline's or scheduler's sampler runs with, from its
    config: ``solver_order`` as ``order`` (DPM-Solver++ and UniPC), UniPC's ``solver_type`` (bh1 / bh2) as
    ``variant``; every option filled in (diffusers' stock UniPC: ``{"order": 2, "variant": "bh2"}``). Empty for
    solvers without options (DDIM, Euler, Heun) or without an hso sampler (DEIS).

    Raises:
        ValueError: a scheduler hso cannot drive, or a config value hso's sampler does not have (an order above 3).
    """
    sched = _scheduler_of(target)
    return options_from_config(SUPPORTED[_stock_name(sched)], sched.config)


def options_from_config(solver: str, config: Any, override: Any = None) -> dict[str, Any]:
    """`solver_options_for` from a scheduler config mapping and the hso solver of its class; ``override`` (options
    given explicitly, checked on their own first) wins over the config's, option by option.

    Raises:
        ValueError / TypeError: a bad ``override`` (`hso.solvers.sampler_options`'s error), or a config value hso's
            sampler does not have (naming the config field, e.g. ``solver_order=4``).
    """
    if override is not None:
        sampler_options(solver, override)  # a bad explicit option: its own error, not the config's
    if solver not in SAMPLER_DEFAULTS:
        return {}
    fields = {"order": "solver_order", "variant": "solver_type"}
    keep = {k: v for k, v in (override or {}).items() if v is not None}
    given = {k: config[f] for k, f in fields.items()
             if k in SAMPLER_DEFAULTS[solver] and k not in keep and config.get(f) is not None}
    try:
        sampler_options(solver, given)
    except ValueError as e:
        raise ValueError(f"the scheduler's config ({', '.join(f'{fields[k]}={v!r}' for k, v in given.items())}): "
                         f"{e}; pass solver_options= (see hso.solvers.sampler_options) to choose the variant to "
                         "optimise for") from None
    return sampler_options(solver, {**given, **keep})


def _edm_preconditioned(sched: Any) -> bool:
    """EDM schedulers wrap the network: input scaled by c_in, conditioned on c_noise, output mapped to the data
    prediction with c_skip and c_out (their ``precondition_*`` methods)."""
    return all(hasattr(sched, f"precondition_{k}") for k in ("inputs", "noise", "outputs"))


def _flow_sigmas(sched: Any) -> bool:
    return _stock_name(sched) in _FLOW_SIGMAS or bool(sched.config.get("use_flow_sigmas", False))


# ---------------------------------------------------------------- what gets installed
def _result_mu(sched: Any, result: ScheduleResult) -> float | None:
    """The ``mu`` a flow result was optimised for, on a scheduler with dynamic shifting (None: not applicable)."""
    shift = result.schedule.get("params", {}).get("shift") if result.schedule.get("family") == "flow" else None
    if not _dynamic_shifting(sched) or shift is None:
        return None
    return float(np.log(shift)) if sched.config.get("time_shift_type", "exponential") == "exponential" else float(shift)


def _plan(sched: Any, schedule: ScheduleResult | Any, convention: str | None, mu: float | None = None
          ) -> dict[str, Any]:
    """Model timesteps ``[M]`` and scheduler sigmas ``[M+1]`` (final included) for a schedule, checked against the
    scheduler's own noise schedule (at ``mu``, or the result's own, for schedulers with dynamic shifting)."""
    if mu is None and isinstance(schedule, ScheduleResult):
        mu = _result_mu(sched, schedule)
    noise = NoiseSchedule.from_diffusers(sched, mu=mu)
    if isinstance(schedule, ScheduleResult):
        if convention is not None and convention != schedule.convention:
            raise ValueError(f"the schedule was optimised for convention {schedule.convention!r}; installing it as "
                             f"{convention!r} would run a different schedule (optimise for {convention!r} instead)")
        t, conv = np.asarray(schedule.t, dtype=np.float64), schedule.convention
        fam = schedule.schedule.get("family")
        if fam != noise.family or not np.allclose(noise.lambda_(t), schedule.lambdas, rtol=0, atol=1e-6):
            raise ValueError(f"the schedule was optimised for another noise schedule ({schedule.schedule.get('name')}"
                             f", {fam}) than this scheduler's ({noise.name}, {noise.family}); optimise it with "
                             "hso.NoiseSchedule.from_diffusers(scheduler)")
        solver = schedule.solver
    else:
        t, conv, solver = np.asarray(schedule, dtype=np.float64).ravel(), convention or "jump", None
        if t.size < 2 or not np.all(np.isfinite(t)) or np.any(np.diff(t) >= 0):
            raise ValueError("a schedule must be at least 2 finite points t, strictly decreasing")
        if t[0] > noise.t_max + 1e-12 or t[-1] < noise.t_min - 1e-12:
            raise ValueError(f"schedule points leave the model's time domain [{noise.t_min}, {noise.t_max}]")
    if conv not in ("stop", "jump"):
        raise ValueError(f"unknown convention {conv!r}; known: 'stop', 'jump'")
    stock = SUPPORTED[_stock_name(sched)]
    if solver is not None and solver != stock:
        warnings.warn(f"this schedule was optimised for {solver!r} but runs on {type(sched).__name__} ({stock!r}); "
                      f"optimise with solver={stock!r} for the best result", UserWarning, stacklevel=3)
    elif solver is not None and schedule.solver_options:
        try:
            runs = options_from_config(stock, sched.config)
        except ValueError:  # a variant hso has no sampler for (UniPC order 4): no measured variant to compare with
            runs = {}
        if runs and runs != schedule.solver_options:
            warnings.warn(f"this schedule was chosen for {solver} with options {schedule.solver_options} but "
                          f"{type(sched).__name__} runs {runs}; optimise with "
                          f"solver_options={runs!r} (hso.diffusers.optimize_pipeline reads them) for the best result",
                          UserWarning, stacklevel=3)
    if stock == "heun" and conv == "stop":
        raise ValueError("HeunDiscreteScheduler always ends with a step to sigma 0: use a 'jump' schedule")
    if _flow_sigmas(sched):
        if noise.family != "flow":
            raise ValueError("a flow-matching scheduler needs a flow schedule")
        sig = noise.sigma(t)  # flow sigma in [0, 1], the scheduler's own variable
        timesteps = sig * float(sched.config.num_train_timesteps)
    elif _edm_preconditioned(sched):
        import torch  # deferred: torch is optional (the diffusers / torch backends)

        # the network is conditioned on the scheduler's c_noise of each sigma, computed as the stock code does
        sig = noise.sigma(t)
        timesteps = sched.precondition_noise(torch.from_numpy(sig.astype(np.float32))).numpy()
    elif noise.is_discrete:
        timesteps = noise.timesteps_of_t(t)
        if np.any(np.diff(timesteps) >= 0):
            raise ValueError(f"the schedule's integer timesteps {timesteps.tolist()} are not unique; keep at least "
                             "one training step between points")
        abar = sched.alphas_cumprod.double().cpu().numpy()[timesteps]  # diffusers' own table (float32 values)
        sig = np.sqrt((1.0 - abar) / abar)
    else:
        raise ValueError(f"{type(sched).__name__} with a {noise.family} noise schedule is not supported")
    if conv == "jump":
        return {"timesteps": timesteps, "sigmas": np.append(sig, 0.0), "convention": conv, "t": t}
    return {"timesteps": timesteps[:-1], "sigmas": sig, "convention": conv, "t": t, "final_timestep": timesteps[-1]}


class _Adapted:
    """Mixed in before a stock scheduler class: installs the schedule after the stock ``set_timesteps``."""

    _hso_adapted = True
    _hso_plan: dict[str, Any]

    def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "_hso_request", None) is not None:  # dynamic shifting: the schedule for this call's mu
            self._hso_plan = self._hso_plan_for(kwargs.get("mu"))
        plan = getattr(self, "_hso_plan", None)
        if plan is None:  # a stock constructor calling its own set_timesteps (Heun does)
            return super().set_timesteps(*args, **kwargs)  # type: ignore[misc]
        kwargs = dict(zip(("num_inference_steps", "device"), args), **kwargs)
        num_inference_steps, device = kwargs.pop("num_inference_steps", None), kwargs.pop("device", None)
        m = len(plan["timesteps"])
        if kwargs.get("timesteps") is not None or kwargs.get("sigmas") is not None:
            raise ValueError("this scheduler carries an hso schedule; remove it with hso.diffusers.remove() before "
                             "passing timesteps= or sigmas=")
        if num_inference_steps is not None and num_inference_steps != m:
            warnings.warn(f"num_inference_steps={num_inference_steps} ignored: the hso schedule has {m} steps",
                          UserWarning, stacklevel=2)
        extra = {k: v for k, v in kwargs.items() if k == "mu" and v is not None}
        super().set_timesteps(m, device=device, **extra)  # type: ignore[misc]
        import torch  # deferred: torch is optional (the diffusers / torch backends)

        ts_dtype, ts_device = self.timesteps.dtype, self.timesteps.device
        sig_device = self.sigmas.device if hasattr(self, "sigmas") and torch.is_tensor(self.sigmas) else "cpu"
        ts = torch.from_numpy(np.asarray(plan["timesteps"])).to(dtype=ts_dtype, device=ts_device)
        sig = torch.from_numpy(np.asarray(plan["sigmas"], dtype=np.float32)).to(sig_device)
        if _stock_name(self) == "HeunDiscreteScheduler":  # Heun visits every interior point twice
            sig = torch.cat([sig[:1], sig[1:-1].repeat_interleave(2), sig[-1:]])
            ts = torch.cat([ts[:1], ts[1:].repeat_interleave(2)])
        self.timesteps = ts
        if hasattr(self, "sigmas") and _stock_name(self) != "DDIMScheduler":
            self.sigmas = sig
        self.num_inference_steps = m

    def _hso_plan_for(self, mu: Any) -> dict[str, Any]:
        """The plan for one resolution's ``mu``: optimised on first use, then kept (``hso_results[mu]``)."""
        if mu is None:
            raise ValueError("this scheduler optimises its schedule per resolution (use_dynamic_shifting): "
                             "set_timesteps needs the mu the pipeline computes; pass mu=")
        key = float(mu)
        if key not in self.hso_results:
            nfe, solver, kwargs = self._hso_request
            self.hso_results[key] = optimize(NoiseSchedule.from_diffusers(self, mu=key), nfe, solver, **kwargs)
        self.hso_result = self.hso_results[key]
        return _plan(self, self.hso_result, None, key)


class _AdaptedDDIM(_Adapted):
    """DDIM's stock step goes to ``t - T // n``; here it goes to the schedule's next point (or sigma 0 / t_eps)."""

    def step(self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
        import torch  # deferred: torch is optional (the diffusers / torch backends)

        plan = self._hso_plan
        ts = [int(v) for v in plan["timesteps"]]
        t = int(timestep)
        k = ts.index(t)
        if k + 1 < len(ts):
            target = self.alphas_cumprod[ts[k + 1]]
        elif plan["convention"] == "jump":
            target = torch.tensor(1.0, dtype=self.alphas_cumprod.dtype)
        else:
            target = self.alphas_cumprod[int(plan["final_timestep"])]
        # reuse diffusers' step (prediction types, clipping, thresholding, eta) by giving the entry it will read
        # for its strided "previous" timestep the value of the schedule's real next point
        stride_prev = t - self.config.num_train_timesteps // self.num_inference_steps
        table, final = self.alphas_cumprod, self.final_alpha_cumprod
        try:
            if stride_prev >= 0:
                self.alphas_cumprod = table.clone()
                self.alphas_cumprod[stride_prev] = target
            else:
                self.final_alpha_cumprod = target
            return super().step(model_output, timestep, sample, *args, **kwargs)  # type: ignore[misc]
        finally:
            self.alphas_cumprod, self.final_alpha_cumprod = table, final


class _AdaptedFinalJump(_Adapted):
    """The step to sigma 0 as the data prediction, for schedulers whose formula breaks there: UniPC bh1 divides by
    B(h) = -h = -inf (NaN), DEIS multiplies sigma_t = 0 by e^h = inf (NaN). Every solver's last step to sigma 0 is
    the data prediction at the last point, which is what this returns."""

    def step(self, model_output: Any, timestep: Any, sample: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        if self.step_index is None:
            self._init_step_index(timestep)
        last = self.step_index == len(self.timesteps) - 1
        if last and float(self.sigmas[-1]) == 0.0 and self.config.get("solver_type") != "bh2":
            alpha, sigma = self._sigma_to_alpha_sigma_t(self.sigmas[self.step_index])
            x0 = to_data_prediction(model_output, sample, alpha, sigma,
                                    canonical_prediction(self.config.prediction_type))
            self._step_index += 1
            if not return_dict:
                return (x0,)
            from diffusers.schedulers.scheduling_utils import SchedulerOutput  # deferred: diffusers is optional
            return SchedulerOutput(prev_sample=x0)
        return super().step(model_output, timestep, sample, return_dict=return_dict, **kwargs)  # type: ignore[misc]


class _AdaptedEDM(_Adapted):
    """EDM schedulers draw the initial noise at ``sqrt(sigma_max^2 + 1)`` from their config whatever the schedule;
    here it is the same formula at the schedule's first sigma (an hso schedule may start below sigma_max)."""

    @property
    def init_noise_sigma(self) -> float:
        plan = getattr(self, "_hso_plan", None)
        if plan is None:
            return super().init_noise_sigma  # type: ignore[misc]
        return (float(plan["sigmas"][0]) ** 2 + 1) ** 0.5


_MIXINS = {"DDIMScheduler": _AdaptedDDIM, "UniPCMultistepScheduler": _AdaptedFinalJump,
           "DEISMultistepScheduler": _AdaptedFinalJump, "EDMEulerScheduler": _AdaptedEDM,
           "EDMDPMSolverMultistepScheduler": _AdaptedEDM}
_CLASSES: dict[type, type] = {}


def _adapted_class(stock: type) -> type:
    if stock not in _CLASSES:
        # same name and module as the stock class, so save_pretrained writes a config diffusers can load
        klass = type(stock.__name__, (_MIXINS.get(stock.__name__, _Adapted), stock), {})
        klass.__module__ = stock.__module__
        klass.__qualname__ = stock.__qualname__
        _CLASSES[stock] = klass
    return _CLASSES[stock]


def _dynamic_shifting(sched: Any) -> bool:
    """Flow schedulers whose shift depends on the image size: the pipeline passes ``mu`` to set_timesteps."""
    return _flow_sigmas(sched) and bool(sched.config.get("use_dynamic_shifting", False))


def _takes_stop(sched: Any) -> bool:
    """Whether the scheduler can end at a schedule's last point instead of sigma 0 (Heun cannot)."""
    return SUPPORTED[_stock_name(sched)] != "heun"


def apply(target: Any, schedule: ScheduleResult | Any, *, convention: str | None = None) -> Any:
    """Make a pipeline (or scheduler) run exactly this schedule from its next ``set_timesteps`` on.

    Args:
        target: a diffusers pipeline (its ``scheduler`` is replaced) or a scheduler (a new one is returned).
        schedule: an `hso.ScheduleResult` (its convention is used), or schedule points t (descending; normalised
            time, e.g. ``(timesteps + 1) / 1000`` for a discrete model) with ``convention=``.
        convention: for plain points only: ``"jump"`` (default: evaluate at every point, then step to sigma 0) or
            ``"stop"`` (end at the last point).

    Returns:
        The adapted scheduler (same class name and config; for a pipeline, also set as ``pipe.scheduler``).

    Raises:
        ValueError: an unsupported scheduler, a schedule made for another noise schedule, a convention
            mismatch, colliding integer timesteps.
        TypeError: a target that is neither a pipeline nor a scheduler.
    """
    sched = _scheduler_of(target)
    stock = next(k for k in type(sched).__mro__ if k.__name__ == _stock_name(sched)
                 and not getattr(k, "_hso_adapted", False))
    plan = _plan(sched, schedule, convention)
    config = dict(sched.config)
    if "final_sigmas_type" in inspect.signature(stock.__init__).parameters:
        # "zero" makes diffusers treat the last step as the jump to 0 (first order); "sigma_min" as a regular step
        config["final_sigmas_type"] = "zero" if plan["convention"] == "jump" else "sigma_min"
    new = _adapted_class(stock).from_config(config)
    new._hso_plan = plan
    if target is not sched:
        target.scheduler = new
    return new


def remove(target: Any) -> Any:
    """Put back a stock scheduler (same config) in place of an adapted one; returns it."""
    sched = _scheduler_of(target)
    stock = next(k for k in type(sched).__mro__ if k.__name__ == _stock_name(sched)
                 and not getattr(k, "_hso_adapted", False))
    new = stock.from_config(sched.config)
    if target is not sched:
        target.scheduler = new
    return new


def optimize_pipeline(pipe: Any, nfe: int = 5, *, mu: float | None = None, **optimize_kwargs: Any) -> ScheduleResult:
    """Optimise a schedule for a pipeline's own scheduler and install it: the one-liner.

    The noise schedule comes from the scheduler's config (`NoiseSchedule.from_diffusers`), the solver from its
    class (`solver_for`) and its variant from its config (`solver_options_for`: diffusers' stock UniPC is bh2
    order 2, DPM-Solver++ 2M or 3M by ``solver_order``), and the pipeline's next call runs exactly
    ``result.timesteps`` (or the flow sigmas).
    The convention, unless given, is the one measured better for this solver, noise family and NFE
    (`hso.measured.diffusers_convention`): diffusers' own ``"jump"`` (NFE evaluations, then the step to sigma 0)
    or ``"stop"`` (NFE evaluations, then a regular step to the schedule's last point, near the model's t_min,
    where the sample keeps that little noise; installed with ``final_sigmas_type="sigma_min"``); Heun, which
    always ends at sigma 0, and unmeasured solvers take "jump". ``result.convention`` says which.

    Args:
        pipe: a diffusers pipeline (or scheduler).
        nfe: network evaluations per sample.
        mu: for schedulers with dynamic shifting (Flux, SD3.5), the shift of the result returned (default: the
            config's ``base_shift``); the installed scheduler optimises, on first use, the schedule for the ``mu``
            each pipeline call passes (each resolution its own), and keeps them in ``pipe.scheduler.hso_results``
            (``hso_result``: the one of the last call).
        **optimize_kwargs: passed to `hso.optimize` (objective, spacing, p, seed, backend, ...).

    Returns:
        The `ScheduleResult` that was installed.
    """
    sched = _scheduler_of(pipe)
    dynamic = _dynamic_shifting(sched)
    if dynamic and mu is None:  # the result returned is the one at the base resolution's shift
        mu = float(sched.config.get("base_shift", 0.5))
    noise, solver = NoiseSchedule.from_diffusers(sched, mu=mu), solver_for(sched)
    # the variant the scheduler runs (its config), options given explicitly winning
    optimize_kwargs["solver_options"] = options_from_config(solver, sched.config,
                                                            optimize_kwargs.get("solver_options")) or None
    if optimize_kwargs.get("convention") is None:
        conv = "jump"
        if _takes_stop(sched) and isinstance(nfe, (int, np.integer)) and not isinstance(nfe, bool):
            conv = diffusers_convention(solver, noise, int(nfe), optimize_kwargs["solver_options"])[0]
        optimize_kwargs["convention"] = conv
    res = optimize(noise, nfe, solver, **optimize_kwargs)
    new = apply(pipe, res)
    if dynamic:  # every call's own mu gets its own schedule (cached per mu on the scheduler)
        new._hso_request = (nfe, solver, dict(optimize_kwargs))
        new.hso_results = {float(mu): res}
        new.hso_result = res
    return res


def unet_model(pipe: Any, **unet_kwargs: Any) -> Any:
    """``model(x, t) -> prediction`` on numpy batches from a pipeline's UNet / transformer (`hso.calibrate`'s and
    `hso.solvers.sample`'s interface): t -> the model's timestep (``round(T t) - 1`` for discrete models, ``T sigma``
    for flow models), torch on the network's device and dtype, output back to float64 numpy. ``unet_kwargs`` are
    passed on every call (e.g. ``encoder_hidden_states`` for a text-conditioned UNet, broadcast to the batch).
    Behind an EDM scheduler the network runs inside the scheduler's own preconditioning (input scaled by c_in,
    conditioned on c_noise) and the model returns the data prediction (``prediction="sample"``)."""
    import torch  # deferred: torch is optional (the diffusers / torch backends)

    net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if net is None:
        raise ValueError("the pipeline has neither a unet nor a transformer")
    sched = _scheduler_of(pipe)
    noise = NoiseSchedule.from_diffusers(sched)
    param = next(net.parameters())
    big_t = float(sched.config.num_train_timesteps)
    edm = _edm_preconditioned(sched)

    def model(x: np.ndarray, t: float) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device=param.device, dtype=param.dtype)
        if edm:
            sigma = torch.tensor(float(noise.sigma(t)), device=param.device, dtype=param.dtype)
            inp, ts = sched.precondition_inputs(xt, sigma), float(sched.precondition_noise(sigma))
        else:
            inp, ts = xt, float(noise.timesteps_of_t(t)) if noise.is_discrete else float(noise.sigma(t)) * big_t
        tt = torch.full((x.shape[0],), ts, device=param.device, dtype=param.dtype)
        with torch.no_grad():
            out = net(inp, tt, **unet_kwargs)
            out = out.sample if hasattr(out, "sample") else out[0]
            if edm:
                out = sched.precondition_outputs(xt, out, sigma)
        return out.detach().to("cpu", torch.float64).numpy()

    return model


def calibrate_pipeline(pipe: Any, nfe: int = 5, *, budget: int | None = None, sample_shape: Any = None,
                       unet_kwargs: dict[str, Any] | None = None, install: bool = True, **calibrate_kwargs: Any) -> Any:
    """`hso.calibrate` with a pipeline's own network and scheduler, then (by default) install the winner.

    The noise schedule, prediction type and solver come from the scheduler; the convention is diffusers' "jump".

    Args:
        pipe: a diffusers pipeline with a ``unet`` (or ``transformer``) and a supported scheduler.
        nfe: network evaluations per sample.
        budget: calibration budget in network evaluations (default: `hso.calibration.calibrate`'s).
        sample_shape: one sample's shape (default ``(in_channels, sample_size, sample_size)`` from the UNet config).
        unet_kwargs: extra network arguments for every call (conditioning).
        install: `apply` the measured best schedule to the pipeline.
        **calibrate_kwargs: passed to `hso.calibrate` (seed, objectives, refine, ...).

    Returns:
        The `CalibrationResult`.
    """
    sched = _scheduler_of(pipe)
    noise = NoiseSchedule.from_diffusers(sched)
    net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if sample_shape is None:
        cfg = getattr(net, "config", {})
        size = cfg.get("sample_size")
        size = (size, size) if isinstance(size, int) else tuple(size or ())
        if not size or "in_channels" not in cfg:
            raise ValueError("give sample_shape=: it cannot be read from the network's config")
        sample_shape = (cfg["in_channels"], *size)
    if _edm_preconditioned(sched):
        pred = "sample"  # unet_model returns the scheduler's preconditioned data prediction
    else:
        pred = "flow" if _flow_sigmas(sched) else sched.config.get("prediction_type", "epsilon")
    kw = dict(calibrate_kwargs)
    if budget is not None:
        kw["budget"] = budget
    kw.setdefault("convention", "jump")
    # the sampler the pipeline runs: its variant from the config, options given explicitly winning
    kw["solver_options"] = options_from_config(solver_for(sched), sched.config, kw.get("solver_options")) or None
    res = calibrate(unet_model(pipe, **(unet_kwargs or {})), noise, solver_for(sched), nfe,
                    sample_shape=sample_shape, prediction=pred, **kw)
    if install:
        apply(pipe, res.t, convention=res.convention)
    return res


def pipeline_kwargs(result: ScheduleResult, target: Any) -> dict[str, list]:
    """``timesteps=`` or ``sigmas=`` for a pipeline call (or a scheduler) whose stock scheduler accepts one:
    DPMSolverMultistep/Singlestep, Euler, Heun (integer timesteps), FlowMatchEuler (sigmas)::

        pipe(prompt, **hso.diffusers.pipeline_kwargs(res, pipe))

    Raises:
        ValueError: the scheduler takes neither, or its configuration would run another schedule (then use
            `apply`).
    """
    sched = _scheduler_of(target)
    name = _stock_name(sched)
    params = inspect.signature(sched.set_timesteps).parameters
    plan = _plan(sched, result, None)
    if plan["convention"] != "jump":
        raise ValueError("a 'stop' schedule cannot be passed as timesteps=/sigmas= (diffusers would add the jump to "
                         "sigma 0); use hso.diffusers.apply")
    if name in _FLOW_SIGMAS and "sigmas" in params:
        if any(sched.config.get(k) for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                                             "invert_sigmas")):
            raise ValueError(f"{name} would respace the given sigmas (karras/exponential/beta/invert set in its "
                             "config); use hso.diffusers.apply")
        # FlowMatch applies its own shift (static or mu) to the sigmas it is given: pass the unshifted time
        return {"sigmas": [float(v) for v in plan["t"][:len(plan["timesteps"])]]}
    if "timesteps" in params and name in ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
                                          "EulerDiscreteScheduler", "HeunDiscreteScheduler"):
        if name.startswith("DPMSolver") and sched.config.get("final_sigmas_type", "zero") != "zero":
            raise ValueError(f"{name} with final_sigmas_type={sched.config['final_sigmas_type']!r} would end at "
                             "sigma_min, not 0; use hso.diffusers.apply")
        if name == "EulerDiscreteScheduler" and sched.config.get("final_sigmas_type", "zero") != "zero":
            raise ValueError("EulerDiscreteScheduler with final_sigmas_type='sigma_min' would not end at 0; use "
                             "hso.diffusers.apply")
        return {"timesteps": [int(v) for v in plan["timesteps"]]}
    raise ValueError(f"{name} accepts neither timesteps= nor sigmas= for this schedule; use hso.diffusers.apply")
