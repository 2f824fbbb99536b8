"""Critical initialisation and mean-field diagnosis of real PyTorch models.

* :func:`init_` initialises a model's Linear and Conv layers in place at the point recommended by
  :func:`deepprop.advice.critical_init` (or at an explicit ``sigma_w2`` / ``sigma_b2``): weights
  W_ij ~ N(0, sigma_w2 / fan_in) or a scaled orthogonal matrix with the same entry variance, biases
  b_i ~ N(0, sigma_b2); delta-orthogonal conv kernels; residual branches scaled by 1/sqrt(blocks) (see
  :mod:`deepprop.integrations.initialise`), then checks the forward signal on the model.
* :func:`diagnose` of a plain stack of Linear layers reads each layer's empirical sigma_w^2 =
  fan_in * mean(W^2) and sigma_b^2 = mean(b^2), averages them over layers, and reports the engine's phase,
  chi_1, xi_c and predicted maximum trainable depth against the model's depth, with a plain verdict; any
  other model (convolutional, residual, normalised) is diagnosed from its measured propagation profile
  (:func:`deepprop.integrations.profile.profile`, :mod:`deepprop.integrations.diagnosis`).

Activation and dropout are read from the model (see :mod:`deepprop.integrations.model_structure`) when it is an
``nn.Sequential`` or a plain stack of Linear / activation / Dropout modules; pass them explicitly
otherwise. ``nn.Dropout(p)`` drops with probability p: its keep rate is 1 - p. Modules that are not
understood are named in the result and in a :class:`UnrecognisedModuleWarning`, never silently skipped.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from deepprop.activations import Activation, get_activation
from deepprop.advice import DEFAULT_DEPTH_MULTIPLE, CriticalInit, critical_init, depth_sentence
from deepprop.errors import ParameterError, warn_at_caller
from deepprop.integrations.model_structure import ModelStructure, linear_variances, parse_model
from deepprop.prior import Noise, NoiseKeywords, check_finite_nonnegative, noise_keywords

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

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


def _resolve(structure: ModelStructure, activation, noise: NoiseKeywords) -> ModelReading:
    """Explicit arguments win over what the model says; conflicts are noted."""
    keep_rate = noise["keep_rate"]
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
    built = Noise(kr, noise["noise_mult"], noise["noise_add"])  # validates all three
    return ModelReading(act, float(built.keep_rate), float(built.noise_mult), float(built.noise_add), tuple(notes))


def _warn_unrecognised(structure: ModelStructure) -> None:
    if structure.unrecognised:
        warn_at_caller(f"deepprop: {structure.unrecognised_message()}", UnrecognisedModuleWarning)


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
    layers: list[dict] = field(default_factory=list)
    residual: dict = field(default_factory=dict)
    check: dict | None = None

    def summary(self) -> str:
        """A few lines for people."""
        kinds = sorted({d["kind"] for d in self.layers}) or ["linear"]
        lines = [f"initialised {len(self.initialised)} {'/'.join(k.capitalize() for k in kinds)} layers "
                 f"({self.weights}) at sigma_w2 = {self.sigma_w2:.6g}, sigma_b2 = {self.sigma_b2:.6g} for "
                 f"{self.activation}, keep rate {self.keep_rate:g}"]
        other = [d for d in self.layers if (d["sigma_w2"], d["sigma_b2"]) != (self.sigma_w2, self.sigma_b2)]
        for d in other[:8]:
            lines.append(f"  {d['name']}: sigma_w2 = {d['sigma_w2']:.6g}, sigma_b2 = {d['sigma_b2']:.6g} "
                         f"({d['activation']}, keep rate {d['keep_rate']:g})")
        if self.advice is not None:
            lines.append(self.advice.explanation)
        if self.residual:
            lines.append("residual branches: " + self.residual["rule"])
        if self.untouched:
            lines.append("left as they are: " + ", ".join(f"{n or '<root>'} ({c})" for n, c in self.untouched))
        if self.check is not None:
            c = self.check
            lines.append(f"forward check: q from {c['q_in']:.4g} (input) to {c['q_out']:.4g} (output); largest "
                         f"change 10^{c['log10_worst_ratio']:.2f} at {c['worst_step']}")
        lines += self.notes
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain values, ready for JSON."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "advice"}
        d["advice"] = None if self.advice is None else self.advice.to_dict()
        d["untouched"] = [list(u) for u in self.untouched]
        return d


@torch.no_grad()
def init_(
    model: nn.Module,
    activation: str | Activation | None = None,
    *,
    example_input: torch.Tensor | None = None,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    weights: str = "gaussian",
    conv_weights: str = "delta-orthogonal",
    residual_scale: float | None = None,
    generator: torch.Generator | None = None,
    depth_multiple: float = DEFAULT_DEPTH_MULTIPLE,
    check: bool = True,
    **noise: Unpack[NoiseKeywords],
) -> InitReport:
    """Initialise every ``nn.Linear`` and ``nn.Conv`` of ``model`` in place at the noise-aware critical point.

    Each layer gets ``critical_init(activation, keep_rate=...)`` for the activation acting on its input and
    the keep rate ``1 - p`` of the ``nn.Dropout(p)`` before it (``sigma_w2`` / ``sigma_b2`` given: those for
    every layer). Linear weights: ``weights="gaussian"`` (W_ij ~ N(0, sigma_w2/fan_in)) or ``"orthogonal"``;
    conv kernels: ``conv_weights="delta-orthogonal"`` (Xiao et al. 2018) or ``"gaussian"``; biases ~ N(0,
    sigma_b2). Residual branches: their last weight layer is scaled by ``residual_scale`` (default
    1/sqrt(number of branches)). Normalisation layers are left as they are. ``activation`` and ``keep_rate``
    override what the model says. Noise keywords (:class:`~deepprop.prior.NoiseKeywords`): ``keep_rate``
    (default: read from the model's ``nn.Dropout``), ``noise_mult``, ``noise_add`` (default 0); any other
    keyword is a TypeError. The model is traced on ``example_input`` (inferred for a model whose first
    layer is Linear); a module with parameters that is not understood is refused. With ``check`` (default),
    the model then runs on Gaussian inputs shaped like ``example_input``: if the forward signal is not finite
    or changes by more than 10^6 along the depth, its previous parameters are restored and a
    :class:`~deepprop.errors.ParameterError` says where. See :mod:`deepprop.integrations.initialise`.
    """
    from deepprop.integrations.graph import trace_model
    from deepprop.integrations.initialise import (
        CHECK_DECADES,
        CONV_SCHEMES,
        apply_plan,
        check_forward,
        fit_branch_scale,
        infer_example_input,
        plan_init,
    )
    from deepprop.integrations.profile import check_input, check_model

    given = noise_keywords("init_", noise)
    keep_rate = given["keep_rate"]
    if weights not in WEIGHT_SCHEMES:
        raise ParameterError("weights", f"must be one of {', '.join(WEIGHT_SCHEMES)} (got {weights!r})")
    if conv_weights not in CONV_SCHEMES:
        raise ParameterError("conv_weights", f"must be one of {', '.join(CONV_SCHEMES)} (got {conv_weights!r})")
    device = check_model(model)
    layer_noise = Noise(1.0 if keep_rate is None else keep_rate, given["noise_mult"], given["noise_add"])  # checked
    if sigma_w2 is not None:
        check_finite_nonnegative("sigma_w2", sigma_w2)
    if sigma_b2 is not None:
        check_finite_nonnegative("sigma_b2", sigma_b2)
    x = check_input(example_input, device) if example_input is not None else infer_example_input(model, device)
    graph = trace_model(model, x)
    plan = plan_init(graph, activation=activation, keep_rate=keep_rate, noise=layer_noise, sigma_w2=sigma_w2,
                     sigma_b2=sigma_b2, weights=weights, conv_weights=conv_weights, residual_scale=residual_scale,
                     depth_multiple=depth_multiple)
    if not plan.layers:
        raise ParameterError("model", "has no nn.Linear or nn.Conv layers: nothing to initialise")
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    apply_plan(graph, plan, generator)
    fit_branch_scale(graph, plan, x)
    result = None
    if check:
        result = check_forward(graph, x)
        if not result["ok"]:
            model.load_state_dict(snapshot)
            how = ("is not finite" if not result["finite"] else
                   "is exactly zero (every unit inactive)" if result["zero"] else
                   f"{'grows' if result['log10_worst_ratio'] > 0 else 'shrinks'} by "
                   f"10^{abs(result['log10_worst_ratio']):.1f} (more than 10^{CHECK_DECADES:g})")
            raise ParameterError("model", f"after initialising, the forward signal {how} at step "
                                          f"{result['worst_step']!r}; the model was left as it was")
    main = Counter((lp.sigma_w2, lp.sigma_b2) for lp in plan.layers).most_common(1)[0][0]
    first = next(lp for lp in plan.layers if (lp.sigma_w2, lp.sigma_b2) == main)
    schemes = sorted({lp.scheme for lp in plan.layers})
    return InitReport(
        sigma_w2=main[0], sigma_b2=main[1], weights="/".join(schemes), activation=first.activation,
        keep_rate=Counter(lp.keep_rate for lp in plan.layers).most_common(1)[0][0],
        initialised=[lp.name for lp in plan.layers], untouched=list(plan.left_as_is), advice=first.advice,
        notes=plan.notes, layers=[lp.to_dict() for lp in plan.layers], residual=plan.residual, check=result,
    )


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
    example_input: torch.Tensor | None = None,
    depth_multiple: float = DEFAULT_DEPTH_MULTIPLE,
    inits: int = 8,
    pairs: int | None = None,
    **noise: Unpack[NoiseKeywords],
):
    """Predict from a model's current weights whether signal and gradients can cross its depth.

    A plain stack Linear -> activation -> [Dropout] -> ... (read with torch.fx on ``example_input``,
    inferred for a model whose first layer is Linear) is diagnosed by the engine: each Linear layer's
    empirical sigma_w^2 = fan_in * mean(W^2) and sigma_b^2 = mean(b^2), averaged over layers, give the
    phase, chi_1 and xi_c; the model is predicted to train when its depth (number of Linear layers) is at
    most depth_multiple * xi_c (core paper section 5). Returns a :class:`Diagnosis`. Noise keywords
    (:class:`~deepprop.prior.NoiseKeywords`): ``keep_rate`` (default: read from the model's ``nn.Dropout``),
    ``noise_mult``, ``noise_add`` (default 0); any other keyword is a TypeError.

    Any other model is diagnosed from its measured propagation profile (``inits`` initialisations,
    ``pairs`` Gaussian pairs; :func:`deepprop.integrations.profile.profile`): returns a
    :class:`~deepprop.integrations.diagnosis.ProfileDiagnosis` whose verdict names the steps modelled,
    approximated and measured only, and says "cannot tell" where the measurement cannot decide.
    """
    from deepprop.integrations.graph import trace_model
    from deepprop.integrations.initialise import infer_example_input, is_linear_chain
    from deepprop.integrations.profile import check_input, check_model, profile

    given = noise_keywords("diagnose", noise)
    if not isinstance(model, nn.Module):
        raise ParameterError("model", f"must be a torch.nn.Module (got {type(model).__name__})")
    device = check_model(model)
    x = check_input(example_input, device) if example_input is not None else infer_example_input(model, device)
    graph = trace_model(model, x)
    if not is_linear_chain(graph):
        return profile(model, x, inits=inits, pairs=pairs).diagnosis
    if activation is None and parse_model(model).activation is None:
        acts = {s.params["activation"].name: s.params["activation"] for s in graph.steps if s.kind == "activation"}
        if len(acts) == 1:
            activation = next(iter(acts.values()))  # a functional activation, read from the traced graph
    return _diagnose_linear_stack(model, activation, given, depth_multiple=depth_multiple)


def _diagnose_linear_stack(model: nn.Module, activation, noise: NoiseKeywords, *, depth_multiple) -> Diagnosis:
    """The engine's diagnosis of a plain stack of Linear layers (see :func:`diagnose`)."""
    from deepprop.theory.meanfield import mean_field

    structure = parse_model(model)
    _require_linears(structure)
    _warn_unrecognised(structure)
    setting = _resolve(structure, activation, noise)
    per_layer = [linear_variances(lin) for _, lin in structure.linears]
    lw = [v[0] for v in per_layer]
    lb = [v[1] for v in per_layer]
    # with noise on only some layers' inputs (none before the first layer, often none before the readout), the
    # theory's recursion is that of the noisy layers: init_ gives the others their own (noise-free) setting
    noisy = [i for i, after in enumerate(structure.after_dropout) if after]
    theory_layers = noisy if setting.keep_rate < 1.0 and 0 < len(noisy) < len(lw) else list(range(len(lw)))
    sw2 = math.fsum(lw[i] for i in theory_layers) / len(theory_layers)
    sb2 = math.fsum(lb[i] for i in theory_layers) / len(theory_layers)
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
    used = [lw[i] for i in theory_layers]
    if len(theory_layers) < len(lw):
        counted = "the Linear layer" if len(theory_layers) == 1 else f"the {len(theory_layers)} Linear layers"
        notes.append(f"sigma_w2, sigma_b2: averages over {counted} with dropout in front (the theory's noisy "
                     "recursion); " + ("the other one sees no dropout and is left out"
                     if len(lw) - len(theory_layers) == 1 else
                     f"the other {len(lw) - len(theory_layers)} see no dropout and are left out"))
    spread = (max(used) - min(used)) / sw2 if sw2 > 0 else 0.0
    if spread > 0.1:
        notes.append(f"layer sigma_w2 differ by {100 * spread:.0f}% of their mean "
                     f"({min(used):.3g} .. {max(used):.3g}); the verdict uses the mean")
    if structure.unrecognised:
        notes.append(structure.unrecognised_message() + "; the diagnosis ignores them")
    return Diagnosis(
        activation=setting.activation.name, keep_rate=setting.keep_rate, noise_mult=setting.noise_mult,
        noise_add=setting.noise_add, depth=depth, sigma_w2=sw2, sigma_b2=sb2, layer_sigma_w2=lw,
        layer_sigma_b2=lb, phase=str(d["phase"]), chi1=num["chi1"], xi_c=num["xi_c"],
        q_star=num["q_star"], c_star=num["c_star"], max_depth=max_depth, trainable=trainable,
        advice=advice, verdict=verdict + ".", unrecognised=list(structure.unrecognised), notes=notes,
    )
