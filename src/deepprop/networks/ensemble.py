"""Batched ensembles of random fully connected networks (the finite-width side of the theory).

An ensemble is K independent networks of width N, run side by side as one batch: every weight tensor
has shape (K, N_out, N_in) and a layer is one batched matmul, never a Python loop over networks.

Weights: Gaussian, W_ij ~ N(0, sigma_w2 / N_in), or scaled orthogonal, W = sqrt(sigma_w2) Q with Q
Haar-distributed (QR of a Gaussian matrix with the signs of diag(R) folded into Q). Biases
b_i ~ N(0, sigma_b2), shared by all inputs of one network.

Noise (follow-ups section 1) acts on each layer's input y = phi(z), independently per unit AND per
input (two inputs of a pair get independent masks):
    y -> y * eps_mult + eps_add,   eps_mult = Bernoulli(rho)/rho * N(1, s_mult^2),  eps_add ~ N(0, s_add^2)
so that E[eps_mult] = 1 and E[eps_mult^2] = mu2 = (1 + s_mult^2) / rho.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from deepprop.activations import Activation, get_activation
from deepprop.errors import ParameterError
from deepprop.validation import check_nonnegative, check_positive, check_positive_int

WEIGHT_KINDS = ("gaussian", "orthogonal")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cpu; raise ParameterError for cuda on a machine without it."""
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", "cuda requested but no CUDA device is available (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError("device", f"must be cpu or cuda (got {device!r})")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32' | 'float64' | a torch floating dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ParameterError("dtype", f"must be one of {', '.join(DTYPES)} (got {dtype!r})")
    return DTYPES[dtype]


@dataclass(frozen=True)
class NoiseSpec:
    """Per-layer input noise: keep rate rho (probability of KEEPING a unit), multiplicative and additive stds."""

    keep_rate: float = 1.0
    noise_mult: float = 0.0
    noise_add: float = 0.0

    def __post_init__(self) -> None:
        rho = float(self.keep_rate)
        if not (math.isfinite(rho) and 0.0 < rho <= 1.0):
            raise ParameterError("keep_rate", f"must be in (0, 1], the probability of keeping a unit (got {rho!r})")
        object.__setattr__(self, "keep_rate", rho)
        object.__setattr__(self, "noise_mult", check_nonnegative("noise_mult", self.noise_mult))
        object.__setattr__(self, "noise_add", check_nonnegative("noise_add", self.noise_add))

    @property
    def mu2(self) -> float:
        """E[eps_mult^2] = (1 + s_mult^2) / rho."""
        return (1.0 + self.noise_mult**2) / self.keep_rate

    @property
    def active(self) -> bool:
        return self.keep_rate < 1.0 or self.noise_mult > 0.0 or self.noise_add > 0.0


@dataclass(frozen=True)
class Ensemble:
    """K random networks of constant width N drawn from one distribution.

    ``sigma_w2`` may be a scalar or a 1-d sequence of S values: the batch then holds S*K networks,
    network s*K + k using sigma_w2[s] (weights of the S copies share the same standard draw, scaled
    by sqrt(sigma_w2[s]): common random numbers across a sweep).
    """

    activation: Activation
    sigma_w2: tuple[float, ...]
    sigma_b2: float
    width: int
    networks: int = 1
    weights: str = "gaussian"
    noise: NoiseSpec = NoiseSpec()
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float64

    @classmethod
    def build(
        cls,
        activation: str | Activation | Callable[[torch.Tensor], torch.Tensor],
        sigma_w2: float | tuple[float, ...] | list[float],
        sigma_b2: float,
        width: int,
        *,
        networks: int = 1,
        weights: str = "gaussian",
        keep_rate: float = 1.0,
        noise_mult: float = 0.0,
        noise_add: float = 0.0,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float64",
    ) -> Ensemble:
        """Validate every hyperparameter (ParameterError naming the bad one) and build the spec."""
        sw = (sigma_w2,) if isinstance(sigma_w2, (int, float)) else tuple(sigma_w2)
        if not sw:
            raise ParameterError("sigma_w2", "needs at least one value")
        sw = tuple(check_positive("sigma_w2", s) for s in sw)
        if weights not in WEIGHT_KINDS:
            raise ParameterError("weights", f"must be one of {', '.join(WEIGHT_KINDS)} (got {weights!r})")
        return cls(
            activation=get_activation(activation),
            sigma_w2=sw,
            sigma_b2=check_nonnegative("sigma_b2", sigma_b2),
            width=check_positive_int("width", width),
            networks=check_positive_int("networks", networks),
            weights=weights,
            noise=NoiseSpec(keep_rate, noise_mult, noise_add),
            device=resolve_device(device),
            dtype=resolve_dtype(dtype),
        )

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
        g.manual_seed(int(seed))
        return g

    def draw_weights(self, gen: torch.Generator, n_out: int | None = None, n_in: int | None = None) -> torch.Tensor:
        """One layer of weights for every network, shape (batch, n_out, n_in), entry variance sigma_w2 / n_in.

        Orthogonal: sqrt(sigma_w2 * max(n_out, n_in) / n_in) * Q with Q having orthonormal columns
        (n_out >= n_in) or rows (n_out < n_in); square layers give exactly sqrt(sigma_w2) * orthogonal.
        """
        n_out = self.width if n_out is None else n_out
        n_in = self.width if n_in is None else n_in
        g = torch.randn((self.networks, n_out, n_in), generator=gen, device=self.device, dtype=self.dtype)
        if self.weights == "orthogonal":
            tall = n_out >= n_in
            q, r = torch.linalg.qr(g if tall else g.transpose(-2, -1))
            q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
            base = (q if tall else q.transpose(-2, -1)) * math.sqrt(max(n_out, n_in) / n_in)
        else:
            base = g / math.sqrt(n_in)
        return base.repeat(len(self.sigma_w2), 1, 1) * self.weight_scale()

    def draw_bias(self, gen: torch.Generator, n_out: int | None = None) -> torch.Tensor:
        """Biases b ~ N(0, sigma_b2), shape (batch, n_out, 1), broadcast over the inputs of a network."""
        n_out = self.width if n_out is None else n_out
        b = torch.randn((self.networks, n_out, 1), generator=gen, device=self.device, dtype=self.dtype)
        return (b * math.sqrt(self.sigma_b2)).repeat(len(self.sigma_w2), 1, 1)

    def draw_noise(self, gen: torch.Generator, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Fresh (multiplicative, additive) noise shaped like ``like`` (None where that noise is off).

        Every entry is independent: per network, per unit and per input column.
        """
        nz = self.noise
        mult = add = None
        if nz.keep_rate < 1.0:
            keep = torch.rand(like.shape, generator=gen, device=like.device, dtype=like.dtype) < nz.keep_rate
            mult = keep.to(like.dtype) / nz.keep_rate
        if nz.noise_mult > 0.0:
            m = 1.0 + nz.noise_mult * torch.randn(like.shape, generator=gen, device=like.device, dtype=like.dtype)
            mult = m if mult is None else mult * m
        if nz.noise_add > 0.0:
            add = nz.noise_add * torch.randn(like.shape, generator=gen, device=like.device, dtype=like.dtype)
        return mult, add

    def layer_input(self, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y = noise(phi(z)) and the multiplicative mask used (None without multiplicative noise)."""
        y = self.activation.fn(z)
        mult, add = self.draw_noise(gen, y)
        if mult is not None:
            y = y * mult
        if add is not None:
            y = y + add
        return y, mult
