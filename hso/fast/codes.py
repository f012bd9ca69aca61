"""The integer codes every engine reads: one source for Python, the C++/CUDA kernels and the Triton kernels.

The C++ headers (``csrc/common/schedule_map.h``, ``csrc/common/lower_row.h``) define the same values as
``constexpr``; the compiled module exports them (``hso._C.CODES``) and ``tests/test_codes.py`` checks them against
this table. The Triton kernels compare their ``tl.constexpr`` arguments with ``tl.constexpr`` copies of these.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..schedules import KIND_FLOW, KIND_VE, KIND_VP

__all__ = ["FAMILY_CODES", "INIT_CODES", "OBJECTIVE_CODES", "KIND_CODES", "ALL_CODES", "schedule_code",
           "schedule_tables"]

# noise-schedule families (csrc/common/schedule_map.h FAMILY_*): how the kernels map t to lambda
FAMILY_CODES = {"vp_discrete": 0, "vp_linear": 1, "vp_cosine": 2, "edm": 3, "flow": 4}
# start families of the lower level (csrc/common/lower_row.h INIT_*)
INIT_CODES = {"edm_rho": 0, "logSNR": 1, "time_uniform": 2, "time_quadratic": 3}
# lower-level objectives (csrc/common/lower_row.h OBJECTIVE_*)
OBJECTIVE_CODES = {"mep": 0, "dmn": 1}
# lambda-space kinds (hso.schedules KIND_VP, KIND_VE, KIND_FLOW)
KIND_CODES = {"vp": KIND_VP, "ve": KIND_VE, "flow": KIND_FLOW}
ALL_CODES = {"family": FAMILY_CODES, "init": INIT_CODES, "objective": OBJECTIVE_CODES, "kind": KIND_CODES}


def schedule_code(schedule: Any) -> tuple[int, float, float, Any]:
    """(family code, a, b, table) of a NoiseSchedule, as the compiled kernels take it (csrc/common/schedule_map.h)."""
    prm, fam = schedule.params, schedule.family
    a, b = {"vp_discrete": (0.0, 0.0),
            "vp_linear": (prm.get("beta_0"), prm.get("beta_1")),
            "vp_cosine": (prm.get("s"), 0.0),
            "edm": (math.log(prm.get("sigma_min", 1.0)), math.log(prm.get("sigma_max", 1.0))),
            "flow": (prm.get("shift"), 0.0)}[fam]
    table = schedule.log_alpha_table if fam == "vp_discrete" else np.zeros(0)
    return FAMILY_CODES[fam], float(a), float(b), table


def schedule_tables(schedules: Any) -> tuple[list[tuple[int, float, float, int, int]], np.ndarray]:
    """How the batched kernels take many problems' noise schedules: each one's (family code, a, b, table offset,
    table size), and the vp tables back to back, each distinct table (by the schedule's content) once. A schedule
    without a table has offset and size 0."""
    rows, tables, at, offset_of = [], [], 0, {}
    for schedule in schedules:
        fam, a, b, tab = schedule_code(schedule)
        n_tab = int(tab.shape[0]) if fam == FAMILY_CODES["vp_discrete"] else 0
        if n_tab and schedule.content_key() not in offset_of:
            offset_of[schedule.content_key()] = at
            tables.append(np.asarray(tab, dtype=np.float64))
            at += n_tab
        rows.append((fam, a, b, offset_of[schedule.content_key()] if n_tab else 0, n_tab))
    return rows, np.concatenate(tables) if tables else np.zeros(0)
