"""Noise models of follow-ups section 1, reduced to the two numbers the maps need.

Noise acts on each layer's input y (the previous post-activation), independently per unit and input:

* multiplicative, z = W (y * eps) + b with E[eps] = 1: only mu2 = E[eps^2] enters the maps.
  Inverted dropout with keep rate rho has mu2 = 1/rho; Gaussian eps ~ N(1, s^2) has mu2 = 1 + s^2;
  both together multiply: mu2 = (1 + s^2) / rho.
* additive, z = W (y + eps) + b with eps ~ N(0, s^2): adds s^2 to E[phi^2] in the variance map.

``keep_rate`` is the probability of KEEPING a unit (rho in the paper; rho = 1 means no dropout).
PyTorch's ``nn.Dropout(p)`` drops with probability p, i.e. keep_rate = 1 - p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from deepprop.errors import ParameterError


def check_finite_nonnegative(name: str, value: ArrayLike) -> np.ndarray:
    """Return ``value`` as a float64 array, or raise ParameterError if any entry is < 0 or not finite."""
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ParameterError(name, f"must be finite and >= 0 (got {_show(arr, ~np.isfinite(arr))})")
    if np.any(arr < 0):
        raise ParameterError(name, f"must be finite and >= 0 (got {_show(arr, arr < 0)})")
    return arr


def check_keep_rate(value: ArrayLike, name: str = "keep_rate") -> np.ndarray:
    """Return the keep rate as an array, or raise unless every entry lies in (0, 1]."""
    arr = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0) | (arr > 1)
    if np.any(bad):
        raise ParameterError(name, f"must be in (0, 1], the probability of keeping a unit (got {_show(arr, bad)})")
    return arr


def _show(arr: np.ndarray, bad: np.ndarray) -> str:
    return repr(float(np.asarray(arr)[np.asarray(bad)].ravel()[0]))


@dataclass(frozen=True)
class Noise:
    """Per-layer input noise: dropout keep rate, multiplicative and additive Gaussian noise stds.

    Attributes broadcast like numpy arrays. ``mu2`` is E[eps^2] of the multiplicative noise and
    ``add_var`` the variance s_add^2 of the additive noise.
    """

    keep_rate: ArrayLike = 1.0
    noise_mult: ArrayLike = 0.0
    noise_add: ArrayLike = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_rate", check_keep_rate(self.keep_rate))
        object.__setattr__(self, "noise_mult", check_finite_nonnegative("noise_mult", self.noise_mult))
        object.__setattr__(self, "noise_add", check_finite_nonnegative("noise_add", self.noise_add))

    @property
    def mu2(self) -> np.ndarray:
        """Second moment of the multiplicative noise, (1 + noise_mult^2) / keep_rate."""
        return (1.0 + self.noise_mult**2) / self.keep_rate

    @property
    def add_var(self) -> np.ndarray:
        """Variance of the additive noise, noise_add^2."""
        return self.noise_add**2

    @property
    def is_noiseless(self) -> np.ndarray:
        """True where neither multiplicative nor additive noise is present."""
        return (self.mu2 == 1.0) & (self.add_var == 0.0)
