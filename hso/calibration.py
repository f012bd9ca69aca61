"""`hso.calibrate`: the measured-best schedule for *your* model, for a few hundred network evaluations.

HSO and the baselines are model-free: which of them samples best depends on the model (its error profile, its data).
`calibrate` settles it by measurement on a handful of noises:

1. a teacher: the same noises integrated with UniPC (order 3, bh1) on a fine logSNR-uniform schedule from the top
   of the model's time domain down to its bottom, ending with the data prediction (the converged sample);
2. candidates from the engine, all for the target solver, NFE and convention: hso's search under each objective /
   p / spacing (MEP p = 2 rank, constrain, p = 1, optionally DM-NonUniform), a few diverse members of the final DE
   population, for "jump" the "stop"-optimised schedule ported by dropping its last point, the baselines
   (logSNR, time-uniform, time-quadratic, EDM rho = 7; diffusers' leading/trailing and AYS where they apply) and
   the blend of the cell's measured pair (`hso.measured.blend_pair`) where the default is not that blend;
3. the candidates are run with the real solver (`hso.solvers.sample`) and the real model and scored by the RMSE of
   their final samples against the teacher's, by successive halving: round r draws 2^(r+1) new noises, runs the
   teacher and the surviving candidates on them, and keeps the better half (errors are heavy-tailed across noises,
   so the budget goes to more noises for the close contenders);
4. the default (`hso.optimize`'s model-free pick, candidate "hso") is the incumbent: it is never eliminated, and a
   challenger replaces it only when its RMSE on the same noises is lower by more than ``margin`` (2%) and its mean
   per-noise lead exceeds ``significance`` (1) standard errors of the per-noise differences. The other
   candidates are ordered by the default's measured ranking for this cell (`hso.measured`), and where the first
   round (two noises each) would take more than half the budget only the best-ranked ones are run;
5. optionally, the winner's interior points are refined by a compass search in lambda on the measured error.

Why the incumbent, the test and the ordering: with a few noises per candidate, a measured difference of a few
percent is mostly noise (one trajectory that changes mode dominates the error): on some test beds the lowest
measured error alone is within 2% of the best candidate less often than the default without any measurement, and
a lead that one noise makes is no evidence.
`benchmarks/quality/selection.py` measures how often each selection rule picks within 2% of the best candidate,
from every candidate's per-noise errors on the test beds.

Network evaluations are counted per sample (a call on a batch of b samples costs b) and reported; the budget is
checked before any evaluation. The default budget, `DEFAULT_BUDGET` = 1000 (6.5% of what GITS spends: 256
trajectories x 60 steps), is the smallest budget of the replay (`benchmarks/quality/selection.py`: 307 and 1000)
at which calibration is never worse on average than the model-free default alone, in any configuration; at 307 it
is worse on two (the exact patches mixture under SD's betas, the epsilon network under DDPM's), where a challenger
that wins on most noises fails badly on a few that 4-6 noises rarely contain.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import fast
from .baselines import MethodNotApplicable
from .fast.registry import get_backend
from .measured import measured_pick
from .methods import CALIBRATE_CANDIDATES, PORTED, SCHEDULE_METHODS
from .optimize import method_schedule, plan
from .result import sampler_sigmas
from .schedules import NoiseSchedule, as_schedule
from .solvers import SAMPLER_DEFAULTS, final_data, get_solver, initial_state, prediction_for, sample, sampler_options

__all__ = ["calibrate", "CalibrationResult", "DEFAULT_BUDGET", "GITS_BUDGET", "EvaluationCounter",
           "candidate_schedules", "default_objectives", "first_round", "select", "teacher_solution"]

GITS_BUDGET = 256 * 60  # GITS (Chen et al. 2024) calibrates on 256 trajectories of 60 steps
# the default budget: see the module docstring (a test re-derives it from the committed replay)
DEFAULT_BUDGET = 1000


@dataclass(frozen=True)
class CalibrationResult:
    """The measured-best schedule and the evidence.

    Attributes:
        t: the chosen schedule points (descending), for ``convention``.
        timesteps: integer model timesteps (discrete models) or None.
        sigmas: k-diffusion sigmas (final 0 for "jump").
        method: the winning candidate's name.
        rmse: its RMSE against the teacher on the calibration noises.
        candidates: ``[{"name", "t", "rmse"}]`` for every candidate; rmse over the noises it was run on (successive
            halving drops the worse half each round, so late rounds see only the contenders).
        n_noise: calibration noises drawn (the winner was run on all of them).
        nfe_spent: network evaluations spent (per sample), teacher and probe included.
        budget, n_noise, teacher_steps, solver, solver_options, nfe, convention, prediction, seed, wall_time,
        margin, significance: as passed to `calibrate` (candidate "hso", the default, is the incumbent).
        duel: the last comparison with the default: ``{"challenger", "rmse_ratio" (its RMSE over the default's on
            the same noises), "lead", "lead_se"}`` (mean per-noise lead in squared error and its standard error), or
            empty when no challenger lasted.
        objectives: the hso objectives searched for candidates (("mep", "dmn") where the engine has the fused
            DM-NonUniform lower level), and backend: the engine backend that ran the searches.
    """

    t: np.ndarray
    timesteps: np.ndarray | None
    sigmas: np.ndarray
    method: str
    rmse: float
    candidates: list[dict[str, Any]]
    nfe_spent: int
    budget: int
    n_noise: int
    teacher_steps: int
    solver: str
    solver_options: dict[str, Any]
    nfe: int
    convention: str
    prediction: str
    seed: int
    wall_time: float
    schedule: dict[str, Any] = field(default_factory=dict)
    margin: float = 0.02
    significance: float = 1.0
    duel: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = ()
    backend: str = ""

    def report(self) -> str:
        """A table of the candidates, best first."""
        rows = sorted(self.candidates, key=lambda c: (-c["noises"], c["rmse"]))
        lines = [f"# calibrate: {self.solver} NFE {self.nfe} ({self.convention}), {self.n_noise} noises, teacher "
                 f"{self.teacher_steps} steps, {self.nfe_spent} / {self.budget} network evaluations; searches: "
                 f"{', '.join(self.objectives)} on backend {self.backend}",
                 f"'hso' is the default: a challenger replaces it only when more than {self.margin:.0%} better, "
                 f"with a per-noise lead above {self.significance:g} x its standard error",
                 f"{'candidate':<22} {'rmse':>10} {'noises':>7}"]
        lines += [f"{c['name']:<22} {c['rmse']:>10.5g} {c['noises']:>7d}"
                  + ("   <- chosen" if c["name"] == self.method else "") for c in rows]
        if self.method not in {c["name"] for c in rows}:
            lines.append(f"{self.method:<22} {self.rmse:>10.5g}   <- chosen (refined)")
        if self.duel:
            d = self.duel
            lines.append(f"last duel: {d['challenger']} at {d['rmse_ratio']:.3f}x the default's RMSE; per-noise lead "
                         f"{d['lead']:.3g} +- {d['lead_se']:.3g} (one standard error)")
        return "\n".join(lines)


class EvaluationCounter:
    """Wraps the model: counts evaluations per sample, checks every output."""

    def __init__(self, model: Callable[[Any, float], Any]):
        self.model, self.spent = model, 0

    def __call__(self, x: Any, t: float) -> Any:
        self.spent += int(x.shape[0])
        return self.model(x, t)


def _diverse_population(schedule: NoiseSchedule, nfe: int, solver: str, convention: str, k: int,
                        options: dict[str, Any]) -> list[np.ndarray]:
    """Up to k members of the final DE population of hso's search, far apart in (t_eps, T_max), as schedules."""
    # method "hso": the search for this convention (the measured default may port the "stop" search instead)
    job = plan(**{"method": "hso", **options, "schedule": schedule, "nfe": nfe, "solver": solver,
                  "convention": convention})
    out = fast.search(job.schedule, job.lower, job.objective, job.search, backend=job.backend)
    pop = np.unique(np.round(out.population, 6), axis=0)
    if pop.shape[0] == 0 or k <= 0:
        return []
    lo = np.array([b[0] for b in job.search.bounds])
    hi = np.array([b[1] for b in job.search.bounds])
    u = (pop - lo) / np.where(hi > lo, hi - lo, 1.0)
    chosen = [int(np.argmax(np.linalg.norm(u - u.mean(0), axis=1)))]
    while len(chosen) < min(k, pop.shape[0]):
        d = np.min(np.linalg.norm(u[:, None, :] - u[None, chosen, :], axis=2), axis=1)
        chosen.append(int(np.argmax(d)))
    res = fast.lower_solve(pop[chosen], job.schedule, job.lower, job.objective, backend=job.backend)
    return [row for row in res.t]


