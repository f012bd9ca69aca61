"""The ``triton`` backend: the MEP and DM-NonUniform objectives and their fused lower levels as Triton kernels.

Runs on a CUDA GPU, or on the CPU through Triton's interpreter (``TRITON_INTERPRET=1`` set before this module is
imported). Only `hso.fast.registry` imports this package, lazily: importing `hso` never imports torch or Triton.

Laid out like csrc/common: `common` (codes, decorators, reductions, elementwise math), `mep_row` and `dmn_row` (the
objectives), `schedule_map` (t <-> lambda), `lower_row` (the MEP lower level and the helpers both lower levels
share), `lower_bfgs` (the DM-NonUniform lower level), `launch` (the host wrappers). Kernels, each the twin of a
contract documented in the reference (the math is written there, not here):

* `mep_row.mep_fwd_kernel` - `hso.fast.reference.mep_and_grad`: BLOCK_B candidates per program, one per vector lane,
  and a loop over the N intervals with each output element accumulated in the reference's order (the C++ `mep_row`).
* `dmn_row.dmn_fwd_kernel` - `hso.fast.reference_dmn.dmn_and_grad`: one candidate per lane, its row a [BLOCK_B, NP]
  tile; `dmn_row.dmn_tile` forms every step's coefficients at once and sums the node sums, the value and the
  gradient entries in the order of the C++ `dmn_row` (the lower level below evaluates the same helper).
* `lower_row.lower_solve_kernel` - `hso.fast.reference_lower.lower_solve` for MEP, as ported to one candidate in
  csrc/common/lower_row.h: init family, feasible blend, active-set Newton in t with the block-reduced Thomas solve,
  the Sturm-count positive-definiteness check (bisection shift when it fails), ratio test, backtracking line search,
  multipliers from sums within blocks, start fallback and SPF penalty. Each lane is one candidate; lanes that are
  done are masked while the others iterate.
* `lower_bfgs.lower_dmn_kernel` - the same contract for DM-NonUniform, as csrc/common/lower_bfgs.h: the MEP kernel's
  start, blocks, multipliers, ratio test, line search and outputs (shared helpers), with a dense BFGS matrix per
  lane as a [BLOCK_B, NP, NP] tile, its positive-definite copy (Cholesky test, Jacobi eigenvalues when it fails) and
  the reduced working-set system solved by Cholesky.

Both lower levels take many problems per launch (`hso.fast.reference_lower.lower_solve_many`, as the C++
`LowerBatch`): each program holds candidates of one problem and loads that problem's row of numbers (N, gap, d_min,
gamma, p, start family, iteration cap, truncNum, the offset of its table; `lower_row.program_problem`), so the
problems that share the constexprs (schedule family, lambda kind, padded width NP) share a launch; `launch`
sorts the candidates by problem and writes rows of the widest problem's width, padded with NaN.

Numerics. Triton's core language has exp, log, sqrt, sin and cos only (libdevice is unavailable to the interpreter),
so sinh/cosh/tanh/expm1/log1p/acos are built from them with the classic accurate forms (Kahan's expm1, Higham's
log1p, Newton on sin for asin): each is within a few ulps of numpy's, which keeps the kernels at rounding distance
from the reference. Scalars reach the kernels in a float64 buffer because Triton passes Python floats as float32.

Compiled as interpreted. The interpreter is where CI runs these kernels, so nothing may mean something else once
compiled: integer arguments are never specialised on their values (`common.kernel`: N = 1 would become a Python
constant), no float32 constant enters the float64 arithmetic (a tl.where of two literals is float32), the DM-
NonUniform lower level runs no scan (`dmn_row.colsum`: its small tiles' layouts are ones Triton's scans have got
wrong), and integer division and remainder only see non-negative operands (C and Python round negatives
differently). tests/test_triton.py compiles every kernel for sm_90 as the launcher would and checks the IR.
"""
from __future__ import annotations

from .launch import dmn_and_grad, lower_solve, lower_solve_many, mep_and_grad

__all__ = ["mep_and_grad", "dmn_and_grad", "lower_solve", "lower_solve_many"]
