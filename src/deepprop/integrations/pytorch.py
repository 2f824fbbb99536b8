"""Critical initialisation and mean-field diagnosis of real PyTorch models.

* :func:`init_` initialises a model's Linear layers in place at the point recommended by
  :func:`deepprop.advice.critical_init` (or at an explicit ``sigma_w2`` / ``sigma_b2``): weights
  W_ij ~ N(0, sigma_w2 / fan_in) or a scaled orthogonal matrix with the same entry variance, biases
  b_i ~ N(0, sigma_b2).
* :func:`diagnose` reads each Linear layer's empirical sigma_w^2 = fan_in * mean(W^2) and
  sigma_b^2 = mean(b^2), averages them over layers, and reports the engine's phase, chi_1, xi_c and
  predicted maximum trainable depth against the model's depth, with a plain verdict.

Activation and dropout are read from the model (see :mod:`deepprop.integrations.model_structure`) when it is an
``nn.Sequential`` or a plain stack of Linear / activation / Dropout modules; pass them explicitly
otherwise. ``nn.Dropout(p)`` drops with probability p: its keep rate is 1 - p. Modules that are not
understood are named in the result and in a :class:`UnrecognisedModuleWarning`, never silently skipped.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from deepprop.activations import Activation, get_activation
from deepprop.advice import DEFAULT_DEPTH_MULTIPLE, CriticalInit, critical_init, depth_sentence
from deepprop.errors import ParameterError
from deepprop.integrations.model_structure import ModelStructure, linear_variances, parse_model
from deepprop.networks.weights import unit_weights
from deepprop.prior import Noise, check_finite_nonnegative

WEIGHT_SCHEMES = ("gaussian", "orthogonal")


class UnrecognisedModuleWarning(UserWarning):
    """A model contains modules deepprop does not understand (they are left untouched)."""


@dataclass(frozen=True)
class ModelReading:
    """Activation and noise of a model, after combining what was read with what was passed."""

    activation: Activation
    keep_rate: float
    noise_mult: float
    noise_add: float
    notes: tuple[str, ...] = ()


def _resolve(structure: ModelStructure, activation, keep_rate, noise_mult, noise_add) -> ModelReading:
    """Explicit arguments win over what the model says; conflicts are noted."""
    notes = list(structure.notes)
    if activation is None:
        if structure.activation is None:
            raise ParameterError(
                "activation",
                "could not be read from the model (no activation module, or several different ones); "
                "pass activation= explicitly",
            )
        act = structure.activation
    else:
        act = get_activation(activation)
        if structure.activation is not None and structure.activation.name != act.name:
            notes.append(f"activation {act.name!r} given explicitly; the model's modules say "
                         f"{structure.activation.name!r}")
    if keep_rate is None:
        kr = 1.0 if structure.keep_rate is None else structure.keep_rate
    else:
        kr = float(keep_rate)
        if structure.keep_rate is not None and abs(structure.keep_rate - kr) > 1e-12:
            notes.append(f"keep_rate {kr:g} given explicitly; the model's dropout keeps "
                         f"{structure.keep_rate:g}")
    noise = Noise(kr, noise_mult, noise_add)  # validates all three
    return ModelReading(act, float(noise.keep_rate), float(noise.noise_mult), float(noise.noise_add), tuple(notes))


def _warn_unrecognised(structure: ModelStructure) -> None:
    if structure.unrecognised:
        warnings.warn(f"deepprop: {structure.unrecognised_message()}", UnrecognisedModuleWarning,
                      stacklevel=3)


def _require_linears(structure: ModelStructure) -> None:
    if structure.depth == 0:
        raise ParameterError("model", "has no nn.Linear layers: nothing to initialise or diagnose")


@dataclass
class InitReport:
    """What :func:`init_` did.

    ``advice`` is the :class:`~deepprop.advice.CriticalInit` used (None when ``sigma_w2`` was given
    explicitly); ``initialised`` the names of the Linear layers set; ``untouched`` the unrecognised
    modules (name, class) left as they were; ``notes`` anything else the user should know.
    """

    sigma_w2: float
    sigma_b2: float
    weights: str
    activation: str
    keep_rate: float
    initialised: list[str]
    untouched: list[tuple[str, str]]
    advice: CriticalInit | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for people."""
        lines = [f"initialised {len(self.initialised)} Linear layers ({self.weights}) at sigma_w2 = "
                 f"{self.sigma_w2:.6g}, sigma_b2 = {self.sigma_b2:.6g} for {self.activation}, keep rate "
                 f"{self.keep_rate:g}"]
        if self.advice is not None:
            lines.append(self.advice.explanation)
        if self.untouched:
            lines.append("left untouched (not understood): "
                         + ", ".join(f"{n or '<root>'} ({c})" for n, c in self.untouched))
        lines += self.notes
        return "\n".join(lines)


