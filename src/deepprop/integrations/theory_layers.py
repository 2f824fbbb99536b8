"""The mean-field prediction for every step of a traced model, with its source.

:class:`Propagator` walks a :class:`~deepprop.integrations.graph.ModelGraph` from its input and gives each
step the :class:`~deepprop.integrations.moments.Moments` of its output, or ``None`` with the reason where
there is no theory (BatchNorm, max-pooling, attention, unknown operations, and everything that reads
their outputs): measured only, never a guess. The rules, with their sources:

* Linear: q' = sw2 q + sb2 (eq. 3), q_ab' = sw2 q_ab + sb2, with sw2 = fan_in mean(W^2) and sb2 =
  mean(b^2) read from the module's current weights; the tangent gains sw2.
* Conv: per position, q'(p) = sum_t e_t q(p + t) + sb2 with the kernel's tap energies e_t = fan_in
  mean_{o,i}(W[o, i, t]^2) (zero padding included): the diagonal of the spatial covariance propagates
  by spatial averaging and the activation then acts on spatially averaged inputs (Gaussian weights; Xiao
  et al. 2018). For a delta-orthogonal kernel all energy sits on the centre tap and this is exactly the
  orthogonal fully connected case (Xiao et al. 2018).
* Elementwise activations: the engine's V, K and E[phi'^2] on zero-mean Gaussian inputs (eq. 3-5);
  inputs that are not (raw data, a residual stream carrying ReLU outputs) as a Gaussian with the same
  mean and variance (approximate).
* Dropout with keep rate rho = 1 - p: q' = q / rho, q_ab' = q_ab (independent masks; eq. 11-12), the
  tangent gains 1 / rho (the same mask).
* Residual additions: q and q_ab add across the skip, plus cross terms that vanish when a branch passes
  through a zero-mean random weight layer (Yang & Schoenholz 2017); the means' products where it does not.
* Scalar scaling, LayerNorm / RMSNorm / GroupNorm (centring and scaling by the group's mean and
  variance, which are their mean-field values at large width: q set by the affine gain, the centred
  correlation kept), average pooling (the spatial covariance at each displacement propagates with the
  maps above; translation invariance assumed, exact without boundary effects), flatten.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepprop.integrations.graph import MEASURED_ONLY_KINDS, ModelGraph, Step, _attr
from deepprop.integrations.moments import (
    APPROXIMATE,
    EXACT,
    Moments,
    broadcast,
    gaussian_activation,
    gaussian_pair_slope,
    gaussian_pair_value,
    shifted_activation,
    shifted_moments,
    shifted_pair,
    worst,
)

SOURCES = {
    "linear": "Linear: q' = sw2 q + sb2 (eq. 3), sw2 = fan_in mean(W^2) = {sw2:.4g}, sb2 = mean(b^2) = {sb2:.3g}",
    "conv_delta": "delta-orthogonal conv: reduces exactly to the orthogonal fully connected case (Xiao et al. "
                  "2018), sw2 = {sw2:.4g}, sb2 = {sb2:.3g}",
    "conv": "conv, iid weights: q per position = tap energies x spatially averaged q (Xiao et al. 2018), c-map of "
            "spatially averaged inputs; sw2 = {sw2:.4g}, sb2 = {sb2:.3g}",
    "activation": "{name}: engine maps V(q), K(q, c), E[phi'^2] on a zero-mean Gaussian input (eq. 3-5)",
    "activation_shifted": "{name}: input is not a zero-mean Gaussian; treated as a Gaussian with its mean and "
                          "variance",
    "dropout": "dropout keep rate rho = 1 - p = {rho:g}: q / rho, q_ab kept (eq. 11-12)",
    "add": "residual addition: q and q_ab add across the skip (Yang & Schoenholz 2017); cross terms: {cross}",
    "scale": "scalar scaling by {factor:.4g}: q x {sq:.4g}",
    "add_const": "shift by {const:g}",
    "layernorm": "LayerNorm: centred and scaled by its mean-field mean and variance; q set by the gain, centred "
                 "correlation kept",
    "rmsnorm": "RMSNorm: scaled by its mean-field second moment; q set by the gain, correlation kept",
    "groupnorm": "GroupNorm: centred and scaled by its mean-field group statistics; q set by the gain",
    "pool": "average pooling: spatial covariance at each displacement (translation invariant{border})",
    "flatten": "flatten: features keep their second moments",
    "identity": "identity",
}
NO_THEORY = {
    "batchnorm": "BatchNorm: batch statistics couple the examples; no mean-field theory here: measured only",
    "maxpool": "max-pooling: no mean-field theory here: measured only",
    "attention": "attention: no mean-field theory here: measured only",
    "reshape": "a reshape that mixes positions and features: measured only",
}


MEAN_MODE_SHARE = 0.01  # share of an addition's q carried by the means' cross term above which chi is approximate


@dataclass(frozen=True)
class Displacement:
    """Translation-invariant spatial second moments E[y_p y_{p+d}] per displacement d (channel average),
    centred arrays of shape (1, 2 S_1 - 1, ...) for inputs a, b, the pair and the tangent."""

    aa: torch.Tensor
    bb: torch.Tensor
    ab: torch.Tensor
    t: torch.Tensor

    def center(self, x: torch.Tensor) -> torch.Tensor:
        return x[(0,) + tuple(s // 2 for s in x.shape[1:])]

    def map(self, fn) -> Displacement:
        return Displacement(fn(self.aa, "aa"), fn(self.bb, "bb"), fn(self.ab, "ab"), fn(self.t, "t"))


def weight_energy(module: torch.nn.Module) -> tuple[torch.Tensor, float, float]:
    """(tap energies e_t summed over input channels and averaged over outputs, sw2 = sum_t e_t, sb2)."""
    w = module.weight.detach().to("cpu", torch.float64)
    w2 = w * w
    taps = w2.sum(1).mean(0) if w.dim() > 2 else w2.sum(1).mean(0, keepdim=True)
    sb2 = 0.0 if module.bias is None else float(module.bias.detach().to("cpu", torch.float64).square().mean())
    return taps, float(taps.sum()), sb2


def is_delta_orthogonal(module: torch.nn.Module, tol: float = 1e-6) -> bool:
    """True when a conv kernel has all its energy on the centre tap and that tap is a scaled orthogonal map."""
    w = module.weight.detach().to("cpu", torch.float64)
    if w.dim() < 3 or any(k % 2 == 0 for k in w.shape[2:]) or module.groups != 1:
        return False
    center = w[(slice(None), slice(None)) + tuple(k // 2 for k in w.shape[2:])]
    total = float((w * w).sum())
    if total == 0 or float((center * center).sum()) < (1 - tol) * total:
        return False
    out, inp = center.shape
    gram = center @ center.T if out <= inp else center.T @ center
    scale = float(torch.diagonal(gram).mean())
    return bool(torch.allclose(gram, scale * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-4 * scale))


class Propagator:
    """Mean-field moments of every step of ``graph`` from the input's ``start`` moments.

    ``states[i]`` is the :class:`Moments` of step i's output or None; ``reasons[i]`` says why None.
    ``start_displacement`` is the input's :class:`Displacement` (needed only by average pooling).
    """

    def __init__(self, graph: ModelGraph, start: Moments, start_displacement: Displacement | None):
        self.graph = graph
        n = len(graph.steps)
        self.states: list[Moments | None] = [start] + [None] * (n - 1)
        self.reasons: list[str] = [""] * n
        self._disp: dict[int, Displacement | None] = {0: start_displacement}
        self._cross: dict[tuple[int, int], list | None] = {}
        for step in graph.steps[1:]:
            self.states[step.index], self.reasons[step.index] = self._step(step)

    # ------------------------------------------------------------------ forward rules

    def _step(self, step: Step) -> tuple[Moments | None, str]:
        if not step.inputs or None in step.inputs:
            return None, "its input was computed outside the traced operations"
        ins = [self.states[i] for i in step.inputs]
        if step.kind in MEASURED_ONLY_KINDS:
            return None, NO_THEORY.get(step.kind, f"no mean-field theory for {step.what}: measured only")
        if any(s is None for s in ins):
            return None, "an input has no theory (measured only upstream)"
        rule = getattr(self, f"_rule_{step.kind}", None)
        if rule is None:
            return None, f"no mean-field theory for {step.kind}: measured only"
        try:
            return rule(step, *ins)
        except _NoTheory as exc:
            return None, str(exc)

    def _rule_identity(self, step: Step, s: Moments):
        return s.but(source=SOURCES["identity"]), ""

    def _rule_linear(self, step: Step, s: Moments):
        _, sw2, sb2 = weight_energy(step.module)
        feat = lambda x: x.mean(-1, keepdim=True)  # noqa: E731 - the layer mixes the last dimension
        zero = torch.zeros((), dtype=torch.float64)
        label, source = _fan_in_label(s.label, SOURCES["linear"].format(sw2=sw2, sb2=sb2), step.module.in_features)
        out = Moments(sw2 * feat(s.qa) + sb2, sw2 * feat(s.qb) + sb2, sw2 * feat(s.qab) + sb2, zero, zero,
                      sw2 * feat(s.t), True, label, source)
        return out, ""

    def _rule_conv(self, step: Step, s: Moments):
        m = step.module
        taps, sw2, sb2 = weight_energy(m)
        dims = len(step.shape) - 1
        in_shape = self.graph.steps[step.inputs[0]].shape

        def apply(x: torch.Tensor, bias: float) -> torch.Tensor:
            x = torch.broadcast_to(x, tuple(in_shape)).mean(0, keepdim=True)[None]  # (1, 1, *S)
            pad = m.padding
            if isinstance(pad, str):
                pad_arg = pad
            else:
                pad_arg = tuple(pad)
            if m.padding_mode != "zeros" and not isinstance(pad, str):
                amounts = [p for p in reversed(pad) for _ in range(2)]
                x = F.pad(x, amounts, mode=m.padding_mode)
                pad_arg = 0
            conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
            y = conv(x, taps[None, None], stride=m.stride, padding=pad_arg, dilation=m.dilation)
            return y[0] + bias

        zero = torch.zeros((), dtype=torch.float64)
        key = "conv_delta" if is_delta_orthogonal(m) else "conv"
        fan_in = (m.in_channels // m.groups) * int((taps > 1e-12 * float(taps.max())).sum())
        label, source = _fan_in_label(s.label, SOURCES[key].format(sw2=sw2, sb2=sb2), fan_in)
        out = Moments(apply(s.qa, sb2), apply(s.qb, sb2), apply(s.qab, sb2), zero, zero, apply(s.t, 0.0), True,
                      label, source)
        return out, ""

    def _rule_activation(self, step: Step, s: Moments):
        act = step.params["activation"]
        if s.gaussian:
            qa, qb, qab, ma, mb, t = gaussian_activation(act, s.qa, s.qb, s.qab, s.t)
            unequal = bool((s.qa - s.qb).abs().max() > 1e-9 * float(s.qa.abs().max() + 1e-300))
            label = s.label if (act.homogeneous or not unequal) else worst(s.label, APPROXIMATE)
            source = SOURCES["activation"].format(name=act.name)
        else:
            qa, qb, qab, ma, mb, t = shifted_activation(act, s)
            label = worst(s.label, APPROXIMATE)
            source = SOURCES["activation_shifted"].format(name=act.name)
        return Moments(qa, qb, qab, ma, mb, t, False, label, source), ""

    def _rule_dropout(self, step: Step, s: Moments):
        rho = step.params["keep_rate"]
        return Moments(s.qa / rho, s.qb / rho, s.qab, s.ma, s.mb, s.t / rho, False, s.label,
                       SOURCES["dropout"].format(rho=rho)), ""

    def _scale_factor(self, step: Step) -> float:
        if "factor" in step.params:
            return float(step.params["factor"])
        value = float(_attr(self.graph.model, step.params["attr"]).detach())
        return 1.0 / value if step.params.get("divide") else value

    def _rule_scale(self, step: Step, s: Moments):
        f = self._scale_factor(step)
        return Moments(s.qa * f * f, s.qb * f * f, s.qab * f * f, s.ma * f, s.mb * f, s.t * f * f, s.gaussian,
                       s.label, SOURCES["scale"].format(factor=f, sq=f * f)), ""

    def _rule_add_const(self, step: Step, s: Moments):
        c = float(step.params["const"])
        return Moments(s.qa + 2 * c * s.ma + c * c, s.qb + 2 * c * s.mb + c * c, s.qab + c * (s.ma + s.mb) + c * c,
                       s.ma + c, s.mb + c, s.t, s.gaussian and c == 0, s.label,
                       SOURCES["add_const"].format(const=c)), ""

    def _rule_add(self, step: Step, u: Moments, v: Moments):
        alpha, beta = step.params["coefficients"]
        iu, iv = step.inputs
        x = self.cross_fields(iu, iv)
        if x is None:
            raise _NoTheory("residual addition whose branches are correlated in a way not modelled: measured only")
        ab2 = alpha * beta
        qa = alpha * alpha * u.qa + beta * beta * v.qa + 2 * ab2 * x["aa"]
        label = worst(u.label, v.label)
        source = SOURCES["add"].format(cross=x["describe"])
        if float((2 * abs(ab2) * x["mean_aa"]).mean()) > MEAN_MODE_SHARE * float(qa.mean()):
            # Both sides carry a mean: the tangents' common-direction (mean) component, seeded at finite width,
            # is amplified at every such block; the mean-field tangent cross term (zero) misses it.
            label = worst(label, APPROXIMATE)
            source += ("; chi approximate: the tangent's mean mode, amplified by blocks whose branches carry a mean, "
                       "is not modelled")
        out = Moments(
            qa,
            alpha * alpha * u.qb + beta * beta * v.qb + 2 * ab2 * x["bb"],
            alpha * alpha * u.qab + beta * beta * v.qab + ab2 * (x["ab"] + x["ba"]),
            alpha * u.ma + beta * v.ma, alpha * u.mb + beta * v.mb,
            alpha * alpha * u.t + beta * beta * v.t + 2 * ab2 * x["t"],
            u.gaussian and v.gaussian, label, source)
        return out, ""

    def _norm(self, step: Step, s: Moments, dims: tuple[int, ...], centre: bool, key: str):
        m = step.module
        eps = float(step.params["eps"])
        g = m.weight.detach().to("cpu", torch.float64) if getattr(m, "weight", None) is not None else None
        b = m.bias.detach().to("cpu", torch.float64) if getattr(m, "bias", None) is not None else None
        g2 = float(g.square().mean()) if g is not None else 1.0
        gm = float(g.mean()) if g is not None else 1.0
        b2 = float(b.square().mean()) if b is not None else 0.0
        bm = float(b.mean()) if b is not None else 0.0
        gb = float((g * b).mean()) if (g is not None and b is not None) else (bm if b is not None else 0.0)
        shape = tuple(self.graph.steps[step.inputs[0]].shape)
        qa, qb, qab, ma, mb, t = (torch.broadcast_to(x, shape) for x in (s.qa, s.qb, s.qab, s.ma, s.mb, s.t))
        full = tuple(range(qa.dim()))
        dims = tuple(d for d in dims if d in full)
        mean = lambda x: x.mean(dim=dims, keepdim=True)  # noqa: E731
        mu_a = mean(ma) if centre else torch.zeros_like(mean(ma))
        mu_b = mean(mb) if centre else torch.zeros_like(mean(mb))
        sa = torch.sqrt(mean(qa) - mu_a * mu_a + eps)
        sb = torch.sqrt(mean(qb) - mu_b * mu_b + eps)
        xa2 = (qa - 2 * ma * mu_a + mu_a * mu_a) / (sa * sa)
        xb2 = (qb - 2 * mb * mu_b + mu_b * mu_b) / (sb * sb)
        xab = (qab - ma * mu_b - mu_a * mb + mu_a * mu_b) / (sa * sb)
        ea, eb = (ma - mu_a) / sa, (mb - mu_b) / sb
        out = Moments(g2 * xa2 + 2 * gb * ea + b2, g2 * xb2 + 2 * gb * eb + b2, g2 * xab + gb * (ea + eb) + b2,
                      gm * ea + bm, gm * eb + bm, g2 * t / (sa * sa), s.gaussian and b2 == 0.0, s.label,
                      SOURCES[key])
        return out, ""

    def _rule_layernorm(self, step: Step, s: Moments):
        rank = len(step.shape)
        return self._norm(step, s, tuple(range(rank - step.params["dims"], rank)), True, "layernorm")

    def _rule_rmsnorm(self, step: Step, s: Moments):
        rank = len(step.shape)
        return self._norm(step, s, tuple(range(rank - step.params["dims"], rank)), False, "rmsnorm")

    def _rule_groupnorm(self, step: Step, s: Moments):
        # channel-averaged maps: every group has the same mean-field statistics, those of the whole example
        return self._norm(step, s, tuple(range(len(step.shape))), True, "groupnorm")

    def _rule_flatten(self, step: Step, s: Moments):
        flat = lambda x: x.reshape(-1).mean().reshape(1)  # noqa: E731 - features keep their second moments
        return Moments(flat(s.qa), flat(s.qb), flat(s.qab), flat(s.ma), flat(s.mb), flat(s.t), s.gaussian, s.label,
                       SOURCES["flatten"]), ""

    def _pool_geometry(self, step: Step) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
        """(kernel, stride, global) of an average pooling step, or _NoTheory."""
        in_shape = self.graph.steps[step.inputs[0]].shape
        spatial = tuple(in_shape[1:])
        if not spatial or len(spatial) > 2:
            raise _NoTheory("average pooling over more than two spatial dimensions: measured only")
        n = len(spatial)
        tup = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n  # noqa: E731
        if step.kind == "global_avgpool":
            return spatial, spatial, True
        if step.kind == "adaptive_avgpool":
            size = step.params["output_size"]
            size = tuple(sp if o is None else o for o, sp in zip(tup(size), spatial, strict=True))
            if any(sp % o for sp, o in zip(spatial, size, strict=True)):
                raise _NoTheory("adaptive pooling with windows of unequal size: measured only")
            kernel = tuple(sp // o for sp, o in zip(spatial, size, strict=True))
            return kernel, kernel, kernel == spatial
        p = step.params
        if any(tup(p["padding"])) or p["ceil_mode"]:
            raise _NoTheory("average pooling with padding or ceil_mode: measured only")
        kernel, stride = tup(p["kernel"]), tup(p["stride"])
        return kernel, stride, kernel == spatial

    def _rule_avgpool(self, step: Step, s: Moments):
        kernel, stride, is_global = self._pool_geometry(step)
        disp = self.displacement(step.inputs[0])
        if disp is None:
            raise _NoTheory("average pooling needs the spatial covariance of its input, which is not modelled "
                            "here: measured only")
        in_shape = self.graph.steps[step.inputs[0]].shape
        full = lambda x: torch.broadcast_to(x, tuple(in_shape)).mean(0)  # noqa: E731 - (S...)
        qa, qb, qab, ma, mb, t = (full(x) for x in broadcast(s.qa, s.qb, s.qab, s.ma, s.mb, s.t))
        ca, cb, ct = disp.center(disp.aa), disp.center(disp.bb), disp.center(disp.t)
        rho_aa = disp.aa[0] / ca
        rho_bb = disp.bb[0] / cb
        rho_ab = disp.ab[0] / torch.sqrt(ca * cb)
        rho_t = disp.t[0] / ct
        pool = lambda x1, x2, rho: _pool_pair(torch.sqrt(x1), torch.sqrt(x2), rho, kernel, stride)  # noqa: E731
        out_qa, out_qb = pool(qa, qa, rho_aa), pool(qb, qb, rho_bb)
        out_qab, out_t = pool(qa, qb, rho_ab), pool(t, t, rho_t)
        avg = lambda x: _window_mean(x, kernel, stride)  # noqa: E731
        uniform = all(float(x.max() - x.min()) <= 1e-9 * float(x.abs().max() + 1e-300) for x in (qa, qb, qab, t))
        label = s.label if uniform else worst(s.label, APPROXIMATE)
        shape = step.shape
        fit = lambda x: x.reshape((1,) + tuple(shape[1:])) if len(shape) > 1 else x.reshape(1)  # noqa: E731
        border = "" if uniform else "; border effects of padding ignored"
        return Moments(fit(out_qa), fit(out_qb), fit(out_qab), fit(avg(ma)), fit(avg(mb)), fit(out_t), s.gaussian,
                       label, SOURCES["pool"].format(border=border)), ""

    _rule_global_avgpool = _rule_avgpool
    _rule_adaptive_avgpool = _rule_avgpool

    # ------------------------------------------------------------------ cross terms between two steps

    def cross_fields(self, u: int, v: int) -> dict | None:
        """E[u_a v_a], E[u_b v_b], E[u_a v_b], E[u_b v_a] and the tangents' E[du dv], as maps, or None."""
        atoms = self._cross_atoms(u, v, 0)
        if atoms is None:
            return None
        one = torch.ones((), dtype=torch.float64)
        out = _sum_atoms(atoms, lambda w: {"aa": self.states[w].qa, "bb": self.states[w].qb,
                                           "ab": self.states[w].qab, "t": self.states[w].t},
                         lambda i: one if i is None else self.states[i].ma,
                         lambda i: one if i is None else self.states[i].mb)
        kinds = {a[0] for a in atoms}
        out["describe"] = ("none (a branch passes through a zero-mean random weight layer)" if not atoms else
                           "products of the branches' means" if kinds == {"mean"} else
                           "shared signal along scalings and additions")
        return out

    def _cross_atoms(self, u: int, v: int, depth: int) -> list | None:
        """E[u v] as a sum of atoms ("self", w, f) = f * second moments of w and ("mean", x, y, f) = f * m_x m_y
        (x or y None for the constant 1); None where it is not modelled."""
        if depth > 400:
            return None
        if u > v:
            swapped = self._cross_atoms(v, u, depth + 1)
            if swapped is None:
                return None
            return [a if a[0] == "self" else ("mean", a[2], a[1], a[3]) for a in swapped]
        key = (u, v)
        if key in self._cross:
            return self._cross[key]
        result = self._cross_uncached(u, v, depth)
        self._cross[key] = result
        return result

    def _cross_uncached(self, u: int, v: int, depth: int) -> list | None:
        if u == v:
            return [("self", u, 1.0)]
        step = self.graph.steps[v]
        if self.states[v] is None or None in step.inputs:
            return None
        if step.kind in ("linear", "conv"):
            return []  # zero-mean weights independent of u: the product's mean is m_u * 0
        if step.kind in ("identity", "dropout"):
            return self._cross_atoms(u, step.inputs[0], depth + 1)
        if step.kind == "scale":
            inner = self._cross_atoms(u, step.inputs[0], depth + 1)
            f = self._scale_factor(step)
            return None if inner is None else [a[:-1] + (a[-1] * f,) for a in inner]
        if step.kind == "add":
            alpha, beta = step.params["coefficients"]
            parts = [self._cross_atoms(u, i, depth + 1) for i in step.inputs]
            if any(p is None for p in parts):
                return None
            return [a[:-1] + (a[-1] * alpha,) for a in parts[0]] + [a[:-1] + (a[-1] * beta,) for a in parts[1]]
        if step.kind == "add_const":
            inner = self._cross_atoms(u, step.inputs[0], depth + 1)
            return None if inner is None else inner + [("mean", u, None, float(step.params["const"]))]
        # A nonlinear or normalising step: uncorrelated with u when its input is (mean product then).
        parts = [self._cross_atoms(u, i, depth + 1) for i in step.inputs]
        if any(p is None or any(a[0] == "self" for a in p) for p in parts):
            return None
        return [("mean", u, v, 1.0)]

    # ------------------------------------------------------------------ spatial covariance (lazy)

    def displacement(self, index: int) -> Displacement | None:
        if index not in self._disp:
            self._disp[index] = self._displacement(index)
        return self._disp[index]

    def _displacement(self, index: int) -> Displacement | None:
        step = self.graph.steps[index]
        s = self.states[index]
        if s is None or len(step.shape) < 2 or None in step.inputs or not step.inputs:
            return None
        kind = step.kind
        if kind == "add":
            return self._disp_add(step)
        src = self.displacement(step.inputs[0])
        if src is None:
            return None
        if kind == "identity":
            return src
        if kind == "conv":
            return self._disp_conv(step, src)
        if kind == "activation":
            return self._disp_activation(step, src)
        if kind == "dropout":
            rho = step.params["keep_rate"]
            if step.params["channelwise"]:
                return src.map(lambda x, f: x if f == "ab" else x / rho)
            return src.map(lambda x, f: x if f == "ab" else _scale_center(x, 1.0 / rho))
        if kind == "scale":
            f2 = self._scale_factor(step) ** 2
            return src.map(lambda x, f: x * f2)
        if kind in ("avgpool", "adaptive_avgpool", "global_avgpool") and len(step.shape) >= 2:
            kernel, stride, _ = self._pool_geometry(step)
            return src.map(lambda x, f: _disp_pool(x, kernel, stride, step.shape[1:]))
        if kind in ("groupnorm", "layernorm") and (kind == "groupnorm" or step.params["dims"] == len(step.shape)):
            prev = self.states[step.inputs[0]]
            return self._disp_norm(step, prev, src)
        return None

    def _disp_conv(self, step: Step, src: Displacement) -> Displacement:
        _, sw2, sb2 = weight_energy(step.module)
        stride = step.module.stride
        out_spatial = step.shape[1:]
        sub = lambda x: _subsample(x, stride, out_spatial)  # noqa: E731
        return src.map(lambda x, f: sw2 * sub(x) + (0.0 if f == "t" else sb2))

    def _disp_activation(self, step: Step, src: Displacement) -> Displacement:
        act = step.params["activation"]
        s = self.states[step.inputs[0]]
        ca, cb = src.center(src.aa), src.center(src.bb)
        qg = torch.sqrt(ca * cb)
        if s.gaussian:
            aa = gaussian_pair_value(act, ca.expand_as(src.aa), src.aa / ca)
            bb = gaussian_pair_value(act, cb.expand_as(src.bb), src.bb / cb)
            ab = gaussian_pair_value(act, qg.expand_as(src.ab), src.ab / qg)
            t = gaussian_pair_slope(act, ca.expand_as(src.aa), src.aa / ca) * src.t
            return Displacement(aa, bb, ab, t)
        ma, mb = s.ma.mean(), s.mb.mean()
        va, vb = (ca - ma * ma).clamp(min=0.0), (cb - mb * mb).clamp(min=0.0)
        rho = lambda x, m1, m2, v: ((x - m1 * m2) / v).clamp(-1.0, 1.0)  # noqa: E731
        sa, sb = torch.sqrt(va), torch.sqrt(vb)
        aa = shifted_pair(act, ma, va, ma, va, rho(src.aa, ma, ma, va))
        bb = shifted_pair(act, mb, vb, mb, vb, rho(src.bb, mb, mb, vb))
        ab = shifted_pair(act, ma, va, mb, vb, rho(src.ab, ma, mb, sa * sb))
        t = shifted_pair(act, ma, va, ma, va, rho(src.aa, ma, ma, va), derivative=True) * src.t
        return Displacement(aa, bb, ab, t)

    def _disp_add(self, step: Step) -> Displacement | None:
        iu, iv = step.inputs
        du, dv = self.displacement(iu), self.displacement(iv)
        atoms = self._cross_atoms(iu, iv, 0)
        if du is None or dv is None or atoms is None:
            return None
        alpha, beta = step.params["coefficients"]

        def fields(w: int) -> dict | None:
            dw = self.displacement(w)
            return None if dw is None else {"aa": dw.aa, "bb": dw.bb, "ab": dw.ab, "t": dw.t}

        one = torch.ones((), dtype=torch.float64)
        x = _sum_atoms(atoms, fields, lambda i: one if i is None else self.states[i].ma.mean(),
                       lambda i: one if i is None else self.states[i].mb.mean())
        if x is None:
            return None
        a2, b2, ab = alpha * alpha, beta * beta, alpha * beta
        return Displacement(a2 * du.aa + b2 * dv.aa + 2 * ab * x["aa"], a2 * du.bb + b2 * dv.bb + 2 * ab * x["bb"],
                            a2 * du.ab + b2 * dv.ab + ab * (x["ab"] + x["ba"]), a2 * du.t + b2 * dv.t + 2 * ab * x["t"])

    def _disp_norm(self, step: Step, prev: Moments, src: Displacement) -> Displacement:
        m = step.module
        eps = float(step.params["eps"])
        g2 = float(m.weight.detach().double().square().mean()) if getattr(m, "weight", None) is not None else 1.0
        b2 = float(m.bias.detach().double().square().mean()) if getattr(m, "bias", None) is not None else 0.0
        mu_a, mu_b = prev.ma.mean(), prev.mb.mean()
        va = prev.qa.mean() - mu_a * mu_a + eps
        vb = prev.qb.mean() - mu_b * mu_b + eps
        return Displacement(g2 * (src.aa - mu_a * mu_a) / va + b2, g2 * (src.bb - mu_b * mu_b) / vb + b2,
                            g2 * (src.ab - mu_a * mu_b) / torch.sqrt(va * vb) + b2, g2 * src.t / va)


