"""Solver specs: a sampler family's evaluations per interval, default convention and aliases (see `hso.solvers`)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SolverSpec", "SOLVERS", "get_solver", "CONVENTIONS"]

CONVENTIONS = ("stop", "jump")


@dataclass(frozen=True)
class SolverSpec:
    """A sampler family: name, evaluations per interval, its default convention and aliases."""

    name: str
    evals_per_step: int
    default_convention: str
    aliases: tuple[str, ...] = ()
    multistep_order: int = 1

    def n_intervals(self, nfe: int, convention: str | None = None) -> int:
        """N for `nfe` network evaluations under `convention` (default: the solver's own).

        Raises:
            ValueError: an NFE this solver cannot spend exactly, or an unknown convention.
        """
        conv = convention or self.default_convention
        if conv not in CONVENTIONS:
            raise ValueError(f"unknown convention {conv!r}; known: {', '.join(CONVENTIONS)}")
        e = self.evals_per_step
        if conv == "stop":
            if nfe % e:
                raise ValueError(f"{self.name} spends {e} evaluations per step; with convention 'stop' NFE must be "
                                 f"a multiple of {e}, got {nfe}")
            n = nfe // e
        else:
            # evaluations at the N+1 points' steps, the final jump to 0 costs one
            if (nfe - 1) % e:
                raise ValueError(f"{self.name} with convention 'jump' needs NFE = {e} N + 1, got {nfe}")
            n = (nfe - 1) // e
        if n < 1:
            raise ValueError(f"NFE={nfe} leaves no interval to place for {self.name} with convention {conv!r} "
                             f"(need NFE >= {e + (1 if conv == 'jump' else 0)})")
        return n


SOLVERS: dict[str, SolverSpec] = {s.name: s for s in (
    SolverSpec("unipc", 1, "stop", ("uni_pc", "unipcmultistep"), 3),
    SolverSpec("dpmsolver++", 1, "stop", ("dpm-solver++", "dpmpp", "dpmsolver", "dpm_solver++", "dpmpp_2m"), 2),
    SolverSpec("deis", 1, "stop", ("deismultistep",), 3),
    SolverSpec("ipndm", 1, "stop", ("pndm",), 4),
    SolverSpec("ddim", 1, "jump", ()),
    SolverSpec("euler", 1, "jump", ("euler_discrete", "flow_euler", "flowmatch_euler")),
    SolverSpec("heun", 2, "jump", ("heun_discrete",), 2),
)}


def get_solver(name: str | SolverSpec) -> SolverSpec:
    """Solver spec by name or alias (case-insensitive).

    Raises:
        ValueError: unknown name (the message lists the known ones).
        TypeError: not a string.
    """
    if isinstance(name, SolverSpec):
        return name
    if not isinstance(name, str):
        raise TypeError(f"solver must be a name, got {type(name).__name__}")
    key = name.strip().lower()
    for spec in SOLVERS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(SOLVERS)}")
