r"""Kinds of noise on a layer's input, each in one class with everything the theory and the networks need.

A layer's input y = phi(z) becomes ``y * eps`` (a *multiplicative* kind, E[eps] = 1) or ``y + eps`` (an
*additive* kind, E[eps] = 0), independently per network, unit and input (two inputs of a pair see
independent draws). Everything deepprop computes about noise comes from five things a kind provides
(the :class:`NoiseKind` protocol):

* ``mu2()`` = E[eps^2] (1 for additive kinds): the variance map and chi_1 (follow-ups section 1);
* ``mu4()`` = E[eps^4] (1 for additive kinds): the finite-width gradient fluctuations (kappa) and the
  spread of the Jacobian spectrum;
* ``add_var()`` = E[eps^2] of an additive kind (0 for multiplicative ones): the variance map's floor;
* ``eps2_law()``: the law of eps^2 / E[eps^2] as atoms (or quadrature nodes) with probabilities, given
  eps != 0, and P(eps != 0): the Jacobian spectrum beyond its moments (free probability);
* ``draw(uniform, normal, dtype)``: the factor (or addend) for a finite network, from standard uniforms
  or normals of the layer's shape.

Several kinds on one layer multiply (their eps are independent: mu2 and mu4 multiply, the laws combine as
products) or add (additive variances add). :class:`deepprop.prior.Noise` holds the kinds of a prior: the
three standard ones (:class:`Dropout`, :class:`GaussianMultiplicative`, :class:`GaussianAdditive`, the
``keep_rate``, ``noise_mult`` and ``noise_add`` numbers used across deepprop) and any others.

A new kind of noise is one class here with these five methods, an export line in ``deepprop/__init__``
and its Monte Carlo test: the maps, the backprop moments, the spectrum and the finite networks all
consult the protocol (see :class:`UniformDropout`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike

from deepprop.errors import ParameterError
from deepprop.validation import as_float_array

Draw = Callable[[], torch.Tensor]
"""``draw()`` -> standard random numbers (uniform on [0, 1) or normal) of the layer's shape."""

Parameter = Any
"""A kind's parameter: a float or numpy array (validated, in a prior) or a torch tensor (a batch of networks
with one value each, in :class:`deepprop.networks.LayerNoise`)."""


class NoiseKind(Protocol):
    """What one kind of layer-input noise tells the theory and the finite networks (module docstring).

    A kind is built from its one parameter, ``Kind(value)``: a float or array (checked by ``checked()``) or a
    tensor with one value per network (drawing a batch).
    """

    multiplicative: ClassVar[bool]
    parameter_name: ClassVar[str]

    @property
    def value(self) -> Parameter: ...

    def checked(self) -> NoiseKind: ...

    def is_active(self) -> bool: ...

    def mu2(self) -> np.ndarray: ...

    def mu4(self) -> np.ndarray: ...

    def add_var(self) -> np.ndarray: ...

    def eps2_law(self) -> tuple[np.ndarray, np.ndarray, float]: ...

    def draw(self, uniform: Draw, normal: Draw, dtype: torch.dtype) -> torch.Tensor: ...


def _any(x: Parameter, test: Callable[[Any], Any]) -> bool:
    """Whether ``test`` holds for any entry of a float, array or tensor (decided once per layer noise, so
    that drawing never synchronises with a GPU)."""
    if isinstance(x, torch.Tensor):
        return bool(torch.any(test(x)))
    return bool(np.any(test(np.asarray(x))))


def _scalar(name: str, value: Parameter) -> float:
    if np.size(value) != 1:
        raise ParameterError(name, f"must be a single value here (got an array of shape {np.shape(value)})")
    return float(np.asarray(value).reshape(-1)[0])


def _bad(arr: np.ndarray, mask: np.ndarray) -> str:
    return repr(float(np.asarray(arr)[np.asarray(mask)].ravel()[0]))


def check_finite_nonnegative(name: str, value: ArrayLike) -> np.ndarray:
    """Return ``value`` as a float64 array, or raise ParameterError if it is not numeric (a string is not a
    number), is empty, or has an entry < 0 or not finite."""
    arr = as_float_array(name, value)
    if not np.all(np.isfinite(arr)):
        raise ParameterError(name, f"must be finite and >= 0 (got {_bad(arr, ~np.isfinite(arr))})")
    if np.any(arr < 0):
        raise ParameterError(name, f"must be finite and >= 0 (got {_bad(arr, arr < 0)})")
    return arr


def check_keep_rate(value: ArrayLike, name: str = "keep_rate") -> np.ndarray:
    """Return the keep rate as an array, or raise unless it is numeric, not empty, and every entry lies in (0, 1]."""
    arr = as_float_array(name, value)
    bad = ~np.isfinite(arr) | (arr <= 0) | (arr > 1)
    if np.any(bad):
        raise ParameterError(name, f"must be in (0, 1], the probability of keeping a unit (got {_bad(arr, bad)})")
    return arr


