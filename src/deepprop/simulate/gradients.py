"""Gradients of random networks on real data (fig. 4, eqs. 14-17, appendix 7.6-7.9, follow-ups section 2).

Network: x (d inputs) -> z^1 = W^1 x + b^1, z^l = W^l noise(phi(z^{l-1})) + b^l (l = 2..L), logits =
W^{L+1} noise(phi(z^L)) + b^{L+1}; cross-entropy averaged over a batch of B examples. With the errors
delta^l = dE/dz^l (eq. 14) and the layer inputs y^{l-1} (x for l = 1),

    dE/dW^l = sum_a delta_a^l (y_a^{l-1})^T,
    ||dE/dW^l||^2 = sum_ab (delta_a . delta_b)(y_a . y_b)          (no N x N matrix is formed),
    (grad W^l E_a) . (grad W^l E_b) = B^2 (delta_a . delta_b)(y_a . y_b)  for per-example losses E_a.

Theory (independent backward weights): ||dE/dW^l||^2 ~ exp(-(L - l) / xi_grad), xi_grad = -1/log chi1
(eq. 16, signed), and the covariance of two inputs' gradients ~ exp(-(L - l) / xi_c) (eq. 17).

Backpropagation modes (follow-ups section 2):
* ``shared``: real autograd through the forward weights and dropout masks;
* ``independent``: the backward recursion delta^l = phi'(z^l) * eps'^{l+1} * (W'^{l+1})^T delta^{l+1}
  by hand, with W' and eps' drawn afresh from the same distributions (the paper's assumption).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from deepprop.errors import ParameterError
from deepprop.simulate import _theory
from deepprop.simulate._checkpoint import Checkpoint
from deepprop.simulate._inputs import load_inputs
from deepprop.simulate._report import plain, stats_over_networks
from deepprop.simulate.fitting import fit_growth, fit_log_linear, leading_run
from deepprop.simulate.networks import Ensemble
from deepprop.validation import check_positive_int

BACKPROP_MODES = ("shared", "independent")


@dataclass
class ForwardPass:
    """Everything the backward pass needs. Lists are indexed so that entry l-1 belongs to layer l."""

    inputs: list[torch.Tensor]  # y^{l-1} fed to W^l, l = 1..L+1 (x for l = 1), shape (batch, n_in, B)
    zs: list[torch.Tensor]  # z^l, l = 1..L, shape (batch, N, B)
    masks: list[torch.Tensor | None]  # multiplicative noise on the input of layer l (None for l = 1)
    weights: list[torch.Tensor]  # W^l, l = 1..L+1 (empty unless kept)
    logits: torch.Tensor  # (batch, C, B)


def forward_pass(ens: Ensemble, x: torch.Tensor, depth: int, n_classes: int, gen: torch.Generator,
                 keep_weights: bool = False) -> ForwardPass:
    """Run the batch x (batch, d, B) through depth hidden layers and a readout (see module docstring)."""
    inputs, zs, masks, weights = [x], [], [None], []
    n_in = x.shape[1]
    y = x
    for l in range(1, depth + 2):
        n_out = n_classes if l == depth + 1 else ens.width
        w = ens.draw_weights(gen, n_out, n_in)
        b = ens.draw_bias(gen, n_out)
        if keep_weights:
            weights.append(w)
        z = torch.baddbmm(b, w, y)
        if l == depth + 1:
            return ForwardPass(inputs, zs, masks, weights, z)
        zs.append(z)
        y, mult = ens.layer_input(z, gen)
        inputs.append(y)
        masks.append(mult)
        n_in = ens.width
    raise AssertionError("unreachable")


def output_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """dE/dlogits of the batch-mean cross-entropy: (softmax(logits) - onehot(labels)) / B."""
    p = torch.softmax(logits, dim=1)
    onehot = torch.zeros_like(p).scatter_(1, labels.expand(p.shape[0], 1, -1), 1.0)
    return (p - onehot) / logits.shape[-1]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over networks of each network's batch-mean cross-entropy (networks stay independent)."""
    target = labels.expand(logits.shape[0], 1, -1).squeeze(1)
    return torch.nn.functional.cross_entropy(logits, target, reduction="sum") / logits.shape[-1]