def _init_weight(weight: torch.Tensor, sigma_w2: float, scheme: str,
                 generator: torch.Generator | None) -> None:
    # The same Gaussian / Haar-orthogonal matrices as deepprop's simulations (deepprop.networks.weights):
    # entry variance sigma_w2 / fan_in for both schemes.
    fan_out, fan_in = weight.shape
    device = generator.device if generator is not None else weight.device
    g = torch.randn((fan_out, fan_in), generator=generator, dtype=torch.float64, device=device).to(weight.device)
    weight.copy_(unit_weights(g, fan_in, scheme) * math.sqrt(sigma_w2))


@torch.no_grad()
def init_(
    model: nn.Module,
    activation: str | Activation | None = None,
    *,
    keep_rate: float | None = None,
    noise_mult: float = 0.0,
    noise_add: float = 0.0,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: str = "gaussian",
    generator: torch.Generator | None = None,
    depth_multiple: float = DEFAULT_DEPTH_MULTIPLE,
) -> InitReport:
    """Initialise every ``nn.Linear`` of ``model`` in place at the noise-aware critical point.

    The point is ``critical_init(activation, keep_rate=..., noise_mult=..., noise_add=...,
    sigma_b2=sigma_b2, depth=<number of Linear layers>)`` unless ``sigma_w2`` is given, in which case
    (sigma_w2, sigma_b2 or 0) is used as is. Weights: ``"gaussian"`` draws W_ij ~ N(0, sigma_w2/fan_in);
    ``"orthogonal"`` a scaled orthogonal matrix with the same entry variance. Biases ~ N(0, sigma_b2).
    ``activation`` and ``keep_rate`` default to what the model's modules say (keep_rate = 1 - p of its
    ``nn.Dropout(p)``). Modules that are not understood are left untouched, listed in the report, and
    announced by an :class:`UnrecognisedModuleWarning`.
    """
    if weights not in WEIGHT_SCHEMES:
        raise ParameterError("weights", f"must be one of {', '.join(WEIGHT_SCHEMES)} (got {weights!r})")
    structure = parse_model(model)
    _require_linears(structure)
    _warn_unrecognised(structure)
    notes: list[str] = []
    if sigma_w2 is None:
        setting = _resolve(structure, activation, keep_rate, noise_mult, noise_add)
        notes += setting.notes
        if sigma_b2 is None and not structure.has_bias:
            sigma_b2 = 0.0
            notes.append("the model's Linear layers have no bias: advice computed at sigma_b2 = 0")
        advice = critical_init(setting.activation, keep_rate=setting.keep_rate, noise_mult=setting.noise_mult,
                               noise_add=setting.noise_add, sigma_b2=sigma_b2, depth=structure.depth,
                               depth_multiple=depth_multiple)
        if not math.isfinite(advice.sigma_w2):
            raise ParameterError("activation", advice.explanation)
        sw2, sb2 = advice.sigma_w2, advice.sigma_b2
        act_name, kr = setting.activation.name, setting.keep_rate
    else:
        advice = None
        sw2 = float(check_finite_nonnegative("sigma_w2", sigma_w2))
        sb2 = 0.0 if sigma_b2 is None else float(check_finite_nonnegative("sigma_b2", sigma_b2))
        act = structure.activation if activation is None else get_activation(activation)
        act_name = act.name if act is not None else "unknown"
        kr = structure.keep_rate if keep_rate is None else float(keep_rate)
        kr = 1.0 if kr is None else kr
    names = []
    for name, lin in structure.linears:
        _init_weight(lin.weight, sw2, weights, generator)
        if lin.bias is not None:
            if sb2 > 0:
                nn.init.normal_(lin.bias, 0.0, math.sqrt(sb2), generator=generator)
            else:
                nn.init.zeros_(lin.bias)
        elif sb2 > 0:
            notes.append(f"layer {name} has no bias: its sigma_b2 is 0, not {sb2:g}")
        names.append(name)
    return InitReport(sigma_w2=sw2, sigma_b2=sb2, weights=weights, activation=act_name, keep_rate=kr,
                      initialised=names, untouched=list(structure.unrecognised), advice=advice, notes=notes)


