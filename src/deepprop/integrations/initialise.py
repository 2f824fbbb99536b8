"""Critical initialisation of traced models beyond stacks of Linear layers: the plan, its application, the check.

Rules (each layer's choice is written into the report with its source):

* Every Linear / Conv layer gets the noise-aware critical point of :func:`deepprop.advice.critical_init` for
  the activation that acts on its input (q^l = sw2 E[phi(z^{l-1})^2] + sb2, eq. 3) and the dropout keep rate
  rho = 1 - p of the Dropout on its input (follow-ups section 1: sw2 = 2 rho for ReLU). The model's first
  layer takes the point of the activation that follows it (as in a plain stack); a layer that reads a
  residual stream or another layer's output directly keeps its input's variance (sw2 = 1, sb2 = 0).
* Conv layers: delta-orthogonal kernels (Xiao et al. 2018): the centre tap is a scaled orthogonal matrix
  with fan_in mean(W^2) = sw2 and every other tap is zero, which reduces the network exactly to an
  orthogonal fully connected one (dynamical isometry at chi_1 = 1); ``conv_weights="gaussian"`` draws
  N(0, sw2 / fan_in) instead. Even kernels (no centre tap) are Gaussian.
* Residual networks: inside each branch the layers are critical as above, and the last weight layer of
  each of the B branches is scaled by one factor alpha <= 1 / sqrt(B), the largest for which the mean-field
  theory (:mod:`deepprop.integrations.theory_layers`) keeps the residual stream's second moment within a
  factor e of its value at the first block over the whole depth. For branches whose output has zero mean
  (ending in a weight layer) alpha = 1 / sqrt(B) does it: each block adds ~ q / B and the stream grows by at
  most (1 + 1/B)^B < e (q and q_ab add across the skip: Yang & Schoenholz 2017; the 1 / sqrt(depth) branch
  scale: Hayou et al. 2021, "Stable ResNet"; Fixup, Zhang et al. 2019, scales the same layer towards zero).
  Branches ending in an activation (x + relu(W x)) also add their mean, which accumulates along the stream
  (mean products in the cross terms), so alpha is smaller there; it is found by bisection on the theory.
* LayerNorm / RMSNorm / GroupNorm and BatchNorm are left as they are: they set the forward variance
  themselves, so the weights' scale before them does not matter; their gains stay as given.

After initialising, :func:`check_forward` runs the model on Gaussian inputs shaped like the example and
measures q along the spine; a signal that grows or shrinks by more than 10^6, or is not finite, is an
error (the caller restores the model's previous parameters).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepprop.activations import Activation, get_activation
from deepprop.advice import CriticalInit, critical_init
from deepprop.errors import ParameterError
from deepprop.integrations.graph import WEIGHT_KINDS, ModelGraph, Step, reference_input
from deepprop.integrations.measure import stream_seed
from deepprop.networks.weights import haar_orthogonal, unit_weights
from deepprop.prior import NetworkPrior, Noise

CONV_SCHEMES = ("delta-orthogonal", "gaussian")
MIN_DELTA_CHANNELS = 16
CHECK_DECADES = 6.0
CHECK_EXAMPLES = 16
# Single-input steps that pass a layer's signal on without a nonlinearity of their own.
_TRANSPARENT = ("dropout", "identity", "flatten", "scale", "layernorm", "rmsnorm", "groupnorm", "batchnorm",
                "avgpool", "adaptive_avgpool", "global_avgpool", "maxpool")
_CHAIN_KINDS = ("input", "linear", "activation", "dropout", "flatten", "identity")
_REFUSED_KINDS = ("unknown", "attention", "reshape")
_LEFT_AS_IS = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "groupnorm": "GroupNorm", "batchnorm": "BatchNorm"}


@dataclass
class LayerPlan:
    """How one weight layer is initialised."""

    name: str
    kind: str
    scheme: str
    activation: str
    keep_rate: float
    sigma_w2: float
    sigma_b2: float
    branch_scale: float = 1.0
    advice: CriticalInit | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "scheme", "activation", "keep_rate", "sigma_w2",
                                              "sigma_b2", "branch_scale")}


@dataclass
class InitPlan:
    layers: list[LayerPlan]
    residual: dict[str, Any] = field(default_factory=dict)
    left_as_is: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def infer_example_input(model: nn.Module, device: torch.device) -> torch.Tensor:
    """A Gaussian batch for a model whose first weight layer is Linear; otherwise ask for one."""
    for _, m in model.named_modules():
        if isinstance(m, nn.Linear):
            gen = torch.Generator().manual_seed(stream_seed("example", 0))
            return torch.randn(CHECK_EXAMPLES, m.in_features, generator=gen).to(
                device=device, dtype=m.weight.dtype)
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            raise ParameterError("example_input", f"is needed for a model whose first layer is "
                                                  f"{type(m).__name__}: pass a batch such as "
                                                  f"torch.randn(1, {m.in_channels}, 32, 32)")
    raise ParameterError("example_input", "is needed: the model has no Linear or Conv layer to read the input "
                                          "shape from")


def is_linear_chain(graph: ModelGraph) -> bool:
    """True for a plain stack Linear -> activation -> [Dropout] -> ... read by module structure alone."""
    if graph.method != "fx":
        return False
    prev = 0
    for s in graph.steps[1:]:
        if s.kind not in _CHAIN_KINDS or s.inputs != (prev,):
            return False
        prev = s.index
    return any(s.kind == "linear" for s in graph.steps)


def _walk_back(graph: ModelGraph, index: int) -> tuple[Activation | None, float, bool]:
    """The activation acting on step ``index``'s input, the product of keep rates in between, and whether the
    walk reached the model's input (a first layer) rather than a weight layer or an addition."""
    keep = 1.0
    i = graph.steps[index].inputs[0] if graph.steps[index].inputs else None
    while i is not None:
        s = graph.steps[i]
        if s.kind == "activation":
            return s.params["activation"], keep, False
        if s.kind == "dropout":
            keep *= s.params["keep_rate"]
        if s.kind == "input":
            return None, keep, True
        if s.kind not in _TRANSPARENT or len(s.inputs) != 1:
            return None, keep, False
        i = s.inputs[0]
    return None, keep, True


