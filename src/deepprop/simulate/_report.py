"""Statistics over the networks of an ensemble (mean and standard error)."""

from __future__ import annotations

import math

import numpy as np


def stats_over_networks(per_network: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over axis 0 (the networks); the error is NaN for a single network."""
    k = per_network.shape[0]
    mean = per_network.mean(axis=0)
    if k < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, per_network.std(axis=0, ddof=1) / math.sqrt(k)
