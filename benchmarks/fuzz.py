"""Fuzz the Python API and the CLI with random requests, good and bad: every one must give a valid schedule or one
clear error (API: ValueError / TypeError; CLI: exit 2, one line on stderr, nothing on stdout), never an internal
error, a traceback, a warning or a non-finite result.

    python -m benchmarks.fuzz [--n 10000] [--seed 0]

Requests mix presets, real diffusers scheduler configs (fields kept, changed or broken), random ``alphas_cumprod``
tables and betas, EDM / flow / VP-SDE parameters, every solver (and aliases) and sampler variant (`solver_options`,
``--order``, ``--variant``), convention, method and search option, and bad values of each (wrong types, NaN, out
of range, unknown names). NFEs are drawn mostly from 1-50 and up to 1000. Each request is planned (`hso.plan`); a
search the plan would make is run unless it is a DM-NonUniform one with more than `DMN_RUN_MAX` intervals, or any
with more than `RUN_MAX` (seconds to minutes each: those are counted as "planned"). Writes
``benchmarks/results/fuzz.md`` and ``fuzz.json``; ``tests/test_fuzz.py`` runs a few hundred of the same requests.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

import hso
from hso import cli

RESULTS = Path(__file__).resolve().parent / "results"
DMN_RUN_MAX = 30
RUN_MAX = 200
OUTCOMES = ("ok", "planned", "refused", "defect")
SCHEDULERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "EulerDiscreteScheduler",
              "PNDMScheduler", "FlowMatchEulerDiscreteScheduler", "EDMEulerScheduler", "HeunDiscreteScheduler")
BAD = (float("nan"), float("inf"), -1, 0, "x", None, True, [1, 2], 1e308, -1e308)


class Fuzzer:
    """Draws requests from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def bad(self) -> Any:
        return self.pick(BAD)

    def nfe(self) -> Any:
        if self.p(0.05):
            return self.pick((0, -3, 1.5, "5", True, 1001, 5000, None))
        if self.p(0.8):
            return int(self.rng.integers(1, 51))
        return int(self.rng.integers(51, 1001))

    def table(self) -> Any:
        n = int(self.rng.integers(2, 2001))
        kind = self.rng.integers(6)
        if kind == 0:  # a real-looking decreasing table
            return np.cumprod(1 - np.sort(self.rng.uniform(1e-5, 0.05, n)))
        if kind == 1:  # any strictly decreasing values in (0, 1]
            return np.sort(self.rng.uniform(0, 1, n))[::-1]
        if kind == 2:  # broken: not monotone
            return self.rng.uniform(0, 1, n)
        if kind == 3:  # broken: a NaN, or a value > 1
            t = np.cumprod(1 - np.full(n, 0.01))
            t[int(self.rng.integers(n))] = self.pick((np.nan, 1.5, -0.1))
            return t
        if kind == 4:  # zero terminal SNR
            t = np.cumprod(1 - np.full(n, 0.02))
            t[-1] = 0.0
            return t
        return self.pick(([], [[0.5]], "table", [0.9, 0.9]))

    def schedule(self) -> Any:
        kind = self.rng.integers(10)
        try:
            if kind <= 3:
                return self.pick(tuple(hso.PRESETS) * 3 + ("SD21", "nope", "", 5))
            if kind == 4:
                return hso.NoiseSchedule.vp_discrete(alphas_cumprod=self.table())
            if kind == 5:
                betas = self.rng.uniform(1e-6, self.pick((0.02, 0.5, 1.0)), int(self.rng.integers(2, 1500)))
                return hso.NoiseSchedule.vp_discrete(betas=betas if self.p(0.9) else -betas)
            if kind == 6:
                lo = float(10 ** self.rng.uniform(-5, 0))
                return hso.NoiseSchedule.edm(lo if self.p(0.9) else self.bad(), lo * float(10 ** self.rng.uniform(-1, 5)))
            if kind == 7:
                return hso.NoiseSchedule.flow(float(10 ** self.rng.uniform(-2, 2)) if self.p(0.9) else self.bad())
            if kind == 8:
                b0 = float(self.rng.uniform(0, 1))
                return hso.NoiseSchedule.vp_linear(b0, b0 + float(self.rng.uniform(-1, 40)))
            return hso.NoiseSchedule.from_diffusers(self.config(), mu=self.mu())
        except (ValueError, TypeError) as e:  # a bad schedule is refused when built: that request is answered
            return e

    def mu(self) -> Any:
        return None if self.p(0.7) else self.pick((0.5, 1.15, -2.0, 27.0, 30.0, 710.0, -745.0, float("nan")))

    def config(self) -> dict[str, Any]:
        import diffusers

        name = self.pick(SCHEDULERS)
        cfg = dict(getattr(diffusers, name)().config)
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        if self.p(0.6):
            cfg["_class_name"] = name
        if self.p(0.3):
            key = self.pick(sorted(cfg))
            cfg[key] = self.bad() if self.p(0.5) else self.pick((0.0, 1, 2000, "linear", "scaled_linear", -0.5))
        if self.p(0.05):
            cfg = self.pick(({}, {"_class_name": "UNet2DConditionModel", "in_channels": 4}, {"beta_start": "0.1"}))
        return cfg

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.p(0.5):
            opts["convention"] = self.pick(("stop", "jump", None) * 6 + ("both",))
        if self.p(0.4):
            opts["method"] = self.pick(("auto", "hso", "paper") * 6 + ("best",))
        choices: dict[str, Callable[[], Any]] = {
            "objective": lambda: self.pick(("mep", "dmn", "MEP", None)),
            "spacing": lambda: self.pick(("rank", "constrain", "loose")),
            "p": lambda: self.pick((1.0, 2.0, 0.5, 10.0, 11.0, -1.0)),
            "init": lambda: self.pick(("edm_rho", "logSNR", "time_uniform", "time_quadratic", "cosine")),
            "popsize": lambda: int(self.rng.integers(1, 6)),
            "maxiter": lambda: int(self.rng.integers(0, 6)),
            "tol": lambda: self.pick((0.0, 0.01, 1.0)),
            "mutation": lambda: self.pick((0.5, (0.5, 1.0), (1.0, 0.5), 3.0)),
            "recombination": lambda: self.pick((0.0, 0.7, 1.0, 1.5)),
            "polish": lambda: self.p(0.5),
            "seed": lambda: int(self.rng.integers(0, 2**31)),
            "gamma": lambda: self.pick((0.0, 1e9, 1e3, -1.0)),
            "bounds": lambda: self.pick((((3, 16), (0.01, 0.03), (0.96, 1.0)), ((3, 4), (0.02, 0.03), (0.5, 0.9)),
                                          ((16, 3), (0.01, 0.03), (0.96, 1.0)), ((3, 16),))),
            "solver_options": lambda: self.pick(({"order": 2}, {"variant": "bh2", "order": 2}, {"order": 3},
                                                 {"variant": "bh1"}, {"order": 1}, {}, {"order": 4},
                                                 {"variant": "bh3"}, {"corrector": True}, [("order", 2)])),
        }
        for key, draw in choices.items():
            if self.p(0.08):
                opts[key] = draw() if self.p(0.85) else self.bad()
        if any(k in opts for k in ("popsize", "maxiter", "objective", "spacing", "p")):
            opts.setdefault("popsize", int(self.rng.integers(1, 4)))  # a search asked for: keep it small
            opts.setdefault("maxiter", int(self.rng.integers(0, 4)))
        return opts

    def api_request(self) -> tuple[Any, Any, Any, dict[str, Any]]:
        solver = self.pick(tuple(hso.SOLVERS) * 3 + ("dpmpp", "DDIM", "lms", "")) if self.p(0.97) else self.bad()
        return self.schedule(), self.nfe(), solver, self.options()

    def cli_argv(self) -> list[str]:
        cmd = self.pick(("optimize",) * 6 + ("sweep",) * 2 + ("evaluate", "plot", "bogus"))
        argv = [cmd]

        def opt(flag: str, good: Callable[[], Any], prob: float = 0.4) -> None:
            if self.p(prob):
                value = good() if self.p(0.85) else self.pick(("abc", "", "-1", "0", "nan", "inf", "1e999", "3-"))
                argv.extend([flag, str(value)])

        if cmd == "optimize":
            opt("--preset", lambda: self.pick(tuple(hso.PRESETS) + ("nope",)))
            opt("--solver", lambda: self.pick(tuple(hso.SOLVERS) + ("dpmpp",)))
            opt("--nfe", self.nfe, 0.8)
            opt("--convention", lambda: self.pick(("stop", "jump")))
            opt("--method", lambda: self.pick(("auto", "hso", "paper")), 0.3)
            opt("--objective", lambda: self.pick(("mep", "dmn")), 0.1)
            opt("--spacing", lambda: self.pick(("rank", "constrain")), 0.1)
            opt("--p", lambda: self.pick((1, 2, 0.5, 10, 11)), 0.1)
            opt("--popsize", lambda: int(self.rng.integers(1, 5)), 0.2)
            opt("--maxiter", lambda: int(self.rng.integers(0, 5)), 0.2)
            opt("--seed", lambda: int(self.rng.integers(0, 1000)), 0.2)
            opt("--mu", self.mu, 0.1)
            opt("--order", lambda: int(self.rng.integers(1, 5)), 0.1)
            opt("--variant", lambda: self.pick(("bh1", "bh2", "bh3")), 0.1)
            opt("--format", lambda: self.pick(("table", "json", "diffusers", "kdiffusion")), 0.5)
            if self.p(0.05):
                argv += ["--from-diffusers-config", "/nonexistent/scheduler_config.json"]
            if "--popsize" not in argv and any(f in argv for f in ("--objective", "--spacing", "--p")):
                argv += ["--popsize", "2", "--maxiter", "2"]
            if "dmn" in argv and "--nfe" in argv:  # an explicit DM-NonUniform search runs at any N: keep it short,
                # as the API requests do (`DMN_RUN_MAX`; at N in the hundreds it takes minutes to hours)
                argv[argv.index("--nfe") + 1] = str(int(self.rng.integers(1, DMN_RUN_MAX + 1)))
        elif cmd == "sweep":
            opt("--preset", lambda: self.pick(tuple(hso.PRESETS) + ("nope",)))
            opt("--solver", lambda: ",".join(self.pick((("unipc",), ("ddim", "euler"), ("heun",), ("x",)))))
            argv += ["--nfe", self.pick(("3-5", "4,6", "2", "5-3", "0", "abc", "998-1000"))]
            opt("--convention", lambda: self.pick(("stop", "jump", "stop,jump", "")))
            opt("--format", lambda: self.pick(("json", "csv")))
            argv += ["--method", self.pick(("auto", "paper", "hso", "x"))]
        elif cmd == "evaluate":  # one bad option at least: refused before any sampling
            argv += ["--quick", self.pick(("--samples", "--nfe", "--seed", "--metric", "--testbed")),
                     self.pick(("0", "-1", "abc", "", "nope", "1e999"))]
        elif cmd == "plot":  # bad options only (a good plot draws a PNG: slow and covered by tests)
            argv += [self.pick(("--nfe", "--preset", "--baselines", "--out")),
                     self.pick(("0", "abc", "", "nope", "/nonexistent/dir/x.png", "x.svgz9"))]
        return argv


