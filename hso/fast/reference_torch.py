"""The torch twin of the objective contract: MEP and DM-NonUniform written once as plain float64 torch expressions,
with every derivative from autograd instead of the hand-derived formulas of `hso.fast.reference` /
`hso.fast.reference_dmn`. It is an independent check of those formulas (tests compare the two), it runs wherever
torch runs (CPU or a CUDA device: the tensors stay on the input's device), and it is the "torch reference" the
benchmarks measure the compiled kernels against.

The MEP Hessian is tridiagonal, so three Hessian-vector products recover it exactly: probing with the indicator of
the columns j = c (mod 3), c = 0, 1, 2, row i of the product holds column j of row i for the one j in
{i - 1, i, i + 1} that has residue c. Lower levels with this backend run the numpy driver on these objectives.

Requires torch (the Triton extra installs it); importing `hso` never imports this module.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..schedules import KIND_FLOW, KIND_VE, KIND_VP
from .reference_dmn import MODE_ABS, MODE_SUM, step_plan

__all__ = ["mep_and_grad", "dmn_and_grad", "mep_value", "dmn_value"]


def _torch():
    import torch  # deferred: torch is optional (the diffusers / torch backends)
    return torch


def _log_sigma(lam: Any, kind: int) -> Any:
    """log sigma(lambda) of a kind (`hso.schedules.log_sigma_of_lambda`), as a torch expression."""
    f = _torch().nn.functional
    if kind == KIND_VP:
        return -0.5 * f.softplus(2.0 * lam)
    if kind == KIND_VE:
        return -lam
    if kind == KIND_FLOW:
        return -f.softplus(lam)
    raise ValueError(f"unknown lambda-space kind {kind}")


def mep_value(lam: Any, kind: int, p: float) -> Any:
    """MEP ``sum_i 2 sinh(h_i / 2) sigma(m_i)^(p-1)`` per row of ``lam  # [B, N+1]`` (a torch tensor)."""
    torch = _torch()
    h = lam[:, 1:] - lam[:, :-1]
    m = 0.5 * (lam[:, 1:] + lam[:, :-1])
    return torch.sum(2.0 * torch.sinh(0.5 * h) * torch.exp((p - 1.0) * _log_sigma(m, kind)), dim=1)


def _phi(h: Any) -> tuple[Any, Any, Any]:
    """(H0, H1, H2) of the DM-NonUniform coefficients: the Taylor series for |h| < 1.5, the closed form beyond."""
    torch = _torch()
    eh = torch.exp(h)
    h0 = torch.expm1(h)
    closed1 = h * eh - h0
    closed2 = h * h * eh - 2.0 * closed1
    s1 = torch.zeros_like(h)
    s2 = torch.zeros_like(h)
    term = torch.ones_like(h)
    for i in range(30):
        s1 = s1 + term / (i + 2)
        s2 = s2 + term / (i + 3)
        term = term * h / (i + 1)
    small = torch.abs(h) < 1.5
    return h0, torch.where(small, h * h * s1, closed1), torch.where(small, h * h * h * s2, closed2)


def dmn_value(lam: Any, kind: int, p: float, trunc_num: int | None = None) -> Any:
    """The DM-NonUniform bound per row of ``lam  # [B, N+1]`` (a torch tensor); the formulas and the step plan of
    `hso.fast.reference_dmn`, written as one forward expression."""
    torch = _torch()
    n = lam.shape[1] - 1
    order, mode = step_plan(n, trunc_num)
    E = torch.exp(lam)
    h = lam[:, 1:] - lam[:, :-1]
    w = torch.exp((p - 1.0) * _log_sigma(lam, kind) - lam)
    value = torch.zeros(lam.shape[0], dtype=lam.dtype, device=lam.device)
    node_sums = [torch.zeros_like(value) for _ in range(n + 1)]
    for s in range(n):
        k = int(order[s])
        if mode[s] == MODE_ABS:
            value = value + torch.abs(w[:, s] * E[:, s] * torch.expm1(h[:, s]))
            continue
        h0, h1, h2 = _phi(h[:, s])
        Es = E[:, s]
        if k == 2:
            a = h[:, s - 1]
            coeffs = [-Es * h1 / a, Es * (h1 / a + h0)]
        else:
            a, b = h[:, s - 2], h[:, s - 1]
            coeffs = [Es * (h2 + b * h1) / (a * (a + b)), -Es * (h2 + (a + b) * h1) / (a * b),
                      Es * (h2 + (2.0 * b + a) * h1 + b * (a + b) * h0) / (b * (a + b))]
        terms = [w[:, s - k + 1 + j] * coeffs[j] for j in range(k)]
        if mode[s] == MODE_SUM:
            for j in range(k):
                node_sums[s - k + 1 + j] = node_sums[s - k + 1 + j] + terms[j]
        else:
            value = value + torch.sqrt(sum(t * t for t in terms))
    return value + sum(torch.abs(c) for c in node_sums)


def _as_tensor(lambdas: Any) -> Any:
    torch = _torch()
    if isinstance(lambdas, torch.Tensor):
        return lambdas.detach().to(torch.float64).clone().requires_grad_(True)
    return torch.tensor(np.asarray(lambdas, dtype=np.float64), dtype=torch.float64, requires_grad=True)


def _out(x: Any, like_numpy: bool) -> Any:
    x = x.detach()
    return x.cpu().numpy() if like_numpy else x


def mep_and_grad(lambdas: Any, kind: int, p: float = 2.0, hessian: bool = False) -> tuple:
    """MEP value, autograd gradient and (``hessian``) the tridiagonal Hessian from three Hessian-vector products;
    the contract of `hso.fast.reference.mep_and_grad`. numpy in, numpy out; a tensor in, tensors out (same device).
    """
    torch = _torch()
    like_numpy = not isinstance(lambdas, torch.Tensor)
    lam = _as_tensor(lambdas)
    value = mep_value(lam, kind, p)
    (grad,) = torch.autograd.grad(value.sum(), lam, create_graph=hessian)
    if not hessian:
        return _out(value, like_numpy), _out(grad, like_numpy)
    n1 = lam.shape[1]
    cols = torch.arange(n1, device=lam.device)
    diag = torch.zeros_like(grad)
    off = torch.zeros_like(grad[:, :-1])
    for c in range(3):
        probe = (cols % 3 == c).to(lam.dtype).expand_as(lam)
        (hv,) = torch.autograd.grad(grad, lam, grad_outputs=probe, retain_graph=True)
        diag = torch.where(cols % 3 == c, hv, diag)
        # row i + 1 of H v holds H[i + 1, i] (= off[i]) where column i has residue c
        off = torch.where(cols[:-1] % 3 == c, hv[:, 1:], off)
    return _out(value, like_numpy), _out(grad, like_numpy), _out(diag, like_numpy), _out(off, like_numpy)


def dmn_and_grad(lambdas: Any, kind: int, p: float = 2.0, trunc_num: int | None = None) -> tuple:
    """DM-NonUniform value and autograd gradient; the contract of `hso.fast.reference_dmn.dmn_and_grad`."""
    torch = _torch()
    like_numpy = not isinstance(lambdas, torch.Tensor)
    lam = _as_tensor(lambdas)
    value = dmn_value(lam, kind, p, trunc_num)
    (grad,) = torch.autograd.grad(value.sum(), lam)
    return _out(value, like_numpy), _out(grad, like_numpy)
