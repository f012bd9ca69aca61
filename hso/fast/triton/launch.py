"""Host wrappers: numpy in, numpy out; block sizes per launch. The launch configuration reads
`common.INTERPRETED` at call time (the compiled path's block sizes and line search are tested under the
interpreter by setting it False)."""
from __future__ import annotations

import numpy as np
import torch
import triton

from ...schedules import NoiseSchedule
from ..codes import INIT_CODES, schedule_tables
from ..reference_dmn import resolve_trunc_num
from ..reference_lower import LowerResult, LowerSpec
from . import common
from .common import KINDS
from .dmn_row import dmn_fwd_kernel
from .lower_bfgs import lower_dmn_kernel
from .lower_row import lower_solve_kernel
from .mep_row import mep_fwd_kernel

__all__ = ["device", "dmn_and_grad", "dmn_block", "lower_block", "lower_solve", "lower_solve_many", "mep_and_grad",
           "mep_block"]


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def mep_block(b: int) -> int:
    # The interpreter costs tens of microseconds per operation whatever the tile, so it wants one or two huge
    # programs; on a GPU one lane per thread of a 4-warp program.
    if common.INTERPRETED:
        return min(4096, max(16, triton.next_power_of_2(max(b, 1))))
    return 128


def lower_block(b: int, np_: int, dense: bool = False) -> int:
    if common.INTERPRETED:
        cap = 262144 // (np_ * np_) if dense else 16384 // np_
        return min(max(16, triton.next_power_of_2(max(b, 1))), max(64, cap))
    # some thirty [BLOCK_B, NP] float64 tiles are live in the Newton loop. Compiled for sm_90 (ptxas -v, 4 warps),
    # 2 elements of each per thread fit in registers (16 x 16: 235 registers, no spills) and 4 spill: keep
    # BLOCK_B * NP <= 256. Not timed on hardware.
    # The DM-NonUniform kernel (dense) also holds a handful of [BLOCK_B, NP, NP] tiles: the same budget per
    # element, one candidate per program from NP = 16 on. Compiled for sm_90 (Triton's ptxas, 4 warps, line
    # search in turn): 162-247 registers and at most 88 bytes of stack for NP = 4 ... 32, 1 KiB of spills at
    # NP = 64 (N > 31). Not timed on hardware.
    if dense:
        return max(1, min(16, 256 // (np_ * np_)))
    return max(1, min(16, 256 // np_))


def dmn_block(b: int, np_: int) -> int:
    # rows are [BLOCK_B, NP] tiles, as in the lower level
    if common.INTERPRETED:
        return min(mep_block(b), max(16, 262144 // np_))
    return max(1, min(128, 256 // np_))


def mep_and_grad(lambdas: np.ndarray, kind: int, p: float = 2.0, hessian: bool = False):
    """MEP value, gradient (and tridiagonal Hessian) for ``lambdas  # [B, N+1]``; the contract of
    `hso.fast.reference.mep_and_grad`, float64 numpy in and out.

    Raises:
        ValueError: not 2-D, fewer than 2 points, or an unknown lambda-space kind.
    """
    lam = np.require(lambdas, dtype=np.float64, requirements=["C", "W"])  # torch wants writable memory
    if lam.ndim != 2:
        raise ValueError(f"lambdas must be 2-D [B, N+1], got shape {lam.shape}")
    if lam.shape[1] < 2:
        raise ValueError(f"lambdas need at least 2 points per row, got {lam.shape[1]}")
    if int(kind) not in KINDS:
        raise ValueError(f"unknown lambda-space kind {kind}")
    bsz, n1 = lam.shape
    dev = device()
    x = torch.from_numpy(lam).to(dev)
    value = torch.empty(bsz, dtype=torch.float64, device=dev)
    grad = torch.empty_like(x)
    diag = torch.empty_like(x) if hessian else grad
    off = torch.empty((bsz, n1 - 1), dtype=torch.float64, device=dev) if hessian else grad
    if bsz > 0:
        prm = torch.tensor([float(p)], dtype=torch.float64, device=dev)
        block = mep_block(bsz)
        mep_fwd_kernel[(triton.cdiv(bsz, block),)](x, prm, value, grad, diag, off, bsz, n1, KIND=int(kind),
                                                     HESSIAN=bool(hessian), BLOCK_B=block, num_warps=4)
    if not hessian:
        return value.cpu().numpy(), grad.cpu().numpy()
    return value.cpu().numpy(), grad.cpu().numpy(), diag.cpu().numpy(), off.cpu().numpy()


def dmn_and_grad(lambdas: np.ndarray, kind: int, p: float = 2.0, trunc_num: int | None = None):
    """DM-NonUniform value and gradient for ``lambdas  # [B, N+1]``; the contract of
    `hso.fast.reference_dmn.dmn_and_grad`, float64 numpy in and out.

    Raises:
        ValueError: not 2-D, fewer than 2 points, or an unknown lambda-space kind.
    """
    lam = np.require(lambdas, dtype=np.float64, requirements=["C", "W"])
    if lam.ndim != 2 or lam.shape[1] < 2:
        raise ValueError(f"lambdas must have shape [B, N+1] with N >= 1, got {lam.shape}")
    if int(kind) not in KINDS:
        raise ValueError(f"unknown lambda-space kind {kind}")
    bsz, n1 = lam.shape
    tau = resolve_trunc_num(n1 - 1, trunc_num)
    dev = device()
    x = torch.from_numpy(lam).to(dev)
    value = torch.empty(bsz, dtype=torch.float64, device=dev)
    grad = torch.empty_like(x)
    if bsz > 0:
        prm = torch.tensor([float(p)], dtype=torch.float64, device=dev)
        np_ = triton.next_power_of_2(n1)
        block = dmn_block(bsz, np_)
        dmn_fwd_kernel[(triton.cdiv(bsz, block),)](x, prm, value, grad, bsz, n1, tau, KIND=int(kind), BLOCK_B=block,
                                                     NP=np_, num_warps=4)
    return value.cpu().numpy(), grad.cpu().numpy()


def lower_solve(psi: np.ndarray, schedule: NoiseSchedule, spec: LowerSpec) -> LowerResult:
    """The fused lower level (MEP or DM-NonUniform) for ``psi  # [B, 3]``; the contract of
    `hso.fast.reference_lower.lower_solve` (validated by `hso.fast.lower_solve`): `lower_solve_many` with one
    problem."""
    return lower_solve_many(psi, np.zeros(np.shape(psi)[0], dtype=np.int64), [(schedule, spec)])


def lower_solve_many(psi: np.ndarray, rows: np.ndarray, problems: list[tuple[NoiseSchedule, LowerSpec]]
                     ) -> LowerResult:
    """The fused lower level for candidates of several problems, ``rows  # [B]`` naming each candidate's problem in
    ``problems  # [(schedule, lower spec)]``; the contract of `hso.fast.reference_lower.lower_solve_many` (validated
    by `hso.fast.lower_solve_many`). One launch per kernel configuration, i.e. per objective, schedule family,
    lambda kind and padded width NP = next power of two of N + 1: the problems' N, gaps, d_min, gamma, p, start
    families, iteration caps and tables are per-problem rows the kernels load (`lower_row.program_problem`), and the
    candidates are sorted by problem so that each program holds one problem's."""
    p = np.require(psi, dtype=np.float64, requirements=["C"])
    r = np.asarray(rows, dtype=np.int64)
    bsz = p.shape[0]
    ints = np.zeros((len(problems), 8), dtype=np.int32)
    prm = np.zeros((len(problems), 8), dtype=np.float64)
    groups: dict[tuple, list[int]] = {}
    sched_rows, tables = schedule_tables([schedule for schedule, _ in problems])  # each distinct vp table once
    for k, ((schedule, spec), (fam, fa, fb, off, n_tab)) in enumerate(zip(problems, sched_rows)):
        if spec.init not in INIT_CODES:
            raise ValueError(f"unknown init family {spec.init!r}; known: {', '.join(INIT_CODES)}")
        if spec.objective not in ("mep", "dmn"):
            raise ValueError(f"unknown objective {spec.objective!r}; the Triton lower level takes 'mep' and 'dmn'")
        if n_tab:  # the discrete table's end values, which interpolation clamps to (a table is never read without)
            fa, fb = float(tables[off]), float(tables[off + n_tab - 1])
        n_int = int(spec.n_intervals)
        tau = resolve_trunc_num(n_int, spec.trunc_num) if spec.objective == "dmn" else 0
        ints[k] = (n_int, n_tab, n_tab.bit_length(), int(spec.maxiter), tau, off, INIT_CODES[spec.init], 0)
        prm[k] = (fa, fb, spec.gap, spec.d_min, spec.gamma, spec.p, spec.xtol, 0.0)
        key = (spec.objective, int(fam), int(schedule.kind), triton.next_power_of_2(n_int + 1))
        groups.setdefault(key, []).append(k)
    width = max(int(spec.n_intervals) for _, spec in problems) + 1
    order = np.argsort(r, kind="stable")  # each problem's candidates together, in their order
    first = np.searchsorted(r[order], np.arange(len(problems) + 1))
    ints[:, 7] = first[1:]  # the end of each problem's candidates
    dev = device()
    t = torch.full((bsz, width), float("nan"), dtype=torch.float64, device=dev)
    lam = torch.full_like(t, float("nan"))
    obj = torch.empty(bsz, dtype=torch.float64, device=dev)
    pen = torch.empty_like(obj)
    iters = torch.empty(bsz, dtype=torch.int64, device=dev)
    feas = torch.empty(bsz, dtype=torch.int8, device=dev)
    if bsz > 0:
        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)
        psi_d, ints_d, prm_d, tab_d = put(p[order]), put(ints), put(prm), put(np.append(tables, 0.0))  # never empty
        for (objective, fam, kind, np_), mine in groups.items():
            counts = first[1:][mine] - first[:-1][mine]
            if counts.max() == 0:
                continue
            dense = objective == "dmn"
            block = lower_block(int(counts.max()), np_, dense)
            # one program per BLOCK_B candidates of one problem
            prog = np.array([(k, s) for k in mine for s in range(first[k], first[k + 1], block)], dtype=np.int32)
            args = (psi_d, put(prog), ints_d, prm_d, tab_d, t, lam, obj, pen, iters, feas, width)
            meta = dict(FAMILY=fam, KIND=kind, BLOCK_B=block, NP=np_, num_warps=4)
            if dense:
                # the batched line search saves the interpreter most of its calls; compiled, its 32 trial rows per
                # candidate would spill to local memory, and halving in turn accepts the same step
                lower_dmn_kernel[(len(prog),)](*args, BATCH=common.INTERPRETED, **meta)
            else:
                lower_solve_kernel[(len(prog),)](*args, **meta)
    back = np.empty(bsz, dtype=np.int64)
    back[order] = np.arange(bsz)  # sorted position of each candidate
    obj_np, pen_np = obj.cpu().numpy()[back], pen.cpu().numpy()[back]
    return LowerResult(t=t.cpu().numpy()[back], lambdas=lam.cpu().numpy()[back], objective=obj_np, penalty=pen_np,
                       fitness=obj_np + pen_np, iters=iters.cpu().numpy()[back], feasible=feas.cpu().numpy()[back] != 0)
