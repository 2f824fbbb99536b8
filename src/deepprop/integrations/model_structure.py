"""Read the mean-field description of a PyTorch model: its Linear layers, activation and dropout.

The mean-field theory describes a stack ``Linear -> phi -> [noise] -> Linear -> ...`` of fully connected
layers sharing one activation phi and one noise model. :func:`parse_model` walks a model's leaf modules
in registration order (the forward order for an ``nn.Sequential``; for any other module it is assumed to
be the order in which ``forward`` uses them) and sorts each into

* Linear layers (the depth is their number),
* activation modules, mapped to the engine's :class:`~deepprop.activations.Activation`,
* ``nn.Dropout(p)``: multiplicative noise with keep rate ``1 - p`` (p is the DROP probability),
* neutral modules that do not change the statistics (``Identity``, ``Flatten``, ``Unflatten``),
* everything else, which is *unrecognised*: named in :attr:`ModelStructure.unrecognised`, never
  silently skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from deepprop.activations import Activation, _ActivationModule, get_activation

NEUTRAL_MODULES: tuple[type[nn.Module], ...] = (nn.Identity, nn.Flatten, nn.Unflatten)
DROPOUT_MODULES: tuple[type[nn.Module], ...] = (nn.Dropout, nn.Dropout1d)

# Elementwise torch activations the engine has no built-in name for: integrated as callables, with the
# points where they (or their first two derivatives) are discontinuous.
_GENERIC_ACTIVATIONS: dict[type[nn.Module], Callable[[nn.Module], tuple[float, ...]]] = {
    nn.ReLU6: lambda m: (0.0, 6.0),
    nn.CELU: lambda m: (0.0,),
    nn.Mish: lambda m: (),
    nn.Softsign: lambda m: (0.0,),
    nn.Hardswish: lambda m: (-3.0, 3.0),
    nn.Hardsigmoid: lambda m: (-3.0, 3.0),
    nn.LogSigmoid: lambda m: (),
    nn.Tanhshrink: lambda m: (),
    nn.Softshrink: lambda m: (-float(m.lambd), float(m.lambd)),
    nn.Hardshrink: lambda m: (-float(m.lambd), float(m.lambd)),
}


def _module_activation(module: nn.Module, name: str, kinks: tuple[float, ...] = (),
                       homogeneous: bool = False) -> Activation:
    """Wrap an elementwise torch module as an engine Activation (autograd derivative)."""
    return Activation(name, module.forward, kinks=kinks, homogeneous=homogeneous)


def activation_from_module(module: nn.Module) -> Activation | None:
    """The engine :class:`Activation` equivalent to a torch activation module, or None if not one.

    Built-in engine activations are used where the module matches them exactly (``nn.GELU()`` ->
    ``gelu``, ``nn.ELU(alpha=1)`` -> ``elu``, ``nn.Hardtanh(-1, 1)`` -> ``hard_tanh``, ...); other
    parameter values and the remaining elementwise torch activations are integrated as callables.
    ``nn.LeakyReLU`` is positively homogeneous, so it belongs to the ReLU family.
    """
    if isinstance(module, _ActivationModule):
        return module.activation
    simple = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.SiLU: "silu", nn.SELU: "selu", nn.Sigmoid: "sigmoid"}
    for cls, key in simple.items():
        if type(module) is cls:
            return get_activation(key)
    if type(module) is nn.GELU:
        if module.approximate == "none":
            return get_activation("gelu")
        return _module_activation(module, f"gelu_{module.approximate}")
    if type(module) is nn.ELU:
        if module.alpha == 1.0:
            return get_activation("elu")
        return _module_activation(module, f"elu(alpha={module.alpha:g})", kinks=(0.0,))
    if type(module) is nn.Hardtanh:
        lo, hi = float(module.min_val), float(module.max_val)
        if (lo, hi) == (-1.0, 1.0):
            return get_activation("hard_tanh")
        return _module_activation(module, f"hard_tanh({lo:g},{hi:g})", kinks=(lo, hi))
    if type(module) is nn.Softplus:
        if module.beta == 1.0 and module.threshold >= 20:
            return get_activation("softplus")
        return _module_activation(module, f"softplus(beta={module.beta:g})")
    if type(module) is nn.LeakyReLU:
        slope = float(module.negative_slope)
        return _module_activation(module, f"leaky_relu({slope:g})", kinks=(0.0,), homogeneous=True)
    kinks_of = _GENERIC_ACTIVATIONS.get(type(module))
    if kinks_of is not None:
        return _module_activation(module, type(module).__name__.lower(), kinks=kinks_of(module))
    return None


@dataclass
class ModelStructure:
    """What :func:`parse_model` read from a model.

    Attributes
    ----------
    linears : list of (name, nn.Linear)
        The fully connected layers in order; ``depth`` is their number.
    activation : Activation or None
        The single activation of the model, None if it has no activation module (for example when
        ``forward`` calls ``torch.relu``: pass the activation explicitly then).
    activation_names : list of str
        Module names of the activation modules found.
    keep_rates : list of (name, float)
        Keep rate ``1 - p`` of every ``nn.Dropout(p)``, in order.
    after_dropout : list of bool
        For each Linear layer (in order): a Dropout module came after the previous Linear and before it.
    unrecognised : list of (name, str)
        Modules deepprop does not understand (name, class name). They are left untouched by
        :func:`deepprop.integrations.pytorch.init_` and ignored by the mean-field description.
    notes : list of str
        Everything else worth telling the user (mixed activations, dropout on only some layers, ...).
    """

    linears: list[tuple[str, nn.Linear]] = field(default_factory=list)
    activation: Activation | None = None
    activation_names: list[str] = field(default_factory=list)
    keep_rates: list[tuple[str, float]] = field(default_factory=list)
    after_dropout: list[bool] = field(default_factory=list)
    unrecognised: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        """Number of Linear layers."""
        return len(self.linears)

    @property
    def keep_rate(self) -> float | None:
        """The model's dropout keep rate (mean over its Dropout modules), None without dropout."""
        if not self.keep_rates:
            return None
        rates = {k for _, k in self.keep_rates}
        if len(rates) == 1:
            return rates.pop()
        return math.fsum(k for _, k in self.keep_rates) / len(self.keep_rates)

    @property
    def has_bias(self) -> bool:
        """True if any Linear layer has a bias."""
        return any(lin.bias is not None for _, lin in self.linears)

    def unrecognised_message(self) -> str:
        """One sentence naming the unrecognised modules ('' if there are none)."""
        if not self.unrecognised:
            return ""
        listed = ", ".join(f"{name or '<root>'} ({cls})" for name, cls in self.unrecognised)
        return f"modules not understood and left untouched: {listed}"


