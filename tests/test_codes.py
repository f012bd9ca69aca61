"""One source for the kernels' integer codes: `hso.fast.codes`. The compiled module exports the values its headers
define (``hso._C.CODES``, the C++ and CUDA kernels share those headers), and the Triton kernels compare with
constexpr copies of the Python table, never with bare literals."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import hso
from hso.fast import codes
from hso.fast.registry import load_extension
from hso.schedules import KIND_FLOW, KIND_VE, KIND_VP


def test_the_compiled_headers_define_the_same_codes():
    ext = load_extension()
    if ext is None:
        pytest.skip("the compiled module is not built here (the pure-Python engine serves)")
    assert {k: dict(v) for k, v in ext.CODES.items()} == codes.ALL_CODES


def test_the_codes_cover_every_name_the_engine_takes():
    assert set(codes.OBJECTIVE_CODES) == set(hso.fast.OBJECTIVES)
    from hso.inits import INIT_FAMILIES
    assert set(codes.INIT_CODES) == set(INIT_FAMILIES)
    assert codes.KIND_CODES == {"vp": KIND_VP, "ve": KIND_VE, "flow": KIND_FLOW}
    for name in hso.PRESETS:
        sched = hso.NoiseSchedule.preset(name)
        assert codes.schedule_code(sched)[0] == codes.FAMILY_CODES[sched.family]
    for table in codes.ALL_CODES.values():  # codes are distinct small integers
        assert sorted(table.values()) == list(range(len(table)))


def test_the_triton_kernels_compare_with_named_codes():
    src = "\n".join(f.read_text() for f in sorted((Path(codes.__file__).parent / "triton").glob("*.py")))
    assert "def lower_dmn_kernel" in src and "def mep_fwd_kernel" in src  # the kernels are where this reads
    bare = re.findall(r"\b(FAMILY|KIND|INIT|OBJ)\s*(==|!=|<=|>=|<|>)\s*\d", src)
    assert not bare, f"bare integer codes in the Triton kernels: {bare}"
