"""The Triton backend (`hso.fast.triton`) agrees with its float64 numpy twins.

On machines without a GPU the kernels run on Triton's CPU interpreter (TRITON_INTERPRET=1, set in conftest), which
costs tens of microseconds per tile operation: batches here are one or two programs each (see the host wrappers'
block sizes), and every agreement test is one launch.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from agreement import FAMILIES, KINDS, assert_lower_agree, assert_mep_close, random_lambdas, random_psi, solve_both

import hso
from hso import fast
from hso.fast import reference, registry
from hso.fast.reference_dmn import dmn_and_grad
from hso.fast.reference_lower import _feasible_start

_REASON = registry.BACKENDS["triton"].probe()
if _REASON is not None:
    pytest.skip(f"triton backend unavailable: {_REASON}", allow_module_level=True)

from hso.fast import triton as triton_backend  # noqa: E402  (imports torch and triton: only once the probe passed)
from hso.fast.triton import common, launch, lower_bfgs, lower_row  # noqa: E402


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64, 4097])
def test_mep_matches_reference(b: int, n: int, kind: int) -> None:
    rng = np.random.default_rng([b, n, kind, 3])
    lam = random_lambdas(rng, b, n)
    want = reference.mep_and_grad(lam, kind, 2.0, hessian=True)
    got = triton_backend.mep_and_grad(lam, kind, 2.0, hessian=True)
    assert isinstance(got, tuple) and len(got) == 4
    assert_mep_close(got, want, lam, kind, 2.0)


@pytest.mark.parametrize("p", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("kind", KINDS)
def test_mep_other_exponents_and_first_order_call(kind: int, p: float) -> None:
    lam = random_lambdas(np.random.default_rng([kind, int(4 * p)]), 64, 12)
    got = triton_backend.mep_and_grad(lam, kind, p, hessian=True)
    assert_mep_close(got, reference.mep_and_grad(lam, kind, p, hessian=True), lam, kind, p)
    # the first-order launch runs the same arithmetic without the Hessian stores: bit-identical value and gradient
    first = triton_backend.mep_and_grad(lam, kind, p)
    assert len(first) == 2
    np.testing.assert_array_equal(first[0], got[0])
    np.testing.assert_array_equal(first[1], got[1])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 17])
def test_dmn_matches_reference(n: int) -> None:
    """The DM-NonUniform kernel: every kind, exponents and truncations, to 1e-12 (values; gradients on the scale of
    each row's largest entry, since its entries are sums of terms of either sign)."""
    rng = np.random.default_rng(50 + n)
    for b in (1, 64):
        lam = np.sort(rng.uniform(-8.0, 6.0, (b, n + 1)), axis=1)
        # the interpreter's cost is per call, not per lane: each kind once, with its own exponent and truncation
        for kind, p, trunc in ((0, 2.0, None), (1, 1.0, 0), (2, 1.5, 5)):
            spec = fast.ObjectiveSpec("dmn", kind, p, trunc)
            v, g = fast.objective_and_grad(lam, spec, backend="triton")
            want_v, want_g = dmn_and_grad(lam, kind, p, trunc)
            np.testing.assert_allclose(v, want_v, rtol=1e-12)
            assert np.all(np.abs(g - want_g) <= 1e-12 * np.abs(want_g).max(axis=1, keepdims=True))


def test_mep_through_the_dispatcher_and_edge_cases() -> None:
    lam = random_lambdas(np.random.default_rng(5), 9, 6)
    spec = fast.ObjectiveSpec("mep", 0, 2.0)
    a = fast.objective_and_grad(lam, spec, hessian=True, backend="reference")
    b = fast.objective_and_grad(lam, spec, hessian=True, backend="triton")
    for x, y in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-12)
    value, grad, diag, off = triton_backend.mep_and_grad(np.empty((0, 6)), 1, 2.0, hessian=True)
    assert value.shape == (0,) and grad.shape == (0, 6) and diag.shape == (0, 6) and off.shape == (0, 5)
    with pytest.raises(ValueError, match="unknown lambda-space kind 7"):
        triton_backend.mep_and_grad(lam, 7, 2.0)
    with pytest.raises(ValueError, match="at least 2 points"):
        triton_backend.mep_and_grad(np.zeros((3, 1)), 0, 2.0)


