"""Turning results into plain JSON-ready Python values (NaN and inf become None)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """Numpy scalars/arrays -> float/int/str/list; non-finite floats -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.str_):
        return str(value)
    return value


def stats_over_networks(per_network: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over axis 0 (the networks); the error is NaN for a single network."""
    k = per_network.shape[0]
    mean = per_network.mean(axis=0)
    if k < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, per_network.std(axis=0, ddof=1) / math.sqrt(k)