def _valid(res: hso.ScheduleResult) -> str | None:
    """None for a valid result, else what is wrong."""
    if not (np.all(np.isfinite(res.t)) and np.all(np.isfinite(res.lambdas)) and math.isfinite(res.fitness)):
        return "non-finite result"
    if np.any(np.diff(res.t) >= 0) or np.any(np.diff(res.lambdas) <= 0):
        return "not monotone"
    if res.timesteps is not None and np.any(np.diff(res.timesteps) >= 0):
        return "integer timesteps not strictly decreasing"
    return None


def run_api(request: tuple[Any, Any, Any, dict[str, Any]]) -> tuple[str, str]:
    schedule, nfe, solver, opts = request
    if isinstance(schedule, Exception):
        return "refused", ""
    try:
        plan = hso.plan(schedule, nfe, solver, **opts)
        n = plan.lower.n_intervals
        if plan.is_search and (n > RUN_MAX or plan.objective.name == "dmn" and n > DMN_RUN_MAX):
            return "planned", ""
        wrong = _valid(plan.run())
        return ("defect", wrong) if wrong else ("ok", "")
    except (ValueError, TypeError) as e:
        msg = str(e)
        if not msg or "internal error" in msg:
            return "defect", f"{type(e).__name__}: {msg}"
        return "refused", ""
    except Exception as e:  # noqa: BLE001 - any other exception is what the fuzz looks for
        return "defect", f"{type(e).__name__}: {e}"