def candidate_schedules(schedule: NoiseSchedule, solver: str, nfe: int, convention: str, objectives: Sequence[str],
                        population: int, solver_options: dict[str, Any] | None = None) -> list[tuple[str, np.ndarray]]:
    """Every candidate, distinct, the default ("hso": `hso.optimize`'s for this sampler variant,
    ``solver_options``) first and the rest in the default's measured ranking for that variant."""
    # the default: `hso.optimize`'s schedule for this sampler variant; then `hso.methods`' calibrate candidates
    out = [("hso", plan(schedule, nfe, solver, convention=convention, solver_options=solver_options).run().t)]
    for name in CALIBRATE_CANDIDATES:
        if SCHEDULE_METHODS[name].options.get("objective", "mep") not in objectives:
            continue
        try:
            out.append((name, method_schedule(name, schedule, solver, nfe, convention)))
        except MethodNotApplicable:
            pass
        except ValueError:  # the ported "stop" search may not fit where the "jump" request does
            if name != PORTED:
                raise
    for i, t in enumerate(_diverse_population(schedule, nfe, solver, convention, population, {})):
        out.append((f"hso_population_{i}", t))
    # every candidate spends exactly the solver's evaluations for this NFE (the budget accounting relies on it)
    n_points = get_solver(solver).n_intervals(nfe, convention) + 1
    bad = [name for name, t in out if t.shape != (n_points,)]
    if bad:
        raise RuntimeError(f"internal error: candidates {bad} do not have {n_points} points")
    if schedule.is_discrete:
        # a discrete model is conditioned on integer timesteps: run (and compare) the points it will really see
        out = [(name, schedule.t_of_timesteps(schedule.timesteps_of_t(t))) for name, t in out]
        out = [(name, t) for name, t in out if np.all(np.diff(t) < 0)]
    # identical schedules are run once
    uniq: list[tuple[str, np.ndarray]] = []
    for name, t in out:
        if not any(u.shape == t.shape and np.allclose(u, t, rtol=0, atol=1e-9) for _, u in uniq):
            uniq.append((name, t))
    # the measured ranking orders the rest (unranked ones, such as population members, last; stable otherwise)
    pick = measured_pick(solver, convention, schedule, nfe, solver_options)
    rank = {name: i for i, (name, _) in enumerate(pick.ranking)} if pick is not None else {}
    return uniq[:1] + sorted(uniq[1:], key=lambda c: rank.get(c[0], len(rank)))