@dataclass
class Diagnosis:
    """Mean-field diagnosis of a model as it is initialised now.

    ``sigma_w2`` / ``sigma_b2`` are the layer averages of the empirical fan_in * mean(W^2) and mean(b^2)
    (per layer in ``layer_sigma_w2`` / ``layer_sigma_b2``); ``phase``, ``chi1``, ``xi_c``, ``q_star``,
    ``c_star`` and ``max_depth`` (= depth_multiple * xi_c) are the engine's prediction for them;
    ``trainable`` compares ``depth`` (number of Linear layers) with ``max_depth``; ``advice`` is what
    :func:`init_` would use; ``verdict`` says it in one sentence.
    """

    activation: str
    keep_rate: float
    noise_mult: float
    noise_add: float
    depth: int
    sigma_w2: float
    sigma_b2: float
    layer_sigma_w2: list[float]
    layer_sigma_b2: list[float]
    phase: str
    chi1: float
    xi_c: float
    q_star: float
    c_star: float
    max_depth: float
    trainable: bool
    advice: CriticalInit
    verdict: str
    unrecognised: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain Python values, ready for JSON."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "advice"}
        d["advice"] = self.advice.to_dict()
        d["unrecognised"] = [list(u) for u in self.unrecognised]
        return d

    def __str__(self) -> str:
        lines = [
            f"{self.activation}, keep rate {self.keep_rate:g}, depth {self.depth} Linear layers",
            f"sigma_w2 = {self.sigma_w2:.4g}, sigma_b2 = {self.sigma_b2:.4g} (layer averages)",
            f"phase {self.phase}: chi_1 = {self.chi1:.4g}, xi_c = {self.xi_c:.4g}, q* = {self.q_star:.4g}, "
            f"c* = {self.c_star:.4g}",
            self.verdict,
        ]
        return "\n".join(lines + self.notes)


def diagnose(
    model: nn.Module,
    activation: str | Activation | None = None,
    *,
    keep_rate: float | None = None,
    noise_mult: float = 0.0,
    noise_add: float = 0.0,
    depth_multiple: float = DEFAULT_DEPTH_MULTIPLE,
) -> Diagnosis:
    """Predict from a model's current weights whether signal can propagate through its depth.

    Reads each Linear layer's empirical sigma_w^2 = fan_in * mean(W^2) and sigma_b^2 = mean(b^2),
    averages them over layers, and evaluates the engine's ``mean_field`` there. The model is predicted
    to train when its depth (number of Linear layers) is at most depth_multiple * xi_c (core paper
    section 5). Unrecognised modules are named in the result and warned about.
    """
    from deepprop.theory.meanfield import mean_field

    structure = parse_model(model)
    _require_linears(structure)
    _warn_unrecognised(structure)
    setting = _resolve(structure, activation, keep_rate, noise_mult, noise_add)
    per_layer = [linear_variances(lin) for _, lin in structure.linears]
    lw = [v[0] for v in per_layer]
    lb = [v[1] for v in per_layer]
    sw2 = math.fsum(lw) / len(lw)
    sb2 = math.fsum(lb) / len(lb)
    mf = mean_field(setting.activation, sw2, sb2, keep_rate=setting.keep_rate, noise_mult=setting.noise_mult,
                    noise_add=setting.noise_add, depth_multiple=depth_multiple)
    d = mf.to_dict()
    depth = structure.depth
    advice = critical_init(setting.activation, keep_rate=setting.keep_rate, noise_mult=setting.noise_mult,
                           noise_add=setting.noise_add, sigma_b2=None if structure.has_bias else 0.0,
                           depth=depth, depth_multiple=depth_multiple)
    num = {k: (math.nan if d[k] is None else float(d[k])) for k in ("max_depth", "chi1", "xi_c", "q_star", "c_star")}
    max_depth = num["max_depth"]
    trainable = bool(depth <= max_depth) if not math.isnan(max_depth) else False
    verdict = depth_sentence(depth, max_depth, depth_multiple)
    if math.isfinite(advice.sigma_w2):
        verdict += f"; init_ would move it to sw2 = {advice.sigma_w2:.3g}"
        if advice.sigma_b2 != sb2:
            verdict += f", sb2 = {advice.sigma_b2:.3g}"
        verdict += f" (predicted maximum depth {advice.max_depth:.4g})"
    notes = list(setting.notes)
    spread = (max(lw) - min(lw)) / sw2 if sw2 > 0 else 0.0
    if spread > 0.1:
        notes.append(f"layer sigma_w2 differ by {100 * spread:.0f}% of their mean "
                     f"({min(lw):.3g} .. {max(lw):.3g}); the verdict uses the mean")
    if structure.unrecognised:
        notes.append(structure.unrecognised_message() + "; the diagnosis ignores them")
    return Diagnosis(
        activation=setting.activation.name, keep_rate=setting.keep_rate, noise_mult=setting.noise_mult,
        noise_add=setting.noise_add, depth=depth, sigma_w2=sw2, sigma_b2=sb2, layer_sigma_w2=lw,
        layer_sigma_b2=lb, phase=str(d["phase"]), chi1=num["chi1"], xi_c=num["xi_c"],
        q_star=num["q_star"], c_star=num["c_star"], max_depth=max_depth, trainable=trainable,
        advice=advice, verdict=verdict + ".", unrecognised=list(structure.unrecognised), notes=notes,
    )
