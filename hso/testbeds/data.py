"""The digits data set every test bed is built on: sklearn's bundled 8x8 handwritten digits (offline, 1797 images).

Pixels 0..16 are mapped to [-1, 1] (``x / 8 - 1``), flattened to 64 values, float64.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DIM", "load_digits", "IMAGE_SHAPE", "weights_path", "read_meta", "WEIGHTS_DIR"]

IMAGE_SHAPE = (8, 8)
DIM = 64
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def read_meta(data: Any) -> dict[str, Any]:
    """The metadata of a loaded weights npz: a JSON string stored as a 0-d unicode array (so loading never needs
    pickle); {} when the file has none."""
    return json.loads(str(data["meta"])) if "meta" in data.files else {}


def weights_path(path: str | Path | None, default: str, command: str) -> Path:
    """The weights file to load: ``path``, or the shipped ``weights/<default>``.

    Raises:
        FileNotFoundError: no such file (the message names the command that makes it).
    """
    p = Path(path) if path is not None else WEIGHTS_DIR / default
    if not p.is_file():
        raise FileNotFoundError(f"no weights file at {p}; make it with `{command}`")
    return p


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError as e:  # pragma: no cover - the eval extra is installed by `make`
        raise ImportError("the digits test beds need scikit-learn: pip install 'hso[eval]'") from e
    d = _load()
    x = np.asarray(d.data, dtype=np.float64) / 8.0 - 1.0
    x.setflags(write=False)
    y = np.asarray(d.target, dtype=np.int64)
    y.setflags(write=False)
    return x, y


def load_digits(with_labels: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as ``x  # [1797, 64]`` in [-1, 1] (and labels ``[1797]`` when asked), read-only."""
    x, y = _digits()
    return (x, y) if with_labels else x
