"""Turning results into plain JSON-ready Python values (NaN and inf become None, with a reason)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepprop.jsonout import strict


def plain(value: Any) -> Any:
    """JSON-ready Python values through the one serializer (:func:`deepprop.jsonout.strict`): non-finite
    numbers become None with ``<key>_reason`` beside them."""
    return strict(value)


def stats_over_networks(per_network: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over axis 0 (the networks); the error is NaN for a single network."""
    k = per_network.shape[0]
    mean = per_network.mean(axis=0)
    if k < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, per_network.std(axis=0, ddof=1) / math.sqrt(k)