MIN_FAN_IN = 16


def _fan_in_label(label: str, source: str, fan_in: int) -> tuple[str, str]:
    """A unit that sums fewer than MIN_FAN_IN inputs sees their per-example fluctuations, not their average:
    its correlation map is then only approximate (q, a linear average, stays exact)."""
    if fan_in >= MIN_FAN_IN:
        return label, source
    return worst(label, APPROXIMATE), source + f"; fan-in {fan_in} < {MIN_FAN_IN}: c approximate"


def _sum_atoms(atoms: list, fields_of, mean_a, mean_b) -> dict | None:
    """Sum the atoms of a cross term (see ``Propagator._cross_atoms``) over the fields ``fields_of(w)`` of the
    steps they name (aa, bb, ab, t: maps or displacement arrays) and the means ``mean_a(i)``, ``mean_b(i)``."""
    zero = torch.zeros((), dtype=torch.float64)
    out = {k: zero for k in ("aa", "bb", "ab", "ba", "t", "mean_aa")}
    for atom in atoms:
        if atom[0] == "self":
            _, w, f = atom
            fw = fields_of(w)
            if fw is None:
                return None
            for key, src in (("aa", "aa"), ("bb", "bb"), ("ab", "ab"), ("ba", "ab"), ("t", "t")):
                out[key] = out[key] + f * fw[src]
        else:
            _, x, y, f = atom
            aa = f * mean_a(x) * mean_a(y)
            out["aa"], out["mean_aa"] = out["aa"] + aa, out["mean_aa"] + aa
            out["bb"] = out["bb"] + f * mean_b(x) * mean_b(y)
            out["ab"] = out["ab"] + f * mean_a(x) * mean_b(y)
            out["ba"] = out["ba"] + f * mean_b(x) * mean_a(y)
    return out


