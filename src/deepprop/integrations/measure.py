"""Measure a model's propagation statistics over several initialisations of the same architecture.

For each initialisation the model (a copy: the caller's model is never changed) runs once on a batch
holding both inputs of every pair, with a random tangent dx ~ N(0, I) carried along by forward-mode
automatic differentiation, so that one pass gives, at every step,

* q: the mean squared entry of the output (the profile's q^l),
* c: the correlation sum(y_a y_b) / sqrt(sum y_a^2 sum y_b^2) of the two inputs' outputs, averaged over pairs,
* the squared norm of the tangent dy = J dx, from which a step's gain chi is its ratio to the tangent's
  squared norm at the step's reference input (E||J v||^2 / E||v||^2 = the mean squared singular value of
  the step's Jacobian for a square Jacobian).

At the output a second pass on two examples gives J v; one backward pass then gives J^T J v, so that
tr(J^T J) ~ ||J v||^2 and tr((J^T J)^2) ~ ||J^T J v||^2 (Hutchinson) estimate the mean and the spread of
the end-to-end Jacobian's squared singular values.

Fresh initialisations: ``redraw="permute"`` (default) multiplies every Linear / Conv weight on both sides
by independent random signed permutations (and the bias by the output's), which keeps each layer's
weight distribution, including orthogonal and delta-orthogonal structure, and its empirical variance;
``redraw="reset"`` calls every module's ``reset_parameters()`` (PyTorch's default initialisation).
Initialisation 0 is the model as given.
"""

from __future__ import annotations

import copy
import hashlib
import math
import operator
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprop.integrations.graph import ModelGraph

REDRAWS = ("permute", "reset")
_WEIGHT_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class Measured:
    """Raw per-initialisation statistics: arrays of shape (inits, steps) and (inits,)."""

    q: np.ndarray
    c: np.ndarray
    tangent: np.ndarray  # mean over examples of ||dy||^2 at each step
    jv: np.ndarray  # mean over examples of ||J v||^2 at the output
    jtjv: np.ndarray  # mean over examples of ||J^T J v||^2
    v2: np.ndarray  # mean over examples of ||v||^2