# ------------------------------------------------------------------------------------------------ lower level
def _both(schedule, spec, psi, p):
    return solve_both("triton", schedule, spec, psi, p)


@pytest.mark.parametrize("n_int", [1, 2, 3, 7, 10, 17, 50])
@pytest.mark.parametrize("b", [1, 3, 64])
@pytest.mark.parametrize("spacing", ["rank", "constrain"])
def test_lower_solve_agrees_with_reference(n_int, b, spacing):
    # other candidates than tests/test_backends.py draws for the same shapes; "constrain" at N = 10 holds
    # infeasible candidates (end points closer than N d), which keep the uniform schedule
    s = hso.NoiseSchedule.preset("sd21")
    gap = s.time_resolution if spacing == "rank" else max(hso.d_min(n_int), s.time_resolution) * (1 + 1e-12)
    spec = fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=hso.d_min(n_int))
    assert_lower_agree(*_both(s, spec, random_psi(s, b, 1000 + 7 * n_int + b), 2.0))


@pytest.mark.parametrize("preset, p", FAMILIES)
@pytest.mark.parametrize("init", sorted(hso.INIT_FAMILIES))
def test_every_family_and_init(preset, p, init):
    s = hso.NoiseSchedule.preset(preset)
    spec = fast.LowerSpec(n_intervals=8, gap=s.time_resolution, d_min=hso.d_min(8), p=p, init=init)
    assert_lower_agree(*_both(s, spec, random_psi(s, 16, 5), p))


@pytest.mark.skipif(not common.INTERPRETED, reason="counts calls of a device helper: interpreter only")
def test_indefinite_hessians_take_the_bisection_shift(monkeypatch):
    """From time-uniform starts on the cosine schedule the t-Hessian is indefinite in early iterations: the Sturm
    count flags it and the shift comes from the bisected extreme eigenvalues; the iterates still match."""
    calls = []
    shift_of = lower_row.shift_of

    def counting(*args):
        calls.append(1)
        return shift_of(*args)

    # under the interpreter device helpers are plain functions that the kernel looks up at run time
    monkeypatch.setattr(lower_row, "shift_of", counting)
    s = hso.NoiseSchedule.preset("vp_cosine")
    spec = fast.LowerSpec(n_intervals=8, gap=s.time_resolution, d_min=hso.d_min(8), init="time_uniform")
    assert_lower_agree(*_both(s, spec, random_psi(s, 16, 3), 2.0))
    assert calls


def test_empty_batch_and_maxiter():
    s = hso.NoiseSchedule.preset("sd21")
    spec = fast.LowerSpec(n_intervals=5, gap=s.time_resolution, d_min=hso.d_min(5), maxiter=2)
    res = triton_backend.lower_solve(np.empty((0, 3)), s, spec)
    assert res.t.shape == (0, 6) and res.iters.shape == (0,)
    ref, got = _both(s, spec, random_psi(s, 8, 9), 2.0)
    np.testing.assert_array_equal(got.iters, ref.iters)  # capped at maxiter = 2, like the reference
    np.testing.assert_allclose(got.t, ref.t, rtol=0, atol=1e-7)


def test_whole_search_is_the_same():
    a = hso.optimize("sd21", 6, "ddim", backend="reference")
    b = hso.optimize("sd21", 6, "ddim", backend="triton")
    np.testing.assert_array_equal(a.timesteps, b.timesteps)
    assert b.fitness == pytest.approx(a.fitness, rel=1e-9)
    assert b.backend == "triton"


