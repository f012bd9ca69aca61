"""`ScheduleResult`: what `hso.optimize` returns, shaped like scipy's ``OptimizeResult`` plus the schedule."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["ScheduleResult", "sampler_sigmas"]


def sampler_sigmas(lambdas: np.ndarray, convention: str) -> np.ndarray:
    """The sigmas a sampler walks for a schedule with half log-SNRs ``lambdas``: ``e^-lambda`` (sigma / alpha) at
    each point, and a final 0 for convention "jump" (evaluate at every point, then step to sigma 0). The one place
    `ScheduleResult.sigmas` and `hso.calibrate`'s result are made."""
    sig = np.exp(-np.asarray(lambdas, dtype=np.float64))
    return np.append(sig, 0.0) if convention == "jump" else sig


@dataclass(frozen=True)
class ScheduleResult:
    """An optimised sampling schedule.

    Attributes:
        t: schedule points in normalised time, descending from T_max to t_eps, ``[N+1]``.
        lambdas: half log-SNR at ``t`` (increasing), ``[N+1]``.
        sigmas: k-diffusion / EDM sigmas ``sigma_t / alpha_t`` at ``t``; for ``convention="jump"`` a final 0 is
            appended (the sampler's last step goes to the clean sample), so the list is exactly what a k-diffusion
            sampler needs for the convention the schedule was optimised for.
        timesteps: integer model timesteps ``round(T t) - 1`` for discrete models (strictly decreasing, unique),
            else None.
        psi: the best upper-level candidate (rho, t_eps, T_max); empty when no search ran (``source`` names a
            baseline).
        fitness: SPF fitness = objective + penalty at psi.
        mep: the lower-level objective value of the schedule (MEP, or the DM-NonUniform bound for ``objective="dmn"``).
        penalty: the SPF spacing penalty of the schedule.
        x / fun / nit / nfev / success / message: scipy-style aliases (x = psi, fun = fitness, nit = generations,
            nfev = lower-level solves).
        convention: "stop" (the sampler stops at t_eps) or "jump" (evaluates at every point, then jumps to 0).
        settings: the resolved search settings; ``settings["measured"]`` says what ``method="auto"``'s measured
            table picked (``pick``, the measured ``nfe`` it used, the measured ``noise`` schedule whose ranking it
            took and whether that is the model's own (``noise_measured``: `hso.measured.same_noise`), the pick's
            ``worst_ratio`` of RMSE to the best schedule over the test beds, and whether the cell is ``supported``:
            measured at this NFE and noise schedule within 1.1x);
            for ``method="hso"``, where its own setting (``pick``: the `hso.methods` row it is, such as
            ``hso_p1``) stands in that table (``worst_ratio`` None where the cell did not rank it); None where the
            table was not consulted (``method="paper"``, explicit search arguments).
        source: "hso" (the HSO search's schedule), "hso_stop_ported" (for convention "jump": the "stop" search's
            schedule for this NFE with its last point dropped; ``fitness`` / ``mep`` / ``penalty`` / ``psi`` are that
            search's), or the name of the `hso.baselines` schedule that ``method="auto"`` measured better than
            every HSO candidate for this solver, convention, space and NFE.
        solver_options: the sampler's options the schedule was chosen for (``{"order": 2, "variant": "bh2"}``:
            `hso.solvers.sampler_options`, the solver's defaults filled in; empty for a solver without a sampler).
    """

    t: np.ndarray
    lambdas: np.ndarray
    sigmas: np.ndarray
    timesteps: np.ndarray | None
    psi: np.ndarray
    fitness: float
    mep: float
    penalty: float
    nit: int
    nfev: int
    success: bool
    message: str
    wall_time: float
    backend: str
    convention: str
    solver: str
    nfe: int
    objective: str
    spacing: str
    d_min: float
    schedule: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "hso"
    solver_options: dict[str, Any] = field(default_factory=dict)

    @property
    def x(self) -> np.ndarray:
        return self.psi

    @property
    def fun(self) -> float:
        return self.fitness

    @property
    def feasible(self) -> bool:
        """True when every gap respects d_min (zero spacing penalty)."""
        return self.penalty == 0.0

    @property
    def log_snr(self) -> np.ndarray:
        """log-SNR = 2 lambda at ``t``."""
        return 2.0 * self.lambdas

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (arrays as lists) for JSON."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, np.generic):
                v = v.item()
            out[f.name] = v
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def k_diffusion_sigmas(self) -> list[float]:
        """The sigma list a k-diffusion / ComfyUI sampler takes: descending EDM sigmas, ending in 0 for convention
        "jump" (evaluate at every point, then step to 0) and at sigma(t_eps) for "stop" (the sampler returns x there).
        """
        return [float(s) for s in self.sigmas]

    def table(self) -> str:
        """A human-readable table of the schedule."""
        head = f"{'i':>3} {'t':>10} {'lambda':>10} {'sigma':>12}" + (f" {'timestep':>9}" if self.timesteps is not None
                                                                      else "")
        rows = [head]
        for i, (t, lam) in enumerate(zip(self.t, self.lambdas)):
            row = f"{i:>3} {t:>10.6f} {lam:>10.5f} {self.sigmas[i]:>12.6g}"
            if self.timesteps is not None:
                row += f" {int(self.timesteps[i]):>9d}"
            rows.append(row)
        if self.convention == "jump":
            rows.append(f"{'':>3} {'':>10} {'':>10} {0.0:>12.6g}   (final jump to sigma 0)")
        return "\n".join(rows)
