"""Batched ensembles of random fully connected networks (the finite-width side of the theory).

An ensemble is K independent networks of width N, run side by side as one batch: every weight tensor
has shape (K, N_out, N_in) and a layer is one batched matmul, never a Python loop over networks.

Weights: Gaussian, W_ij ~ N(0, sigma_w2 / N_in), or scaled orthogonal, W = sqrt(sigma_w2) Q with Q
Haar-distributed (:mod:`deepprop.networks.weights`). Biases b_i ~ N(0, sigma_b2), shared by all inputs
of one network. The distribution is a :class:`~deepprop.prior.NetworkPrior`.

Noise (follow-ups section 1) acts on each layer's input y = phi(z), independently per unit AND per
input (two inputs of a pair get independent masks):
    y -> y * eps_mult + eps_add,   eps_mult = Bernoulli(rho)/rho * N(1, s_mult^2),  eps_add ~ N(0, s_add^2)
so that E[eps_mult] = 1 and E[eps_mult^2] = mu2 = (1 + s_mult^2) / rho.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepprop.activations import Activation
from deepprop.errors import ParameterError
from deepprop.networks.noise import LayerNoise
from deepprop.networks.weights import WEIGHT_KINDS, unit_weights
from deepprop.prior import Network, NetworkPrior, Noise, as_prior
from deepprop.validation import as_float_array, check_positive_int, check_seed, resolve_device

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' | 'float64' | a torch floating dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ParameterError("dtype", f"must be one of {', '.join(DTYPES)} (got {dtype!r})")
    return DTYPES[dtype]


@dataclass(frozen=True)
class Ensemble:
    """K random networks of constant width N drawn from one :class:`~deepprop.prior.NetworkPrior`.

    ``sigma_w2`` may be a scalar or a 1-d sequence of S values: the batch then holds S*K networks,
    network s*K + k using sigma_w2[s] (weights of the S copies share the same standard draw, scaled
    by sqrt(sigma_w2[s]): common random numbers across a sweep). ``noise`` holds scalar values.
    """

    activation: Activation
    sigma_w2: tuple[float, ...]
    sigma_b2: float
    width: int
    networks: int = 1
    weights: str = "gaussian"
    noise: Noise = Noise()
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float64

    @classmethod
    def build(
        cls,
        prior: Network,
        sigma_w2: float | tuple[float, ...] | list[float] | None = None,
        sigma_b2: float | None = None,
        width: int = 0,
        *,
        networks: int = 1,
        weights: str = "gaussian",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float64",
        **noise: float,
    ) -> Ensemble:
        """Validate every hyperparameter (ParameterError naming the bad one) and build the spec.

        ``Ensemble.build(prior, width=N, ...)`` takes a NetworkPrior whose sigma_w2 is a scalar or 1-d
        array and whose other fields are scalars (as :meth:`from_prior`); the loose form
        ``Ensemble.build("tanh", sigma_w2, sigma_b2, N, keep_rate=...)`` takes the same numbers one by one.
        """
        if not isinstance(prior, NetworkPrior) and sigma_w2 is not None:
            sigma_w2 = np.atleast_1d(as_float_array("sigma_w2", sigma_w2))
        prior = as_prior(prior, sigma_w2, sigma_b2, **noise)
        return cls.from_prior(prior, width, networks=networks, weights=weights, device=device, dtype=dtype)

    @classmethod
    def from_prior(
        cls,
        prior: NetworkPrior,
        width: int,
        *,
        networks: int = 1,
        weights: str = "gaussian",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float64",
    ) -> Ensemble:
        """The ensemble of ``networks`` networks of width ``width`` per sigma_w2 value of ``prior``."""
        sw = np.atleast_1d(prior.sigma_w2)
        if sw.ndim != 1 or sw.size == 0:
            raise ParameterError("sigma_w2", "needs one value or a 1-d sequence of values")
        if np.any(sw <= 0):
            raise ParameterError("sigma_w2", f"must be finite and > 0 (got {float(sw[sw <= 0][0])!r})")
        if not isinstance(weights, str) or weights not in WEIGHT_KINDS:
            raise ParameterError("weights", f"must be one of {', '.join(WEIGHT_KINDS)} (got {weights!r})")
        noise = prior.noise.single()
        if np.size(prior.sigma_b2) != 1:
            raise ParameterError("sigma_b2", "must be a single value for a finite ensemble")
        return cls(
            activation=prior.activation,
            sigma_w2=tuple(float(s) for s in sw),
            sigma_b2=float(np.asarray(prior.sigma_b2).reshape(-1)[0]),
            width=check_positive_int("width", width),
            networks=check_positive_int("networks", networks),
            weights=weights,
            noise=noise,
            device=resolve_device(device),
            dtype=resolve_dtype(dtype),
        )

    @property
    def prior(self) -> NetworkPrior:
        """The distribution the networks are drawn from (sigma_w2 as an array over the sweep)."""
        return NetworkPrior(self.activation, np.array(self.sigma_w2), self.sigma_b2, self.noise)

    @property
    def batch(self) -> int:
        """Number of networks in the batch: len(sigma_w2) * networks."""
        return len(self.sigma_w2) * self.networks

    def weight_scale(self) -> torch.Tensor:
        """sqrt(sigma_w2) per network of the batch, shape (batch, 1, 1)."""
        sw = torch.tensor(self.sigma_w2, dtype=self.dtype, device=self.device)
        return sw.sqrt().repeat_interleave(self.networks).view(-1, 1, 1)

    def generator(self, seed: int) -> torch.Generator:
        """A torch.Generator on the ensemble's device, seeded: the same seed gives the same networks."""
        g = torch.Generator(device=self.device)
        g.manual_seed(check_seed("seed", seed))
        return g

    def draw_weights(self, gen: torch.Generator, n_out: int | None = None, n_in: int | None = None) -> torch.Tensor:
        """One layer of weights for every network, shape (batch, n_out, n_in), entry variance sigma_w2 / n_in."""
        n_out = self.width if n_out is None else n_out
        n_in = self.width if n_in is None else n_in
        g = torch.randn((self.networks, n_out, n_in), generator=gen, device=self.device, dtype=self.dtype)
        return unit_weights(g, n_in, self.weights).repeat(len(self.sigma_w2), 1, 1) * self.weight_scale()

    def draw_bias(self, gen: torch.Generator, n_out: int | None = None) -> torch.Tensor:
        """Biases b ~ N(0, sigma_b2), shape (batch, n_out, 1), broadcast over the inputs of a network."""
        n_out = self.width if n_out is None else n_out
        b = torch.randn((self.networks, n_out, 1), generator=gen, device=self.device, dtype=self.dtype)
        return (b * self.sigma_b2**0.5).repeat(len(self.sigma_w2), 1, 1)

    def layer_noise(self) -> LayerNoise:
        return LayerNoise.of(self.noise)

    def draw_noise(self, gen: torch.Generator, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Fresh (multiplicative, additive) noise shaped like ``like`` (None where that noise is off).

        Every entry is independent: per network, per unit and per input column.
        """
        uniform, normal = _generator_draws(gen, like)
        return self.layer_noise().factors(uniform, normal, like.dtype)

    def layer_input(self, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y = noise(phi(z)) and the multiplicative mask used (None without multiplicative noise)."""
        y = self.activation.fn(z)
        uniform, normal = _generator_draws(gen, y)
        return self.layer_noise().apply(y, uniform, normal)


def _generator_draws(gen: torch.Generator, like: torch.Tensor):
    """Uniform and normal draws shaped like ``like`` from ``gen`` (the stream number only orders them)."""
    def uniform(stream: int) -> torch.Tensor:
        return torch.rand(like.shape, generator=gen, device=like.device, dtype=like.dtype)

    def normal(stream: int) -> torch.Tensor:
        return torch.randn(like.shape, generator=gen, device=like.device, dtype=like.dtype)

    return uniform, normal
