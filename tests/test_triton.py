"""The Triton backend (`hso.fast.triton_backend`) agrees with its float64 numpy twins.

On machines without a GPU the kernels run on Triton's CPU interpreter (TRITON_INTERPRET=1, set in conftest), which
costs tens of microseconds per tile operation: batches here are one or two programs each (see the host wrappers'
block sizes), and every agreement test is one launch.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hso
from hso import fast
from agreement import (FAMILIES, KINDS, assert_lower_agree, assert_mep_close, random_lambdas, random_psi,
                       solve_both)
from hso.fast import reference, registry
from hso.fast.reference_dmn import dmn_and_grad
from hso.fast.reference_lower import _feasible_start

_REASON = registry.BACKENDS["triton"].probe()
if _REASON is not None:
    pytest.skip(f"triton backend unavailable: {_REASON}", allow_module_level=True)

from hso.fast import triton_backend  # noqa: E402  (imports torch and triton: only once the probe passed)


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


@pytest.mark.skipif(not triton_backend._INTERPRETED, reason="counts calls of a device helper: interpreter only")
def test_indefinite_hessians_take_the_bisection_shift(monkeypatch):
    """From time-uniform starts on the cosine schedule the t-Hessian is indefinite in early iterations: the Sturm
    count flags it and the shift comes from the bisected extreme eigenvalues; the iterates still match."""
    calls = []
    shift_of = triton_backend._shift_of

    def counting(*args):
        calls.append(1)
        return shift_of(*args)

    # under the interpreter device helpers are plain functions that the kernel looks up at run time
    monkeypatch.setattr(triton_backend, "_shift_of", counting)
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


@pytest.mark.skipif(not triton_backend._INTERPRETED, reason="counts calls of a device helper: interpreter only")
def test_dmn_line_search_in_turn_accepts_the_same_steps(monkeypatch):
    # the interpreter evaluates the line search's halvings in one batch, compiled kernels one at a time (the batch
    # would spill on a GPU): both accept the same step, so the results are the same bits
    s = hso.NoiseSchedule.preset("sd21")
    spec = _dmn_spec(s, 7, "rank", 2.0, maxiter=20)
    psi = random_psi(s, 4, 21)
    calls = []
    value_of_t = triton_backend._value_of_t  # a plain function under the interpreter: count the evaluations
    monkeypatch.setattr(triton_backend, "_value_of_t", lambda *a: calls.append(1) or value_of_t(*a))
    batched = _dmn_solve("triton", s, spec, psi)
    n_batched = len(calls)
    monkeypatch.setattr(triton_backend, "_INTERPRETED", False)  # the compiled path's BATCH and block size
    in_turn = _dmn_solve("triton", s, spec, psi)
    assert len(calls) - n_batched > n_batched  # the searches did backtrack, by more than one halving somewhere
    for field in ("t", "lambdas", "objective", "iters"):
        np.testing.assert_array_equal(getattr(in_turn, field), getattr(batched, field))


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
        ev_min, ev_max = triton_backend._jacobi_extreme(A, b >= 0, N, C, R3, K3, (C >= 1) & (C < N), inner)
        _l, ok = triton_backend._cholesky(A, N, C, R3, K3, BLOCK_B)
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
        dev = triton_backend._device()
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
# The interpreter runs Python, and accepts constructs that Triton's compiler rejects (a block shape held in a local
# variable, a variable given another shape inside a branch): compile every kernel for sm_90 here, without a GPU
# (Triton's own LLVM and ptxas), in a fresh process where TRITON_INTERPRET is off. One variant per schedule family
# and init family for the MEP lower level; the DM-NonUniform one on two families (each takes ~15 s to compile).
_COMPILE = r"""
import json, os, sys
os.environ["TRITON_INTERPRET"] = "0"
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from hso.fast import triton_backend as tb

TYPES = {"iters_ptr": "*i64", "feas_ptr": "*i8"}
done = []
for name, const in json.loads(sys.argv[1]):
    fn = getattr(tb, name)
    sig = {p.name: "constexpr" if p.is_constexpr else TYPES.get(p.name, "*fp64" if p.name.endswith("_ptr") else "i32")
           for p in fn.params}
    kernel = triton.compile(ASTSource(fn, sig, const), target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert kernel.asm["cubin"], name
    done.append(name)
print(json.dumps(done))
"""
_VARIANTS = ([("_mep_fwd_kernel", dict(KIND=0, HESSIAN=True, BLOCK_B=128)),
              ("_dmn_fwd_kernel", dict(KIND=2, BLOCK_B=16, NP=16))]
             + [("_lower_solve_kernel", dict(FAMILY=f, KIND=k, INIT=f % 4, BLOCK_B=4, NP=8))
                for f, k in ((0, 0), (1, 0), (2, 0), (3, 1), (4, 2))]
             + [("_lower_dmn_kernel", dict(FAMILY=f, KIND=k, INIT=i, BLOCK_B=4, NP=8, BATCH=False))
                for f, k, i in ((0, 0, 0), (4, 2, 3))])


def test_every_kernel_compiles_for_a_gpu(tmp_path):
    import json
    import os

    env = dict(os.environ, TRITON_CACHE_DIR=str(tmp_path))  # compile for real, whatever an earlier run cached
    out = subprocess.run([sys.executable, "-c", _COMPILE, json.dumps(_VARIANTS)], capture_output=True, text=True,
                         timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [name for name, _ in _VARIANTS]


# ------------------------------------------------------------------------------------------------ registry
def test_importing_hso_imports_neither_torch_nor_triton():
    code = ("import sys, hso, hso.fast, hso.fast.registry; "
            "assert 'torch' not in sys.modules and 'triton' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cpu_without_the_interpreter_says_how_to_enable_it(monkeypatch):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the interpreter is not needed")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = registry.BACKENDS["triton"].probe()
    assert reason is not None and "TRITON_INTERPRET=1" in reason
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fast.get_backend("triton")
