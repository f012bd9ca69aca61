"""`hso.baselines`: the model-free schedules the measured default may return and the evaluation compares against."""
from __future__ import annotations

import numpy as np
import pytest

import hso
from hso.baselines import BASELINES, MethodNotApplicable, baseline_schedule
from hso.evaluation import make_schedule


@pytest.mark.parametrize("preset", ["sd21", "edm", "flow", "vp_linear"])
@pytest.mark.parametrize("n", [1, 4, 9])
def test_every_baseline_spans_the_domain_or_says_it_does_not_apply(preset, n):
    sched = hso.NoiseSchedule.preset(preset)
    for name in BASELINES:
        try:
            t = baseline_schedule(name, sched, n)
        except MethodNotApplicable as e:
            # integer spacings need a discrete model, AYS the SD noise schedule: on SD 2.1 every one applies
            assert name in ("leading", "trailing", "ays") and preset != "sd21", e
            continue
        assert t.shape == (n + 1,) and np.all(np.diff(t) < 0)
        assert sched.t_min <= t[-1] and t[0] <= sched.t_max
        if name not in ("leading", "ays"):  # leading starts below the top (steps_offset), AYS at its own points
            assert t[0] == pytest.approx(sched.t_max)
        # the evaluation's method of the same name is this schedule (jump: n + 1 evaluation points)
        np.testing.assert_array_equal(make_schedule(name, sched, "ddim", n + 1, "jump"), t)


def test_unknown_baseline_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown baseline 'karras'.*time_quadratic"):
        baseline_schedule("karras", hso.NoiseSchedule.preset("sd21"), 4)