# ------------------------------------------------------------------------------------- DM-NonUniform lower level
# The fused BFGS lower level against the C++ kernel (the same algorithm, fast) and the numpy reference. Past a few
# iterations DM-NonUniform's BFGS iterations are chaotic (tests/test_dmn_backends.py): results agree to 1e-7 where
# the C++ result is stable under perturbations of psi by 1e-14, and every candidate must descend from the start.
_DMN_PRESETS = [("sd21", 2.0), ("edm", 1.0), ("flow", 2.0), ("vp_linear", 2.0)]
# every preset meets every N, the spacing alternating so that each N runs with both over the presets; from N = 7
# on (chaotic, mostly at maxiter) the iterations are capped at 15, where the interpreter is still quick
_DMN_GRID = [(preset, p, n, ("rank", "constrain")[(i + j) % 2])
             for i, (preset, p) in enumerate(_DMN_PRESETS) for j, n in enumerate((1, 2, 3, 5, 7, 10))]


def _dmn_spec(s, n_int, spacing, p, **kw):
    gap = s.time_resolution if spacing == "rank" else max(hso.d_min(n_int), s.time_resolution) * (1 + 1e-12)
    return fast.LowerSpec(n_intervals=n_int, gap=gap, d_min=hso.d_min(n_int), objective="dmn", p=p, **kw)


def _dmn_solve(backend, s, spec, psi):
    obj = fast.ObjectiveSpec("dmn", s.kind, spec.p, spec.trunc_num)
    return fast.lower_solve(psi, s, spec, obj, backend=backend)


def _assert_dmn_descends(s, spec, psi, got):
    start = _feasible_start(hso.init_schedule(s, spec.n_intervals, psi[:, 2], psi[:, 1], family=spec.init,
                                              rho=psi[:, 0]), spec.gap)[0]
    v0 = dmn_and_grad(s.lambda_(start), s.kind, spec.p)[0]
    ok = got.feasible
    assert np.all(got.objective[ok] <= v0[ok] * (1 + 1e-12))
    assert np.all(np.diff(got.t[ok], axis=1) <= -spec.gap * (1 - 1e-6))
    np.testing.assert_allclose(got.fitness, got.objective + got.penalty, rtol=0, atol=0)


@pytest.mark.parametrize("preset, p, n_int, spacing", _DMN_GRID)
def test_dmn_lower_level_agrees_with_cpp(preset, p, n_int, spacing):
    s = hso.NoiseSchedule.preset(preset)
    spec = _dmn_spec(s, n_int, spacing, p, maxiter=100 if n_int <= 5 else 15)
    psi = random_psi(s, 3, 70 + n_int)
    want = _dmn_solve("cpp", s, spec, psi)
    got = _dmn_solve("triton", s, spec, psi)
    np.testing.assert_array_equal(got.feasible, want.feasible)
    stable = want.iters < spec.maxiter if n_int <= 5 else np.ones(len(psi), dtype=bool)
    for eps in (1e-14, -1e-14):
        stable &= np.abs(_dmn_solve("cpp", s, spec, psi * (1 + eps)).lambdas - want.lambdas).max(axis=1) <= 1e-9
    if n_int <= 5:
        assert np.all(stable)  # the smooth regime: every candidate must agree
    np.testing.assert_allclose(got.lambdas[stable], want.lambdas[stable], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.t[stable], want.t[stable], rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.objective[stable], want.objective[stable], rtol=1e-9)
    _assert_dmn_descends(s, spec, psi, got)


@pytest.mark.parametrize("init", sorted(hso.INIT_FAMILIES))
def test_dmn_every_init_family_against_the_reference(init):
    # each init family once, on its own preset, against the numpy reference itself (N = 3: the smooth regime)
    preset, p = _DMN_PRESETS[sorted(hso.INIT_FAMILIES).index(init)]
    s = hso.NoiseSchedule.preset(preset)
    spec = _dmn_spec(s, 3, "rank", p, init=init)
    psi = random_psi(s, 4, 11)
    ref = _dmn_solve("reference", s, spec, psi)
    got = _dmn_solve("triton", s, spec, psi)
    assert_lower_agree(ref, got)
    np.testing.assert_array_equal(got.iters, _dmn_solve("cpp", s, spec, psi).iters)
    _assert_dmn_descends(s, spec, psi, got)


