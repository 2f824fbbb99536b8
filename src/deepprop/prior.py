"""The distribution of a random network: :class:`NetworkPrior` (activation, sigma_w^2, sigma_b^2, :class:`Noise`).

Every room of deepprop takes this one description: the theory (``mean_field(prior)``), the finite
networks (``Ensemble.from_prior``), the sweeps and the initialisation advice. It is validated once,
here; its numeric fields broadcast like numpy arrays, so one prior can stand for a whole grid.

Noise on each layer's input (follow-ups section 1) is a :class:`Noise`: the three standard kinds
(dropout ``keep_rate``, multiplicative Gaussian ``noise_mult``, additive Gaussian ``noise_add``) and any
other kinds (``extra``), each a class of :mod:`deepprop.noise_models`. The maps need two numbers from it,
mu2 = E[eps^2] of the multiplicative noise and the additive variance s_add^2; the backprop theory and the
spectrum need E[eps^4] and the law of eps^2; the finite networks draw it. All of them ask the kinds.

``keep_rate`` is the probability of KEEPING a unit (rho in the paper; rho = 1 means no dropout).
PyTorch's ``nn.Dropout(p)`` drops with probability p, i.e. keep_rate = 1 - p.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from deepprop.activations import ACTIVATIONS, Activation, TensorFn, get_activation
from deepprop.errors import ParameterError
from deepprop.noise_models import (
    STANDARD_KINDS,
    NoiseKind,
    check_finite_nonnegative,
    check_keep_rate,
    combined_law,
    is_noise_kind,
    product,
    standard_kinds,
    total_add_var,
)
from deepprop.validation import check_broadcast

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
    """Per-layer input noise: the dropout keep rate, the stds of multiplicative and additive Gaussian noise,
    and any ``extra`` kinds (:class:`~deepprop.noise_models.NoiseKind`, e.g. ``UniformDropout(0.5)``).

    Numbers broadcast like numpy arrays. ``mu2`` is E[eps^2] of the multiplicative noise (all kinds
    together), ``mu4`` its E[eps^4] and ``add_var`` the variance s_add^2 of the additive noise.
    """

    keep_rate: ArrayLike = 1.0
    noise_mult: ArrayLike = 0.0
    noise_add: ArrayLike = 0.0
    extra: tuple[NoiseKind, ...] = ()

    def __post_init__(self) -> None:
        standard = tuple(k.checked() for k in standard_kinds(self.keep_rate, self.noise_mult, self.noise_add))
        for name, kind in zip(("keep_rate", "noise_mult", "noise_add"), standard, strict=True):
            object.__setattr__(self, name, kind.value)
        extra = tuple(self.extra) if isinstance(self.extra, list | tuple) else (self.extra,)
        for kind in extra:
            if not is_noise_kind(kind):
                raise ParameterError("extra", "must be noise kinds of deepprop.noise_models (got "
                                              f"{type(kind).__name__})")
        object.__setattr__(self, "extra", tuple(k.checked() for k in extra))
        check_broadcast(**self.numbers())
        with np.errstate(over="ignore"):
            if not np.all(np.isfinite(self.mu2)):
                raise ParameterError("noise_mult" if np.any(~np.isfinite(self.noise_mult**2)) else "keep_rate",
                                     "too large a noise: mu2 = (1 + noise_mult^2) / keep_rate overflows a float")
            if not np.all(np.isfinite(self.add_var)):
                raise ParameterError("noise_add", f"too large: noise_add^2 overflows a float (got "
                                                  f"{_show(self.noise_add, ~np.isfinite(self.add_var))})")

    @classmethod
    def of(cls, *kinds: NoiseKind) -> Noise:
        """The noise of these kinds: a standard kind (``Dropout``, ``GaussianMultiplicative``,
        ``GaussianAdditive``) gives its number, any other is an extra kind. ``Noise.of(Dropout(0.8))`` is
        ``Noise(keep_rate=0.8)``."""
        numbers: dict[str, Any] = {}
        extra = []
        for kind in kinds:
            if type(kind) in STANDARD_KINDS:
                if kind.parameter_name in numbers:
                    raise ParameterError(kind.parameter_name, "is given twice")
                numbers[kind.parameter_name] = kind.value
            else:
                extra.append(kind)
        return cls(**numbers, extra=tuple(extra))

    @property
    def kinds(self) -> tuple[NoiseKind, ...]:
        """Every kind of noise on a layer's input, in the order their random streams are drawn."""
        return standard_kinds(self.keep_rate, self.noise_mult, self.noise_add) + self.extra

    @property
    def mu2(self) -> np.ndarray:
        """Second moment E[eps^2] of the multiplicative noise: the product over the kinds."""
        return product(self.kinds, "mu2")

    @property
    def mu4(self) -> np.ndarray:
        """Fourth moment E[eps^4] of the multiplicative noise: the product over the kinds."""
        return product(self.kinds, "mu4")

    @property
    def add_var(self) -> np.ndarray:
        """Variance of the additive noise, noise_add^2 (plus that of any additive extra kind)."""
        return total_add_var(self.kinds)

    def eps2_law(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The law of eps^2 / E[eps^2] given eps != 0 (atoms, probabilities) and P(eps != 0); scalars only."""
        return combined_law(self.kinds)

    @property
    def active(self) -> bool:
        """True where any noise is present anywhere in the (broadcast) arrays."""
        return any(kind.is_active() for kind in self.kinds)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The numbers of every kind (standard ones first), for broadcasting."""
        return tuple(np.asarray(kind.value) for kind in self.kinds)

    def numbers(self) -> dict[str, np.ndarray]:
        """Every kind's number by its name (keep_rate, noise_mult, noise_add, then any extra kinds'): the
        record of this noise in parameters and JSON."""
        return {kind.parameter_name: kind.value for kind in self.kinds}

    def scalar(self) -> tuple[float, float, float]:
        """(keep_rate, noise_mult, noise_add) as floats; ParameterError unless each is a single value."""
        return tuple(_one_value(name, getattr(self, name)) for name in ("keep_rate", "noise_mult", "noise_add"))

    def single(self) -> Noise:
        """This noise with every number a single value (a finite network's); ParameterError otherwise."""
        for kind in self.kinds:
            _one_value(kind.parameter_name, kind.value)
        return self


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
        check_broadcast(sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2, **self.noise.numbers())

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
        extra_noise: NoiseKind | tuple[NoiseKind, ...] = (),
    ) -> NetworkPrior:
        """The prior from loose numbers (the keyword names used throughout deepprop); ``extra_noise``: other
        kinds of noise (:mod:`deepprop.noise_models`), e.g. ``UniformDropout(0.5)``."""
        return cls(activation, sigma_w2, sigma_b2, Noise(keep_rate, noise_mult, noise_add, extra_noise))

    def replace(self, **numbers: ArrayLike) -> NetworkPrior:
        """The same prior with some of its numbers (sigma_w2, sigma_b2, keep_rate, noise_mult, noise_add)
        replaced, the activation and any extra noise kinds kept: one point or one axis of a grid."""
        unknown = set(numbers) - set(PRIOR_FIELDS)
        if unknown:
            raise TypeError(f"replace() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        values = {**self.keywords(), **numbers}
        return NetworkPrior.build(self.activation, **values, extra_noise=self.noise.extra)

    def record(self) -> dict:
        """The prior as plain JSON: activation name, its numbers (floats, or lists for arrays) and the extra
        noise kinds as ``{"kind": class name, "value": number}``; :meth:`from_record` reads it back."""
        def plain(v: np.ndarray) -> float | list:
            return np.asarray(v, dtype=np.float64).tolist()

        return {"activation": self.activation.name, **{k: plain(v) for k, v in self.keywords().items()},
                "extra_noise": [{"kind": type(k).__name__, "value": plain(k.value)} for k in self.noise.extra]}

    @classmethod
    def from_record(cls, record: dict) -> NetworkPrior:
        """The prior of a :meth:`record` (a registered activation; extra kinds of :mod:`deepprop.noise_models`)."""
        from deepprop import noise_models

        kinds = {kind.__name__: kind for kind in noise_models.EXTRA_KINDS}
        extra = []
        for item in record.get("extra_noise", ()):
            if item.get("kind") not in kinds:
                raise ParameterError("extra_noise", f"unknown noise kind {item.get('kind')!r}; known: "
                                                    f"{', '.join(kinds)}")
            extra.append(kinds[item["kind"]](item["value"]))
        numbers = {k: record[k] for k in PRIOR_FIELDS if k in record}
        return cls.build(record["activation"], **numbers, extra_noise=tuple(extra))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.sigma_w2, self.sigma_b2, *self.noise.arrays())

    @property
    def shape(self) -> tuple[int, ...]:
        """Broadcast shape of all numeric fields."""
        return np.broadcast_shapes(*(np.shape(a) for a in self._arrays()))

    keep_rate = property(lambda self: self.noise.keep_rate, doc="The dropout keep rate (of :attr:`noise`).")
    noise_mult = property(lambda self: self.noise.noise_mult, doc="Multiplicative Gaussian noise std.")
    noise_add = property(lambda self: self.noise.noise_add, doc="Additive Gaussian noise std.")
    mu2 = property(lambda self: self.noise.mu2, doc="E[eps^2] of the multiplicative noise (all kinds).")
    add_var = property(lambda self: self.noise.add_var, doc="Variance of the additive noise (all kinds).")

    def __repr__(self) -> str:
        def short(v: np.ndarray) -> str:
            v = np.asarray(v)
            return f"{v.item():g}" if v.ndim == 0 else f"<array {v.shape}>"

        numbers = ", ".join(f"{k}={short(v)}" for k, v in self.keywords().items())
        extra = f", extra_noise={self.noise.extra!r}" if self.noise.extra else ""
        return f"NetworkPrior({self.activation.name!r}, {numbers}{extra})"

    def keywords(self) -> dict[str, np.ndarray]:
        """sigma_w2, sigma_b2, keep_rate, noise_mult, noise_add as a dict (the loose-argument form)."""
        return dict(zip(PRIOR_FIELDS, self._arrays()[:len(PRIOR_FIELDS)], strict=True))

    def broadcast(self) -> dict[str, np.ndarray]:
        """:meth:`keywords` with every array broadcast to :attr:`shape` (copies)."""
        arrays = np.broadcast_arrays(*self._arrays())[:len(PRIOR_FIELDS)]
        return {k: np.array(a) for k, a in zip(PRIOR_FIELDS, arrays, strict=True)}


