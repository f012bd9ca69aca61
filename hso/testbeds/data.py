"""The data the test beds are built on, both bundled with sklearn (offline):

* the 8x8 handwritten digits (1797 images; pixels 0..16 mapped to [-1, 1] by ``x / 8 - 1``);
* 8x8 grayscale patches of sklearn's two sample photographs (``china.jpg``, ``flower.jpg``; luminance 0..255
  mapped to [-1, 1]), for a test bed on natural-image statistics.

Both are flattened to 64 values, float64.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DIM", "load_digits", "load_patches", "IMAGE_SHAPE", "weights_path", "read_meta", "WEIGHTS_DIR", "read_npz",
           "PATCH_STRIDE"]

IMAGE_SHAPE = (8, 8)
DIM = 64
PATCH_STRIDE = 4  # pixels between neighbouring patches (they overlap by half)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def read_meta(data: Any) -> dict[str, Any]:
    """The metadata of a loaded weights npz: a JSON string stored as a 0-d unicode array (so loading never needs
    pickle); {} when the file has none."""
    return json.loads(str(data["meta"])) if "meta" in data.files else {}


def read_npz(path: str | Path | None, default: str, command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(arrays, metadata)`` of a weights npz: ``path``, or the shipped ``weights/<default>``.

    Raises:
        FileNotFoundError: no such file (the message names the command that makes it).
    """
    with np.load(weights_path(path, default, command), allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k != "meta"}, read_meta(data)


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
        from sklearn.datasets import load_digits as _load  # deferred: scikit-learn is optional (the eval extra)
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


@functools.lru_cache(maxsize=1)
def _patches() -> np.ndarray:
    try:
        from sklearn.datasets import load_sample_images  # deferred: scikit-learn is optional (the eval extra)
    except ImportError as e:  # pragma: no cover - the eval extra is installed by `make`
        raise ImportError("the patches test bed needs scikit-learn: pip install 'hso[eval]'") from e
    out = []
    h, w = IMAGE_SHAPE
    for img in load_sample_images().images:
        gray = np.asarray(img, dtype=np.float64) @ np.array([0.299, 0.587, 0.114]) / 127.5 - 1.0
        win = np.lib.stride_tricks.sliding_window_view(gray, (h, w))[::PATCH_STRIDE, ::PATCH_STRIDE]
        out.append(win.reshape(-1, h * w))
    x = np.ascontiguousarray(np.concatenate(out))
    x.setflags(write=False)
    return x


def load_patches() -> np.ndarray:
    """Every 8x8 patch (stride `PATCH_STRIDE`) of sklearn's two sample photographs, in grayscale, as
    ``x  # [n, 64]`` in [-1, 1], read-only."""
    return _patches()