def stream_seed(purpose: str, seed: int) -> int:
    """A seed for one purpose derived from the user's seed: different purposes (input pairs, redraws, dropout
    masks, a check's inputs) never share the first numbers of a stream, nor with a generator the user seeded
    with the same integer to draw the weights (torch's generators are plain Philox/MT streams per seed)."""
    digest = hashlib.sha256(f"deepprop.integrations:{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 62) - 1)


def _signed_permutation(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    sign = torch.randint(0, 2, (n,), generator=gen).to(torch.float32) * 2 - 1
    return perm, sign


@torch.no_grad()
def permute_weights_(model: nn.Module, gen: torch.Generator) -> None:
    """W -> (P D) W (P' D') for every Linear / Conv (random signed permutations P D, P' D'), b -> P D b."""
    for m in model.modules():
        if not isinstance(m, _WEIGHT_MODULES):
            continue
        w = m.weight
        out, inp = w.shape[0], w.shape[1]
        groups = getattr(m, "groups", 1)
        block = out // groups
        perm_out = torch.cat([g * block + torch.randperm(block, generator=gen) for g in range(groups)])
        sign_out = torch.randint(0, 2, (out,), generator=gen) * 2 - 1
        perm_in, sign_in = _signed_permutation(inp, gen)
        signs = (sign_out[:, None].to(torch.float32) * sign_in[None, :]).to(dtype=w.dtype, device=w.device)
        new = w.index_select(0, perm_out.to(w.device)).index_select(1, perm_in.to(w.device))
        new.mul_(signs.view(signs.shape + (1,) * (w.dim() - 2)))
        w.copy_(new)
        if m.bias is not None:
            m.bias.copy_(m.bias.index_select(0, perm_out.to(w.device)) * sign_out.to(dtype=w.dtype, device=w.device))


def reset_parameters_(model: nn.Module, seed: int) -> None:
    """PyTorch's default initialisation of every module that has one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed("reset", seed))
        for m in model.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def gaussian_pairs(shape: tuple[int, ...], pairs: int, c0: float, q0: float, gen: torch.Generator,
                   dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of Gaussian inputs with per-entry variance q0 and correlation c0: x_b = c0 x_a + sqrt(1-c0^2) xi."""
    xa = torch.randn((pairs,) + shape, generator=gen, dtype=torch.float64)
    xi = torch.randn((pairs,) + shape, generator=gen, dtype=torch.float64)
    xb = c0 * xa + math.sqrt(max(1.0 - c0 * c0, 0.0)) * xi
    s = math.sqrt(q0)
    return (s * xa).to(dtype=dtype, device=device), (s * xb).to(dtype=dtype, device=device)


def measure(graph: ModelGraph, inputs, *, inits: int, seed: int, redraw: str, jacobian: bool,
            progress=None) -> Measured:
    """Run ``inits`` initialisations; ``inputs(k, gen)`` returns the pair batches (xa, xb) for init k."""
    n = len(graph.steps)
    out = Measured(*(np.full((inits, n), np.nan) for _ in range(3)), *(np.full(inits, np.nan) for _ in range(3)))
    work = copy.deepcopy(graph.model)
    for p in work.parameters():
        p.requires_grad_(False)  # the Jacobian probe needs input gradients only
    probe = 1
    for m in work.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            probe = 2  # batch statistics need two examples
            # In training mode the output uses batch statistics only: stop updating the running ones (a
            # mutation that forward-mode differentiation of the step refuses)
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    layout = _fast_layout(work)
    run_graph = ModelGraph(work, graph.steps, graph.output, graph.method, graph.notes,
                           _rebind(graph._gm, work), graph._node_step)
    gen = torch.Generator().manual_seed(stream_seed("profile", seed))
    for k in range(inits):
        if k > 0:  # a signed permutation of a signed permutation is a fresh one: no need to restore
            if redraw == "permute":
                permute_weights_(work, gen)
            else:
                reset_parameters_(work, seed * 1000 + k)
        xa, xb = (layout(t) for t in inputs(k, gen))
        devices = [xa.device] if xa.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(stream_seed(f"masks-{k}", seed))
            _statistics(run_graph, xa, xb, gen, out, k, full_tangent=probe > 1 or run_graph.method != "fx")
        if jacobian:
            with torch.random.fork_rng(devices=devices):
                _jacobian_probe(run_graph, torch.cat([xa, xb])[:probe], gen, stream_seed(f"probe-{k}", seed),
                                out, k)
        if progress is not None:
            progress(k + 1, inits)
    return out


def _fast_layout(model: nn.Module):
    """Channels-last memory for 2-D convolutions (several times faster on CPU); identity otherwise."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return lambda t: t
    model.to(memory_format=torch.channels_last)
    return lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _rebind(gm, model: nn.Module):
    """The traced GraphModule re-pointed at the copy's modules (fx copies the module tree by reference)."""
    if gm is None:
        return None
    import torch.fx as fx

    return fx.GraphModule(model, gm.graph)


def _sum_squares(x: torch.Tensor) -> torch.Tensor:
    """Per-example sum of squares (in the tensor's own memory layout, no temporary)."""
    if x.dim() == 1:
        return (x * x).to(torch.float64)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim()))).to(torch.float64) ** 2


def _per_example_sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=tuple(range(1, x.dim()))).to(torch.float64) if x.dim() > 1 else x.to(torch.float64)


def _statistics(graph: ModelGraph, xa: torch.Tensor, xb: torch.Tensor, gen: torch.Generator, out: Measured,
                k: int, full_tangent: bool) -> None:
    """q and c from both inputs of every pair; the tangent rides on the first input of each pair only (half the
    cost), or on every example where the model couples the examples of a batch (BatchNorm in training)."""
    pairs = xa.shape[0]
    x = torch.cat([xa, xb])
    rows = x.shape[0] if full_tangent else pairs
    v = torch.randn((rows,) + tuple(x.shape[1:]), generator=gen, dtype=torch.float64).to(dtype=x.dtype,
                                                                                         device=x.device)
    v = v.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and x.is_contiguous(
        memory_format=torch.channels_last) else v

    def visit(index: int, y: torch.Tensor, t: torch.Tensor | None) -> None:
        if y.dim() == 0 or y.shape[0] != 2 * pairs:
            return
        ya, yb = y[:pairs], y[pairs:]
        sa, sb = _sum_squares(ya), _sum_squares(yb)
        numel = ya[0].numel()
        out.q[k, index] = float((sa.sum() + sb.sum()) / (2 * pairs * numel))
        den = torch.sqrt(sa * sb)
        dot = _per_example_sum(ya * yb)
        c = torch.where(den > 0, dot / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, math.nan))
        out.c[k, index] = float(c.mean())
        out.tangent[k, index] = 0.0 if t is None else float(_sum_squares(t).sum() / t.shape[0])

    run_with_tangent(graph, x, v, visit)


