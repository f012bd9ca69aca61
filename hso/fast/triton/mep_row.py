"""The MEP objective kernel: `hso.fast.reference.mep_and_grad` (the C++ `mep_row`).
"""
from __future__ import annotations

import triton.language as tl

from .common import interval, kernel

__all__ = ["mep_fwd_kernel"]


@kernel("B", "N1")
def mep_fwd_kernel(lam_ptr,    # [B, N+1]
                    prm_ptr,    # [1]: p
                    value_ptr,  # [B]
                    grad_ptr,   # [B, N+1]
                    diag_ptr,   # [B, N+1] (HESSIAN)
                    off_ptr,    # [B, N] (HESSIAN)
                    B, N1,
                    KIND: tl.constexpr, HESSIAN: tl.constexpr, BLOCK_B: tl.constexpr):
    lanes = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    ok = lanes < B
    row = lanes.to(tl.int64) * N1
    c = tl.load(prm_ptr + tl.zeros([BLOCK_B], dtype=tl.int32), mask=ok, other=2.0) - 1.0
    a = tl.load(lam_ptr + row, mask=ok, other=0.0)
    value = tl.zeros([BLOCK_B], dtype=tl.float64)
    # the right-end terms of interval i-1 wait in registers for the left-end terms of interval i, so every element
    # is summed in the reference's order: (0 + right term of i-1) + left term of i
    g_carry = tl.zeros([BLOCK_B], dtype=tl.float64)
    h_carry = tl.zeros([BLOCK_B], dtype=tl.float64)
    for i in range(0, N1 - 1):
        b = tl.load(lam_ptr + row + i + 1, mask=ok, other=0.0)
        sh, ch, e, q1, q2 = interval(a, b, c, KIND)
        value += 2.0 * sh * e
        tl.store(grad_ptr + row + i, g_carry + e * (-ch + sh * q1), mask=ok)
        g_carry = e * (ch + sh * q1)
        if HESSIAN:
            common = 0.5 * sh * (q1 * q1 + q2)
            tl.store(diag_ptr + row + i, h_carry + e * (0.5 * sh - ch * q1 + common), mask=ok)
            h_carry = e * (0.5 * sh + ch * q1 + common)
            tl.store(off_ptr + lanes.to(tl.int64) * (N1 - 1) + i, e * (-0.5 * sh + common), mask=ok)
        a = b
    tl.store(grad_ptr + row + N1 - 1, g_carry, mask=ok)
    if HESSIAN:
        tl.store(diag_ptr + row + N1 - 1, h_carry, mask=ok)
    tl.store(value_ptr + lanes, value, mask=ok)