def dropout_keep_rate(p: float, where: str) -> float:
    """The keep rate 1 - p of a dropout of probability ``p`` found at ``where``; ParameterError naming the module
    when p = 1 (every unit dropped: no signal crosses it, and the theory's 1 / rho is infinite)."""
    if float(p) >= 1.0:
        from deepprop.errors import ParameterError

        raise ParameterError("model", f"{where} has dropout p = {float(p):g}: it drops every unit (keep rate 0), so "
                                      "no signal crosses it")
    return 1.0 - float(p)


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def parse_model(model: nn.Module) -> ModelStructure:
    """Sort a model's modules into Linear layers, activation, dropout and unrecognised modules.

    Containers (``nn.Sequential``, ``nn.ModuleList``, user modules) are walked into; a container that
    holds parameters of its own is unrecognised, since those parameters are not part of the theory.
    """
    if not isinstance(model, nn.Module):
        from deepprop.errors import ParameterError

        raise ParameterError("model", f"must be a torch.nn.Module (got {type(model).__name__})")
    out = ModelStructure()
    activations: dict[str, Activation] = {}
    dropout_since_linear = False
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            out.linears.append((name, module))
            out.after_dropout.append(dropout_since_linear)
            dropout_since_linear = False
            continue
        if not _is_leaf(module):
            if next(module.parameters(recurse=False), None) is not None:
                out.unrecognised.append((name, type(module).__name__))
            continue
        if isinstance(module, DROPOUT_MODULES):
            out.keep_rates.append((name, dropout_keep_rate(module.p, f"{name or '<root>'} ({type(module).__name__})")))
            dropout_since_linear = True
        elif isinstance(module, NEUTRAL_MODULES):
            continue
        else:
            act = activation_from_module(module)
            if act is None:
                out.unrecognised.append((name, type(module).__name__))
            else:
                out.activation_names.append(name)
                activations.setdefault(act.name, act)
    if len(activations) == 1:
        out.activation = next(iter(activations.values()))
    elif len(activations) > 1:
        out.notes.append(
            f"the model mixes activations ({', '.join(activations)}); the mean-field theory assumes one: "
            "pass activation= explicitly"
        )
    rates = {round(k, 12) for _, k in out.keep_rates}
    if len(rates) > 1:
        out.notes.append(
            f"dropout keep rates differ between layers ({', '.join(f'{k:g}' for k in sorted(rates))}); "
            f"their mean {out.keep_rate:.4g} is used unless keep_rate= is given"
        )
    if out.keep_rates and len(out.keep_rates) < max(out.depth - 1, 1):
        out.notes.append(
            f"dropout found before {len(out.keep_rates)} of the {out.depth} Linear layers; the theory "
            "assumes noise on every layer's input"
        )
    return out


def linear_variances(linear: nn.Linear) -> tuple[float, float]:
    """Empirical (sigma_w^2, sigma_b^2) of one layer: fan_in * mean(W^2) and mean(b^2) (0 without bias).

    Second moments about zero, because the theory's weights and biases have zero mean.
    """
    w = linear.weight.detach().to(torch.float64)
    sw2 = float(w.square().mean()) * linear.in_features
    sb2 = 0.0 if linear.bias is None else float(linear.bias.detach().to(torch.float64).square().mean())
    return sw2, sb2