def _jacobian_probe(graph: ModelGraph, x: torch.Tensor, gen: torch.Generator, seed: int, out: Measured,
                    k: int) -> None:
    """||J v||^2 and ||J^T J v||^2 at the output for random v (the same dropout masks in both passes)."""
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype=x.dtype, device=x.device)
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        _, jv = run_with_tangent(graph, x, v, None)
    out.v2[k] = float(_sum_squares(v).sum() / v.shape[0])
    if jv is None:
        out.jv[k], out.jtjv[k] = 0.0, 0.0
        return
    out.jv[k] = float(_sum_squares(jv).sum() / jv.shape[0])
    torch.manual_seed(seed + 1)
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y, _ = run_with_tangent(graph, xg, None, None)
        if y.requires_grad:
            (g,) = torch.autograd.grad(y, xg, grad_outputs=jv, allow_unused=True)
            out.jtjv[k] = float(_sum_squares(g).sum() / g.shape[0]) if g is not None else 0.0


# ---------------------------------------------------------------------------------------------- tangents


def run_with_tangent(graph: ModelGraph, x: torch.Tensor, v: torch.Tensor | None, visit):
    """Run the model on ``x`` carrying the tangent J v of every step; ``visit(i, y, t)`` per step.

    Linear and convolution layers, elementwise activations (phi'(z) dz), dropout (the same mask),
    additions, scalings, pooling and reshapes are linearised in closed form (the tangent costs one more
    pass of the linear layers); every other operation (normalisation, attention, unknown modules) by
    ``torch.func.jvp`` of that operation alone. Models traced by hooks use forward-mode AD throughout.
    Returns (output, its tangent).
    """
    if graph.method != "fx":
        return _run_forward_ad(graph, x, v, visit)
    import torch.fx as fx

    from deepprop.integrations.graph import _attr

    gm = graph._gm
    env: dict = {}
    tan: dict = {}
    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    result = (None, None)
    for node in gm.graph.nodes:
        if node.op == "output":
            break
        if node.op == "placeholder":
            y, t = (x, v) if node is placeholder else (node.args[0] if node.args else None, None)
        elif node.op == "get_attr":
            y, t = _attr(gm, node.target), None
        else:
            index = graph._node_step.get(node.name)
            step = graph.steps[index] if index is not None else None
            y, t = _tangent_step(gm, node, step, env, tan, fx)
        env[node], tan[node] = y, t
        index = graph._node_step.get(node.name)
        if index is not None:
            if visit is not None:
                visit(index, y, t)
            if index == graph.output:
                result = (y, t)
    return result


def _call(gm, node, args, kwargs):
    if node.op == "call_module":
        return gm.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    return getattr(args[0], node.target)(*args[1:], **kwargs)


_TUPLE_MODULES = (nn.MultiheadAttention, nn.LSTM, nn.GRU, nn.RNN)
_LINEAR_IN_INPUT = ("identity", "flatten", "scale", "avgpool", "adaptive_avgpool", "global_avgpool", "reshape")


