"""The README's Python examples state results: check that they are the ones hso gives."""
from __future__ import annotations

import json
import re
from pathlib import Path

import hso

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _stated(prefix: str) -> list[int]:
    """The list in the comment of the README line starting with ``prefix``."""
    line = next(x for x in README.splitlines() if x.startswith(prefix))
    return json.loads(re.search(r"#\s*(\[[^\]]*\])", line).group(1))


def test_the_stated_schedules_are_the_ones_hso_gives():
    assert hso.optimize("sd21", nfe=5, solver="unipc", method="hso").timesteps.tolist() == \
        _stated("res.timesteps")
    assert hso.optimize("sd21", 4, "ddim", method="paper").timesteps.tolist() == \
        _stated('hso.optimize("sd21", 4, "ddim", method="paper").timesteps')


def test_the_stated_default_is_the_one_hso_gives():
    best = hso.optimize("sd21", nfe=5, solver="unipc")
    assert f'best.source        # "{best.source}"' in README
    m = best.settings["measured"]
    assert f'"worst_ratio": {m["worst_ratio"]:.3f}' in README and f'"supported": {m["supported"]}' in README
    plan = hso.plan("sd21", 20, "dpmsolver++")
    assert f"# '{plan.source}', {plan.is_search}, {plan.blend}" in README
