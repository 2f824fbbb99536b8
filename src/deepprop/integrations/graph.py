"""A PyTorch model's computation as a list of steps, for profiling.

:func:`trace_model` follows the model with ``torch.fx`` (every module call and every function or method on a
tensor becomes a step, so residual additions, functional activations and scalings are seen); where
symbolic tracing fails (data-dependent control flow, unsupported Python), it falls back to hooks on the
leaf modules, which records the modules in the order they run and links each call to the call whose
output it reads (by tensor identity). Anything computed between module calls is then invisible; such a
link is recorded as missing, and the profile says so instead of guessing.

Every step has a ``kind`` (what the mean-field theory needs to know about it) and ``params`` (the numbers
that go with the kind: an activation, a keep rate, a scale factor, pooling sizes).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from deepprop.errors import ParameterError
from deepprop.integrations.model_structure import activation_from_module, dropout_keep_rate

WEIGHT_KINDS = ("linear", "conv")
# Kinds with no mean-field theory here: measured only.
MEASURED_ONLY_KINDS = ("batchnorm", "maxpool", "attention", "reshape", "unknown")

_NORM_BATCH = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
               nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d)
_MAX_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
             nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.FractionalMaxPool2d)
_ATTENTION = (nn.MultiheadAttention, nn.Transformer, nn.TransformerEncoder, nn.TransformerDecoder,
              nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_CHANNEL_DROPOUT = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)

# Functional activations, as the module that computes the same thing (so that one mapping serves both).
_FUNCTION_ACTIVATIONS: dict[Any, Callable[..., nn.Module]] = {
    torch.relu: lambda *a, **k: nn.ReLU(), F.relu: lambda *a, **k: nn.ReLU(), torch.relu_: lambda *a, **k: nn.ReLU(),
    F.relu_: lambda *a, **k: nn.ReLU(),
    torch.tanh: lambda *a, **k: nn.Tanh(), F.tanh: lambda *a, **k: nn.Tanh(),
    torch.sigmoid: lambda *a, **k: nn.Sigmoid(), F.sigmoid: lambda *a, **k: nn.Sigmoid(),
    F.silu: lambda *a, **k: nn.SiLU(), F.mish: lambda *a, **k: nn.Mish(), F.selu: lambda *a, **k: nn.SELU(),
    F.gelu: lambda *a, approximate="none", **k: nn.GELU(approximate=approximate),
    F.elu: lambda *a, alpha=1.0, **k: nn.ELU(alpha=a[0] if a else alpha),
    F.leaky_relu: lambda *a, negative_slope=0.01, **k: nn.LeakyReLU(a[0] if a else negative_slope),
    F.softplus: lambda *a, beta=1.0, threshold=20.0, **k: nn.Softplus(a[0] if a else beta, threshold),
    F.hardtanh: lambda *a, min_val=-1.0, max_val=1.0, **k: nn.Hardtanh(*(a[:2] or (min_val, max_val))),
    F.relu6: lambda *a, **k: nn.ReLU6(),
}
_METHOD_ACTIVATIONS = {"relu": nn.ReLU, "relu_": nn.ReLU, "tanh": nn.Tanh, "tanh_": nn.Tanh,
                       "sigmoid": nn.Sigmoid, "sigmoid_": nn.Sigmoid}
_ERF = torch.erf
_ADD = (operator.add, operator.iadd, torch.add, "add", "add_")
_SUB = (operator.sub, operator.isub, torch.sub, "sub", "sub_")
_MUL = (operator.mul, operator.imul, torch.mul, "mul", "mul_")
_DIV = (operator.truediv, operator.itruediv, torch.div, "div", "div_")
_IDENTITY_METHODS = ("contiguous", "clone", "detach", "float", "to", "type_as")
_FLATTEN = (torch.flatten, "flatten", "view", "reshape", torch.reshape)
_MEAN = (torch.mean, "mean")
_DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d)


@dataclass
class Step:
    """One operation of the model that produces a tensor.

    ``inputs`` are indices of earlier steps whose outputs it reads (``None`` inside the tuple marks an input
    the trace could not link); ``shape`` is the per-example shape of its output (batch dimension dropped).
    """

    index: int
    name: str
    kind: str
    inputs: tuple[int | None, ...]
    module: nn.Module | None = None
    params: dict[str, Any] = field(default_factory=dict)
    what: str = ""
    shape: tuple[int, ...] = ()
    weight_depth: int = 0
    on_spine: bool = False
    attrs: tuple[str, ...] = ()  # parameters / buffers the operation reads directly (torch.fx get_attr)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class ModelGraph:
    """The steps of a model in execution order; step 0 is the input."""

    model: nn.Module
    steps: list[Step]
    output: int
    method: str  # "fx" or "hooks"
    notes: list[str] = field(default_factory=list)
    _gm: fx.GraphModule | None = None
    _node_step: dict[str, int] = field(default_factory=dict)

    def execute(self, x: torch.Tensor, visit: Callable[[int, torch.Tensor], None]) -> torch.Tensor:
        """Run the model on ``x``, calling ``visit(step_index, output)`` for every step in order."""
        if self.method == "fx":
            return _run_fx(self, x, visit)
        return _run_hooks(self, x, visit)


# ---------------------------------------------------------------------------------------------- classification


def classify_module(module: nn.Module) -> tuple[str, dict[str, Any], str]:
    """(kind, params, description) of a leaf module."""
    name = type(module).__name__
    if isinstance(module, nn.Linear):
        return "linear", {}, f"Linear({module.in_features}->{module.out_features})"
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "conv", {}, f"{name}({module.in_channels}->{module.out_channels}, k={tuple(module.kernel_size)})"
    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        if not module.training or module.p == 0:
            return "identity", {}, f"{name}(p={module.p:g}) in eval mode"
        keep = dropout_keep_rate(module.p, f"an nn.{name}")
        return "dropout", {"keep_rate": keep, "channelwise": isinstance(module, _CHANNEL_DROPOUT)}, \
            f"{name}(p={module.p:g}): keep rate {1 - module.p:g}"
    if isinstance(module, nn.Identity):
        return "identity", {}, "Identity"
    if isinstance(module, nn.Flatten):
        if module.start_dim == 1 and module.end_dim == -1:
            return "flatten", {}, "Flatten"
        return "reshape", {}, f"Flatten({module.start_dim}, {module.end_dim})"
    if isinstance(module, nn.LayerNorm):
        return "layernorm", {"dims": len(module.normalized_shape), "eps": float(module.eps)}, \
            f"LayerNorm{tuple(module.normalized_shape)}"
    if hasattr(nn, "RMSNorm") and isinstance(module, nn.RMSNorm):
        eps = module.eps if module.eps is not None else torch.finfo(torch.float32).eps
        return "rmsnorm", {"dims": len(module.normalized_shape), "eps": float(eps)}, \
            f"RMSNorm{tuple(module.normalized_shape)}"
    if isinstance(module, nn.GroupNorm):
        return "groupnorm", {"groups": int(module.num_groups), "eps": float(module.eps)}, \
            f"GroupNorm({module.num_groups}, {module.num_channels})"
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        return "avgpool", _avgpool_params(module.kernel_size, module.stride, module.padding, module.ceil_mode), \
            f"{name}(k={module.kernel_size})"
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return "adaptive_avgpool", {"output_size": module.output_size}, f"{name}({module.output_size})"
    if isinstance(module, _NORM_BATCH):
        return "batchnorm", {}, name
    if isinstance(module, _MAX_POOL):
        return "maxpool", {}, name
    if isinstance(module, _ATTENTION):
        return "attention", {}, name
    act = activation_from_module(module)
    if act is not None:
        return "activation", {"activation": act}, act.name
    return "unknown", {}, name


def _avgpool_params(kernel, stride, padding, ceil_mode) -> dict[str, Any]:
    return {"kernel": kernel, "stride": stride if stride not in (None, ()) else kernel, "padding": padding,
            "ceil_mode": bool(ceil_mode)}


def _is_tensor_node(arg: Any) -> bool:
    return isinstance(arg, fx.Node)


def _attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def classify_call(node: fx.Node, gm: fx.GraphModule, shapes: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(kind, params, description) of a call_function / call_method node."""
    target = node.target
    args, kwargs = node.args, node.kwargs
    tensor_args = [a for a in args if _is_tensor_node(a) and isinstance(shapes.get(a.name), torch.Size)]
    n_tensor = len(tensor_args)
    if target in _FUNCTION_ACTIVATIONS or (node.op == "call_method" and target in _METHOD_ACTIVATIONS):
        if node.op == "call_method":
            module = _METHOD_ACTIVATIONS[target]()
        else:
            extra = [a for a in args[1:] if not isinstance(a, bool)]
            kw = {k: v for k, v in kwargs.items() if k != "inplace"}
            module = _FUNCTION_ACTIVATIONS[target](*extra, **kw)
        act = activation_from_module(module)
        return "activation", {"activation": act}, act.name
    if target is _ERF or target == "erf":
        from deepprop.activations import get_activation

        return "activation", {"activation": get_activation("erf")}, "erf"
    if target in _DROPOUT_FUNCTIONS:
        p = float(kwargs.get("p", args[1] if len(args) > 1 else 0.5))
        training = bool(kwargs.get("training", args[2] if len(args) > 2 else True))
        if not training or p == 0:
            return "identity", {}, f"dropout(p={p:g}) in eval mode"
        keep = dropout_keep_rate(p, f"{getattr(target, '__name__', 'dropout')}()")
        return "dropout", {"keep_rate": keep, "channelwise": target is not F.dropout}, f"dropout(p={p:g})"
    if target in _ADD or target in _SUB:
        sign = -1.0 if target in _SUB else 1.0
        alpha = float(kwargs.get("alpha", 1.0))
        if n_tensor == 2:
            same = shapes[args[0].name] == shapes[args[1].name] if all(_is_tensor_node(a) for a in args[:2]) else False
            if same:
                return "add", {"coefficients": (1.0, sign * alpha)}, "x + y" if sign > 0 else "x - y"
            return "unknown", {}, "broadcast add"
        if n_tensor == 1:
            other = args[1] if args[0] is tensor_args[0] else args[0]
            if isinstance(other, (int, float)) and not isinstance(other, bool):
                const = sign * alpha * float(other) if args[0] is tensor_args[0] else float(other)
                if args[0] is not tensor_args[0] and sign < 0:  # c - x
                    return "unknown", {}, "c - x"
                return "add_const", {"const": const}, f"x + {const:g}"
        return "unknown", {}, str(target)
    if target in _MUL or target in _DIV:
        if n_tensor == 1 and len(args) == 2:
            other = args[1] if args[0] is tensor_args[0] else args[0]
            if target in _DIV and other is args[0]:
                return "unknown", {}, "c / x"
            if isinstance(other, (int, float)) and not isinstance(other, bool):
                factor = float(other) if target in _MUL else 1.0 / float(other)
                return "scale", {"factor": factor}, f"x * {factor:g}"
            if isinstance(other, fx.Node) and other.op == "get_attr":
                value = _attr(gm, other.target)
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    return "scale", {"attr": other.target, "divide": target in _DIV}, f"x * {other.target}"
        return "unknown", {}, "elementwise product"
    if target in (operator.neg, torch.neg, "neg"):
        return "scale", {"factor": -1.0}, "-x"
    if node.op == "call_method" and target in _IDENTITY_METHODS:
        return "identity", {}, str(target)
    if target in _FLATTEN and n_tensor == 1:
        before, after = shapes[tensor_args[0].name], shapes[node.name]
        if tuple(after) == tuple(before):
            return "identity", {}, str(getattr(target, "__name__", target))
        if len(after) == 2 and after[0] == before[0] and after[1] == math.prod(before[1:]):
            return "flatten", {}, "flatten"
        return "reshape", {}, str(getattr(target, "__name__", target))
    if target in _MEAN and n_tensor == 1:
        before, after = shapes[tensor_args[0].name], shapes[node.name]
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dims is not None and len(before) >= 3:
            dims = (dims,) if isinstance(dims, int) else tuple(dims)
            dims = tuple(sorted(d % len(before) for d in dims))
            if dims == tuple(range(2, len(before))):
                return "global_avgpool", {"keepdim": len(after) == len(before)}, "mean over space"
        return "unknown", {}, "mean"
    if target in (F.avg_pool1d, F.avg_pool2d):
        get = lambda i, k, d: kwargs.get(k, args[i] if len(args) > i else d)  # noqa: E731
        kernel = get(1, "kernel_size", None)
        return "avgpool", _avgpool_params(kernel, get(2, "stride", None), get(3, "padding", 0),
                                          get(4, "ceil_mode", False)), "avg_pool"
    if target in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d):
        return "adaptive_avgpool", {"output_size": kwargs.get("output_size", args[1] if len(args) > 1 else None)}, \
            "adaptive_avg_pool"
    if target in (F.max_pool1d, F.max_pool2d, F.adaptive_max_pool2d, torch.max_pool2d):
        return "maxpool", {}, "max_pool"
    if target in (F.batch_norm,):
        return "batchnorm", {}, "batch_norm"
    if target in (F.scaled_dot_product_attention, F.softmax, torch.softmax, "softmax"):
        return "attention", {}, str(getattr(target, "__name__", target))
    return "unknown", {}, str(getattr(target, "__name__", target))


