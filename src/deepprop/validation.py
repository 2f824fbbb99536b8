"""Scalar parameter checks shared by every layer: each returns the value or raises ParameterError
with a message naming the parameter and its allowed range."""

from __future__ import annotations

import math

import numpy as np

from deepprop.errors import ParameterError


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise ParameterError unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ParameterError(name, f"must be an integer >= {minimum} (got {value!r})")
    return int(value)


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float, or raise unless it is finite and > 0."""
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ParameterError(name, f"must be finite and > 0 (got {value!r})")
    return v


def check_nonnegative(name: str, value: float) -> float:
    """Return ``value`` as float, or raise unless it is finite and >= 0."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ParameterError(name, f"must be finite and >= 0 (got {value!r})")
    return v


MAX_RANGE_VALUES = 10_000_000
"""Largest count of a start:stop:count range (80 MB of float64)."""


def parse_values(text: str) -> np.ndarray:
    """Values from ``"start:stop:count"`` (inclusive, like numpy.linspace) or ``"a,b,c"``.

    A count below 1 gives an empty array (callers say "empty grid") and infinite ends give non-finite
    values (callers reject them); malformed text raises ValueError.
    """
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError("a range is start:stop:count")
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
        if count > MAX_RANGE_VALUES:  # refused before numpy allocates count floats
            raise ValueError(f"count {count} is more than {MAX_RANGE_VALUES} values")
        with np.errstate(invalid="ignore"):  # infinite ends give non-finite values; callers reject those
            return np.linspace(start, stop, max(count, 0))
    return np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float64)


def physical_memory_bytes() -> int:
    """Physical memory of this machine (8 GiB where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


def check_memory(param: str, needed: int, what: str, hint: str = "") -> None:
    """Refuse, before allocating, a job that needs more than half of the machine's physical memory."""
    limit = physical_memory_bytes() // 2
    if needed > limit:
        raise ParameterError(param, f"{what} would need ~{needed / 2**30:.3g} GiB of memory, more than "
                                    f"{limit / 2**30:.3g} GiB (half of this machine's RAM)"
                                    + (f"; {hint}" if hint else ""))