PRIOR_FIELDS = ("sigma_w2", "sigma_b2", "keep_rate", "noise_mult", "noise_add")
"""The five numbers of a network prior, in the order every table and JSON record uses."""

NOISE_FIELDS = PRIOR_FIELDS[2:]
"""The three standard noise numbers (keep_rate, noise_mult, noise_add)."""

NOISE_KEYWORDS = ("keep_rate", "noise_mult", "noise_add", "extra_noise")
"""The noise keywords of the loose form (:meth:`NetworkPrior.build`)."""


class NoiseKeywords(TypedDict, total=False):
    """The noise keywords of the functions that read a PyTorch model (``init_(model, keep_rate=0.9)``,
    ``diagnose(model, noise_mult=0.1)``), a convenience converted once by :func:`noise_keywords`.

    ``keep_rate``: the dropout keep rate (default None: the model's own ``nn.Dropout(p)`` gives 1 - p, 1
    without one); ``noise_mult`` / ``noise_add``: the stds of multiplicative / additive Gaussian noise on each
    layer's input (default 0)."""

    keep_rate: float | None
    noise_mult: float
    noise_add: float


def noise_keywords(function: str, given: Mapping[str, Any]) -> NoiseKeywords:
    """``given`` (the ``**noise`` of ``function``) with the defaults of :class:`NoiseKeywords` filled in;
    any other keyword is a TypeError naming it, as Python says it of a function without ``**``. The values
    are checked where the noise is built (:class:`Noise`)."""
    for name in given:
        if name not in NoiseKeywords.__annotations__:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
    return NoiseKeywords(**{"keep_rate": None, "noise_mult": 0.0, "noise_add": 0.0, **given})