def backward_errors(ens: Ensemble, fp: ForwardPass, delta_out: torch.Tensor,
                    weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
    """delta^l for l = 1..L by the recursion delta^l = phi'(z^l) * m^{l+1} * (W^{l+1})^T delta^{l+1}.

    ``weights[l]`` is the matrix W^{l+1} (l = 1..L; entry 0 unused) and ``masks[l]`` the multiplicative
    noise on the input of layer l+1 (None for none). Given the forward weights and masks this is exactly
    backpropagation; given fresh ones it is the independence assumption.
    """
    depth = len(fp.zs)
    deltas: list[torch.Tensor] = [delta_out] * depth
    delta = delta_out
    for l in range(depth, 0, -1):
        g = torch.bmm(weights[l].transpose(1, 2), delta)
        if masks[l] is not None:
            g = g * masks[l]
        delta = ens.activation.derivative(fp.zs[l - 1]) * g
        deltas[l - 1] = delta
    return deltas


def independent_errors(ens: Ensemble, fp: ForwardPass, labels: torch.Tensor,
                       gen: torch.Generator) -> list[torch.Tensor]:
    """Errors backpropagated through freshly drawn weights and freshly drawn multiplicative noise."""
    depth = len(fp.zs)
    n_classes = fp.logits.shape[1]
    weights: list[torch.Tensor] = [fp.logits] * (depth + 1)
    masks: list[torch.Tensor | None] = [None] * (depth + 1)
    for l in range(depth, 0, -1):  # W'^{l+1} maps layer l to layer l+1 (the readout for l = depth)
        n_out = n_classes if l == depth else ens.width
        weights[l] = ens.draw_weights(gen, n_out, ens.width)
        mult, _ = ens.draw_noise(gen, fp.zs[l - 1])
        masks[l] = mult
    return backward_errors(ens, fp, output_error(fp.logits, labels), weights, masks)


def shared_errors(fp: ForwardPass, labels: torch.Tensor) -> list[torch.Tensor]:
    """Errors dE/dz^l by autograd through the forward pass itself (same weights, same masks)."""
    loss = cross_entropy(fp.logits, labels)
    return list(torch.autograd.grad(loss, fp.zs))


def layer_gradient_stats(y: torch.Tensor, delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per network: ||dE/dW||^2, and mean over pairs a != b of the per-example gradient covariance
    (grad E_a).(grad E_b) = B^2 (delta_a.delta_b)(y_a.y_b) and of its correlation."""
    b = y.shape[-1]
    p = (torch.bmm(y.transpose(1, 2), y) * torch.bmm(delta.transpose(1, 2), delta)).double()
    total = p.sum(dim=(1, 2))
    diag = torch.diagonal(p, dim1=1, dim2=2)
    npairs = max(b * (b - 1), 1)
    cov = (total - diag.sum(dim=1)) * b * b / npairs
    norm = torch.sqrt(diag.unsqueeze(1) * diag.unsqueeze(2))
    corr = torch.where(norm > 0, p / norm, torch.zeros_like(p))
    corr = (corr.sum(dim=(1, 2)) - torch.diagonal(corr, dim1=1, dim2=2).sum(dim=1)) / npairs
    return {"grad_sq_norm": total, "grad_cov": cov, "grad_corr": corr}


@dataclass
class GradientPoint:
    """One sigma_w2: per-layer statistics over the networks, fits and theory."""

    sigma_w2: float
    layers: np.ndarray
    grad_sq_norm: np.ndarray  # mean over networks
    grad_sq_norm_err: np.ndarray
    grad_sq_norm_var: np.ndarray
    grad_cov: np.ndarray
    grad_cov_err: np.ndarray
    grad_corr: np.ndarray
    finite: bool
    xi_grad_fit: float
    xi_grad_fit_err: float
    xi_cov_fit: float
    theory: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        rows = [
            {"layer": int(l), "grad_sq_norm": self.grad_sq_norm[i], "grad_sq_norm_err": self.grad_sq_norm_err[i],
             "grad_sq_norm_var": self.grad_sq_norm_var[i], "grad_cov": self.grad_cov[i],
             "grad_cov_err": self.grad_cov_err[i], "grad_corr": self.grad_corr[i]}
            for i, l in enumerate(self.layers)
        ]
        th = self.theory or {}
        return plain({
            "sigma_w2": self.sigma_w2, "layers": rows, "finite": self.finite,
            "xi_grad_fit": self.xi_grad_fit, "xi_grad_fit_err": self.xi_grad_fit_err,
            "xi_grad": th.get("xi_grad"), "chi1": th.get("chi1"),
            "xi_cov_fit": self.xi_cov_fit, "xi_c": th.get("xi_c"), "phase": th.get("phase"),
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradientPoint:
        def col(key: str) -> np.ndarray:
            return np.array([np.nan if r[key] is None else r[key] for r in d["layers"]], dtype=np.float64)

        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        th = {k: d.get(k) for k in ("xi_grad", "chi1", "xi_c", "phase")}
        return cls(float(d["sigma_w2"]), col("layer").astype(int), col("grad_sq_norm"), col("grad_sq_norm_err"),
                   col("grad_sq_norm_var"), col("grad_cov"), col("grad_cov_err"), col("grad_corr"),
                   bool(d["finite"]), num(d["xi_grad_fit"]), num(d["xi_grad_fit_err"]), num(d["xi_cov_fit"]),
                   None if th["chi1"] is None and th["phase"] is None else th)


@dataclass
class GradientResult:
    """A sweep over sigma_w2 and the variance-vs-mean law of the gradient statistics across networks."""

    points: list[GradientPoint]
    var_mean_exponent: float
    var_mean_prefactor: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Single sigma_w2: the point's dict; a sweep: {"sweep": [...]}; both with the extra fields."""
        extra = {"var_mean_exponent": self.var_mean_exponent, "var_mean_prefactor": self.var_mean_prefactor,
                 "params": self.params}
        if len(self.points) == 1:
            return plain({**self.points[0].to_dict(), **extra})
        return plain({"sweep": [p.to_dict() for p in self.points], **extra})


def _fit_point(sw2: float, per_net: dict[str, np.ndarray], depth: int, fit_skip: int,
               theory: dict[str, Any] | None) -> GradientPoint:
    layers = np.arange(1, depth + 1)
    g, g_err = stats_over_networks(per_net["grad_sq_norm"])
    g_var = per_net["grad_sq_norm"].var(axis=0, ddof=1) if per_net["grad_sq_norm"].shape[0] > 1 else \
        np.full(depth, np.nan)
    cov, cov_err = stats_over_networks(per_net["grad_cov"])
    corr, _ = stats_over_networks(per_net["grad_corr"])
    finite = bool(np.all(np.isfinite(per_net["grad_sq_norm"])) and np.all(per_net["grad_sq_norm"] > 0))
    bulk = (layers > fit_skip) & (layers <= depth - fit_skip)
    ok = np.isfinite(g) & (g > 0)
    xi, xi_err, _ = fit_growth(layers, g, bulk & ok)
    # The covariance decays from the output towards the input while its sampling noise grows with the
    # gradients themselves: fit the run of layers, from the top down, where it keeps its sign and
    # stands 3 standard errors clear of zero.
    sign = np.sign(cov[-2]) if depth >= 2 else 1.0
    signif = (sign * cov > 0) & (sign * cov > 3 * np.nan_to_num(cov_err, nan=0.0))
    top_down = leading_run(signif[::-1], start=1)[::-1]
    cov_fit = fit_log_linear(layers, cov, top_down)
    xi_cov = 1.0 / cov_fit.slope if cov_fit.ok and cov_fit.slope != 0 else math.nan
    return GradientPoint(sw2, layers, g, g_err, g_var, cov, cov_err, corr, finite, xi, xi_err, xi_cov, theory)


def variance_mean_law(points: Sequence[GradientPoint]) -> tuple[float, float]:
    """Fit var = A * mean^p of ||dE/dW^l||^2 across networks over all layers and sigma_w2: (p, A)."""
    m = np.concatenate([p.grad_sq_norm for p in points])
    v = np.concatenate([p.grad_sq_norm_var for p in points])
    ok = np.isfinite(m) & np.isfinite(v) & (m > 0) & (v > 0)
    if ok.sum() < 3:
        return math.nan, math.nan
    fit = fit_log_linear(np.log(m[ok]), v[ok])
    return fit.slope, math.exp(fit.intercept) if fit.ok else math.nan


def simulate_gradients(
    activation: Any,
    sigma_w2: float | Sequence[float],
    sigma_b2: float,
    *,
    width: int = 300,
    depth: int = 240,
    dataset: str = "digits",
    data_dir: str | None = None,
    batch_size: int = 128,
    backprop: str = "shared",
    keep_rate: float = 1.0,
    noise_mult: float = 0.0,
    noise_add: float = 0.0,
    weights: str = "gaussian",
    networks: int = 2,
    seed: int = 0,
    chunk: int | None = None,
    fit_skip: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    checkpoint: str | None = None,
    progress: bool = False,
) -> GradientResult:
    """Per-layer ||dE/dW^l||^2 and gradient covariances for each sigma_w2, with exponential fits.

    The sweep is run ``chunk`` sigma_w2 values at a time as one batch of chunk * networks networks
    (all at once by default); all values share the same standard weight draw scaled by sqrt(sigma_w2).
    Fits use layers fit_skip < l <= depth - fit_skip (default depth // 10, at least 2). Finished chunks
    are stored in ``checkpoint`` (JSON) and skipped when the run is repeated with the same parameters.
    """
    if backprop not in BACKPROP_MODES:
        raise ParameterError("backprop", f"must be one of {', '.join(BACKPROP_MODES)} (got {backprop!r})")
    sweep = [sigma_w2] if isinstance(sigma_w2, (int, float)) else list(sigma_w2)
    ens_all = Ensemble.build(activation, tuple(sweep), sigma_b2, width, networks=networks, weights=weights,
                             keep_rate=keep_rate, noise_mult=noise_mult, noise_add=noise_add,
                             device=device, dtype=dtype)
    depth = check_positive_int("depth", depth)
    batch_size = check_positive_int("batch_size", batch_size, minimum=2)
    chunk = len(sweep) if chunk is None else check_positive_int("chunk", chunk)
    fit_skip = max(2, depth // 10) if fit_skip is None else int(fit_skip)

    data = load_inputs(dataset, data_dir)
    if batch_size > data.x.shape[0]:
        raise ParameterError("batch_size", f"must be <= {data.x.shape[0]} examples (got {batch_size})")
    idx = np.random.default_rng(seed).choice(data.x.shape[0], size=batch_size, replace=False)
    x0 = torch.as_tensor(data.x[idx].T.copy(), dtype=ens_all.dtype, device=ens_all.device)
    labels = torch.as_tensor(data.y[idx], device=ens_all.device).view(1, 1, -1)

    params = {
        "activation": ens_all.activation.name, "sigma_b2": ens_all.sigma_b2, "width": ens_all.width,
        "depth": depth, "dataset": dataset, "batch_size": batch_size, "backprop": backprop,
        "keep_rate": ens_all.noise.keep_rate, "noise_mult": ens_all.noise.noise_mult,
        "noise_add": ens_all.noise.noise_add, "weights": weights, "networks": networks, "seed": int(seed),
        "chunk": chunk, "fit_skip": fit_skip, "dtype": str(ens_all.dtype).removeprefix("torch."),
    }
    ckpt = Checkpoint(checkpoint, params)
    theory = _theory.point(ens_all)
    points: dict[float, GradientPoint] = {}
    chunks = [sweep[i:i + chunk] for i in range(0, len(sweep), chunk)]
    for part in tqdm(chunks, desc="gradients", unit="chunk", disable=not progress):
        key = repr([float(s) for s in part])
        if key not in ckpt:
            per_net = _run_chunk(ens_all, part, x0, labels, depth, data.n_classes, backprop, seed)
            done = []
            for j, s in enumerate(part):
                th = {k: v.reshape(-1)[sweep.index(s)] for k, v in theory.items()}
                done.append(_fit_point(float(s), {k: v[j] for k, v in per_net.items()}, depth, fit_skip,
                                       th).to_dict())
            ckpt.save(key, done)
        for d in ckpt[key]:
            points[float(d["sigma_w2"])] = GradientPoint.from_dict(d)
    ordered = [points[float(s)] for s in sweep]
    p, a = variance_mean_law(ordered)
    return GradientResult(ordered, p, a, params)


def _run_chunk(ens_all: Ensemble, part: Sequence[float], x0: torch.Tensor, labels: torch.Tensor, depth: int,
               n_classes: int, backprop: str, seed: int) -> dict[str, np.ndarray]:
    """Per-network statistics, arrays of shape (len(part), networks, depth)."""
    ens = Ensemble(ens_all.activation, tuple(float(s) for s in part), ens_all.sigma_b2, ens_all.width,
                   ens_all.networks, ens_all.weights, ens_all.noise, ens_all.device, ens_all.dtype)
    x = x0.unsqueeze(0).expand(ens.batch, -1, -1)
    gen = ens.generator(seed)
    if backprop == "shared":
        with torch.enable_grad():  # x as a grad-requiring leaf puts every z^l on the autograd graph
            fp = forward_pass(ens, x.clone().requires_grad_(True), depth, n_classes, gen)
            deltas = shared_errors(fp, labels)
    else:
        with torch.no_grad():
            fp = forward_pass(ens, x, depth, n_classes, gen)
            deltas = independent_errors(ens, fp, labels, ens.generator(seed + 7919))
    out: dict[str, list[np.ndarray]] = {"grad_sq_norm": [], "grad_cov": [], "grad_corr": []}
    with torch.no_grad():
        for l in range(depth):
            st = layer_gradient_stats(fp.inputs[l].detach(), deltas[l].detach())
            for k, v in st.items():
                out[k].append(v.cpu().numpy())
    shape = (len(part), ens.networks, depth)
    return {k: np.stack(v, axis=-1).reshape(shape) for k, v in out.items()}
