"""Activation functions the mean-field engine knows, with their derivatives and kinks.

An :class:`Activation` bundles a torch-compatible elementwise function ``fn``, its derivative
``derivative`` (analytic for the built-ins, autograd for user callables) and ``kinks``: the points
where ``fn`` or one of its first two derivatives jumps (relu at 0, hard_tanh at +-1). Quadrature
splits the Gaussian integrals at the kinks, so non-smooth activations are integrated as accurately as
smooth ones. An activation whose Gaussian integrals have a closed form carries it (:class:`ClosedForm`:
relu's arc-cosine kernel, erf's arcsine kernel, linear); the theory uses it instead of quadrature.

A new activation is one entry of :data:`ACTIVATIONS` (and its reference in ``tests/reference.py``, which a
test checks covers every entry).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from deepprop.errors import ParameterError

TensorFn = Callable[[torch.Tensor], torch.Tensor]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _autograd_derivative(fn: TensorFn) -> TensorFn:
    """Elementwise derivative of ``fn`` by autograd (``fn`` must act elementwise)."""

    def derivative(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(xg).sum(), xg)
        return g.detach()

    return derivative


@dataclass(frozen=True)
class ClosedForm:
    """Closed forms of an activation's Gaussian integrals, elementwise over tensors q (variances) and c
    (correlations); u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2), z1, z2 independent N(0, 1).

    ``second_moment(q)`` = E[phi(sqrt(q) z)^2]; ``second_moment_slope(q)`` = its derivative in q;
    ``derivative_moment(q)`` = E[phi'(sqrt(q) z)^2]; ``pair(q, c)`` = E[phi(u1) phi(u2)];
    ``pair_slope(q, c)`` = d pair / dc = q E[phi'(u1) phi'(u2)] (Price's theorem).
    """

    second_moment: TensorFn
    second_moment_slope: TensorFn
    derivative_moment: TensorFn
    pair: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    pair_slope: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity phi.

    Parameters
    ----------
    name : str
        Identifier used in results and on the command line.
    fn : callable
        phi, acting elementwise on a torch tensor.
    derivative : callable, optional
        phi'. Computed by autograd when omitted.
    kinks : tuple of float
        Points where phi, phi' or phi'' is discontinuous. Integrals are split there.
    homogeneous : bool
        True when phi(a x) = a phi(x) for a > 0 (relu, linear): then, without bias and additive
        noise, the correlation map does not depend on q.
    closed_form : ClosedForm, optional
        Closed forms of the Gaussian integrals (the kernel), where they exist.
    """

    name: str
    fn: TensorFn
    derivative: TensorFn | None = None
    kinks: tuple[float, ...] = ()
    homogeneous: bool = False
    closed_form: ClosedForm | None = field(default=None, compare=False)
    both: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # its functions' reprs are addresses, not information
        return f"Activation({self.name!r})"

    def __post_init__(self) -> None:
        if self.derivative is None:
            object.__setattr__(self, "derivative", _autograd_derivative(self.fn))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def value_and_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi(x), phi'(x)), sharing work where the activation allows (tanh: one tanh call)."""
        if self.both is not None:
            return self.both(x)
        return self.fn(x), self.derivative(x)

    def torch_module(self) -> torch.nn.Module:
        """The activation as an ``nn.Module`` (for building finite networks)."""
        return _ActivationModule(self)


class _ActivationModule(torch.nn.Module):
    def __init__(self, activation: Activation):
        super().__init__()
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation.fn(x)

    def extra_repr(self) -> str:
        return self.activation.name


def _tanh(x: torch.Tensor) -> torch.Tensor:
    if x.device.type == "cpu" and x.dtype == torch.float64 and not x.requires_grad:
        # numpy's vectorised float64 tanh: 1.8 ns per value against torch's 8.7 (2-core CPU, 2026-12-02)
        return torch.from_numpy(np.tanh(x.numpy()))
    return torch.tanh(x)


def _tanh_both(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = _tanh(x)
    return t, 1 - t * t


def _relu_d(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


def _erf_d(x: torch.Tensor) -> torch.Tensor:
    return (2.0 / math.sqrt(math.pi)) * torch.exp(-x * x)


def _sigmoid_d(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _hard_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, -1.0, 1.0)


def _hard_tanh_d(x: torch.Tensor) -> torch.Tensor:
    return (x.abs() < 1).to(x.dtype)


def _elu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, torch.expm1(torch.clamp(x, max=0.0)))


def _elu_d(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, torch.ones_like(x), torch.exp(torch.clamp(x, max=0.0)))


def _selu(x: torch.Tensor) -> torch.Tensor:
    return SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * torch.expm1(torch.clamp(x, max=0.0)))


def _selu_d(x: torch.Tensor) -> torch.Tensor:
    return SELU_SCALE * torch.where(x > 0, torch.ones_like(x), SELU_ALPHA * torch.exp(torch.clamp(x, max=0.0)))


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 * torch.erfc(-x / math.sqrt(2.0))


def _gelu_d(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0)) + x * torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _silu_d(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


def _ones(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def _relu_pair(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(-1.0, 1.0)
    return q / (2 * math.pi) * (torch.sqrt(1 - c * c) + (math.pi - torch.arccos(c)) * c)


RELU_KERNEL = ClosedForm(  # the arc-cosine kernel of degree 1: V = q/2, E[phi'^2] = 1/2
    second_moment=lambda q: 0.5 * q,
    second_moment_slope=lambda q: torch.full_like(q, 0.5),
    derivative_moment=lambda q: torch.full_like(q, 0.5),
    pair=_relu_pair,
    pair_slope=lambda q, c: q * (math.pi - torch.arccos(c.clamp(-1.0, 1.0))) / (2 * math.pi),
)

ERF_KERNEL = ClosedForm(  # K = (2/pi) arcsin(2 q c / (1 + 2 q)), E[phi'^2] = (4/pi) / sqrt(1 + 4 q)
    second_moment=lambda q: (2 / math.pi) * torch.arcsin(2 * q / (1 + 2 * q)),
    second_moment_slope=lambda q: (4 / math.pi) / ((1 + 2 * q) * torch.sqrt(1 + 4 * q)),
    derivative_moment=lambda q: (4 / math.pi) / torch.sqrt(1 + 4 * q),
    pair=lambda q, c: (2 / math.pi) * torch.arcsin(2 * q * c / (1 + 2 * q)),
    pair_slope=lambda q, c: (4 * q / math.pi) / torch.sqrt((1 + 2 * q) ** 2 - 4 * q * q * c * c),
)

LINEAR_KERNEL = ClosedForm(  # V = q, K = q c
    second_moment=lambda q: q.clone(),
    second_moment_slope=torch.ones_like,
    derivative_moment=torch.ones_like,
    pair=lambda q, c: q * c,
    pair_slope=lambda q, c: q * torch.ones_like(c),
)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("tanh", _tanh, lambda x: 1 - _tanh(x) ** 2, both=_tanh_both),
        Activation("relu", torch.relu, _relu_d, kinks=(0.0,), homogeneous=True, closed_form=RELU_KERNEL),
        Activation("erf", torch.erf, _erf_d, closed_form=ERF_KERNEL),
        Activation("linear", _linear, _ones, homogeneous=True, closed_form=LINEAR_KERNEL),
        Activation("sigmoid", torch.sigmoid, _sigmoid_d),
        Activation("hard_tanh", _hard_tanh, _hard_tanh_d, kinks=(-1.0, 1.0)),
        Activation("elu", _elu, _elu_d, kinks=(0.0,)),
        Activation("selu", _selu, _selu_d, kinks=(0.0,)),
        Activation("gelu", _gelu, _gelu_d),
        Activation("silu", torch.nn.functional.silu, _silu_d),
        Activation("softplus", torch.nn.functional.softplus, torch.sigmoid),
        Activation("sin", torch.sin, torch.cos),
    )
}


def get_activation(activation: str | Activation | TensorFn, *, kinks: tuple[float, ...] = ()) -> Activation:
    """Return the :class:`Activation` for a name, an Activation, or a torch-compatible callable.

    A callable is wrapped with an autograd derivative; pass ``kinks`` if it is not smooth.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        key = activation.strip().lower().replace("-", "_")
        key = {"hardtanh": "hard_tanh", "swish": "silu", "identity": "linear"}.get(key, key)
        if key not in ACTIVATIONS:
            allowed = ", ".join(ACTIVATIONS)
            raise ParameterError("activation", f"unknown activation {activation!r}; allowed: {allowed}")
        return ACTIVATIONS[key]
    if callable(activation):
        name = getattr(activation, "__name__", type(activation).__name__)
        return Activation(name, activation, kinks=tuple(kinks))
    raise ParameterError("activation", f"expected a name or a callable, got {type(activation).__name__}")
