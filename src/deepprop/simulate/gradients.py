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

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from deepprop.checkpoint import Checkpoint
from deepprop.errors import ParameterError
from deepprop.jsonout import strict
from deepprop.networks import Ensemble
from deepprop.prior import Network
from deepprop.results import Progress, Result, report_progress
from deepprop.simulate import _theory
from deepprop.simulate._inputs import load_inputs
from deepprop.simulate._report import stats_over_networks
from deepprop.simulate.fitting import fit_log_linear, leading_run
from deepprop.validation import (
    array_bytes,
    check_fit_window,
    check_memory_terms,
    check_positive_int,
    check_seed,
)

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
                 keep_weights: bool = False, on_layer: Callable[[], None] | None = None) -> ForwardPass:
    """Run the batch x (batch, d, B) through depth hidden layers and a readout (see module docstring);
    ``on_layer`` is called after each hidden layer (progress)."""
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
        if on_layer is not None:
            on_layer()
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


def layer_gradient_stats(y: torch.Tensor, delta: torch.Tensor,
                         labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per network, from the Gram products P_ab = (y_a.y_b)(delta_a.delta_b) of one layer:

    * ``grad_sq_norm`` = ||dE/dW||^2 = sum_ab P_ab, the batch-summed gradient (fig. 4's quantity);
    * ``per_example_sq_norm`` = mean_a ||grad E_a||^2 = B^2 mean_a P_aa (eq. 16's quantity: one input);
    * ``log_per_example`` = mean_a log ||grad E_a||^2 (its geometric mean: the typical gradient);
    * ``grad_cov`` / ``grad_corr`` = mean over pairs a != b of (grad E_a).(grad E_b) = B^2 P_ab and of
      its correlation P_ab / sqrt(P_aa P_bb);
    * ``grad_cov_same`` = the same covariance over pairs with equal labels only (NaN without labels or
      such pairs). Their output errors point the same way, so every pair enters eq. 17 with the same
      sign; over all pairs the output errors of a balanced batch sum to about zero and so does the mean.
    """
    b = y.shape[-1]
    p = (torch.bmm(y.transpose(1, 2), y) * torch.bmm(delta.transpose(1, 2), delta)).double()
    total = p.sum(dim=(1, 2))
    diag = torch.diagonal(p, dim1=1, dim2=2)
    npairs = max(b * (b - 1), 1)
    cov = (total - diag.sum(dim=1)) * b * b / npairs
    norm = torch.sqrt(diag.unsqueeze(1) * diag.unsqueeze(2))
    corr = torch.where(norm > 0, p / norm, torch.zeros_like(p))
    corr = (corr.sum(dim=(1, 2)) - torch.diagonal(corr, dim1=1, dim2=2).sum(dim=1)) / npairs
    per_ex = diag * b * b
    out = {"grad_sq_norm": total, "grad_cov": cov, "grad_corr": corr,
           "per_example_sq_norm": per_ex.mean(dim=1), "log_per_example": torch.log(per_ex).mean(dim=1)}
    same = torch.zeros((b, b), dtype=torch.bool, device=p.device)
    if labels is not None:
        lab = labels.reshape(-1)
        same = (lab.view(-1, 1) == lab.view(1, -1)) & ~torch.eye(b, dtype=torch.bool, device=p.device)
    n_same = int(same.sum())
    out["grad_cov_same"] = (p[:, same].sum(dim=1) * b * b / n_same) if n_same else torch.full_like(total, math.nan)
    return out


STATS = ("grad_sq_norm", "per_example_sq_norm", "log_per_example", "grad_cov", "grad_cov_same", "grad_corr")


@dataclass
class DepthFit:
    """A fitted signed depth scale with its jackknife error over networks, or the reason it failed."""

    value: float
    err: float
    n_points: int
    reason: str | None = None
    err_reason: str | None = None  # why ``err`` is not a number

    def as_fields(self, name: str) -> dict[str, Any]:
        """The fit as the fields ``name``, ``name_err``, ``name_points``, ``name_reason`` of a record (and
        ``name_err_reason`` when the error has none)."""
        out = {name: self.value, f"{name}_err": self.err, f"{name}_points": self.n_points,
               f"{name}_reason": self.reason}
        if self.err_reason is not None and not math.isfinite(self.err):
            out[f"{name}_err_reason"] = self.err_reason
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str) -> DepthFit:
        v, e = d.get(name), d.get(f"{name}_err")
        return cls(math.nan if v is None else float(v), math.nan if e is None else float(e),
                   int(d.get(f"{name}_points") or 0), d.get(f"{name}_reason"), d.get(f"{name}_err_reason"))


def _fit_curve(layers: np.ndarray, curve: np.ndarray, mask: np.ndarray) -> float:
    fit = fit_log_linear(layers, curve, mask)
    if not fit.ok:
        return math.nan
    return math.inf if fit.slope == 0 else 1.0 / fit.slope


def fit_depth_profile(layers: np.ndarray, per_net: np.ndarray, mask: np.ndarray, *, log: bool = False) -> DepthFit:
    """Signed depth scale s of the network-mean profile, m^l ~ exp(l / s), over ``mask``.

    ``per_net`` is (networks, layers); with ``log`` it holds logarithms and the profile is exp(mean log)
    (the geometric mean). The error is the jackknife over networks (leave one network out, refit),
    which unlike the regression's standard error sees the correlation between layers of one network.
    """
    n_net = per_net.shape[0]
    agg = (lambda a: np.exp(a.mean(axis=0))) if log else (lambda a: a.mean(axis=0))
    curve = agg(per_net)
    good = mask & np.isfinite(curve) & (curve > 0)
    n = int(good.sum())
    if n < 3:
        return DepthFit(math.nan, math.nan, n, f"only {n} layers in the fit window hold a positive value (need 3)")
    xi = _fit_curve(layers, curve, good)
    err, err_reason = math.nan, f"the jackknife error needs at least 3 networks (got {n_net})"
    if n_net >= 3:
        err_reason = "a leave-one-network-out refit has no finite slope"
        jack = np.array([_fit_curve(layers, agg(np.delete(per_net, k, axis=0)), good) for k in range(n_net)])
        inv = 1.0 / jack  # jackknife the slope (smooth through 0), then propagate to the scale
        if np.all(np.isfinite(inv)):
            se = math.sqrt((n_net - 1) / n_net * float(((inv - inv.mean()) ** 2).sum()))
            err = se * xi * xi if math.isfinite(xi) else math.inf
    return DepthFit(xi, abs(err), n, err_reason=None if math.isfinite(err) else err_reason)


@dataclass
class GradientPoint(Result):
    """One sigma_w2: per-layer statistics (means and standard errors over networks), fits and theory.

    Three estimators of eq. 16 (see :func:`layer_gradient_stats`): ``xi_grad_fit`` from the per-example
    gradient ||grad E_a||^2 (mean over examples and networks: what eq. 16 predicts at any width),
    ``xi_grad_fit_batch`` from the batch-summed ||dE/dW||^2 of fig. 4 (its cross terms a != b follow
    eq. 17 instead) and ``xi_grad_fit_typical`` from the geometric mean (the finite-width Lyapunov scale).
    ``xi_cov_fit`` is eq. 17's depth scale, fitted to the same-label pair covariance.
    """

    sigma_w2: float
    layers: np.ndarray
    stats: dict[str, np.ndarray]  # name -> (mean, err) stacked: shape (2, layers)
    grad_sq_norm_var: np.ndarray
    finite: bool
    fits: dict[str, DepthFit]
    theory: dict[str, Any] | None

    @property
    def grad_sq_norm(self) -> np.ndarray:
        return self.stats["grad_sq_norm"][0]

    @property
    def xi_grad_fit(self) -> float:
        return self.fits["xi_grad_fit"].value

    @property
    def xi_cov_fit(self) -> float:
        return self.fits["xi_cov_fit"].value

    def record(self) -> dict[str, Any]:
        rows = []
        for i, l in enumerate(self.layers):
            row: dict[str, Any] = {"layer": int(l), "grad_sq_norm_var": self.grad_sq_norm_var[i]}
            for k in STATS:
                row[k], row[f"{k}_err"] = self.stats[k][0][i], self.stats[k][1][i]
            rows.append(row)
        th = self.theory or {}
        out: dict[str, Any] = {"sigma_w2": self.sigma_w2, "layers": rows, "finite": self.finite}
        for name, fit in self.fits.items():
            out.update(fit.as_fields(name))
        for k in ("xi_grad", "xi_grad_typical", "kappa", "chi1", "xi_cov", "chi_c", "xi_c", "phase"):
            out[k] = th.get(k)
        out["xi_cov_reason"] = th.get("xi_cov_reason")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradientPoint:
        def col(key: str) -> np.ndarray:
            return np.array([np.nan if r.get(key) is None else r[key] for r in d["layers"]], dtype=np.float64)

        stats = {k: np.stack([col(k), col(f"{k}_err")]) for k in STATS}
        fits = {k: DepthFit.from_dict(d, k) for k in FIT_NAMES}
        th = {k: d.get(k) for k in ("xi_grad", "xi_grad_typical", "kappa", "chi1", "xi_cov", "chi_c", "xi_c",
                                    "phase", "xi_cov_reason")}
        return cls(float(d["sigma_w2"]), col("layer").astype(int), stats, col("grad_sq_norm_var"),
                   bool(d["finite"]), fits, None if th["chi1"] is None and th["phase"] is None else th)


FIT_NAMES = ("xi_grad_fit", "xi_grad_fit_batch", "xi_grad_fit_typical", "xi_cov_fit")


@dataclass
class PowerLaw(Result):
    """var = prefactor * mean^exponent, with a bootstrap confidence interval on the exponent."""

    exponent: float
    prefactor: float
    ci_low: float
    ci_high: float
    n_points: int

    def record(self) -> dict[str, Any]:
        return {"exponent": self.exponent, "prefactor": self.prefactor, "ci95": [self.ci_low, self.ci_high],
                "points": self.n_points}


@dataclass
class GradientResult(Result):
    """A sweep over sigma_w2 and the variance-vs-mean law of the gradient statistics across networks."""

    points: list[GradientPoint]
    var_mean_exponent: float
    var_mean_prefactor: float
    params: dict[str, Any] = field(default_factory=dict)
    var_mean: dict[str, PowerLaw] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """Single sigma_w2: the point's record; a sweep: {"sweep": [...]}; both with the extra fields."""
        extra = {"var_mean_exponent": self.var_mean_exponent, "var_mean_prefactor": self.var_mean_prefactor,
                 "var_mean": self.var_mean, "params": self.params}
        if len(self.points) == 1:
            return {**self.points[0].to_dict(), **extra}
        return {"sweep": self.points, **extra}


def _fit_point(sw2: float, per_net: dict[str, np.ndarray], depth: int, fit_skip: int,
               theory: dict[str, Any] | None) -> GradientPoint:
    layers = np.arange(1, depth + 1)
    stats = {k: np.stack(stats_over_networks(per_net[k])) for k in STATS}
    g_all = per_net["grad_sq_norm"]
    g_var = g_all.var(axis=0, ddof=1) if g_all.shape[0] > 1 else np.full(depth, np.nan)
    finite = bool(np.all(np.isfinite(g_all)) and np.all(g_all > 0))
    bulk = (layers > fit_skip) & (layers <= depth - fit_skip)
    fits = {
        "xi_grad_fit": fit_depth_profile(layers, per_net["per_example_sq_norm"], bulk),
        "xi_grad_fit_batch": fit_depth_profile(layers, g_all, bulk),
        "xi_grad_fit_typical": fit_depth_profile(layers, per_net["log_per_example"], bulk, log=True),
        "xi_cov_fit": _fit_covariance(layers, per_net["grad_cov_same"], (layers > fit_skip) & (layers <= depth - 1)),
    }
    return GradientPoint(sw2, layers, stats, g_var, finite, fits, theory)


def _fit_covariance(layers: np.ndarray, cov_net: np.ndarray, window: np.ndarray) -> DepthFit:
    """Eq. 17's depth scale from the same-label covariance, over the layers of ``window`` where the network
    mean stays positive and 3 standard errors clear of zero, from the top layer down (below that run, the
    sampling noise of (delta_a.delta_b), growing like sqrt(q~_aa q~_bb / N), has taken over). The window
    reaches up to layer L - 1: in the chaotic phase the covariance sinks into that noise within
    1 / (1/xi_cov + 1/|xi_grad|) layers of the top, too few to give away to a readout margin."""
    if not np.any(np.isfinite(cov_net)):
        return DepthFit(math.nan, math.nan, 0, "the batch holds no two examples with the same label")
    cov, cov_err = stats_over_networks(cov_net)
    signif = (cov > 3 * np.nan_to_num(cov_err, nan=0.0)) & window
    top = np.flatnonzero(window)[-1] if window.any() else len(layers) - 1
    run = leading_run(signif[::-1], start=len(layers) - 1 - top)[::-1]
    fit = fit_depth_profile(layers, cov_net, run)
    if fit.reason is not None:
        fit.reason = (f"the same-label gradient covariance is within 3 standard errors of zero (or negative) "
                      f"below the top {int(run.sum())} layers of the fit window")
    return fit


def variance_mean_law(points: Sequence[GradientPoint], per_net: Sequence[np.ndarray] | None = None,
                      key: str = "grad_sq_norm", boot: int = 200, seed: int = 0) -> PowerLaw:
    """Fit var = A * mean^p across networks over all layers and sigma_w2, with a 95 % basic bootstrap
    interval on p (networks resampled with replacement within each sigma_w2, the whole fit repeated).

    ``per_net`` holds each point's (networks, layers) values of ``key``; without it only the point fit
    (from the stored mean and variance of grad_sq_norm) is made.
    """
    def fit(ms: list[np.ndarray], vs: list[np.ndarray]) -> tuple[float, float, int]:
        m, v = np.concatenate(ms), np.concatenate(vs)
        ok = np.isfinite(m) & np.isfinite(v) & (m > 0) & (v > 0)
        if ok.sum() < 3:
            return math.nan, math.nan, int(ok.sum())
        f = fit_log_linear(np.log(m[ok]), v[ok])
        return f.slope, math.exp(f.intercept) if f.ok else math.nan, int(ok.sum())

    if per_net is None:
        p, a, n = fit([pt.grad_sq_norm for pt in points], [pt.grad_sq_norm_var for pt in points])
        return PowerLaw(p, a, math.nan, math.nan, n)
    p, a, n = fit([x.mean(axis=0) for x in per_net], [x.var(axis=0, ddof=1) for x in per_net])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(boot):
        idx = [rng.integers(0, x.shape[0], x.shape[0]) for x in per_net]
        sub = [x[i] for x, i in zip(per_net, idx, strict=True)]
        draws.append(fit([x.mean(axis=0) for x in sub], [x.var(axis=0, ddof=1) for x in sub])[0])
    d = np.array(draws)
    d = d[np.isfinite(d)]
    # basic (reverse-percentile) interval 2p - q(0.975) .. 2p - q(0.025): the variance of a skewed
    # distribution from few networks is biased low, more so in a resample, and the plain percentile
    # interval inherits that shift (Monte Carlo check in tests/test_fidelity_backprop.py)
    lo, hi = ((2 * p - np.quantile(d, 0.975), 2 * p - np.quantile(d, 0.025)) if d.size >= 10
              else (math.nan, math.nan))
    return PowerLaw(p, a, float(lo), float(hi), n)


def simulate_gradients(
    prior: Network,
    *loose: float | Sequence[float],
    width: int = 300,
    depth: int = 240,
    dataset: str = "digits",
    data_dir: str | None = None,
    batch_size: int = 128,
    backprop: str = "shared",
    weights: str = "gaussian",
    networks: int = 2,
    seed: int = 0,
    chunk: int | None = None,
    fit_skip: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float32",
    checkpoint: str | None = None,
    progress: bool | Progress = False,
    **noise: float,
) -> GradientResult:
    """Per-layer ||dE/dW^l||^2 and gradient covariances for each sigma_w2, with exponential fits.

    ``simulate_gradients(prior)`` (its sigma_w2 a value or a 1-d sweep) or the loose form
    ``simulate_gradients("tanh", sigma_w2, sigma_b2, keep_rate=...)``.
    The sweep is run ``chunk`` sigma_w2 values at a time as one batch of chunk * networks networks
    (all at once by default); all values share the same standard weight draw scaled by sqrt(sigma_w2).
    Fits use layers fit_skip < l <= depth - fit_skip (default depth // 10, at least 2). Finished chunks
    are stored in ``checkpoint`` (JSON) and skipped when the run is repeated with the same parameters.
    ``progress``: a ``progress(done, total)`` callback over layers (forward, backward, statistics), or True
    for a bar on stderr.
    """
    seed = check_seed("seed", seed)
    if not isinstance(backprop, str) or backprop not in BACKPROP_MODES:
        raise ParameterError("backprop", f"must be one of {', '.join(BACKPROP_MODES)} (got {backprop!r})")
    ens_all = Ensemble.build(prior, *loose, width=width, networks=networks, weights=weights, device=device,
                             dtype=dtype, **noise)
    sweep = list(ens_all.sigma_w2)
    depth = check_positive_int("depth", depth)
    batch_size = check_positive_int("batch_size", batch_size, minimum=2)
    chunk = len(sweep) if chunk is None else check_positive_int("chunk", chunk)
    fit_skip = max(2, depth // 10) if fit_skip is None else check_fit_window("fit_skip", fit_skip, depth)
    batch = min(chunk, len(sweep)) * ens_all.networks  # every layer is kept for the backward pass
    itemsize = ens_all.dtype.itemsize
    check_memory_terms({"width": array_bytes((2 * depth * batch, ens_all.width, ens_all.width), itemsize=itemsize),
                        "batch_size": array_bytes((6 * depth * batch, ens_all.width, batch_size), itemsize=itemsize)},
                       f"backpropagating through {batch} networks of width {ens_all.width} and depth {depth}",
                       device=ens_all.device, hint="lower --width / --depth / --batch-size, or use --chunk")

    data = load_inputs(dataset, data_dir)
    if batch_size > data.x.shape[0]:
        raise ParameterError("batch_size", f"must be <= {data.x.shape[0]} examples (got {batch_size})")
    idx = np.random.default_rng(seed).choice(data.x.shape[0], size=batch_size, replace=False)
    x0 = torch.as_tensor(data.x[idx].T.copy(), dtype=ens_all.dtype, device=ens_all.device)
    labels = torch.as_tensor(data.y[idx], device=ens_all.device).view(1, 1, -1)

    params = {
        "activation": ens_all.activation.name, "sigma_b2": ens_all.sigma_b2, "width": ens_all.width,
        "depth": depth, "dataset": dataset, "batch_size": batch_size, "backprop": backprop,
        **ens_all.noise.numbers(), "weights": weights, "networks": networks, "seed": int(seed),
        "chunk": chunk, "fit_skip": fit_skip, "dtype": str(ens_all.dtype).removeprefix("torch."),
    }
    ckpt = Checkpoint(checkpoint, params)
    theory = _theory.gradient_point(ens_all)
    points: dict[float, GradientPoint] = {}
    per_network: dict[float, dict[str, np.ndarray]] = {}
    chunks = [sweep[i:i + chunk] for i in range(0, len(sweep), chunk)]
    # One bar over every layer of every chunk (forward, backward, statistics: 3 depth steps a chunk), so that
    # a sweep run as a single chunk still shows its ETA.
    bar = _LayerCount(3 * depth * len(chunks), progress)
    for part in chunks:
        key = repr([float(s) for s in part])
        if key in ckpt:
            bar.update(3 * depth)
        else:
            per_net = _run_chunk(ens_all, part, x0, labels, depth, data.n_classes, backprop, seed,
                                 tick=lambda n=1: bar.update(n))
            done = []
            for j, s in enumerate(part):
                th = {k: v[sweep.index(s)] for k, v in theory.items()}
                mine = {k: v[j] for k, v in per_net.items()}
                d = _fit_point(float(s), mine, depth, fit_skip, th).to_dict()
                d["per_network"] = strict({k: mine[k] for k in LAW_KEYS})
                done.append(d)
            ckpt.save(key, done)
        for d in ckpt[key]:
            points[float(d["sigma_w2"])] = GradientPoint.from_dict(d)
            per_network[float(d["sigma_w2"])] = {k: np.array(d["per_network"][k], dtype=np.float64)
                                                 for k in LAW_KEYS}
    bar.close()
    ordered = [points[float(s)] for s in sweep]
    laws = {k: variance_mean_law(ordered, [per_network[float(s)][k] for s in sweep], key=k, seed=seed)
            for k in LAW_KEYS} if networks >= 3 else {}
    main = laws.get("grad_sq_norm") or variance_mean_law(ordered)
    return GradientResult(ordered, main.exponent, main.prefactor, params, laws)


LAW_KEYS = ("grad_sq_norm", "per_example_sq_norm")


class _LayerCount:
    """Counts finished layers for ``progress``: a callback gets (done, total), True draws a tqdm bar."""

    def __init__(self, total: int, progress: bool | Progress):
        self.total, self.done = total, 0
        self.callback = progress if callable(progress) else None
        self.bar = tqdm(total=total, desc="gradients", unit="layer", disable=not progress) \
            if not callable(progress) else None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        report_progress(self.callback, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_chunk(ens_all: Ensemble, part: Sequence[float], x0: torch.Tensor, labels: torch.Tensor, depth: int,
               n_classes: int, backprop: str, seed: int,
               tick: Callable[..., object] = lambda n=1: None) -> dict[str, np.ndarray]:
    """Per-network statistics, arrays of shape (len(part), networks, depth); ``tick(n)`` reports n layers done
    (depth forward, depth backward, depth statistics)."""
    ens = dataclasses.replace(ens_all, sigma_w2=tuple(float(s) for s in part))
    x = x0.unsqueeze(0).expand(ens.batch, -1, -1)
    gen = ens.generator(seed)
    if backprop == "shared":
        with torch.enable_grad():  # x as a grad-requiring leaf puts every z^l on the autograd graph
            fp = forward_pass(ens, x.clone().requires_grad_(True), depth, n_classes, gen, on_layer=tick)
            deltas = shared_errors(fp, labels)
    else:
        with torch.no_grad():
            fp = forward_pass(ens, x, depth, n_classes, gen, on_layer=tick)
            deltas = independent_errors(ens, fp, labels, ens.generator(seed + 7919))
    tick(depth)
    out: dict[str, list[np.ndarray]] = {k: [] for k in STATS}
    with torch.no_grad():
        for l in range(depth):
            st = layer_gradient_stats(fp.inputs[l].detach(), deltas[l].detach(), labels)
            for k, v in st.items():
                out[k].append(v.cpu().numpy())
            tick()
    shape = (len(part), ens.networks, depth)
    return {k: np.stack(v, axis=-1).reshape(shape) for k, v in out.items()}