# ---------------------------------------------------------------------------------------------- tracing


def _check_runs(model: nn.Module, x: torch.Tensor) -> Any:
    try:
        with torch.no_grad():
            return model(x)
    except Exception as exc:  # the user's model: one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ParameterError("example_input", f"the model does not run on it (shape {tuple(x.shape)}): "
                                              f"{type(exc).__name__}: {first}") from exc


def trace_model(model: nn.Module, example_input: torch.Tensor) -> ModelGraph:
    """The steps of ``model`` on ``example_input`` (a batch): torch.fx first, leaf-module hooks if that fails."""
    _check_runs(model, example_input)
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure falls back to hooks, and says why
        graph = _trace_hooks(model, example_input)
        graph.notes.insert(0, f"torch.fx could not trace the model ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); steps recorded from leaf-"
                              "module calls in execution order, so operations between module calls are not seen")
        return _finish(graph)
    try:
        return _finish(_build_fx(model, gm, example_input))
    except _FxRunError as exc:
        graph = _trace_hooks(model, example_input)
        graph.notes.insert(0, f"the traced graph does not run like the model ({exc}); steps recorded from leaf-"
                              "module calls in execution order")
        return _finish(graph)


class _FxRunError(Exception):
    pass


def _build_fx(model: nn.Module, gm: fx.GraphModule, x: torch.Tensor) -> ModelGraph:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        required = [n for n in placeholders if not n.args]
        if len(required) != 1:
            raise ParameterError("model", f"forward takes {len(placeholders)} inputs; profile feeds one example input")
    shapes: dict[str, Any] = {}
    env: dict[fx.Node, Any] = {}
    try:
        with torch.no_grad():
            for node in gm.graph.nodes:
                if node.op == "output":
                    out_node = node
                    break
                value = _eval_node(gm, node, env, x, placeholders[0])
                env[node] = value
                shapes[node.name] = value.shape if isinstance(value, torch.Tensor) else None
    except Exception as exc:  # noqa: BLE001
        raise _FxRunError(f"{type(exc).__name__}: {exc}") from exc
    steps: list[Step] = []
    node_step: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op in ("output", "get_attr") or shapes.get(node.name) is None:
            continue
        if node.op == "placeholder":
            if node is not placeholders[0]:
                continue
            kind, params, what, module, inputs = "input", {}, "input", None, ()
        else:
            inputs = tuple(node_step.get(a.name) for a in node.all_input_nodes
                           if a.op != "get_attr" and isinstance(shapes.get(a.name), torch.Size))
            module = None
            if node.op == "call_module":
                module = gm.get_submodule(node.target)
                kind, params, what = classify_module(module)
            else:
                kind, params, what = classify_call(node, gm, shapes)
            if kind in ("add",):
                tensor_args = [a for a in node.args[:2]]
                inputs = tuple(node_step.get(a.name) for a in tensor_args)
        name = str(node.target) if node.op == "call_module" else ("input" if node.op == "placeholder" else node.name)
        attrs = tuple(a.target for a in node.all_input_nodes if a.op == "get_attr")
        step = Step(len(steps), name, kind, inputs, module, params, what, tuple(shapes[node.name][1:]),
                    attrs=attrs)
        node_step[node.name] = step.index
        steps.append(step)
    out_arg = out_node.args[0]
    first = out_arg
    while isinstance(first, (tuple, list)) and first:
        first = first[0]
    if isinstance(first, dict):
        first = next(iter(first.values()))
    if not isinstance(first, fx.Node) or first.name not in node_step:
        raise ParameterError("model", "its output is not a tensor computed from the input")
    graph = ModelGraph(model, steps, node_step[first.name], "fx", [], gm, node_step)
    return graph