def _walk_forward(graph: ModelGraph, index: int) -> Activation | None:
    """The first activation reading step ``index``'s output through transparent steps."""
    current = index
    while True:
        readers = [s for s in graph.steps if current in s.inputs]
        if len(readers) != 1:
            return None
        s = readers[0]
        if s.kind == "activation":
            return s.params["activation"]
        if s.kind not in _TRANSPARENT:
            return None
        current = s.index


def _branch_last_layer(graph: ModelGraph, add: Step) -> tuple[int | None, str]:
    """The last weight layer of the residual branch of an addition (the input with more weight layers between
    the block input and the addition), or None with the reason."""
    ref = reference_input(graph, add.index)
    if ref is None or len(add.inputs) != 2:
        return None, "no block input found"
    base = graph.steps[ref].weight_depth
    depths = [graph.steps[i].weight_depth - base for i in add.inputs]
    branch = add.inputs[1] if depths[1] >= depths[0] else add.inputs[0]
    if max(depths) == 0:
        return None, "neither side has a weight layer"
    i = branch
    while i is not None:
        s = graph.steps[i]
        if s.kind in WEIGHT_KINDS:
            return i, ""
        if len(s.inputs) != 1:
            return None, f"the branch ends in {s.kind} before a weight layer"
        i = s.inputs[0]
    return None, "no weight layer on the branch"