class _NoTheory(Exception):
    """A step whose configuration has no theory here (the message says why)."""


# ---------------------------------------------------------------------------------------------- array helpers


def _as_2d(x: torch.Tensor) -> torch.Tensor:
    """A 1-D or 2-D spatial array as 2-D (H, W)."""
    return x[None] if x.dim() == 1 else x


def _scale_center(x: torch.Tensor, factor: float) -> torch.Tensor:
    y = x.clone()
    y[(0,) + tuple(s // 2 for s in x.shape[1:])] *= factor
    return y


def _subsample(x: torch.Tensor, stride, out_spatial: tuple[int, ...]) -> torch.Tensor:
    """R'(d') = R(s d') on the output's displacement range."""
    stride = tuple(stride) if isinstance(stride, (tuple, list)) else (stride,) * len(out_spatial)
    index = [slice(None)]
    for size, s, n_out in zip(x.shape[1:], stride, out_spatial, strict=True):
        centre = size // 2
        offsets = torch.arange(-(n_out - 1), n_out) * s + centre
        if offsets.min() < 0 or offsets.max() >= size:
            raise _NoTheory("displacement range")
        index.append(offsets)
    out = x
    for dim, idx in enumerate(index[1:], start=1):
        out = out.index_select(dim, idx)
    return out


def _window_mean(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    x2 = _as_2d(x)[None, None]
    k = (1,) * (2 - len(kernel)) + tuple(kernel)
    s = (1,) * (2 - len(stride)) + tuple(stride)
    return F.avg_pool2d(x2, k, s)[0, 0]


def _pool_pair(s1: torch.Tensor, s2: torch.Tensor, rho: torch.Tensor, kernel, stride) -> torch.Tensor:
    """(1/K^2) sum over window pairs (p, p') of s1(p) s2(p') rho(p' - p), per output window."""
    a, b = _as_2d(s1), _as_2d(s2)
    r = _as_2d(rho)
    k = (1,) * (2 - len(kernel)) + tuple(kernel)
    st = (1,) * (2 - len(stride)) + tuple(stride)
    K = k[0] * k[1]
    if (a.shape[0], a.shape[1]) == k:  # one window over everything: by correlation of the two maps
        H, W = a.shape
        size = (2 * H - 1, 2 * W - 1)
        fa, fb = torch.fft.rfft2(a, s=size), torch.fft.rfft2(b, s=size)
        corr = torch.fft.irfft2(torch.conj(fa) * fb, s=size)  # corr[d] = sum_p a(p) b(p + d), d mod size
        corr = torch.roll(corr, shifts=(H - 1, W - 1), dims=(0, 1))  # centred like rho
        return ((corr * r).sum() / (K * K)).reshape(1, 1)
    ua = F.unfold(a[None, None], k, stride=st)[0]  # (K, L)
    ub = F.unfold(b[None, None], k, stride=st)[0]
    oy, ox = torch.meshgrid(torch.arange(k[0]), torch.arange(k[1]), indexing="ij")
    oy, ox = oy.reshape(-1), ox.reshape(-1)
    cy, cx = r.shape[0] // 2, r.shape[1] // 2
    m = r[cy + oy[None, :] - oy[:, None], cx + ox[None, :] - ox[:, None]]  # m[t, t'] = rho(off t' - off t)
    out = torch.einsum("tl,tu,ul->l", ua, m, ub) / (K * K)
    h_out = (a.shape[0] - k[0]) // st[0] + 1
    return out.reshape(h_out, -1)


def _disp_pool(x: torch.Tensor, kernel, stride, out_spatial) -> torch.Tensor:
    """R'(d') = (1/K^2) sum_{t, t'} R(s d' + t' - t): the box kernel's autocorrelation, then subsampling."""
    r = _as_2d(x[0])
    k = (1,) * (2 - len(kernel)) + tuple(kernel)
    tri = [torch.tensor([kk - abs(d) for d in range(-kk + 1, kk)], dtype=torch.float64) for kk in k]
    weight = torch.outer(tri[0], tri[1]) / (k[0] * k[1]) ** 2
    conv = F.conv2d(r[None, None], weight[None, None], padding=(k[0] - 1, k[1] - 1))[0, 0]
    out = _subsample(conv[None] if x.dim() == 3 else conv[0][None], stride, out_spatial)
    return out


def tangent_gain(graph: ModelGraph, states: list[Moments | None], index: int, reference: int | None) -> float:
    """Predicted chi of step ``index``: squared tangent norm of its output over that of its reference input."""
    if reference is None or states[index] is None or states[reference] is None:
        return math.nan
    num = graph.steps[index].numel * states[index].tangent
    den = graph.steps[reference].numel * states[reference].tangent
    return num / den if den > 0 else math.nan


__all__ = ["EXACT", "Displacement", "Propagator", "is_delta_orthogonal", "shifted_moments", "tangent_gain",
           "weight_energy"]
