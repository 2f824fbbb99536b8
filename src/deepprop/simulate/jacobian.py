"""Input-output Jacobian spectrum and Gaussian-channel mutual information (follow-ups section 3).

For an input whose layer-0 pre-activation has variance q_in (default the fixed point q*), the Jacobian of
the L-layer map z^0 -> z^L, z^l = W^l noise(phi(z^{l-1})) + b^l, is

    J = W^L D^{L-1} ... W^1 D^0,     D^l = diag(eps^{l+1} * phi'(z^l))

(eps the multiplicative noise drawn for that input). Its mean squared singular value
(1/N) ||J||_F^2 = (1/N) sum_i sigma_i^2 has expectation chi1^L at q_in = q*, chi1 = sw2 mu2 E[phi'^2].
The linearised channel x -> J x + n with x ~ N(0, s_x^2 I), n ~ N(0, s_n^2 I) carries

    I = 1/2 sum_i log(1 + s_x^2 sigma_i^2 / s_n^2)   nats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepprop.errors import ParameterError
from deepprop.networks import Ensemble
from deepprop.prior import Network
from deepprop.results import Result
from deepprop.simulate import _theory
from deepprop.simulate._report import stats_over_networks
from deepprop.theory import spectrum as spectral
from deepprop.validation import array_bytes, check_memory_terms, check_positive, check_positive_int

QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)


@dataclass
class Layer:
    """One drawn layer: weights, biases and the noise applied to its input (for replaying the map)."""

    weight: torch.Tensor
    bias: torch.Tensor
    mult: torch.Tensor | None
    add: torch.Tensor | None


def network_jacobian(ens: Ensemble, z0: torch.Tensor, depth: int, gen: torch.Generator,
                     keep_layers: bool = False, probes: torch.Tensor | None = None) -> tuple[torch.Tensor, list[Layer]]:
    """J = dz^L/dz^0 for every network at its input z0 (batch, N, 1): shape (batch, N, N), built layer by
    layer as J <- W^l diag(eps * phi'(z^{l-1})) J. Returns J and (if asked) the drawn layers.

    With ``probes`` (batch, N, P) the product J @ probes is returned instead (forward-mode tangents,
    L N^2 P work instead of L N^3).
    """
    n = ens.width
    jac = torch.eye(n, dtype=ens.dtype, device=ens.device).expand(ens.batch, n, n) if probes is None else probes
    layers: list[Layer] = []
    z = z0
    for _ in range(depth):
        w, b = ens.draw_weights(gen), ens.draw_bias(gen)
        y = ens.activation.fn(z)
        mult, add = ens.draw_noise(gen, y)
        d = ens.activation.derivative(z)
        if mult is not None:
            y, d = y * mult, d * mult
        if add is not None:
            y = y + add
        jac = torch.bmm(w, d * jac)
        z = torch.baddbmm(b, w, y)
        if keep_layers:
            layers.append(Layer(w, b, mult, add))
    return jac, layers


def replay(ens: Ensemble, layers: Sequence[Layer], z0: torch.Tensor) -> torch.Tensor:
    """z^L for input z0 through previously drawn layers (same weights, biases and noise)."""
    z = z0
    for lay in layers:
        y = ens.activation.fn(z)
        if lay.mult is not None:
            y = y * lay.mult
        if lay.add is not None:
            y = y + lay.add
        z = torch.baddbmm(lay.bias, lay.weight, y)
    return z


def mutual_information(singular_values: torch.Tensor, signal_var: float, noise_var: float) -> torch.Tensor:
    """I = 1/2 sum_i log(1 + s_x^2 sigma_i^2 / s_n^2) over the last axis (nats)."""
    return 0.5 * torch.log1p(signal_var * singular_values**2 / noise_var).sum(dim=-1)


def equal_gain_information(sv2: np.ndarray, snr: float) -> np.ndarray:
    """I/N = mean_i log(1 + snr l_i / mean(l)) / 2 per row of squared singular values l (nats per unit):
    the channel of J normalised to mean squared singular value 1, which sees only the spectrum's shape."""
    lam = sv2 / sv2.mean(axis=-1, keepdims=True)
    return 0.5 * np.log1p(snr * lam).mean(axis=-1)


def spectrum_theory(ens: Ensemble, sigma_w2: float, depth: int, q: float, snr: float,
                    with_information: bool = True) -> dict[str, Any]:
    """Free-probability predictions at one point (deepprop.theory.spectrum): theory_spread (var/mean^2 of
    the squared singular values), mi_equal_gain_theory and mi_isometry = log(1 + snr) / 2; a reason
    instead where the theory has no answer."""
    prior = ens.prior.replace(sigma_w2=sigma_w2)
    kw = {"depth": depth, "weights": ens.weights, "q": q}
    out: dict[str, Any] = {"mi_isometry": 0.5 * math.log1p(snr), "reason": None}
    try:
        out["theory_spread"] = spectral.jacobian_moments(prior, **kw).spread
        if with_information:
            out["mi_equal_gain_theory"] = spectral.equal_gain_information(prior, snr=snr, **kw)
    except ParameterError as exc:
        out["reason"] = str(exc)
    return out


@dataclass
class JacobianPoint(Result):
    """Spectrum summary at one sigma_w2 (means and standard errors over networks)."""

    sigma_w2: float
    input_q: float
    chi1: float
    mean_sq_singular: float
    mean_sq_singular_err: float
    spread: float
    log_sv_std: float
    quantiles: dict[str, float]
    mutual_information: float
    mutual_information_err: float
    singular_values: np.ndarray | None = None  # (networks, N), for figures
    theory: dict[str, Any] = field(default_factory=dict)  # theory_spread, mi_equal_gain_theory, reasons
    mi_equal_gain: float = math.nan  # I/N of J / sqrt(mean sigma^2) per network (nats per unit)
    mi_equal_gain_err: float = math.nan

    @property
    def chi1_L(self) -> float:
        return self.chi1 ** self._depth if math.isfinite(self.chi1) else math.nan

    _depth: int = 0

    def record(self) -> dict[str, Any]:
        ratio = self.mean_sq_singular / self.chi1_L if math.isfinite(self.chi1_L) else math.nan
        return {
            "sigma_w2": self.sigma_w2, "input_q": self.input_q, "chi1": self.chi1, "chi1_L": self.chi1_L,
            "mean_sq_singular": self.mean_sq_singular, "mean_sq_singular_err": self.mean_sq_singular_err,
            "ratio_to_theory": ratio, "spread": self.spread, "log_sv_std": self.log_sv_std,
            "singular_value_quantiles": self.quantiles, "mutual_information": self.mutual_information,
            "mutual_information_err": self.mutual_information_err,
            "mi_equal_gain": self.mi_equal_gain, "mi_equal_gain_err": self.mi_equal_gain_err,
            "mi_isometry": self.theory.get("mi_isometry"),
            "theory_spread": self.theory.get("theory_spread"), "theory_spread_reason": self.theory.get("reason"),
            "mi_equal_gain_theory": self.theory.get("mi_equal_gain_theory"),
            "mi_equal_gain_theory_reason": self.theory.get("reason"),
        }


@dataclass
class JacobianResult(Result):
    points: list[JacobianPoint]
    critical_sigma_w2: float
    params: dict[str, Any] = field(default_factory=dict)

    def _peak(self, key: str) -> float:
        mi = np.array([getattr(p, key) for p in self.points])
        if not np.any(np.isfinite(mi)):
            return math.nan
        return self.points[int(np.nanargmax(mi))].sigma_w2

    @property
    def mi_peak_sigma_w2(self) -> float:
        """The sigma_w2 with the largest channel information."""
        return self._peak("mutual_information")

    @property
    def mi_peak_at_grid_edge(self) -> bool:
        """True when the channel information peaks at the smallest or largest sigma_w2 of the grid: the peak
        may lie beyond it, and the grid's edge is not a measured maximum."""
        peak = self.mi_peak_sigma_w2
        grid = [p.sigma_w2 for p in self.points]
        return len(grid) < 3 or (math.isfinite(peak) and peak in (min(grid), max(grid)))

    @property
    def mi_equal_gain_peak_sigma_w2(self) -> float:
        """The sigma_w2 with the largest equal-gain information (the most isometric spectrum shape)."""
        return self._peak("mi_equal_gain")

    def record(self) -> dict[str, Any]:
        return {"points": self.points, "mi_peak_sigma_w2": self.mi_peak_sigma_w2,
                "mi_peak_at_grid_edge": self.mi_peak_at_grid_edge,
                "mi_equal_gain_peak_sigma_w2": self.mi_equal_gain_peak_sigma_w2,
                "critical_sigma_w2": self.critical_sigma_w2, "params": self.params}


def jacobian_spectrum(
    prior: Network,
    *loose: float | Sequence[float],
    width: int = 300,
    depth: int = 10,
    weights: str = "gaussian",
    networks: int = 2,
    input_q: float | None = None,
    signal_var: float = 1.0,
    noise_var: float = 1.0,
    spectrum: bool = True,
    probes: int = 16,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    **noise: float,
) -> JacobianResult:
    """Jacobian spectra of ``networks`` random networks per sigma_w2, at an input with pre-activation
    variance ``input_q`` (default: the engine's q* for each sigma_w2).

    ``jacobian_spectrum(prior)`` (its sigma_w2 a value or a 1-d sweep, everything else single-valued) or
    ``jacobian_spectrum("tanh", sigma_w2, sigma_b2, keep_rate=...)``. With ``spectrum=False`` only
    (1/N)||J||_F^2 is measured, by ``probes`` random tangent vectors (Hutchinson's estimator; no N x N
    Jacobian, no SVD; spread, quantiles and I are then NaN).
    """
    ens = Ensemble.build(prior, *loose, width=width, networks=networks, weights=weights, device=device,
                         dtype=dtype, **noise)
    sweep = list(ens.sigma_w2)
    depth = check_positive_int("depth", depth)
    signal_var = check_positive("signal_var", signal_var)
    noise_var = check_positive("noise_var", noise_var)
    probes = check_positive_int("probes", probes)
    check_memory_terms({"width": array_bytes((8 * ens.batch, ens.width, ens.width), itemsize=ens.dtype.itemsize)},
                       f"the Jacobians of {ens.batch} networks of width {ens.width}", device=ens.device)
    theory = _theory.point(ens)
    s = len(sweep)
    if input_q is not None:
        q_in = np.full(s, check_positive("input_q", input_q))
    else:
        q_in = theory["q_star"].reshape(s).astype(np.float64)
        if not np.all(np.isfinite(q_in) & (q_in > 0)):
            bad = sweep[int(np.argmin(np.isfinite(q_in) & (q_in > 0)))]
            raise ParameterError("input_q", f"no finite fixed point q* at sigma_w2={bad}; give the input variance")
    chi1 = theory["chi1"].reshape(s).astype(np.float64)
    crit = _theory.critical_sigma_w2(ens)

    gen = ens.generator(seed)
    n = ens.width
    with torch.no_grad():
        g = torch.randn((ens.networks, n, 1), generator=gen, device=ens.device, dtype=ens.dtype)
        g = g / g.pow(2).mean(dim=1, keepdim=True).sqrt()  # exact (1/N)|z0|^2 = 1 before scaling
        scale = torch.as_tensor(np.sqrt(q_in), dtype=ens.dtype, device=ens.device).repeat_interleave(ens.networks)
        z0 = g.repeat(s, 1, 1) * scale.view(-1, 1, 1)
        if spectrum:
            jac, _ = network_jacobian(ens, z0, depth, gen)
            msq = (jac.pow(2).sum(dim=(1, 2)) / n).view(s, ens.networks).cpu().numpy()
            sv = torch.linalg.svdvals(jac).view(s, ens.networks, n)
        else:  # Hutchinson: E ||J v||^2 = tr(J^T J) for v ~ N(0, I)
            pgen = ens.generator(seed + 1)  # own stream: the same seed gives the same networks either way
            v = torch.randn((ens.networks, n, probes), generator=pgen, device=ens.device, dtype=ens.dtype)
            jv, _ = network_jacobian(ens, z0, depth, gen, probes=v.repeat(s, 1, 1))
            msq = (jv.pow(2).sum(dim=(1, 2)) / (n * probes)).view(s, ens.networks).cpu().numpy()
            sv = None
        mi = mutual_information(sv, signal_var, noise_var).cpu().numpy() if sv is not None else None
        svn = sv.cpu().numpy() if sv is not None else None

    points = []
    for i, sw in enumerate(sweep):
        m, m_err = stats_over_networks(msq[i])
        if svn is not None:
            sv2 = svn[i] ** 2
            spread = float(np.mean(sv2.var(axis=1) / sv2.mean(axis=1) ** 2))
            log_std = float(np.mean([np.log(row[row > 0]).std() for row in svn[i]]))  # exact zeros skipped
            qs = {f"q{int(round(100 * q)):02d}": float(np.quantile(svn[i], q)) for q in QUANTILES}
            mi_m, mi_e = stats_over_networks(mi[i])
            eg_m, eg_e = stats_over_networks(equal_gain_information(sv2, signal_var / noise_var))
            sv_keep = svn[i]
        else:
            spread = log_std = eg_m = eg_e = math.nan
            qs = {}
            mi_m = mi_e = math.nan
            sv_keep = None
        pt = JacobianPoint(float(sw), float(q_in[i]), float(chi1[i]), float(m), float(m_err), spread, log_std,
                           qs, float(mi_m), float(mi_e), sv_keep)
        pt._depth = depth
        pt.mi_equal_gain, pt.mi_equal_gain_err = float(eg_m), float(eg_e)
        pt.theory = spectrum_theory(ens, float(sw), depth, float(q_in[i]), signal_var / noise_var,
                                    with_information=spectrum)
        points.append(pt)
    params = {"activation": ens.activation.name, "sigma_b2": ens.sigma_b2, "width": n, "depth": depth,
              "weights": weights, **ens.noise.numbers(), "networks": ens.networks, "signal_var": signal_var,
              "noise_var": noise_var, "seed": int(seed), "dtype": str(ens.dtype).removeprefix("torch.")}
    return JacobianResult(points, crit, params)
