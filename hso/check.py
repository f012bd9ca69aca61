"""`check`: lint a user's sampling schedule before any image is made.

A schedule people bring (integer timesteps for a discrete model, k-diffusion sigmas, or hso's normalised t) is
checked against the model's noise schedule and the solver that will run it. The report lists findings (code,
severity, one-line message) and the schedule's model-free discretisation error estimate (hso's MEP objective) next
to hso's own schedule for the same NFE.

    >>> rep = hso.check([999, 800, 600, 400, 200, 0], "sd21", "unipc", nfe=5)
    >>> rep.ok, rep.ratio
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import fast
from .optimize import optimize
from .result import ScheduleResult
from .schedules import KIND_FLOW, PRESETS, NoiseSchedule
from .solvers import CONVENTIONS, get_solver

__all__ = ["check", "CheckReport", "Finding", "INPUT_KINDS", "EPS32", "F32_TOL", "ZERO_DIVIDING_SOLVERS"]

INPUT_KINDS = ("timesteps", "sigmas", "t")
EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
# A coefficient like expm1(-h) computed as exp(-h) - 1 in float32 has relative error ~ EPS32 / h; each further
# divided difference (phi_k = (phi_{k-1} - 1/(k-1)!) / h, UniPC's B_h terms) multiplies it by 1/h. Flag a lambda
# step when that relative error exceeds F32_TOL.
F32_TOL = 1e-3
# order k of the phi-coefficient the solver's diffusers scheduler computes by subtraction (rel. error EPS32 / h^k);
# solvers without exponential-integrator coefficients (DDIM, Euler, Heun, iPNDM) are not flagged
_PHI_ORDER = {"unipc": 2, "dpmsolver++": 1, "deis": 1}
# solvers whose last step divides by (a function of) the final lambda: infinite at sigma 0
ZERO_DIVIDING_SOLVERS = ("unipc", "deis")
_SIGMA_RTOL = 0.01  # relative tolerance on the model's sigma range (float32 tables, rounded published lists)
_OTHER_MODEL_FACTOR = 1.5  # first sigma off the model's sigma at t_max by more than this: made for another model?
_SHIFT_RTOL = 0.1
_RATIO_WARN = 2.0


@dataclass(frozen=True)
class Finding:
    """One finding: ``code`` (stable, for programs), ``severity`` ("error", "warning", "info"), a one-line message."""

    code: str
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: [{self.code}] {self.message}"


@dataclass(frozen=True)
class CheckReport:
    """What `check` found.

    Attributes:
        findings: the findings, errors first.
        ok: True when no finding is an error.
        mep: the schedule's objective value (hso's MEP, same objective / p as the hso schedule), or None where it
            cannot be computed (unordered or non-finite points).
        hso_mep: the same objective of hso's schedule for the same solver, NFE and convention (None: no comparison).
        ratio: mep / hso_mep (None: either missing). Above 1: the schedule's estimated discretisation error is that
            many times hso's.
        hso: the `ScheduleResult` compared with (None: no comparison).
        kind: how the input was read ("timesteps", "sigmas" or "t"); solver, convention, nfe: as checked (nfe is
            what the schedule spends under the convention).
        lambdas: half log-SNR of the schedule's evaluation points (final sigma 0 left out), or None.
    """

    findings: tuple[Finding, ...]
    ok: bool
    mep: float | None
    hso_mep: float | None
    ratio: float | None
    hso: Any = field(default=None, repr=False)
    kind: str = ""
    solver: str = ""
    convention: str = ""
    nfe: int | None = None
    objective: str = "mep"
    p: float | None = None
    lambdas: np.ndarray | None = field(default=None, repr=False)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings)

    def __str__(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        head = (f"hso check: {self.kind}, {self.solver}, convention {self.convention}, NFE {self.nfe}: "
                f"{'OK' if self.ok else 'ERRORS'} ({n_err} error{'s' * (n_err != 1)}, "
                f"{n_warn} warning{'s' * (n_warn != 1)})")
        lines = [head] + [f"  {f}" for f in self.findings]
        if self.mep is not None:
            obj = f"{self.objective} (p {self.p:g})" if self.p is not None else self.objective
            line = f"  estimated discretisation error, {obj}: {self.mep:.4g}"
            if self.hso_mep is not None:
                line += f"; hso's schedule: {self.hso_mep:.4g}; ratio {self.ratio:.3g}"
            lines.append(line)
        if self.hso is not None:
            h = self.hso
            if h.timesteps is not None:
                pts = f"timesteps {h.timesteps.tolist()}"
            elif h.schedule.get("family") == "flow":  # flow sigmas, as the user's list gives them
                fs = [*(1.0 / (1.0 + np.exp(h.lambdas))).tolist(), *([0.0] if h.convention == "jump" else [])]
                pts = f"flow sigmas {[round(float(s), 6) for s in fs]}"
            else:
                pts = f"sigmas {[round(float(s), 6) for s in h.sigmas]}"
            lines.append(f"  hso schedule ({h.source}): {pts}")
        return "\n".join(lines)


def _noise_schedule(obj: Any) -> NoiseSchedule:
    if isinstance(obj, NoiseSchedule):
        return obj
    if isinstance(obj, str):
        if obj.lower().replace("-", "_") in PRESETS:
            return NoiseSchedule.preset(obj)
        if os.path.exists(obj):
            return NoiseSchedule.from_diffusers(obj)
        return NoiseSchedule.preset(obj)  # raises with the known presets
    return NoiseSchedule.from_diffusers(obj)


def _as_points(schedule: Any) -> np.ndarray:
    if isinstance(schedule, (str, bytes)):
        raise TypeError("schedule must be a 1-D list of numbers, got a string")
    if hasattr(schedule, "detach"):  # a torch tensor
        schedule = schedule.detach().cpu().numpy()
    raw = np.asarray(schedule)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"schedule must be a 1-D list of numbers, got entries of type {raw.dtype}")
    if raw.ndim != 1:
        raise ValueError(f"schedule must be 1-D, got shape {raw.shape}")
    if raw.size < 2:
        raise ValueError(f"schedule needs at least 2 points, got {raw.size}")
    return raw.astype(np.float64)


def _guess_kind(x: np.ndarray, ns: NoiseSchedule) -> str:
    fin = x[np.isfinite(x)]
    if ns.is_discrete and fin.size and np.all(fin == np.rint(fin)) and fin.max() > 1:
        return "timesteps"
    return "sigmas"


def _fmt(values: Any) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def check(schedule: Any, noise_schedule_or_scheduler: Any, solver: str, *, nfe: int | None = None,
          convention: str | None = None, kind: str | None = None) -> CheckReport:
    """Lint a sampling schedule for a model and a solver before sampling.

    Args:
        schedule: descending points: integer model timesteps (discrete models), k-diffusion sigmas (VP / EDM:
            ``sigma / alpha``; flow: the flow sigma in [0, 1]), optionally ending in 0, or normalised t; or a
            `ScheduleResult` (its t and convention are checked).
        noise_schedule_or_scheduler: a `NoiseSchedule`, a preset name, a diffusers scheduler, its config or the
            path of its scheduler_config.json.
        solver: a name of `hso.SOLVERS` (or an alias).
        nfe: the number of network evaluations you expect the schedule to spend (None: whatever it spends).
        convention: "stop" (the N + 1 points are all evaluated but the last, NFE = N evaluations per step) or "jump"
            (every point evaluated, then a step to sigma 0). Default: "jump" for a list ending in sigma 0 (or t 0),
            else the solver's own.
        kind: "timesteps", "sigmas" or "t" (default: integers for a discrete model are timesteps, else sigmas).

    Returns:
        A `CheckReport`; ``report.ok`` is False when a finding is an error.

    Raises:
        ValueError / TypeError: not a 1-D list of at least 2 numbers, unknown solver / convention / kind / preset,
            nfe not an integer >= 1, fractional timesteps.
    """
    spec = get_solver(solver)
    ns = _noise_schedule(noise_schedule_or_scheduler)
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    if kind is not None and kind not in INPUT_KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(INPUT_KINDS)}")
    if nfe is not None and (isinstance(nfe, (bool, np.bool_)) or not isinstance(nfe, (int, np.integer)) or nfe < 1):
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    if isinstance(schedule, ScheduleResult):
        kind, convention = "t", convention or schedule.convention
        schedule = schedule.t
    x = _as_points(schedule)
    findings: list[Finding] = []

    def add(code: str, severity: str, message: str) -> None:
        findings.append(Finding(code, severity, message))

    guessed = kind is None
    kind = kind or _guess_kind(x, ns)
    if kind == "timesteps":
        if not ns.is_discrete:
            raise ValueError(f"integer timesteps need a discrete model; the {ns.family} family has none (give sigmas "
                             "or t)")
        fin = x[np.isfinite(x)]
        if np.any(fin != np.rint(fin)):
            raise ValueError(f"timesteps must be integers, got {_fmt(x)}")
    if guessed:
        add("input_kind", "info", f"read as {kind} (pass kind= / --timesteps, --sigmas or --t to say otherwise)")

    # -- finite, terminal zero
    finite = np.isfinite(x)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        add("non_finite", "error", f"entry {bad} is {x[bad]!r}: every point must be a finite number")
    terminal_zero = kind != "timesteps" and x[-1] == 0.0
    pts = x[:-1] if terminal_zero else x
    if convention is None:
        convention = "jump" if terminal_zero else spec.default_convention
        if terminal_zero and spec.default_convention != "jump":
            add("convention", "info", f"the list ends in 0: read with convention 'jump' (every point evaluated, then "
                                      f"a step to 0), not {spec.name}'s default 'stop'")
    elif terminal_zero and convention == "stop":
        add("terminal_zero_stop", "warning", "the list ends in 0 but convention 'stop' stops at the last point "
                                             "without stepping: the final 0 is read as the jump to sigma 0")

    # -- order
    d = np.diff(pts)
    if np.all(finite):
        if kind == "timesteps" and np.any(d == 0):
            dup = sorted({int(v) for v, c in zip(*np.unique(pts, return_counts=True)) if c > 1})
            add("duplicate_timesteps", "error", f"timesteps {dup} appear more than once: the sampler would take a "
                                                "zero-length step (diffusers' multistep solvers give NaN or skip)")
        if np.any(d > 0) or (kind != "timesteps" and np.any(d == 0)):
            i = int(np.flatnonzero(d >= 0)[0])
            what = "ascending" if np.all(d >= 0) else "not strictly descending"
            add("not_descending", "error", f"the {kind} are {what} (entries {i} and {i + 1}: {pts[i]:g} then "
                                           f"{pts[i + 1]:g}); a schedule runs from noise to data, largest first")
        if kind != "timesteps" and terminal_zero and pts.size and pts[-1] <= 0:
            add("not_descending", "error", "only the last entry may be 0")

    # -- to t, with range checks
    t = None
    n_train = ns.num_train_timesteps
    sig_hi = float(ns.edm_sigma(ns.t_max)) if ns.kind != KIND_FLOW else float(ns.sigma(ns.t_max))
    sig_lo = float(ns.edm_sigma(ns.t_min)) if ns.kind != KIND_FLOW else float(ns.sigma(ns.t_min))
    if np.all(np.isfinite(pts)):
        if kind == "timesteps":
            out = (pts < 0) | (pts > n_train - 1)
            if out.any():
                add("out_of_range", "error", f"timesteps {_fmt(pts[out])} lie outside this model's [0, "
                                             f"{n_train - 1}]")
            if pts.max() > n_train - 1:
                add("other_model", "warning", f"largest timestep {pts.max():g} exceeds T - 1 = {n_train - 1}: made "
                                              "for a model with more training steps?")
            t = ns.t_of_timesteps(np.clip(pts, 0, n_train - 1))
        elif kind == "t":
            out = (pts < ns.t_min - 1e-9) | (pts > ns.t_max + 1e-9)
            if out.any():
                add("out_of_range", "error", f"t values {_fmt(pts[out])} lie outside this model's [{ns.t_min:g}, "
                                             f"{ns.t_max:g}]")
            t = np.clip(pts, ns.t_min, ns.t_max)
        else:
            t = _sigmas_to_t(pts, ns, sig_lo, sig_hi, add)
    # -- collisions after rounding to model timesteps
    if t is not None and ns.is_discrete and kind != "timesteps" and not any(f.code == "out_of_range" for f in findings):
        ts = ns.timesteps_of_t(t)
        if np.any(np.diff(ts) == 0):
            dup = sorted({int(v) for v, c in zip(*np.unique(ts, return_counts=True)) if c > 1})
            add("timestep_collision", "warning",
                f"rounded to model timesteps ({ts.tolist()}), points collide at {dup}: schedulers that round "
                "sigmas to integer timesteps (diffusers' multistep solvers, use_karras_sigmas) run a repeated step")

    # -- count vs NFE
    e = spec.evals_per_step
    n_pts = pts.size
    spends = e * (n_pts - 1) + (1 if convention == "jump" else 0)
    if nfe is not None and nfe != spends:
        try:
            want = spec.n_intervals(nfe, convention) + 1
            want_txt = f"{want} points" + (" then 0" if convention == "jump" and kind != "timesteps" else "")
        except ValueError as err:
            want_txt = f"no exact count ({err})"
        rule = ("'stop': NFE = " + (f"{e} x " if e > 1 else "") + "(points - 1), the last point is only reached"
                if convention == "stop" else
                "'jump': NFE = " + (f"{e} x (points - 1) + 1" if e > 1 else "points") + ", every point is evaluated "
                "and the final step to 0 is free of a new point")
        add("count_mismatch", "error", f"{n_pts} points (final 0 not counted) spend NFE {spends} with {spec.name} "
                                       f"under convention {rule}; NFE {nfe} needs {want_txt}")

    # -- solver-specific: terminal zero, float32 steps
    lam = None
    if t is not None and not any(f.code in ("not_descending", "duplicate_timesteps") for f in findings):
        lam = ns.lambda_(t) if kind != "sigmas" else _lambda_of_sigma(pts, ns)
        if not (np.all(np.isfinite(lam)) and np.all(np.diff(lam) > 0)):
            lam = ns.lambda_(t)
            if not np.all(np.diff(lam) > 0):
                lam = None
    if terminal_zero and spec.name in ZERO_DIVIDING_SOLVERS:
        add("terminal_zero_division", "warning",
            f"the schedule ends at sigma 0 and {spec.name}'s last step divides by its lambda step, infinite there: "
            "diffusers gives NaN (UniPC with solver_type='bh1', DEIS); end at sigma_min instead (convention 'stop') "
            "or use final_sigmas_type='sigma_min' / UniPC bh2")
    k = _PHI_ORDER.get(spec.name)
    if k is not None and lam is not None:
        h = np.diff(lam)
        h_min = (EPS32 / F32_TOL) ** (1.0 / k)
        small = np.flatnonzero(h < h_min)
        if small.size:
            i = int(small[0])
            add("float32_step", "warning",
                f"lambda step {h[i]:.3g} between points {i} and {i + 1} (and {small.size - 1} more) is below "
                f"{h_min:.3g}: {spec.name}'s coefficients (order-{k} phi functions, relative float32 error ~ "
                f"eps32 / h^{k} = {EPS32 / h[i] ** k:.2g}) lose precision in float32; merge or drop the step")

    # -- objective vs hso's schedule
    mep_v = hso_mep = ratio = None
    res = None
    objective, p = "mep", None
    try:
        res = optimize(ns, spends, spec.name, convention=convention)
    except ValueError as err:
        add("no_comparison", "info", f"no hso schedule for NFE {spends}: {' '.join(str(err).split())}")
    if res is not None:
        objective, p = res.objective, float(res.settings["p"])
        obj = fast.ObjectiveSpec(objective, ns.kind, p, res.settings.get("trunc_num"))

        def value(lams: np.ndarray) -> float:
            return float(fast.objective_and_grad(np.asarray(lams, dtype=np.float64)[None, :], obj)[0][0])
        hso_mep = value(res.lambdas)
        if lam is not None and lam.size == res.lambdas.size:
            mep_v = value(lam)
            if math.isfinite(mep_v) and hso_mep > 0:
                ratio = mep_v / hso_mep
                sev = "warning" if ratio > _RATIO_WARN else "info"
                add("error_estimate", sev, f"estimated discretisation error ({objective}, p {p:g}) {mep_v:.4g}: "
                                           f"{ratio:.3g}x hso's schedule for NFE {spends} ({hso_mep:.4g})")
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])
    return CheckReport(tuple(findings), not any(f.severity == "error" for f in findings), mep_v, hso_mep, ratio, res,
                       kind, spec.name, convention, spends, objective, p, lam)


def _lambda_of_sigma(s: np.ndarray, ns: NoiseSchedule) -> np.ndarray:
    """lambda of k-diffusion sigmas (flow: of flow sigmas), clipped to the model's range."""
    lo, hi = float(ns.lambda_(ns.t_max)), float(ns.lambda_(ns.t_min))
    with np.errstate(divide="ignore"):
        lam = np.log1p(-s) - np.log(s) if ns.kind == KIND_FLOW else -np.log(s)
    return np.clip(lam, lo, hi)