def run_cli(argv: list[str]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    except SystemExit as e:  # --help and friends exit 0 from argparse; anything else is a defect
        code = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # noqa: BLE001
        return "defect", f"{type(e).__name__}: {e}"
    stdout, stderr = out.getvalue(), err.getvalue()
    if code == 0 and argv[0] == "plot":  # a plot writes its PNG, and says so on stderr
        stdout = stdout or stderr
    if "Traceback" in stderr or "internal error" in stderr:
        return "defect", stderr.strip().splitlines()[-1]
    if code == 2:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        if stdout or len(lines) != 1 or not lines[0].startswith("hso"):
            return "defect", f"exit 2 with stdout {stdout[:60]!r} and {len(lines)} stderr lines"
        return "refused", ""
    if code != 0 or not stdout.strip():
        return "defect", f"exit {code}, stdout {stdout[:60]!r}, stderr {stderr[:120]!r}"
    if "nan" in stdout.lower().split() or "NaN" in stdout:
        return "defect", "NaN in the output"
    return "ok", ""


def fuzz(n: int, seed: int = 0, cli_share: float = 0.3, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``n`` requests; counts per outcome and surface (api, cli), and the defects found. Run it in a scratch
    folder: the CLI requests may write files (plots) to relative paths."""
    fz = Fuzzer(seed)
    counts = {surface: {o: 0 for o in OUTCOMES} for surface in ("api", "cli")}
    defects: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i in range(n):
        surface = "cli" if fz.p(cli_share) else "api"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if surface == "cli":
                request: Any = fz.cli_argv()
                outcome, why = run_cli(request)
            else:
                request = fz.api_request()
                outcome, why = run_api(request)
        hso_warnings = [w for w in caught if "hso" in str(w.filename) or "numpy" in str(w.filename)]
        if hso_warnings and outcome != "defect":
            outcome, why = "defect", f"warning: {hso_warnings[0].category.__name__}: {hso_warnings[0].message}"
        counts[surface][outcome] += 1
        if outcome == "defect":
            defects.append({"i": i, "surface": surface, "request": repr(request)[:400], "why": why[:400]})
        if log is not None and (i + 1) % 500 == 0:
            log(f"fuzz: {i + 1}/{n} requests, {len(defects)} defects, {time.perf_counter() - t0:.0f} s")
    return {"n": n, "seed": seed, "counts": counts, "defects": defects, "wall_s": round(time.perf_counter() - t0, 1)}


def markdown(record: dict[str, Any]) -> str:
    c = record["counts"]
    lines = [f"# Fuzz run ({record['date']})", "", f"`{record['command']}` on {record['machine']}, hso "
             f"{record['hso']}: {record['n']} requests in {record['wall_s']} s.", "",
             "| surface | valid schedule | planned, not run (long search) | refused with one clear error | defect |",
             "|---|---|---|---|---|"]
    for surface in ("api", "cli"):
        lines.append(f"| {surface} | " + " | ".join(str(c[surface][o]) for o in OUTCOMES) + " |")
    lines += ["", f"Defects: {len(record['defects'])}."]
    for d in record["defects"][:20]:
        lines.append(f"- #{d['i']} ({d['surface']}): {d['why']} <- `{d['request'][:200]}`")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    out = args.out.resolve()
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):  # plots land here
        record = fuzz(args.n, args.seed, log=print)
    record.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  command=f"python -m benchmarks.fuzz --n {args.n} --seed {args.seed}",
                  machine=f"{platform.platform()}", hso=hso.__version__)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    text = markdown(record)
    (out / "fuzz.md").write_text(text, encoding="utf-8")
    print(text)
    return 1 if record["defects"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