def test_dmn_empty_batch_and_maxiter():
    s = hso.NoiseSchedule.preset("flow")
    spec = _dmn_spec(s, 6, "rank", 2.0, maxiter=3, trunc_num=2)
    res = triton_backend.lower_solve(np.empty((0, 3)), s, spec)
    assert res.t.shape == (0, 7) and res.lambdas.shape == (0, 7) and res.iters.shape == (0,)
    psi = random_psi(s, 5, 4)
    want = _dmn_solve("cpp", s, spec, psi)
    got = _dmn_solve("triton", s, spec, psi)
    np.testing.assert_array_equal(got.iters, np.full(5, 3))  # capped at maxiter = 3, as the C++ kernel
    np.testing.assert_array_equal(got.iters, want.iters)
    np.testing.assert_allclose(got.t, want.t, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.objective, want.objective, rtol=1e-9)


@pytest.mark.skipif(not common.INTERPRETED, reason="counts calls of a device helper: interpreter only")
def test_dmn_line_search_in_turn_accepts_the_same_steps(monkeypatch):
    # the interpreter evaluates the line search's halvings in one batch, compiled kernels one at a time (the batch
    # would spill on a GPU): both accept the same step, so the results are the same bits
    s = hso.NoiseSchedule.preset("sd21")
    spec = _dmn_spec(s, 7, "rank", 2.0, maxiter=20)
    psi = random_psi(s, 4, 21)
    calls = []
    value_of_t = lower_row.value_of_t  # a plain function under the interpreter: count the evaluations
    monkeypatch.setattr(lower_row, "value_of_t", lambda *a: calls.append(1) or value_of_t(*a))
    batched = _dmn_solve("triton", s, spec, psi)
    n_batched = len(calls)
    monkeypatch.setattr(common, "INTERPRETED", False)  # the compiled path's BATCH and block size
    in_turn = _dmn_solve("triton", s, spec, psi)
    assert len(calls) - n_batched > n_batched  # the searches did backtrack, by more than one halving somewhere
    for field in ("t", "lambdas", "objective", "iters"):
        np.testing.assert_array_equal(getattr(in_turn, field), getattr(batched, field))


# The compiled launch configuration: on a GPU the host wrappers launch other block sizes than under the interpreter
# (many programs, the last one partly masked) and the DM-NonUniform lower level searches its line in turn
# (BATCH=False). Those are the only branches on common.INTERPRETED: here the interpreter runs them, at N = 1 and with a
# partial last program, against the C++ kernel (DM-NonUniform lower level) or the reference.
@pytest.mark.parametrize("what, n, b", [("mep", 1, 130), ("mep", 17, 130), ("dmn", 1, 130), ("dmn", 17, 20),
                                        ("mep_lower", 1, 17), ("mep_lower", 17, 9),
                                        ("dmn_lower", 1, 17), ("dmn_lower", 3, 17), ("dmn_lower", 5, 5)])