Network = str | Activation | TensorFn | NetworkPrior
"""What the public functions take first: a :class:`NetworkPrior`, or (a convenience converted once, by
:func:`as_prior`) an activation followed by sigma_w2, sigma_b2 and the noise keywords of
:meth:`NetworkPrior.build`."""


def as_prior(
    activation: Network,
    sigma_w2: ArrayLike | None = None,
    sigma_b2: ArrayLike | None = None,
    **noise: ArrayLike,
) -> NetworkPrior:
    """Accept either a :class:`NetworkPrior` (and nothing else) or the loose numbers that build one.

    This is how every public function takes its network: ``mean_field(prior)`` and
    ``mean_field("tanh", 1.76, 0.05, keep_rate=0.9)`` mean the same. ``noise``: the keywords of
    :meth:`NetworkPrior.build` (keep_rate, noise_mult, noise_add, extra_noise); any other is a TypeError.
    """
    if isinstance(activation, NetworkPrior):
        if sigma_w2 is not None or sigma_b2 is not None or noise:
            raise ParameterError("prior", "pass either a NetworkPrior or sigma_w2/sigma_b2/noise values, not both")
        return activation
    if sigma_w2 is None:
        raise ParameterError("sigma_w2", "is required (or pass a NetworkPrior)")
    unknown = sorted(set(noise) - {*NOISE_FIELDS, "extra_noise"})
    if unknown:  # named for the caller, with the keywords there are (not as an internal build()'s error)
        hint = " (the dropout KEEP rate: keep_rate = 1 - p of nn.Dropout(p))" if unknown[0] in ("dropout", "p") else ""
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}: the network's noise is given by "
                        f"{', '.join(NOISE_FIELDS)} or extra_noise{hint}")
    return NetworkPrior.build(activation, sigma_w2, 0.0 if sigma_b2 is None else sigma_b2, **noise)


__all__ = [
    "NOISE_FIELDS", "NOISE_KEYWORDS", "PRIOR_FIELDS", "Network", "NetworkPrior", "Noise", "NoiseKeywords", "as_prior",
    "noise_keywords",
    "check_finite_nonnegative", "check_keep_rate",  # the checks live with the noise kinds; imported from here too
]