def plan_init(graph: ModelGraph, *, activation: str | Activation | None, keep_rate: float | None, noise: Noise,
              sigma_w2: float | None, sigma_b2: float | None, weights: str, conv_weights: str,
              residual_scale: float | None, depth_multiple: float) -> InitPlan:
    """Decide every weight layer's initialisation (see module docstring); refuse modules not understood.

    ``noise``: the noise of every layer; its keep rate is ``keep_rate`` where given, else each layer's own
    (read from the Dropout module in front of it)."""
    notes: list[str] = []
    for s in graph.steps:
        if s.kind in _REFUSED_KINDS and s.module is not None and any(True for _ in s.module.parameters()):
            raise ParameterError("model", f"cannot initialise it safely: module {s.name!r} "
                                          f"({type(s.module).__name__}) is not understood")
        for attr in s.attrs:
            if s.kind != "scale":
                raise ParameterError("model", f"cannot initialise it safely: parameter {attr!r} is used by an "
                                              f"operation deepprop does not understand ({s.what})")
    seen = {id(s.module) for s in graph.steps if s.module is not None}
    read = {a.rsplit(".", 1)[0] for s in graph.steps for a in s.attrs}
    for name, m in graph.model.named_modules():
        if next(m.children(), None) is None and any(True for _ in m.parameters(recurse=False)) and \
                id(m) not in seen and name not in read:
            notes.append(f"module {name!r} ({type(m).__name__}) has parameters but the traced forward pass does not "
                         "use it: left as it is")
    if graph.method != "fx":
        notes.append("the model could not be traced by torch.fx: residual additions between module calls are not "
                     "seen, so no branch scaling is applied (the forward check below still runs)")
    acts = [s.params["activation"] for s in graph.steps if s.kind == "activation"]
    dominant = Counter(a.name for a in acts).most_common(1)
    fallback = next(a for a in acts if a.name == dominant[0][0]) if dominant else get_activation("linear")
    forced = get_activation(activation) if activation is not None else None
    weight_steps = [s for s in graph.steps if s.kind in WEIGHT_KINDS]
    depth = max((s.weight_depth for s in graph.steps), default=len(weight_steps))
    cache: dict[tuple, CriticalInit] = {}
    layers: list[LayerPlan] = []
    linear = get_activation("linear")
    for s in weight_steps:
        act, keep, first = _walk_back(graph, s.index)
        if act is None:
            # the model's first layer takes the point of the activation after it (as a plain stack does); a
            # layer reading a residual stream or another layer's output directly keeps its variance (sw2 = 1)
            act = (_walk_forward(graph, s.index) or fallback) if first else linear
        if forced is not None:
            act = forced
        kr = float(keep_rate) if keep_rate is not None else keep
        has_bias = s.module.bias is not None
        if s.kind == "conv":
            scheme = conv_weights if all(k % 2 for k in s.module.kernel_size) else "gaussian"
            if scheme == "delta-orthogonal" and s.module.in_channels // s.module.groups < MIN_DELTA_CHANNELS:
                scheme = "gaussian"
                notes.append(f"layer {s.name} reads {s.module.in_channels} channels: a delta-orthogonal kernel would "
                             "see one pixel's few values, so it is Gaussian (each unit sums all its taps)")
        else:
            scheme = weights
        if sigma_w2 is not None:
            advice = None
            sw2, sb2 = float(sigma_w2), float(sigma_b2 or 0.0)
        else:
            sb2_req = sigma_b2 if sigma_b2 is not None else (None if has_bias else 0.0)
            key = (act, kr, sb2_req)
            if key not in cache:
                layer_noise = dataclasses.replace(noise, keep_rate=kr)
                cache[key] = critical_init(NetworkPrior(act, 1.0, 0.0, layer_noise), sigma_b2=sb2_req,
                                           depth=max(depth, 1), depth_multiple=depth_multiple)
            advice = cache[key]
            if not math.isfinite(advice.sigma_w2):
                raise ParameterError("activation", f"layer {s.name}: {advice.explanation}")
            sw2, sb2 = advice.sigma_w2, advice.sigma_b2
        if not has_bias and sb2 > 0:
            notes.append(f"layer {s.name} has no bias: its sigma_b2 is 0, not {sb2:g}")
        layers.append(LayerPlan(s.name, s.kind, scheme, act.name, kr, sw2, sb2, 1.0, advice))
    residual = _plan_residual(graph, layers, residual_scale, notes)
    left = [(s.name, type(s.module).__name__) for s in graph.steps if s.kind in _LEFT_AS_IS and s.module is not None
            and any(True for _ in s.module.parameters())]
    if left:
        kinds = sorted({_LEFT_AS_IS[s.kind] for s in graph.steps if s.kind in _LEFT_AS_IS})
        notes.append(f"{', '.join(kinds)} left as they are: they set the forward variance themselves, so the scale "
                     "of the weights before them does not matter")
    return InitPlan(layers, residual, left, notes)