def test_compiled_launch_configuration(monkeypatch, what, n, b):
    import triton

    monkeypatch.setattr(common, "INTERPRETED", False)  # block sizes and BATCH as compiled
    np_ = triton.next_power_of_2(n + 1)
    block = {"mep": lambda: launch.mep_block(b), "dmn": lambda: launch.dmn_block(b, np_),
             "mep_lower": lambda: launch.lower_block(b, np_),
             "dmn_lower": lambda: launch.lower_block(b, np_, dense=True)}[what]()
    assert b > block and b % block  # several programs, the last one partly masked
    rng = np.random.default_rng([n, b])
    if what == "mep":
        lam = random_lambdas(rng, b, n)
        got = triton_backend.mep_and_grad(lam, 2, 2.0, hessian=True)
        assert_mep_close(got, reference.mep_and_grad(lam, 2, 2.0, hessian=True), lam, 2, 2.0)
    elif what == "dmn":
        lam = random_lambdas(rng, b, n)
        v, g = triton_backend.dmn_and_grad(lam, 0, 2.0)
        want_v, want_g = dmn_and_grad(lam, 0, 2.0)
        np.testing.assert_allclose(v, want_v, rtol=1e-12)
        assert np.all(np.abs(g - want_g) <= 1e-12 * np.abs(want_g).max(axis=1, keepdims=True))
    elif what == "mep_lower":
        s = hso.NoiseSchedule.preset("sd21")
        spec = fast.LowerSpec(n_intervals=n, gap=s.time_resolution, d_min=hso.d_min(n))
        assert_lower_agree(*_both(s, spec, random_psi(s, b, 40 + n), 2.0))
    else:  # the smooth regime (N <= 5): every candidate agrees with the C++ kernel
        s = hso.NoiseSchedule.preset("sd21")
        spec = _dmn_spec(s, n, "rank", 2.0)
        psi = random_psi(s, b, 60 + n)
        want = _dmn_solve("cpp", s, spec, psi)
        got = _dmn_solve("triton", s, spec, psi)
        np.testing.assert_array_equal(got.feasible, want.feasible)
        np.testing.assert_array_equal(got.iters, want.iters)
        np.testing.assert_allclose(got.lambdas, want.lambdas, rtol=0, atol=1e-7)
        np.testing.assert_allclose(got.t, want.t, rtol=0, atol=1e-7)
        np.testing.assert_allclose(got.objective, want.objective, rtol=1e-9)


def test_dmn_jacobi_and_cholesky_helpers():
    """The positive-definite copy's pieces (taken when BFGS matrices become ill-conditioned, late in chaotic runs):
    Jacobi's extreme eigenvalues to rounding of the largest, and the Cholesky's verdict, on indefinite and on
    positive-definite matrices with eigenvalues over twelve orders of magnitude."""
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def probe(a_ptr, out_ptr, N, BLOCK_B: tl.constexpr, NP: tl.constexpr):
        C = tl.arange(0, NP)[None, :]
        R3 = tl.arange(0, NP)[None, :, None]
        K3 = tl.arange(0, NP)[None, None, :]
        inner = (R3 >= 1) & (R3 < N) & (K3 >= 1) & (K3 < N)
        b = tl.arange(0, BLOCK_B)
        A = tl.load(a_ptr + b[:, None, None] * NP * NP + R3 * NP + K3, mask=inner, other=0.0)
        ev_min, ev_max = lower_bfgs.jacobi_extreme(A, b >= 0, N, C, R3, K3, (C >= 1) & (C < N), inner)
        _l, ok = lower_bfgs.cholesky(A, N, C, R3, K3, BLOCK_B)
        keep = b < BLOCK_B
        tl.store(out_ptr + 3 * b, ev_min, mask=keep)
        tl.store(out_ptr + 3 * b + 1, ev_max, mask=keep)
        tl.store(out_ptr + 3 * b + 2, ok.to(tl.float64), mask=keep)

    rng = np.random.default_rng(8)
    for n_int in (2, 5, 10):
        n, np_, b = n_int - 1, triton.next_power_of_2(n_int + 1), 8
        a = np.zeros((b, np_, np_))
        for i in range(b):
            q = np.linalg.qr(rng.normal(size=(n, n)))[0]
            ev = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-9, 3, n) if i % 2 else 10.0 ** rng.uniform(-9, 3, n)
            a[i, 1:n_int, 1:n_int] = (q * ev) @ q.T
            a[i] = 0.5 * (a[i] + a[i].T)
        dev = launch.device()
        out = torch.zeros(3 * b, dtype=torch.float64, device=dev)
        probe[(1,)](torch.from_numpy(a).to(dev), out, n_int, BLOCK_B=b, NP=np_)
        got = out.cpu().numpy().reshape(b, 3)
        ev = np.linalg.eigvalsh(a[:, 1:n_int, 1:n_int])
        scale = np.abs(ev).max(axis=1)
        assert np.all(np.abs(got[:, 0] - ev[:, 0]) <= 1e-13 * scale)
        assert np.all(np.abs(got[:, 1] - ev[:, -1]) <= 1e-13 * scale)
        clear = np.abs(ev[:, 0]) > 1e-10 * scale  # the verdict where rounding cannot decide it
        np.testing.assert_array_equal((got[:, 2] > 0)[clear], (ev[:, 0] > 0)[clear])


