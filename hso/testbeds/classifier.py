"""A small digits classifier (NumPy inference) whose last hidden layer gives features for Frechet distances.

Trained by ``python -m hso.testbeds.train`` (scikit-learn's ``MLPClassifier``) on an 80 % split of the digits and
shipped as float32 weights in ``hso/testbeds/weights/digits_classifier.npz``; the held-out accuracy is in the
metadata. Inference is a plain MLP in float64: hidden layers with the stored activation, softmax-free argmax.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hso.testbeds.data import DIM, read_meta, weights_path

__all__ = ["DigitsClassifier", "DEFAULT_CLASSIFIER_WEIGHTS"]

DEFAULT_CLASSIFIER_WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_classifier.npz"

_ACTIVATIONS = {
    "relu": lambda a: np.maximum(a, 0.0),
    "tanh": np.tanh,
    "identity": lambda a: a,
    "logistic": lambda a: 0.5 * (1.0 + np.tanh(0.5 * a)),
}


class DigitsClassifier:
    """MLP classifier for the 64-pixel digits in [-1, 1].

    Attributes:
        activation: the hidden layers' activation name.
        n_features: width of the last hidden layer (the feature dimension).
        meta: training metadata (held-out accuracy, settings).
    """

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray], activation: str,
                 meta: dict[str, Any] | None = None) -> None:
        """Build from per-layer weights ``[n_in, n_out]`` and biases ``[n_out]`` (the last layer gives logits).

        Raises:
            ValueError: unknown activation, fewer than two layers, or shapes that do not chain.
        """
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        if len(weights) < 2 or len(weights) != len(biases):
            raise ValueError("the classifier needs >= 2 layers with one bias each")
        self.weights = [np.asarray(w, dtype=np.float64) for w in weights]
        self.biases = [np.asarray(b, dtype=np.float64) for b in biases]
        n_in = DIM
        for w, b in zip(self.weights, self.biases):
            if w.ndim != 2 or w.shape[0] != n_in or b.shape != (w.shape[1],):
                raise ValueError("classifier weight shapes do not chain")
            n_in = w.shape[1]
        self.activation = activation
        self.n_features = int(self.weights[-2].shape[1])
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DigitsClassifier":
        """Load the classifier from an npz file.

        Args:
            path: the weights file; None loads the shipped ``hso/testbeds/weights/digits_classifier.npz``.

        Returns:
            The classifier.

        Raises:
            FileNotFoundError: the file does not exist (train it with ``python -m hso.testbeds.train``).
        """
        p = weights_path(path, DEFAULT_CLASSIFIER_WEIGHTS.name, "python -m hso.testbeds.train")
        with np.load(p, allow_pickle=False) as data:
            meta = read_meta(data)
            n = int(data["n_layers"])
            weights = [data[f"w{i}"] for i in range(n)]
            biases = [data[f"b{i}"] for i in range(n)]
            activation = str(data["activation"])
        return cls(weights, biases, activation, meta)

    def _check(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[-1] != DIM:
            raise ValueError(f"x must have shape [B, {DIM}] (or [{DIM}]), got {np.shape(x)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x contains NaN or inf")
        return x

    def features(self, x: Any) -> np.ndarray:
        """The last hidden layer's activations.

        Args:
            x: digits in [-1, 1], ``[B, 64]`` (or ``[64]``).

        Returns:
            float64 ``[B, n_features]``.

        Raises:
            ValueError: wrong shape or non-finite input.
        """
        h = self._check(x)
        act = _ACTIVATIONS[self.activation]
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = act(h @ w + b)
        return h

    def logits(self, x: Any) -> np.ndarray:
        """Class scores ``[B, 10]`` (pre-softmax).

        Raises:
            ValueError: wrong shape or non-finite input.
        """
        return self.features(x) @ self.weights[-1] + self.biases[-1]

    def predict(self, x: Any) -> np.ndarray:
        """Predicted labels.

        Args:
            x: digits in [-1, 1], ``[B, 64]`` (or ``[64]``).

        Returns:
            int64 ``[B]``.

        Raises:
            ValueError: wrong shape or non-finite input.
        """
        return np.argmax(self.logits(x), axis=1).astype(np.int64)
