"""Real inputs for the gradient experiment: the training split of a :mod:`deepprop.data` dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepprop.data import load_dataset


@dataclass(frozen=True)
class Inputs:
    """Training inputs x (n, d) float32 and integer labels y (n,) with ``n_classes`` classes."""

    x: np.ndarray
    y: np.ndarray
    n_classes: int


def load_inputs(name: str, data_dir: str | None = None) -> Inputs:
    """Training split of dataset ``name``; ParameterError("dataset", ...) when it cannot be had."""
    ds = load_dataset(name, data_dir=data_dir)
    return Inputs(np.asarray(ds.x_train, dtype=np.float32), np.asarray(ds.y_train, dtype=np.int64),
                  int(ds.n_classes))
