"""Real inputs for the gradient experiment.

Uses ``deepprop.data.load_dataset`` when that module exists; otherwise falls back to scikit-learn's
bundled digits (standardised per feature, flattened), the only dataset available without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepprop.errors import ParameterError


@dataclass(frozen=True)
class Inputs:
    """Training inputs x (n, d) float32 and integer labels y (n,) with ``n_classes`` classes."""

    x: np.ndarray
    y: np.ndarray
    n_classes: int


def _digits() -> Inputs:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float64)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return Inputs(x.astype(np.float32), d.target.astype(np.int64), 10)


def load_inputs(name: str, data_dir: str | None = None) -> Inputs:
    """Training split of dataset ``name``; ParameterError("dataset", ...) when it cannot be had."""
    try:
        from deepprop.data import load_dataset  # type: ignore[import-not-found]
    except ImportError:
        if name != "digits":
            raise ParameterError(
                "dataset", f"only 'digits' is available in this build (got {name!r})"
            ) from None
        return _digits()
    ds = load_dataset(name, data_dir=data_dir)
    return Inputs(np.asarray(ds.x_train, dtype=np.float32), np.asarray(ds.y_train, dtype=np.int64),
                  int(ds.n_classes))
