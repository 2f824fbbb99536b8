"""The distribution of a random network: :class:`NetworkPrior` (activation, sigma_w^2, sigma_b^2, :class:`Noise`).

Every room of deepprop takes this one description: the theory (``mean_field(prior)``), the finite
networks (``Ensemble.from_prior``), the sweeps and the initialisation advice. It is validated once,
here; its numeric fields broadcast like numpy arrays, so one prior can stand for a whole grid.

Noise models of follow-ups section 1, reduced to the two numbers the maps need:

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

from deepprop.activations import ACTIVATIONS, Activation, TensorFn, get_activation
from deepprop.errors import ParameterError
from deepprop.validation import as_float_array, check_broadcast


def check_finite_nonnegative(name: str, value: ArrayLike) -> np.ndarray:
    """Return ``value`` as a float64 array, or raise ParameterError if it is not numeric (a string is not a
    number), is empty, or has an entry < 0 or not finite."""
    arr = as_float_array(name, value)
    if not np.all(np.isfinite(arr)):
        raise ParameterError(name, f"must be finite and >= 0 (got {_show(arr, ~np.isfinite(arr))})")
    if np.any(arr < 0):
        raise ParameterError(name, f"must be finite and >= 0 (got {_show(arr, arr < 0)})")
    return arr


def check_keep_rate(value: ArrayLike, name: str = "keep_rate") -> np.ndarray:
    """Return the keep rate as an array, or raise unless it is numeric, not empty, and every entry lies in (0, 1]."""
    arr = as_float_array(name, value)
    bad = ~np.isfinite(arr) | (arr <= 0) | (arr > 1)
    if np.any(bad):
        raise ParameterError(name, f"must be in (0, 1], the probability of keeping a unit (got {_show(arr, bad)})")
    return arr


_CHECKED: dict[int, Activation] = {}


def check_activation(act: Activation) -> Activation:
    """A user's activation (a callable, or an Activation built from one) must act elementwise on a float64
    tensor and have a derivative the engine can evaluate (autograd, or the one given): a step function
    or a numpy / math function is refused here, naming ``activation``, instead of failing inside the
    engine. The built-in activations pass unprobed."""
    if ACTIVATIONS.get(act.name) is act or id(act) in _CHECKED:
        return act
    import torch

    x = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    try:
        y = act.fn(x)
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise TypeError(f"returned {type(y).__name__} {tuple(getattr(y, 'shape', ()))}, expected a tensor "
                            f"of shape {tuple(x.shape)}")
    except Exception as exc:  # noqa: BLE001 - the user's function: say why in one line
        raise ParameterError("activation", f"{act.name!r} must act elementwise on torch tensors ({type(exc).__name__}: "
                                           f"{exc})") from None
    try:
        d = act.derivative(x)
        if not isinstance(d, torch.Tensor) or d.shape != x.shape:
            raise TypeError("the derivative is not a tensor of the input's shape")
    except Exception as exc:  # noqa: BLE001
        raise ParameterError("activation", f"{act.name!r} cannot be differentiated by autograd ({type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0] if str(exc) else ''}); a step function has "
                                           "no derivative: pass get_activation(fn) an Activation with derivative=...") \
            from None
    if not bool(torch.isfinite(y).all()) or not bool(torch.isfinite(d).all()):
        raise ParameterError("activation", f"{act.name!r} or its derivative is not finite on [-3, 3]")
    if len(_CHECKED) < 1024:
        _CHECKED[id(act)] = act  # holding the object keeps its id from being reused
    return act


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
        check_broadcast(keep_rate=self.keep_rate, noise_mult=self.noise_mult, noise_add=self.noise_add)
        with np.errstate(over="ignore"):
            if not np.all(np.isfinite(self.mu2)):
                raise ParameterError("noise_mult" if np.any(~np.isfinite(self.noise_mult**2)) else "keep_rate",
                                     "too large a noise: mu2 = (1 + noise_mult^2) / keep_rate overflows a float")
            if not np.all(np.isfinite(self.add_var)):
                raise ParameterError("noise_add", f"too large: noise_add^2 overflows a float (got "
                                                  f"{_show(self.noise_add, ~np.isfinite(self.add_var))})")

    @property
    def mu2(self) -> np.ndarray:
        """Second moment of the multiplicative noise, (1 + noise_mult^2) / keep_rate."""
        return (1.0 + self.noise_mult**2) / self.keep_rate

    @property
    def add_var(self) -> np.ndarray:
        """Variance of the additive noise, noise_add^2."""
        return self.noise_add**2

    @property
    def active(self) -> bool:
        """True where any noise is present anywhere in the (broadcast) arrays."""
        return bool(np.any(self.keep_rate < 1.0) or np.any(self.noise_mult > 0) or np.any(self.noise_add > 0))

    def scalar(self) -> tuple[float, float, float]:
        """(keep_rate, noise_mult, noise_add) as floats; ParameterError unless each is a single value."""
        return tuple(_one_value(name, getattr(self, name)) for name in ("keep_rate", "noise_mult", "noise_add"))


def _one_value(name: str, value: np.ndarray) -> float:
    if np.size(value) != 1:
        raise ParameterError(name, f"must be a single value here (got an array of shape {np.shape(value)})")
    return float(np.asarray(value).reshape(-1)[0])


@dataclass(frozen=True)
class NetworkPrior:
    """A random fully connected network: z^{l+1} = W^l noise(phi(z^l)) + b^l with
    W^l_ij ~ N(0, sigma_w2 / N) (or sqrt(sigma_w2) times a Haar orthogonal matrix) and b^l_i ~ N(0, sigma_b2).

    ``sigma_w2`` and ``sigma_b2`` must be finite and >= 0 (finite networks need sigma_w2 > 0); the noise is checked by
    :class:`Noise`. Numeric fields broadcast against each other (``shape``).

        >>> prior = NetworkPrior.build("tanh", 1.76, 0.05, keep_rate=0.9)
        >>> float(prior.mu2)
        1.1111111111111112
    """

    activation: Activation
    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    noise: Noise = Noise()

    def __post_init__(self) -> None:
        object.__setattr__(self, "activation", check_activation(get_activation(self.activation)))
        object.__setattr__(self, "sigma_w2", check_finite_nonnegative("sigma_w2", self.sigma_w2))
        object.__setattr__(self, "sigma_b2", check_finite_nonnegative("sigma_b2", self.sigma_b2))
        if not isinstance(self.noise, Noise):
            raise ParameterError("noise", f"must be a deepprop.Noise (got {type(self.noise).__name__})")
        check_broadcast(**dict(zip(PRIOR_FIELDS, self._arrays(), strict=True)))

    @classmethod
    def build(
        cls,
        activation: str | Activation | TensorFn,
        sigma_w2: ArrayLike,
        sigma_b2: ArrayLike = 0.0,
        *,
        keep_rate: ArrayLike = 1.0,
        noise_mult: ArrayLike = 0.0,
        noise_add: ArrayLike = 0.0,
    ) -> NetworkPrior:
        """The prior from loose numbers (the keyword names used throughout deepprop)."""
        return cls(activation, sigma_w2, sigma_b2, Noise(keep_rate, noise_mult, noise_add))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        n = self.noise
        return (self.sigma_w2, self.sigma_b2, n.keep_rate, n.noise_mult, n.noise_add)

    @property
    def shape(self) -> tuple[int, ...]:
        """Broadcast shape of all numeric fields."""
        return np.broadcast_shapes(*(np.shape(a) for a in self._arrays()))

    @property
    def keep_rate(self) -> np.ndarray:
        return self.noise.keep_rate

    @property
    def noise_mult(self) -> np.ndarray:
        return self.noise.noise_mult

    @property
    def noise_add(self) -> np.ndarray:
        return self.noise.noise_add

    @property
    def mu2(self) -> np.ndarray:
        return self.noise.mu2

    @property
    def add_var(self) -> np.ndarray:
        return self.noise.add_var

    def keywords(self) -> dict[str, np.ndarray]:
        """sigma_w2, sigma_b2, keep_rate, noise_mult, noise_add as a dict (the loose-argument form)."""
        return dict(zip(PRIOR_FIELDS, self._arrays(), strict=True))

    def broadcast(self) -> dict[str, np.ndarray]:
        """:meth:`keywords` with every array broadcast to :attr:`shape` (copies)."""
        arrays = np.broadcast_arrays(*self._arrays())
        return {k: np.array(a) for k, a in zip(PRIOR_FIELDS, arrays, strict=True)}


PRIOR_FIELDS = ("sigma_w2", "sigma_b2", "keep_rate", "noise_mult", "noise_add")
"""The five numbers of a network prior, in the order every table and JSON record uses."""


def as_prior(
    activation: str | Activation | TensorFn | NetworkPrior,
    sigma_w2: ArrayLike | None = None,
    sigma_b2: ArrayLike | None = None,
    *,
    keep_rate: ArrayLike = 1.0,
    noise_mult: ArrayLike = 0.0,
    noise_add: ArrayLike = 0.0,
) -> NetworkPrior:
    """Accept either a :class:`NetworkPrior` (and nothing else) or the loose numbers that build one.

    This is how every public function takes its network: ``mean_field(prior)`` and
    ``mean_field("tanh", 1.76, 0.05, keep_rate=0.9)`` mean the same.
    """
    if isinstance(activation, NetworkPrior):
        loose = (sigma_w2, sigma_b2, keep_rate, noise_mult, noise_add) != (None, None, 1.0, 0.0, 0.0)
        if loose:
            raise ParameterError("prior", "pass either a NetworkPrior or sigma_w2/sigma_b2/noise values, not both")
        return activation
    if sigma_w2 is None:
        raise ParameterError("sigma_w2", "is required (or pass a NetworkPrior)")
    return NetworkPrior.build(activation, sigma_w2, 0.0 if sigma_b2 is None else sigma_b2,
                              keep_rate=keep_rate, noise_mult=noise_mult, noise_add=noise_add)