def test_dmn_whole_search_is_the_same():
    # a small population, few generations and no polish: every lower-level call is one interpreted launch
    kw = dict(objective="dmn", popsize=4, maxiter=5, polish=False)
    a = hso.optimize("sd21", 4, "unipc", backend="cpp", **kw)
    b = hso.optimize("sd21", 4, "unipc", backend="triton", **kw)
    np.testing.assert_array_equal(a.timesteps, b.timesteps)
    assert b.fitness == pytest.approx(a.fitness, rel=1e-9)
    assert b.backend == "triton"


# --------------------------------------------------------------------------------------------- GPU compilation
# The interpreter runs Python, and accepts constructs that Triton's compiler rejects or compiles differently: compile
# every kernel for sm_90 here, without a GPU (Triton's own LLVM and ptxas), in a fresh process where TRITON_INTERPRET
# is off, exactly as the launcher would compile it:
# - the launches are the host wrappers' own (kernels swapped for recorders), so the constexprs (block sizes, NP) are
#   the compiled path's, for N = 1 (NP = 2), 2, 16 and 17 (NP = 32);
# - each launch is specialised as JITFunction.run does (Triton 3.9's own binder, checked against an emulation that
#   older Triton falls back to): an int argument equal to 1 becomes a constant and one divisible by 16 gets a
#   divisibility attribute unless the kernel marks it do_not_specialize; every int argument is also set to 1, 16 and
#   32 in turn, so that each kernel meets each case (identical specialisations compile once);
# - in each kernel's TTIR nothing is float32 (the kernels are float64 throughout: a Python float literal can become
#   a float32 constant, e.g. both branches of a tl.where, and silently cost precision), no associative scan runs
#   over a 3-D tile and none at all in the DM-NonUniform lower level (with those it diverged from the C++ kernel on
#   an H200: see hso.fast.triton.dmn_row.colsum). Two planted kernels show that both checks catch what they look for.
_COMPILE = r"""
import json, os, re, sys, time
os.environ["TRITON_INTERPRET"] = "0"
import numpy as np
import torch
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import hso
from hso import fast
from hso.fast.triton import common
from hso.fast.triton import launch as tb

assert not common.INTERPRETED
TARGET = GPUTarget("cuda", 90, 32)
KERNELS = ("mep_fwd_kernel", "dmn_fwd_kernel", "lower_solve_kernel", "lower_dmn_kernel")
F32 = re.compile(r"(?:(?<![\w.])|(?<=\dx))f32\b")  # f32, tensor<4x8xf32>; not tf32
SCAN = re.compile(r'"tt\.scan".*?\}\) : \(tensor<([0-9x]+)x\w+', re.S)


def f32_lines(ttir):
    return [ln.strip()[:160] for ln in ttir.splitlines() if F32.search(ln.split(" loc(")[0])]


def scans_3d(ttir):
    return [shape for shape in SCAN.findall(ttir) if shape.count("x") >= 2]


# 1. the launches the host wrappers make (no GPU is needed to reach them: the kernels are swapped for recorders)
launches = []


class Recorder:
    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, grid):
        return lambda *args, **kwargs: launches.append((self.fn, args, kwargs))


for name in KERNELS:
    setattr(tb, name, Recorder(getattr(tb, name)))
for b, n, kind, hessian in ((1, 1, 0, True), (16, 16, 1, False), (3, 17, 2, True)):
    tb.mep_and_grad(np.zeros((b, n + 1)), kind, 2.0, hessian=hessian)
for b, n, kind, trunc in ((1, 1, 0, None), (16, 16, 2, 1), (3, 2, 1, 0)):
    tb.dmn_and_grad(np.zeros((b, n + 1)), kind, 2.0, trunc)
for objective, preset, n, init, b, maxiter in json.loads(sys.argv[1]):
    spec = fast.LowerSpec(n_intervals=n, gap=1e-3, d_min=1e-3, objective=objective, init=init, maxiter=maxiter)
    tb.lower_solve(np.full((b, 3), 0.5), hso.NoiseSchedule.preset(preset), spec)


# 2. what the launcher compiles for each
def emulate(fn, args, kwargs):
    sig, consts, attrs = {}, {}, {}
    values = list(args) + [kwargs[p.name] for p in fn.params[len(args):]]
    for i, (p, v) in enumerate(zip(fn.params, values)):
        if p.is_constexpr:
            sig[p.name] = "constexpr"
            consts[(i,)] = v
        elif isinstance(v, torch.Tensor):
            sig[p.name] = "*" + {torch.float64: "fp64", torch.int64: "i64", torch.int32: "i32",
                                 torch.int8: "i8"}[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]  # CUDA allocations are 256-byte aligned
        else:
            assert isinstance(v, int) and -2**31 <= v < 2**31, (p.name, v)
            if not p.do_not_specialize and v == 1:
                sig[p.name] = "constexpr"
                consts[(i,)] = 1
                continue
            sig[p.name] = "i32"
            if not p.do_not_specialize and v % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, consts, attrs


def launcher(fn, args, kwargs):
    try:  # JITFunction.run's own steps (Triton 3.9; other versions differ, and fall back to the emulation)
        from triton.compiler.compiler import make_backend
        from triton.runtime.jit import create_function_from_signature
        backend = make_backend(TARGET)
        bound, specialization, options = create_function_from_signature(fn.signature, fn.params, backend)(*args,
                                                                                                          **kwargs)
        _opts, sig, consts, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    except Exception:
        return None
    return sig, dict(consts), {k: v for k, v in attrs.items() if v}


def divisible(attrs):
    return sorted(k for k, v in attrs.items() if "tt.divisibility" in repr(v))


jobs, cases, checked, mismatches = {}, {}, 0, []
for fn, args, kwargs in launches:
    meta = {k: v for k, v in kwargs.items() if k != "num_warps"}
    ints = [i for i, p in enumerate(fn.params[:len(args)]) if not p.is_constexpr and isinstance(args[i], int)]
    for value in (None, 1, 16, 32):
        a = [value if (value is not None and i in ints) else x for i, x in enumerate(args)]
        spec = emulate(fn, a, meta)
        own = launcher(fn, a, dict(kwargs))
        checked += own is not None
        if own is not None and (own[:2], divisible(own[2])) != (spec[:2], divisible(spec[2])):
            mismatches.append(repr((fn.__name__, own, spec))[:1000])
        key = (fn.__name__, json.dumps(spec[0], sort_keys=True), repr(sorted(spec[1].items())),
               repr(sorted(spec[2].items())))
        jobs.setdefault(key, (fn, spec, kwargs.get("num_warps", 4)))
        cases.setdefault(fn.__name__, set()).add("generic" if value is None else value)


def compile_(fn, spec, warps):
    return triton.compile(ASTSource(fn, *spec), target=TARGET, options={"num_warps": warps})


# 3. compile each for sm_90
report = []
for (name, *_k), (fn, spec, warps) in jobs.items():
    t0 = time.time()
    row = dict(kernel=name, constexprs={p.name: spec[1][(i,)] for i, p in enumerate(fn.params) if (i,) in spec[1]})
    try:
        k = compile_(fn, spec, warps)
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}"[-3000:]
    else:
        row.update(seconds=round(time.time() - t0, 1), cubin=bool(k.asm.get("cubin")),
                   f32=f32_lines(k.asm["ttir"])[:5], scans=SCAN.findall(k.asm["ttir"]))
    report.append(row)


# 4. the checks themselves, on planted bugs
@triton.jit
def planted_f32(x_ptr, n):
    k = tl.arange(0, 16)
    x = tl.load(x_ptr + k, mask=k < n, other=0.0)
    tl.store(x_ptr + k, x * tl.where(x > 0.0, 1e-12, 0.1), mask=k < n)  # two literals: a float32 select


@triton.jit
def planted_scan(x_ptr):
    r = tl.arange(0, 4)
    i = r[:, None, None] * 16 + r[None, :, None] * 4 + r[None, None, :]
    tl.store(x_ptr + i, tl.cumsum(tl.load(x_ptr + i), 2))


f32 = f32_lines(compile_(planted_f32, ({"x_ptr": "*fp64", "n": "i32"}, {}, {}), 4).asm["ttir"])
s3 = scans_3d(compile_(planted_scan, ({"x_ptr": "*fp64"}, {}, {}), 4).asm["ttir"])
print(json.dumps(dict(report=report, cases={k: sorted(map(str, v)) for k, v in cases.items()}, checked=checked,
                      mismatches=mismatches,
                      planted=dict(f32=f32[:3], scans_3d=s3), triton=triton.__version__)))
"""
# MEP lower level: every schedule family and init family; DM-NonUniform: NP = 2 and 32 (each compile ~10 s)
_LOWER_CASES = [("mep", "sd21", 1, "edm_rho", 1, 100), ("mep", "vp_linear", 16, "logSNR", 16, 16),
                ("mep", "vp_cosine", 17, "time_uniform", 3, 1), ("mep", "edm", 2, "time_quadratic", 32, 100),
                ("mep", "flow", 1, "edm_rho", 2, 100),
                ("dmn", "sd21", 1, "edm_rho", 1, 1), ("dmn", "flow", 16, "time_quadratic", 16, 16)]