def calibrate(model: Callable[[Any, float], Any], noise_schedule: NoiseSchedule | str, solver: str = "unipc",
              nfe: int = 5, *, sample_shape: Sequence[int], budget: int = DEFAULT_BUDGET,
              prediction: str = "epsilon", convention: str | None = None, solver_options: dict[str, Any] | None = None,
              teacher_steps: int = 32, max_noise: int = 64, objectives: Sequence[str] | None = None,
              population: int = 3, margin: float = 0.02, significance: float = 1.0, refine: bool = False, seed: int = 0,
              progress: bool = False) -> CalibrationResult:
    """Pick, by measurement with your model, the schedule that samples best for a solver and NFE.

    Args:
        model: ``model(x, t) -> prediction`` on numpy float64 batches ``[B, *sample_shape]`` (t: normalised time);
            for torch models wrap the conversion (see `hso.diffusers.calibrate_pipeline`).
        noise_schedule: the model's noise schedule (or a preset name).
        solver, nfe: the sampler and its network evaluations per sample.
        sample_shape: the shape of one sample, e.g. ``(64,)`` or ``(4, 64, 64)``.
        budget: network evaluations (per sample) calibration may spend; default `DEFAULT_BUDGET` (1000, 6.5% of
            GITS's 15360).
        prediction: what the model returns ("epsilon", "sample", "v_prediction", "flow").
        convention: "stop" or "jump" (default: the solver's).
        solver_options: e.g. ``{"order": 3, "variant": "bh1"}`` (default: `hso.solvers.SAMPLER_DEFAULTS`).
        teacher_steps: intervals of the teacher's fine UniPC schedule.
        max_noise: at most this many calibration noises in all (the budget decides how many fit).
        objectives: hso objectives to search with ("mep" always; "dmn" adds the DM-NonUniform search). Default:
            both where the engine has a fused DM-NonUniform lower level (cpp: well under 2 s a search; also cuda
            and triton), MEP only otherwise (the numpy driver needs seconds to a minute).
        population: how many extra members of the final DE population to try.
        margin: a challenger replaces the default (candidate "hso", never eliminated) only when its RMSE on the
            same noises is lower by more than this fraction,
        significance: and only when its mean per-noise lead (squared error) exceeds this many standard errors of
            the per-noise differences; ``margin=0, significance=0`` picks the lowest measured RMSE.
        refine: spend the budget left on a compass search over the winner's interior points (lambda).
        seed: seed of the calibration noises (same seed, same result).
        progress: print progress to stderr.

    Returns:
        A `CalibrationResult`.

    Raises:
        ValueError: a budget too small for a teacher and two candidates on two noises, a model returning the
            wrong shape or NaN (found by a one-sample probe before the budget is spent), bad solver / NFE /
            convention / prediction / options.
        TypeError: a model that is not callable.
    """
    t_start = time.perf_counter()
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
    sched = as_schedule(noise_schedule)
    spec = get_solver(solver)
    if spec.name not in SAMPLER_DEFAULTS:
        raise ValueError(f"no sampler for solver {solver!r}; samplers: {', '.join(SAMPLER_DEFAULTS)}")
    conv = convention or spec.default_convention
    spec.n_intervals(nfe, conv)  # validates NFE and convention
    opts = sampler_options(spec.name, solver_options)
    shape = tuple(int(s) for s in sample_shape)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise TypeError(f"budget must be an integer number of network evaluations, got {budget!r}")
    if teacher_steps < 4:
        raise ValueError(f"teacher_steps must be >= 4, got {teacher_steps}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    if not (np.isfinite(significance) and significance >= 0):
        raise ValueError(f"significance must be a finite number >= 0, got {significance}")
    pred = prediction_for(prediction, sched)
    rng = np.random.default_rng(seed)

    def say(msg: str) -> None:
        if progress:
            print(f"hso calibrate: {msg}", file=sys.stderr, flush=True)

    engine = get_backend("auto")
    if objectives is None:
        objectives = default_objectives(engine)
    cands = candidate_schedules(sched, spec.name, nfe, conv, objectives, population, opts)
    teach_cost = teacher_steps + 1
    minimum = 1 + 2 * (teach_cost + 2 * nfe)
    if budget < minimum:
        raise ValueError(f"budget {budget} is too small: a teacher of {teacher_steps} steps and two candidates at "
                         f"NFE {nfe} on two noises need {minimum} network evaluations")
    cands = cands[:first_round(len(cands), budget, teach_cost, nfe)]
    counter = EvaluationCounter(model)

    # probe: one sample, before anything else is spent, so a broken model fails cheaply
    out = counter(initial_state(sched, sched.t_max, rng.standard_normal((1, *shape))), float(sched.t_max))
    if tuple(getattr(out, "shape", ())) != (1, *shape):
        raise ValueError(f"the model returned shape {tuple(getattr(out, 'shape', ()))} for an input of shape "
                         f"{(1, *shape)}")
    if not np.all(np.isfinite(np.asarray(out, dtype=np.float64))):
        raise ValueError("the model returned NaN or inf on the probe input")

    def sq_errors(t: np.ndarray, z: np.ndarray, teacher: np.ndarray) -> np.ndarray:
        """Each sample's mean squared error against the teacher, one per noise."""
        x = sample(counter, initial_state(sched, float(t[0]), z), sched, t, spec.name, prediction=pred, convention=conv,
                   **opts)
        y = final_data(sched, x, float(t[-1]), conv)
        return np.mean((y - teacher).reshape(len(z), -1) ** 2, axis=1)

    def run_round(alive: list[int], chunk: int) -> np.ndarray:
        z = rng.standard_normal((chunk, *shape))
        teacher = teacher_solution(counter, sched, z, pred, teacher_steps)
        return np.array([sq_errors(cands[i][1], z, teacher) for i in alive])

    sel = select(len(cands), run_round, lambda: budget - counter.spent, teach_cost, nfe, max_noise=max_noise,
                 margin=margin, significance=significance, say=say, names=[name for name, _ in cands])
    sse, runs, n_noise, win = sel.sse, sel.runs, sel.n_noise, sel.winner
    duel = {} if sel.challenger < 0 else {
        "challenger": cands[sel.challenger][0],
        "rmse_ratio": math.sqrt(sse[sel.challenger] / sse[0]) if sse[0] > 0 else float("nan"),
        "lead": sel.lead, "lead_se": sel.lead_se}
    report = [{"name": name, "t": t.tolist(), "noises": int(runs[i]),
               "rmse": math.sqrt(sse[i] / runs[i]) if runs[i] else float("nan")} for i, (name, t) in enumerate(cands)]
    t_best, rmse_best, method = np.asarray(cands[win][1]), math.sqrt(sse[win] / n_noise), cands[win][0]

    if refine:
        # refinement compares trials on one fixed set of noises (the largest affordable, teacher included)
        k = int(min(max_noise, (budget - counter.spent) // (teach_cost + 4 * nfe)))
        if k >= 2:
            z = rng.standard_normal((k, *shape))
            teacher = teacher_solution(counter, sched, z, pred, teacher_steps)

            def score_fixed(t: np.ndarray) -> float:
                return math.sqrt(float(np.sum(sq_errors(t, z, teacher))) / k)

            base = score_fixed(t_best)
            t_new, rmse_new, refined = _refine(score_fixed, sched, t_best, base,
                                               lambda: budget - counter.spent >= k * nfe)
            if refined:
                t_best, method = t_new, f"{method}+refined"
                rmse_best = rmse_best * rmse_new / base  # on the selection noises' scale
    timesteps = sched.timesteps_of_t(t_best) if sched.is_discrete else None
    return CalibrationResult(t=t_best, timesteps=timesteps, sigmas=sampler_sigmas(sched.lambda_(t_best), conv),
                             method=method, rmse=rmse_best,
                             candidates=report, nfe_spent=counter.spent, budget=int(budget), n_noise=n_noise,
                             teacher_steps=teacher_steps, solver=spec.name, solver_options=opts, nfe=nfe,
                             convention=conv, prediction=pred, seed=seed, wall_time=time.perf_counter() - t_start,
                             schedule=sched.describe(), margin=float(margin), significance=float(significance),
                             duel=duel, objectives=tuple(objectives),
                             backend=engine.name)


def teacher_solution(model: Callable[[Any, float], Any], sched: NoiseSchedule, z: np.ndarray, prediction: str,
                     steps: int) -> np.ndarray:
    """The converged samples calibration scores against: UniPC (order 3, bh1) on ``steps`` logSNR-uniform
    intervals from the top of the time domain to its bottom (integer timesteps for a discrete model), "jump"."""
    lam = np.linspace(float(sched.lambda_(sched.t_max)), float(sched.lambda_(sched.t_min)), steps + 1)
    t = np.minimum.accumulate(sched.t_of_lambda(lam))
    t[0], t[-1] = sched.t_max, sched.t_min
    if sched.is_discrete:
        t = sched.t_of_timesteps(np.unique(sched.timesteps_of_t(t))[::-1])
    return np.asarray(sample(model, initial_state(sched, float(t[0]), z), sched, t, "unipc", prediction=prediction,
                             convention="jump", order=3, variant="bh1"), dtype=np.float64)


def default_objectives(engine: Any = None) -> tuple[str, ...]:
    """The hso objectives calibration searches with by default: MEP, plus DM-NonUniform where the engine
    (default: the "auto" backend) has its fused lower level (the numpy driver needs seconds to a minute)."""
    engine = engine or get_backend("auto")
    return ("mep", "dmn") if "dmn" in engine.lower_objectives else ("mep",)


def first_round(n: int, budget: int, teach_cost: int, nfe: int, share: float = 0.5) -> int:
    """How many of ``n`` ranked candidates calibration runs: all, unless the first round (two noises each, with
    their teacher) would take more than ``share`` of the budget; then the best-ranked that fit, at least two."""
    return min(n, max(2, (int(budget * share) - 1 - 2 * teach_cost) // (2 * nfe)))


@dataclass(frozen=True)
class Selection:
    """What `select` measured: per candidate the summed squared error and the noises it ran on; the winner; and the
    final duel: the best challenger still alive (-1 when none), the mean of its per-noise lead over the incumbent
    (squared error, positive when it is better) and that mean's standard error."""

    sse: np.ndarray
    runs: np.ndarray
    n_noise: int
    winner: int
    challenger: int = -1
    lead: float = float("nan")
    lead_se: float = float("nan")


def select(n: int, run_round: Callable[[list[int], int], np.ndarray], left: Callable[[], int], teach_cost: int,
           nfe: int, *, max_noise: int = 64, margin: float = 0.02, significance: float = 1.0,
           say: Callable[[str], None] | None = None, names: Sequence[str] | None = None,
           incumbent: bool = True) -> Selection:
    """Successive halving over candidates 0..n-1, candidate 0 the incumbent (the model-free default).

    Every round draws new noises (twice as many as the last, as many as ``left()`` evaluations afford at
    ``teach_cost + nfe`` per alive candidate and noise), runs the teacher and the alive candidates on them
    (``run_round(alive, k)`` returns each one's squared error per noise, ``[len(alive), k]``), and keeps the better
    half by summed squared error. Errors are heavy-tailed across noises (a few trajectories that change mode
    dominate), so the budget goes to more noises for the close contenders. The incumbent is never eliminated, so the
    last rounds are a duel with the best challenger, which wins only when its error on the same noises is lower by
    more than ``margin`` (RMSE) and the mean of the per-noise differences exceeds ``significance`` standard errors
    (a lead that one noise makes is no evidence). ``incumbent=False`` is plain successive halving (the lowest
    measured error wins).
    The selection itself, without a model: `benchmarks/quality/selection.py` replays it on recorded errors.
    """
    err = np.zeros((n, max_noise))  # per-noise squared errors (zero where a candidate did not run)
    runs = np.zeros(n, dtype=np.int64)
    seen, alive, chunk = 0, list(range(n)), 2
    while len(alive) > 1 and seen < max_noise:
        chunk = int(min(chunk, max_noise - seen, left() // (teach_cost + len(alive) * nfe)))
        if chunk < 1:
            break
        new = np.asarray(run_round(alive, chunk), dtype=np.float64)
        if new.shape != (len(alive), chunk):
            raise ValueError(f"run_round returned shape {new.shape}, expected {(len(alive), chunk)}")
        err[alive, seen:seen + chunk] = new
        runs[alive] += chunk
        sse = err.sum(axis=1)
        seen += chunk
        if say is not None:
            say(f"{seen} noises: " + ", ".join(f"{names[i] if names else i} {math.sqrt(sse[i] / seen):.4g}"
                                               for i in alive))
        keep = sorted(alive, key=lambda i: sse[i])[:max(1, (len(alive) + 1) // 2)]
        if incumbent and 0 not in keep:  # the incumbent stays
            keep = keep[:-1] + [0] if len(keep) > 1 else keep + [0]
        alive = keep
        chunk *= 2
    if seen == 0:  # pragma: no cover - the minimum budget always affords one round
        raise RuntimeError("the budget did not cover one round")
    # every candidate still alive ran on every noise (sse is the last round's); a challenger must beat the
    # incumbent by the margin, and by more than `significance` standard errors of the per-noise differences
    win = min(alive, key=lambda i: sse[i])
    rivals = [i for i in alive if i != 0]
    if not (incumbent and rivals):
        return Selection(sse, runs, seen, win)
    rival = min(rivals, key=lambda i: sse[i])
    lead = err[0, :seen] - err[rival, :seen]
    lead_se = float(lead.std(ddof=1) / math.sqrt(seen)) if seen > 1 else 0.0
    if win != 0 and not (sse[win] < (1 - margin) ** 2 * sse[0] and lead.mean() > significance * lead_se):
        win = 0
    return Selection(sse, runs, seen, win, rival, float(lead.mean()), lead_se)


def _refine(score: Callable[[np.ndarray], float], sched: NoiseSchedule, t: np.ndarray, best: float,
            affordable: Callable[[], bool], step: float = 0.1, min_step: float = 0.01
            ) -> tuple[np.ndarray, float, bool]:
    """Compass search over the interior points in lambda, keeping order and one training step between points."""
    lam = sched.lambda_(t)
    gap = sched.time_resolution
    improved = False
    while step >= min_step:
        moved = False
        for i in range(1, lam.size - 1):
            for sgn in (1.0, -1.0):
                if not affordable():
                    return sched.t_of_lambda(lam), best, improved
                trial = lam.copy()
                trial[i] += sgn * step * (lam[i + 1] - lam[i - 1]) / 2
                tt = sched.t_of_lambda(trial)
                tt[0], tt[-1] = t[0], t[-1]
                if np.any(-np.diff(tt) < gap):
                    continue
                s = score(tt)
                if s < best:
                    best, lam, moved, improved = s, sched.lambda_(tt), True, True
                    break
        if not moved:
            step /= 2
    out = sched.t_of_lambda(lam)
    out[0], out[-1] = t[0], t[-1]
    return out, best, improved