def _plan_residual(graph: ModelGraph, layers: list[LayerPlan], residual_scale: float | None,
                   notes: list[str]) -> dict[str, Any]:
    adds = [s for s in graph.steps if s.kind == "add"]
    if not adds:
        return {}
    by_name = {lp.name: lp for lp in layers}
    targets: list[str] = []
    for add in adds:
        last, why = _branch_last_layer(graph, add)
        if last is None:
            notes.append(f"addition {add.name}: {why}; no branch scaling there")
            continue
        targets.append(graph.steps[last].name)
    blocks = len(targets)
    if not blocks:
        return {}
    if residual_scale is None:
        alpha = 1.0 / math.sqrt(blocks)
        rule = (f"the last weight layer of each of the {blocks} residual branches is scaled by 1/sqrt({blocks}) = "
                f"{alpha:.4g} after its critical initialisation: each block adds ~q/{blocks} to the stream's "
                f"variance, which grows by at most (1 + 1/{blocks})^{blocks} < e over the whole depth (Hayou et "
                "al. 2021, Stable ResNet; Fixup, Zhang et al. 2019; q adds across the skip, Yang & Schoenholz 2017)")
        fit = True
    else:
        alpha = float(residual_scale)
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ParameterError("residual_scale", f"must be finite and >= 0 (got {residual_scale!r})")
        rule = f"the last weight layer of each of the {blocks} residual branches is scaled by {alpha:.4g} (given)"
        fit = False
    for name in targets:
        by_name[name].branch_scale = alpha
    return {"blocks": blocks, "scale": alpha, "layers": targets, "rule": rule, "fit": fit}


STREAM_BAND = math.e


def _stream_band(graph: ModelGraph, example: torch.Tensor) -> tuple[float, float] | None:
    """(growth of q, change of c) of the residual stream from the first block's input to its largest value,
    by the mean-field theory on the model as initialised now; None where the theory does not reach it."""
    from deepprop.integrations.profile import gaussian_start
    from deepprop.integrations.theory_layers import Propagator

    adds = [s for s in graph.steps if s.kind == "add" and s.on_spine]
    if not adds:
        return None
    q0 = float(example.detach().double().square().mean()) or 1.0
    start, disp = gaussian_start(tuple(example.shape[1:]), q0, 0.5)
    states = Propagator(graph, start, disp).states
    first = reference_input(graph, adds[0].index)
    if first is None or states[first] is None or any(states[a.index] is None for a in adds):
        return None
    base = states[first]
    growth = max(states[a.index].q for a in adds) / base.q
    drift = states[adds[-1].index].c - base.c
    return growth, drift


@torch.no_grad()
def fit_branch_scale(graph: ModelGraph, plan: InitPlan, example: torch.Tensor) -> None:
    """Lower the branch scale below 1/sqrt(B) where the theory says the stream would leave its band (branches
    whose outputs carry a mean); rescales the branch layers in place and records the band in the plan."""
    res = plan.residual
    if not res:
        return
    band = _stream_band(graph, example)
    if band is None:
        res["rule"] += "; the stream is not modelled end to end here, so the band is not checked by theory"
        return
    modules = {s.name: s.module for s in graph.steps if s.name in res["layers"]}
    current = res["scale"]

    def set_scale(alpha: float) -> None:
        nonlocal current
        factor = alpha / current if current > 0 else 0.0
        for m in modules.values():
            m.weight.mul_(factor)
            if m.bias is not None:
                m.bias.mul_(factor)
        current = alpha

    if res.get("fit") and band[0] > STREAM_BAND:
        lo, hi = 0.0, current
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            set_scale(mid)
            got = _stream_band(graph, example)
            if got is not None and got[0] <= STREAM_BAND:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-4 * hi:
                break
        set_scale(lo)
        band = _stream_band(graph, example)
        res["rule"] = (f"the last weight layer of each of the {res['blocks']} residual branches is scaled by "
                       f"{lo:.4g} (< 1/sqrt({res['blocks']}) = {1 / math.sqrt(res['blocks']):.4g}): the branches "
                       "add their means to the stream, so the largest scale that keeps the stream's second moment "
                       "within a factor e of its first block's was found by bisection on the mean-field theory "
                       "(q and q_ab add across the skip with the means' cross terms, Yang & Schoenholz 2017; branch "
                       "scaling as in Stable ResNet, Hayou et al. 2021, and Fixup, Zhang et al. 2019)")
        res["scale"] = lo
        for lp in plan.layers:
            if lp.name in modules:
                lp.branch_scale = lo
    res["stream_q_growth"], res["stream_c_change"] = band
    res["rule"] += (f"; theory: the stream's q grows by a factor {band[0]:.3g} and its correlation changes by "
                    f"{band[1]:+.3f} over the depth")