def test_every_kernel_compiles_for_a_gpu(tmp_path):
    import json
    import os
    from pathlib import Path

    script = tmp_path / "compile_check.py"  # a file: triton.jit reads the planted kernels' source
    script.write_text(_COMPILE)
    root = str(Path(hso.__file__).resolve().parents[1])
    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path / "cache"),  # compile for real, whatever was cached
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, str(script), json.dumps(_LOWER_CASES)], capture_output=True, text=True,
                         timeout=900, env=env, cwd=root)
    assert out.returncode == 0, out.stderr[-4000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["planted"]["f32"] and res["planted"]["scans_3d"], res["planted"]  # the checks see what they look for
    if tuple(int(x) for x in res["triton"].split(".")[:2]) >= (3, 9):  # (older launchers differ in form)
        assert res["checked"] > 0 and not res["mismatches"], res["mismatches"]  # the emulation is the launcher's
    names = ["mep_fwd_kernel", "dmn_fwd_kernel", "lower_solve_kernel", "lower_dmn_kernel"]
    assert {name: res["cases"].get(name) for name in names} == {name: ["1", "16", "32", "generic"] for name in names}
    # no scan at all in the DM-NonUniform lower level (its tiles repeat across warps and lanes), none over a 3-D tile
    failed = [row for row in res["report"] if "error" in row or not row["cubin"] or row["f32"]
              or any(shape.count("x") >= 2 for shape in row["scans"])
              or (row["kernel"] == "lower_dmn_kernel" and row["scans"])]
    assert not failed, json.dumps(failed, indent=1)[-6000:]
    assert {row["kernel"] for row in res["report"]} == set(names)
    nps = {row["constexprs"]["NP"] for row in res["report"] if row["kernel"] == "lower_dmn_kernel"}
    assert nps == {2, 32}  # N = 1 and N = 16, as the host wrapper launches them


# ------------------------------------------------------------------------------------------------ registry
def test_cpu_without_the_interpreter_says_how_to_enable_it(monkeypatch):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the interpreter is not needed")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = registry.BACKENDS["triton"].probe()
    assert reason is not None and "TRITON_INTERPRET=1" in reason
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fast.get_backend("triton")