def _eval_node(gm: fx.GraphModule, node: fx.Node, env: dict, x: torch.Tensor, placeholder: fx.Node) -> Any:
    if node.op == "placeholder":
        if node is placeholder:
            return x
        return node.args[0] if node.args else None
    if node.op == "get_attr":
        return _attr(gm, node.target)
    args = fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
    if node.op == "call_module":
        return gm.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    raise _FxRunError(f"unexpected node {node.op}")


def _run_fx(graph: ModelGraph, x: torch.Tensor, visit: Callable[[int, torch.Tensor], None]) -> torch.Tensor:
    gm = graph._gm
    assert gm is not None
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    env: dict[fx.Node, Any] = {}
    out = None
    for node in gm.graph.nodes:
        if node.op == "output":
            break
        value = _eval_node(gm, node, env, x, placeholder)
        env[node] = value
        index = graph._node_step.get(node.name)
        if index is not None:
            visit(index, value)
            if index == graph.output:
                out = value
    return out


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules to hook: leaves, plus torch.nn containers that act as one operation (attention)."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, _ATTENTION) or (next(module.children(), None) is None and module is not model):
            if any(name.startswith(p + ".") for p, _ in out):
                continue
            out.append((name, module))
    return out


def _trace_hooks(model: nn.Module, x: torch.Tensor) -> ModelGraph:
    calls: list[tuple[str, nn.Module, tuple[int | None, ...], tuple[int, ...]]] = []
    producers: dict[int, int] = {id(x): 0}
    keep: list[torch.Tensor] = [x]  # keep outputs alive so that ids stay unique

    def hook(name: str):
        def fn(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                output = output[0] if isinstance(output, (tuple, list)) and output and \
                    isinstance(output[0], torch.Tensor) else None
                if output is None:
                    return
            links = tuple(producers.get(id(t)) for t in inputs if isinstance(t, torch.Tensor))
            calls.append((name, module, links, tuple(output.shape[1:])))
            producers[id(output)] = len(calls)
            keep.append(output)
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in _leaf_modules(model)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    steps = [Step(0, "input", "input", (), None, {}, "input", tuple(x.shape[1:]))]
    for name, module, links, shape in calls:
        kind, params, what = classify_module(module)
        steps.append(Step(len(steps), name, kind, links or (None,), module, params, what, shape))
    first = out[0] if isinstance(out, (tuple, list)) else out
    output = producers.get(id(first), len(steps) - 1) if isinstance(first, torch.Tensor) else len(steps) - 1
    notes = []
    if isinstance(first, torch.Tensor) and id(first) not in producers:
        notes.append("the model's output is computed after its last module call (not seen by hooks)")
    unlinked = [s.name for s in steps[1:] if None in s.inputs]
    if unlinked:
        notes.append(f"{len(unlinked)} module calls read tensors computed outside modules (first: {unlinked[0]}): "
                     "no theory from there on")
    return ModelGraph(model, steps, output, "hooks", notes)


def _run_hooks(graph: ModelGraph, x: torch.Tensor, visit: Callable[[int, torch.Tensor], None]) -> torch.Tensor:
    counter = iter(range(1, len(graph.steps)))
    visit(0, x)

    def hook(module, inputs, output):
        if not isinstance(output, torch.Tensor):
            if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
                output = output[0]
            else:
                return
        index = next(counter, None)
        if index is not None:
            visit(index, output)

    handles = [m.register_forward_hook(hook) for _, m in _leaf_modules(graph.model)]
    try:
        out = graph.model(x)
    finally:
        for h in handles:
            h.remove()
    return out[0] if isinstance(out, (tuple, list)) else out


# ---------------------------------------------------------------------------------------------- structure


def _finish(graph: ModelGraph) -> ModelGraph:
    """Weight depth (Linear/Conv layers on the longest path from the input) and the spine (steps that every
    path from the input to the output passes through: block outputs of a residual network)."""
    steps = graph.steps
    for s in steps:
        parents = [steps[i] for i in s.inputs if i is not None]
        s.weight_depth = max((p.weight_depth for p in parents), default=0) + (s.kind in WEIGHT_KINDS)
    n = len(steps)
    from_input = [0] * n
    from_input[0] = 1
    for s in steps[1:]:
        from_input[s.index] = sum(from_input[i] for i in s.inputs if i is not None)
    to_output = [0] * n
    to_output[graph.output] = 1
    for s in reversed(steps):
        for i in s.inputs:
            if i is not None:
                to_output[i] += to_output[s.index]
    total = from_input[graph.output]
    for s in steps:
        s.on_spine = total > 0 and from_input[s.index] * to_output[s.index] == total
    return graph


def reference_input(graph: ModelGraph, index: int) -> int | None:
    """The step whose output a step's gain chi is measured against: its only input, or, for a step with
    several inputs (a residual addition), the latest step that every path into it passes through (the block
    input)."""
    step = graph.steps[index]
    links = [i for i in step.inputs if i is not None]
    if not links or None in step.inputs:
        return None
    if len(set(links)) == 1:
        return links[0]
    ancestor_sets = [_ancestors(graph, i) | {i} for i in links]
    common = set.intersection(*ancestor_sets)
    # the latest common ancestor that dominates every path: walk back along paths counts
    for candidate in sorted(common, reverse=True):
        if _dominates(graph, candidate, index):
            return candidate
    return None


def _ancestors(graph: ModelGraph, index: int) -> set[int]:
    seen: set[int] = set()
    stack = [index]
    while stack:
        for i in graph.steps[stack.pop()].inputs:
            if i is not None and i not in seen:
                seen.add(i)
                stack.append(i)
    return seen


def _dominates(graph: ModelGraph, candidate: int, index: int) -> bool:
    """True when every path from the input to ``index`` passes through ``candidate``."""
    reach = [False] * (index + 1)
    reach[0] = candidate != 0
    if candidate == 0:
        return True
    for s in graph.steps[1: index + 1]:
        if s.index == candidate:
            reach[s.index] = False
            continue
        reach[s.index] = any(reach[i] for i in s.inputs if i is not None and i <= index)
    return not reach[index]