def _sigmas_to_t(s: np.ndarray, ns: NoiseSchedule, lo: float, hi: float, add: Any) -> np.ndarray | None:
    """Normalised t of sigmas, with range / other-model / shift findings."""
    if np.any(s <= 0):
        add("out_of_range", "error", f"sigmas {_fmt(s[s <= 0])} are not positive (only the last entry may be 0)")
        return None
    what = "flow sigmas" if ns.kind == KIND_FLOW else "sigmas"
    if ns.kind == KIND_FLOW:
        out = s > 1.0
        if out.any():
            add("out_of_range", "error", f"flow sigmas {_fmt(s[out])} exceed 1 (a flow sigma lies in [0, 1]; "
                                         "k-diffusion sigmas of a VP/EDM model?)")
            return None
    else:
        out = (s > hi * (1 + _SIGMA_RTOL)) | (s < lo * (1 - _SIGMA_RTOL))
        if out.any():
            add("out_of_range", "error", f"{what} {_fmt(s[out])} lie outside this model's [{lo:.4g}, {hi:.4g}] "
                                         f"(sigma at t_min and t_max)")
        r = s[0] / hi
        if r > _OTHER_MODEL_FACTOR or r < 1 / _OTHER_MODEL_FACTOR:
            add("other_model", "warning", f"first sigma {s[0]:.4g} vs this model's {hi:.4g} at t_max "
                                          f"({r:.3g}x): made for another noise schedule (or a partial "
                                          "img2img schedule)?")
    lam = _lambda_of_sigma(s, ns)
    t = np.clip(ns.t_of_lambda(lam), ns.t_min, ns.t_max)
    if ns.kind == KIND_FLOW:
        _flow_shift_check(s, ns, add)
    return t