def _tangent_step(gm, node, step, env, tan, fx):
    args = fx.node.map_arg(node.args, lambda n: env[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
    tensor_nodes = [n for n in node.all_input_nodes if n.op != "get_attr" and tan.get(n) is not None]
    if not tensor_nodes:
        return _call(gm, node, args, kwargs), None
    if node.target is operator.getitem and isinstance(env[node.args[0]], (tuple, list)):
        return _call(gm, node, args, kwargs), tan[node.args[0]] if node.args[1] == 0 else None
    if step is None:  # an operation whose output is not one tensor (attention returns a tuple)
        return _jvp_step(gm, node, args, kwargs, tensor_nodes, env, tan, fx)
    kind = step.kind
    first = tensor_nodes[0]
    if kind == "activation":
        t = tan[first]
        xp = env[first][: t.shape[0]]  # the tangent may ride on the first rows of the batch only
        act = step.params["activation"]
        if act.name == "relu":  # phi' is the indicator of z > 0: one select instead of phi' and a product
            dt = torch.where(xp > 0, t, torch.zeros((), dtype=t.dtype, device=t.device))
        else:
            dt = act.derivative(xp) * t
        return _call(gm, node, args, kwargs), dt
    if kind == "dropout":
        xp = env[first]
        rho = step.params["keep_rate"]
        shape = xp.shape[:2] + (1,) * (xp.dim() - 2) if step.params["channelwise"] else xp.shape
        mask = torch.empty(shape, dtype=xp.dtype, device=xp.device).bernoulli_(rho) / rho
        t = tan[first]
        return xp * mask, None if t is None else mask[: t.shape[0]] * t
    if kind in ("linear", "conv"):
        m = gm.get_submodule(node.target)
        y = m(*args, **kwargs)
        t = tan[first]
        if t is None:
            return y, None
        t = torch.nn.functional.linear(t, m.weight) if kind == "linear" else m._conv_forward(t, m.weight, None)
        return y, t
    if kind == "add":
        alpha, beta = step.params["coefficients"]
        u, w = (tan.get(a) if isinstance(a, fx.Node) else None for a in node.args[:2])
        parts = [p for p in ((alpha, u), (beta, w)) if p[1] is not None]
        t = parts[0][0] * parts[0][1] if parts else None
        for coef, p in parts[1:]:
            t = t + coef * p
        return _call(gm, node, args, kwargs), t
    if kind == "add_const":
        return _call(gm, node, args, kwargs), tan[first]
    if kind in _LINEAR_IN_INPUT and len(tensor_nodes) == 1:
        y = _call(gm, node, args, kwargs)
        t = tan[first]
        if kind in ("flatten", "reshape"):  # may name the batch size: reshape the tangent to the output's shape
            return y, t.reshape((t.shape[0],) + tuple(y.shape[1:]))
        targs = fx.node.map_arg(node.args, lambda n: t if n is first else env[n])
        return y, _call(gm, node, targs, kwargs)
    return _jvp_step(gm, node, args, kwargs, tensor_nodes, env, tan, fx)


def _jvp_step(gm, node, args, kwargs, tensor_nodes, env, tan, fx):
    """The tangent of any other operation by forward-mode AD of that operation alone."""
    from torch.func import jvp

    order = list(dict.fromkeys(tensor_nodes))

    def fn(*tensors):
        sub = dict(zip(order, tensors, strict=True))
        a = fx.node.map_arg(node.args, lambda n: sub.get(n, env[n]))
        kw = fx.node.map_arg(node.kwargs, lambda n: sub.get(n, env[n]))
        out = _call(gm, node, a, kw)
        return out[0] if isinstance(out, (tuple, list)) else out

    tangents = tuple(tan[n] for n in order)
    rows = tangents[0].shape[0]
    primals = tuple(env[n][:rows] if env[n].dim() and env[n].shape[0] > rows else env[n] for n in order)
    y, t = jvp(fn, primals, tangents)
    sliced = any(p is not env[n] for p, n in zip(primals, order, strict=True))
    if sliced or (node.op == "call_module" and isinstance(gm.get_submodule(node.target), _TUPLE_MODULES)):
        # the whole batch (the tangent rode on its first rows), or the whole tuple for the getitem steps after it
        return _call(gm, node, args, kwargs), t
    return y, t


def _run_forward_ad(graph: ModelGraph, x: torch.Tensor, v: torch.Tensor | None, visit):
    import torch.autograd.forward_ad as fwAD

    if v is None:
        y = graph.execute(x, (lambda i, o: visit(i, o, None)) if visit is not None else (lambda i, o: None))
        return y, None
    with fwAD.dual_level():
        def inner(index: int, y: torch.Tensor) -> None:
            if visit is not None:
                primal, tangent = fwAD.unpack_dual(y)
                visit(index, primal.detach(), None if tangent is None else tangent.detach())

        y = graph.execute(fwAD.make_dual(x, v), inner)
        primal, t = fwAD.unpack_dual(y)
        return primal, None if t is None else t.detach().clone()


def mean_and_error(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over initialisations (axis 0) and its standard error (NaN with fewer than two)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        count = np.sum(np.isfinite(values), axis=0)
        std = np.nanstd(values, axis=0, ddof=1) if values.shape[0] > 1 else np.full(mean.shape, np.nan)
        err = np.where(count > 1, std / np.sqrt(np.maximum(count, 1)), np.nan)
    return mean, err