def _gen_device(generator: torch.Generator | None) -> torch.device:
    """Draws happen where the user's generator lives (CPU without one); copy_ moves them to the weights."""
    return generator.device if generator is not None else torch.device("cpu")


@torch.no_grad()
def apply_plan(graph: ModelGraph, plan: InitPlan, generator: torch.Generator | None) -> None:
    """Write the planned weights and biases into the model's layers."""
    steps = {s.name: s for s in graph.steps if s.kind in WEIGHT_KINDS}
    for lp in plan.layers:
        m = steps[lp.name].module
        w = m.weight
        if lp.kind == "conv":
            new = _conv_weight(w.shape, m.groups, lp.sigma_w2, lp.scheme, generator)
        else:
            g = torch.randn(tuple(w.shape), generator=generator, dtype=torch.float64, device=_gen_device(generator))
            new = unit_weights(g, w.shape[1], lp.scheme) * math.sqrt(lp.sigma_w2)
        w.copy_((new * lp.branch_scale).to(w.dtype))
        if m.bias is not None:
            if lp.sigma_b2 > 0:
                b = torch.randn(tuple(m.bias.shape), generator=generator, dtype=torch.float64,
                                device=_gen_device(generator)) * math.sqrt(lp.sigma_b2)
                m.bias.copy_((b * lp.branch_scale).to(m.bias.dtype))
            else:
                m.bias.zero_()


def _conv_weight(shape: torch.Size, groups: int, sw2: float, scheme: str,
                 generator: torch.Generator | None) -> torch.Tensor:
    out, in_g = shape[0], shape[1]
    taps = math.prod(shape[2:])
    if scheme == "gaussian":
        g = torch.randn(tuple(shape), generator=generator, dtype=torch.float64, device=_gen_device(generator))
        return g * math.sqrt(sw2 / (in_g * taps))
    w = torch.zeros(tuple(shape), dtype=torch.float64)
    block = out // groups
    centre = tuple(k // 2 for k in shape[2:])
    for gi in range(groups):
        g = torch.randn((block, in_g), generator=generator, dtype=torch.float64, device=_gen_device(generator))
        q = haar_orthogonal(g) * math.sqrt(max(block, in_g) / in_g)  # entry variance 1 / in_g, as unit_weights
        w[(slice(gi * block, (gi + 1) * block), slice(None)) + centre] = q * math.sqrt(sw2)
    return w


def check_forward(graph: ModelGraph, example: torch.Tensor, seed: int = 0) -> dict[str, Any]:
    """Run the model on Gaussian inputs shaped like ``example`` and measure q along the spine."""
    q0 = float(example.detach().double().square().mean()) or 1.0
    gen = torch.Generator().manual_seed(stream_seed("check", seed))
    x = torch.randn((CHECK_EXAMPLES,) + tuple(example.shape[1:]), generator=gen, dtype=torch.float64) * math.sqrt(q0)
    x = x.to(dtype=example.dtype, device=example.device)
    q: dict[int, float] = {}

    def visit(index: int, y: torch.Tensor) -> None:
        if graph.steps[index].on_spine and isinstance(y, torch.Tensor):
            q[index] = float(y.detach().double().square().mean())

    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(stream_seed("check-masks", seed))
        graph.execute(x, visit)
    base = q.get(0, q0)
    worst_i, worst = 0, 0.0
    finite = True
    zero = False
    for i, v in q.items():
        if not math.isfinite(v):
            finite, worst_i, worst = False, i, math.inf
            break
        if v <= 0:
            zero, worst_i, worst = True, i, -math.inf
            break
        dec = math.log10(v / base)
        if abs(dec) > abs(worst):
            worst_i, worst = i, dec
    out_q = q.get(graph.output, math.nan)
    return {"q_in": base, "q_out": out_q, "worst_step": graph.steps[worst_i].name, "log10_worst_ratio": worst,
            "finite": finite, "zero": zero, "ok": finite and not zero and abs(worst) <= CHECK_DECADES}