def _one(value: Parameter) -> np.ndarray:
    return np.ones_like(np.asarray(value, dtype=np.float64))


_NEUTRAL_LAW = (np.ones(1), np.ones(1), 1.0)


class _Kind:
    """What every kind shares: its one parameter (the dataclass field) is ``value``, and it is active where
    that parameter differs from ``neutral`` (the value that means "no noise")."""

    neutral: ClassVar[float] = 0.0

    @property
    def value(self) -> Parameter:
        return getattr(self, dataclasses.fields(self)[0].name)  # type: ignore[arg-type]

    def is_active(self) -> bool:
        return _any(self.value, lambda v: v != self.neutral)


class MultiplicativeKind(_Kind):
    """Base of the multiplicative kinds (y -> y * eps, E[eps] = 1): no additive variance."""

    multiplicative: ClassVar[bool] = True

    def add_var(self) -> np.ndarray:
        return 0.0 * _one(self.value)


class AdditiveKind(_Kind):
    """Base of the additive kinds (y -> y + eps, E[eps] = 0): a neutral factor for the moments and the law."""

    multiplicative: ClassVar[bool] = False

    def mu2(self) -> np.ndarray:
        return _one(self.value)

    def mu4(self) -> np.ndarray:
        return _one(self.value)

    def eps2_law(self) -> tuple[np.ndarray, np.ndarray, float]:
        return _NEUTRAL_LAW


@dataclass(frozen=True)
class Dropout(MultiplicativeKind):
    """Inverted dropout: eps = Bernoulli(rho) / rho, rho = ``keep_rate`` the probability of KEEPING a unit
    (PyTorch's ``nn.Dropout(p)`` has rho = 1 - p). mu2 = 1/rho, mu4 = 1/rho^3; stream: uniforms."""

    keep_rate: Parameter = 1.0
    parameter_name: ClassVar[str] = "keep_rate"
    neutral: ClassVar[float] = 1.0

    def checked(self) -> Dropout:
        return Dropout(check_keep_rate(self.keep_rate))

    def mu2(self) -> np.ndarray:
        return 1.0 / self.keep_rate

    def mu4(self) -> np.ndarray:
        return 1.0 / self.keep_rate**3

    def eps2_law(self) -> tuple[np.ndarray, np.ndarray, float]:
        rho = _scalar(self.parameter_name, self.keep_rate)
        return np.array([1.0 / rho]), np.ones(1), rho  # eps^2 / E[eps^2] = (1/rho^2) / (1/rho) if kept

    def draw(self, uniform: Draw, normal: Draw, dtype: torch.dtype) -> torch.Tensor:
        return (uniform() < self.keep_rate).to(dtype) / self.keep_rate


@dataclass(frozen=True)
class GaussianMultiplicative(MultiplicativeKind):
    """Multiplicative Gaussian noise (Gaussian dropout of variance s^2): eps ~ N(1, s^2), s = ``std``.
    mu2 = 1 + s^2, mu4 = 1 + 6 s^2 + 3 s^4; the law of eps^2 by Gauss-Hermite nodes; stream: normals."""

    std: Parameter = 0.0
    parameter_name: ClassVar[str] = "noise_mult"
    law_nodes: ClassVar[int] = 24

    def checked(self) -> GaussianMultiplicative:
        return GaussianMultiplicative(check_finite_nonnegative(self.parameter_name, self.std))

    def mu2(self) -> np.ndarray:
        return 1.0 + self.std**2

    def mu4(self) -> np.ndarray:
        s2 = self.std**2
        return 1.0 + 6.0 * s2 + 3.0 * s2 * s2

    def eps2_law(self) -> tuple[np.ndarray, np.ndarray, float]:
        s = _scalar(self.parameter_name, self.std)
        if s == 0:
            return _NEUTRAL_LAW
        x, w = np.polynomial.hermite_e.hermegauss(self.law_nodes)
        return (1.0 + s * x) ** 2 / (1.0 + s * s), w / w.sum(), 1.0

    def draw(self, uniform: Draw, normal: Draw, dtype: torch.dtype) -> torch.Tensor:
        return 1.0 + self.std * normal()


@dataclass(frozen=True)
class GaussianAdditive(AdditiveKind):
    """Additive Gaussian noise eps ~ N(0, s^2), s = ``std``: adds s^2 to E[phi^2] in the variance map (the
    maps need only its variance, so any zero-mean additive noise of that variance acts the same at large
    width); stream: normals."""

    std: Parameter = 0.0
    parameter_name: ClassVar[str] = "noise_add"

    def checked(self) -> GaussianAdditive:
        return GaussianAdditive(check_finite_nonnegative(self.parameter_name, self.std))

    def add_var(self) -> np.ndarray:
        return self.std**2

    def draw(self, uniform: Draw, normal: Draw, dtype: torch.dtype) -> torch.Tensor:
        return self.std * normal()