def _flow_shift_check(s: np.ndarray, ns: NoiseSchedule, add: Any) -> None:
    """Flow sigmas that are a shifted uniform grid for another shift than the model's (e.g. unshifted sigmas as a
    FlowMatch pipeline's ``sigmas=`` takes them, passed where shifted ones are expected)."""
    if s.size < 3:
        return
    u = np.linspace(s[0], s[-1], s.size)  # the unshifted uniform grid between the ends
    u = np.clip(u, 1e-9, 1 - 1e-9)
    ss = np.clip(s, 1e-9, 1 - 1e-9)
    inner = slice(1, -1)
    implied = ss[inner] * (1 - u[inner]) / (u[inner] * (1 - ss[inner]))  # sigma = k u / (1 + (k - 1) u)
    k = float(np.exp(np.median(np.log(implied))))
    fit = k * u / (1 + (k - 1) * u)
    if np.max(np.abs(fit - s)) > 0.01:  # not a shifted uniform grid: no verdict
        return
    model = ns.params["shift"]
    if abs(math.log(k / model)) > math.log1p(_SHIFT_RTOL):
        hint = " (they look unshifted: FlowMatch pipelines shift the sigmas= they are given)" if abs(k - 1) < 0.05 \
            else ""
        add("shift_mismatch", "warning", f"these flow sigmas are a uniform grid shifted by {k:.3g}, this model's "
                                         f"shift is {model:g}{hint}")