@dataclass(frozen=True)
class UniformDropout(MultiplicativeKind):
    """Continuous (uniform) dropout: eps ~ U(1 - a, 1 + a), a = ``half_width`` in [0, 1] (a = 1: masks
    uniform on [0, 2]). mu2 = 1 + a^2/3, mu4 = 1 + 2 a^2 + a^4/5; the law of eps^2 by Gauss-Legendre nodes;
    stream: uniforms, eps = 1 + a (2u - 1)."""

    half_width: Parameter = 0.0
    parameter_name: ClassVar[str] = "uniform_dropout"
    law_nodes: ClassVar[int] = 32

    def checked(self) -> UniformDropout:
        a = check_finite_nonnegative(self.parameter_name, self.half_width)
        if np.any(a > 1):
            raise ParameterError(self.parameter_name, f"must be in [0, 1], the half-width of U(1 - a, 1 + a) "
                                                      f"(got {_bad(a, a > 1)})")
        return UniformDropout(a)

    def mu2(self) -> np.ndarray:
        return 1.0 + self.half_width**2 / 3.0

    def mu4(self) -> np.ndarray:
        a2 = self.half_width**2
        return 1.0 + 2.0 * a2 + a2 * a2 / 5.0

    def eps2_law(self) -> tuple[np.ndarray, np.ndarray, float]:
        a = _scalar(self.parameter_name, self.half_width)
        if a == 0:
            return _NEUTRAL_LAW
        x, w = np.polynomial.legendre.leggauss(self.law_nodes)  # eps = 1 + a x, x ~ U(-1, 1)
        return (1.0 + a * x) ** 2 / (1.0 + a * a / 3.0), w / 2.0, 1.0

    def draw(self, uniform: Draw, normal: Draw, dtype: torch.dtype) -> torch.Tensor:
        return 1.0 + self.half_width * (2.0 * uniform() - 1.0)


STANDARD_KINDS: tuple[type, ...] = (Dropout, GaussianMultiplicative, GaussianAdditive)
"""The kinds behind the ``keep_rate``, ``noise_mult`` and ``noise_add`` numbers, in their stream order."""

EXTRA_KINDS: tuple[type, ...] = (UniformDropout,)
"""The other kinds (a prior's ``extra``): each is also an option of the commands, named after its parameter."""


def standard_kinds(keep_rate: Parameter = 1.0, noise_mult: Parameter = 0.0,
                   noise_add: Parameter = 0.0) -> tuple[NoiseKind, ...]:
    """(Dropout, GaussianMultiplicative, GaussianAdditive) from the three standard numbers (unchecked)."""
    return Dropout(keep_rate), GaussianMultiplicative(noise_mult), GaussianAdditive(noise_add)


def combined_law(kinds: tuple[NoiseKind, ...]) -> tuple[np.ndarray, np.ndarray, float]:
    """The law of eps^2 / E[eps^2] for the product of the active multiplicative kinds: atoms, their
    probabilities given eps != 0 (summing to 1), and P(eps != 0). Independent factors: products of atoms."""
    values, probs, nonzero = _NEUTRAL_LAW
    for kind in kinds:
        if kind.multiplicative and kind.is_active():
            v, p, keep = kind.eps2_law()
            values, probs, nonzero = np.outer(values, v).ravel(), np.outer(probs, p).ravel(), nonzero * keep
    return values, probs, nonzero


def product(kinds: tuple[NoiseKind, ...], moment: str) -> np.ndarray:
    """prod over kinds of ``kind.<moment>()`` (``"mu2"`` or ``"mu4"``): the moment of the product of
    independent factors."""
    out = None
    for kind in kinds:
        m = getattr(kind, moment)()
        out = m if out is None else out * m
    return np.asarray(out, dtype=np.float64)


def total_add_var(kinds: tuple[NoiseKind, ...]) -> np.ndarray:
    """Sum of the additive kinds' variances (independent addends: variances add)."""
    out = None
    for kind in kinds:
        v = kind.add_var()
        out = v if out is None else out + v
    return np.asarray(out, dtype=np.float64)


def is_noise_kind(kind: Any) -> bool:
    """Whether ``kind`` follows the :class:`NoiseKind` protocol (for checking user-supplied kinds)."""
    names = ("checked", "is_active", "mu2", "mu4", "add_var", "eps2_law", "draw")
    return all(callable(getattr(kind, n, None)) for n in names) and hasattr(kind, "multiplicative")


__all__ = [
    "AdditiveKind", "Dropout", "GaussianAdditive", "GaussianMultiplicative", "MultiplicativeKind", "NoiseKind",
    "EXTRA_KINDS", "STANDARD_KINDS", "UniformDropout",
    "check_finite_nonnegative", "check_keep_rate", "combined_law", "is_noise_kind", "product", "standard_kinds",
    "total_add_var",
]
