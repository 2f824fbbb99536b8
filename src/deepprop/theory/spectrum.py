r"""Spectrum of the input-output Jacobian by free probability (Pennington, Schoenholz, Ganguli 2017, 2018).

For J = W^L D^{L-1} ... W^1 D^0 with D^l = diag(eps phi'(h)), h ~ N(0, q) at every layer (q = q* by
default) and weights Gaussian (entries N(0, sigma_w^2 / N)) or scaled orthogonal, the squared singular
values of J are the eigenvalues of J J^T. In the large-N limit the factors are asymptotically free, so
the S-transform of J J^T is the product of the layers' S-transforms,

    S_{JJ^T}(z) = prod_l S_{D^2}(z) S_{W^T W}(z),   S_{W^T W}(z) = 1 / (sigma_w^2 (1 + z)) (Gaussian,
    Marchenko-Pastur of ratio 1) or 1 / sigma_w^2 (orthogonal).

A measure with moments m1, m2 has S(z) = 1/m1 - (m2 - m1^2) / m1^3 z + O(z^2): means multiply and the
normalised variances v = m2/m1^2 - 1 ADD over free factors. Hence for the squared singular values

    mean    = chi_1^L,   chi_1 = sigma_w^2 E[a],   a = (eps phi'(sqrt(q) z))^2
    spread  = var / mean^2 = L (E[a^2] / E[a]^2 - 1 + s_W),   s_W = 1 (Gaussian), 0 (orthogonal),

with E[a^k] = E[eps^{2k}] E[phi'^{2k}] (dropout: E[eps^2] = 1/rho, E[eps^4] = 1/rho^3).

The whole distribution is encoded in S as well. On the negative real axis everything is real:
psi(x) = E[x l / (1 - x l)] maps (-inf, 0) onto (-(1 - p0), 0) (p0 the mass at zero), its inverse is
chi(z) = z S(z) / (1 + z), and the Shannon transform

    V(snr) = E[log(1 + snr l)] = int_0^snr -psi(-t) / t dt

gives the Gaussian channel's mutual information per unit, I / N = V(snr) / 2. :func:`equal_gain_information`
computes it for the spectrum normalised to mean 1 (J / sqrt(chi_1^L)): the information at EQUAL gain,
which depends only on the shape of the spectrum and is maximal (= log(1 + snr) / 2) for an isometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.interpolate import PchipInterpolator

from deepprop.errors import ParameterError
from deepprop.prior import Network, NetworkPrior, as_prior
from deepprop.theory.backprop import derivative_moments
from deepprop.theory.gauss import expect
from deepprop.theory.meanfield import critical_sigma_w2, mean_field
from deepprop.validation import check_positive, check_positive_int

WEIGHT_KINDS = ("gaussian", "orthogonal")


def _weight_s1(weights: str) -> float:
    if weights not in WEIGHT_KINDS:
        raise ParameterError("weights", f"must be one of {', '.join(WEIGHT_KINDS)} (got {weights!r})")
    return 1.0 if weights == "gaussian" else 0.0


@dataclass(frozen=True)
class SpectrumMoments:
    """Large-N moments of the squared singular values of an L-layer Jacobian at variance q.

    ``mean`` = chi1^L; ``spread`` = var/mean^2 = depth * (layer_spread_d + layer_spread_w).
    """

    q: float
    chi1: float
    depth: int
    layer_spread_d: float  # E[a^2]/E[a]^2 - 1 of D^2
    layer_spread_w: float  # 1 (Gaussian) or 0 (orthogonal)

    @property
    def mean(self) -> float:
        return self.chi1**self.depth

    @property
    def spread(self) -> float:
        return self.depth * (self.layer_spread_d + self.layer_spread_w)

    def to_dict(self) -> dict[str, Any]:
        return {"q": self.q, "chi1": self.chi1, "depth": self.depth, "mean": self.mean, "spread": self.spread,
                "layer_spread_d": self.layer_spread_d, "layer_spread_w": self.layer_spread_w}


def _resolve_q(prior: NetworkPrior, q: float | None) -> float:
    if q is not None:
        return check_positive("q", q)
    qs = float(np.ravel(mean_field(prior).q_star)[0])
    if not (math.isfinite(qs) and qs > 0):
        raise ParameterError("q", f"no finite fixed point q* > 0 at sigma_w2={float(prior.sigma_w2)}, "
                                  f"sigma_b2={float(prior.sigma_b2)}; give the input variance q")
    return qs


def _point_prior(prior: Network, sigma_w2: float | None, sigma_b2: float | None, noise: dict) -> NetworkPrior:
    """The single-valued prior of one spectrum computation, with sigma_w2 > 0."""
    prior = as_prior(prior, sigma_w2, sigma_b2, **noise)
    for name in ("sigma_w2", "sigma_b2"):
        if np.size(getattr(prior, name)) != 1:
            raise ParameterError(name, "must be a single value here")
    check_positive("sigma_w2", prior.sigma_w2.item())
    prior.noise.single()
    return prior


def jacobian_moments(
    prior: Network,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    depth: int | None = None,
    *,
    weights: str = "gaussian",
    q: float | None = None,
    **noise: float,
) -> SpectrumMoments:
    """Mean (chi1^L) and spread (var/mean^2) of the squared singular values of J (module docstring).

    ``jacobian_moments(prior, depth=L)`` or ``jacobian_moments("tanh", sigma_w2, sigma_b2, L, keep_rate=...)``.
    ``q`` is the pre-activation variance at every layer (default the fixed point q*). The noise enters
    through E[eps^2] and E[eps^4] (:class:`deepprop.prior.Noise`).
    """
    s_w = _weight_s1(weights)
    depth = check_positive_int("depth", depth)
    prior = _point_prior(prior, sigma_w2, sigma_b2, noise)
    qv = _resolve_q(prior, q)
    m2, m4 = derivative_moments(prior.activation, np.array(qv))
    e2, e4 = float(prior.noise.mu2), float(prior.noise.mu4)
    ea, ea2 = e2 * float(m2), e4 * float(m4)
    if ea <= 0:
        raise ParameterError("q", f"phi' vanishes almost surely at q={qv}: the Jacobian is zero")
    return SpectrumMoments(qv, float(prior.sigma_w2) * ea, depth, ea2 / ea**2 - 1.0, s_w)


def _layer_psi(prior: NetworkPrior, q: float):
    """psi_D(-t) for the layer factor a / E[a] (a = (eps phi')^2), vectorised over t; and p0 = P(a = 0)."""
    act = prior.activation
    m2, _ = derivative_moments(act, np.array(q))
    mean_a = float(m2)  # E[eps^2] cancels against the mean of the eps^2 factor below
    # eps^2 / E[eps^2]: atoms (or quadrature nodes) of the noise kinds, given eps != 0 (deepprop.noise_models)
    values, probs, keep = prior.noise.eps2_law()
    scale = torch.tensor(values, dtype=torch.float64)
    weight = torch.tensor(probs * keep, dtype=torch.float64)
    zero_mass = 1.0 - keep + keep * float(expect(lambda u: (act.derivative(u) == 0).double(),
                                                  act, torch.tensor(q, dtype=torch.float64)))

    def psi(t: torch.Tensor) -> torch.Tensor:
        qt = torch.full_like(t, q)
        tt = t[:, None] * scale[None, :] / mean_a  # (T, G)

        def f(u: torch.Tensor) -> torch.Tensor:  # u: (T, nodes)
            a = act.derivative(u) ** 2
            ta = tt[:, :, None] * a[:, None, :]
            return (weight[None, :, None] * ta / (1.0 + ta)).sum(dim=1)

        return -expect(f, act, qt)

    return psi, zero_mass


def _invert_monotone(fn, target: torch.Tensor, lo: float = -30.0, hi: float = 30.0, iters: int = 56) -> torch.Tensor:
    """t with fn(t) = target for a decreasing fn of t > 0, by bisection in log t."""
    a = torch.full_like(target, lo)
    b = torch.full_like(target, hi)
    for _ in range(iters):
        mid = 0.5 * (a + b)
        above = fn(torch.exp(mid)) > target  # fn decreasing: still above -> go right
        a = torch.where(above, mid, a)
        b = torch.where(above, b, mid)
    return torch.exp(0.5 * (a + b))


def equal_gain_information(
    prior: Network,
    sigma_w2: float | None = None,
    sigma_b2: float | None = None,
    depth: int | None = None,
    *,
    snr: float = 1.0,
    weights: str = "gaussian",
    q: float | None = None,
    grid: int = 1500,
    **noise: float,
) -> float:
    """Large-N mutual information per unit, I/N = E[log(1 + snr l)] / 2 in nats, of the channel
    x -> J x / sqrt(chi1^L) + n (spectrum normalised to mean 1), from the S-transform (module docstring).

    ``equal_gain_information(prior, depth=L)`` or the loose form of :func:`jacobian_moments`. Equals
    log(1 + snr) / 2 for an isometry and is smaller the wider the spectrum (Jensen). The noise enters
    through the law of eps^2 of its kinds (:meth:`deepprop.prior.Noise.eps2_law`).
    """
    s_w = _weight_s1(weights)
    depth = check_positive_int("depth", depth)
    snr = check_positive("snr", snr)
    prior = _point_prior(prior, sigma_w2, sigma_b2, noise)
    psi_d, p0 = _layer_psi(prior, _resolve_q(prior, q))
    top = 1.0 - p0  # psi ranges over (-top, 0)
    # parametrise by z in (-top, 0): S_D(z) from t_D(z) with psi_D(-t_D) = z
    u = np.concatenate([np.geomspace(1e-10, 0.5, grid // 2), 1.0 - np.geomspace(0.5, 1e-12, grid // 2)[1:]])
    z = torch.tensor(-top * u, dtype=torch.float64)
    with torch.no_grad():
        t_d = _invert_monotone(psi_d, z)
    s_d = -t_d * (1.0 + z) / z  # S of the normalised D^2
    s_layer = s_d / (1.0 + z) if s_w == 1.0 else s_d
    log_t = torch.log(-z / (1.0 + z)) + depth * torch.log(s_layer)  # t = -chi_J(z) = -z S_J / (1 + z)
    log_t, zz = log_t.numpy(), z.numpy()
    order = np.argsort(log_t)
    log_t, zz = log_t[order], zz[order]
    grid_t = np.linspace(math.log(1e-9), math.log(snr), 2000)
    if grid_t[0] < log_t[0]:
        raise ParameterError("snr", "spectrum transform grid does not reach small t; increase grid")
    # monotone cubic interpolation of psi(log t): linear interpolation left a 2e-5 relative error at grid 1500
    keep = np.concatenate([[True], np.diff(log_t) > 0])
    psi_t = PchipInterpolator(log_t[keep], zz[keep], extrapolate=False)(grid_t)
    psi_t = np.where(grid_t > log_t[keep][-1], -top, psi_t)
    if np.isnan(psi_t[0]):
        raise ParameterError("snr", "spectrum transform grid does not reach small t; increase grid")
    # V(snr) = int_0^snr -psi(-t) / t dt = int -psi d(log t); the piece below t0 = 1e-9 is ~ t0 (mean 1)
    v = float(np.trapezoid(-psi_t, grid_t)) + 1e-9
    return 0.5 * v


@dataclass(frozen=True)
class InformationPoint:
    """One (sigma_w2, sigma_b2, weights) of :func:`information_map`; ``reason`` says why a value is NaN."""

    sigma_w2: float
    sigma_b2: float
    weights: str
    q_star: float
    chi1: float
    spread: float
    mi_equal_gain: float
    critical: bool  # sigma_w2 is the critical value chi1 = 1 at this sigma_b2
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class InformationMap:
    """Equal-gain information I/N and spectrum spread over sigma_w2 x sigma_b2 x weights at one depth."""

    points: tuple[InformationPoint, ...]
    depth: int
    snr: float

    @property
    def mi_isometry(self) -> float:
        """log(1 + snr) / 2: the information of a perfect isometry, the upper bound of every point."""
        return 0.5 * math.log1p(self.snr)

    def _best(self, pts: list[InformationPoint], key: str, sign: float) -> InformationPoint | None:
        ok = [p for p in pts if math.isfinite(getattr(p, key))]
        return max(ok, key=lambda p: sign * getattr(p, key)) if ok else None

    def peak(self, sigma_b2: float, weights: str) -> InformationPoint | None:
        """The sigma_w2 point with the largest I/N at this sigma_b2 and weight type."""
        return self._best([p for p in self.points if p.sigma_b2 == sigma_b2 and p.weights == weights],
                          "mi_equal_gain", 1.0)

    def critical(self, sigma_b2: float, weights: str) -> InformationPoint | None:
        """The chi1 = 1 point at this sigma_b2 and weight type (None where there is none)."""
        return next((p for p in self.points if p.critical and p.sigma_b2 == sigma_b2 and p.weights == weights),
                    None)

    def isometry(self) -> InformationPoint | None:
        """Dynamical isometry as far as the map resolves it: the chi1 = 1 point with the smallest spread."""
        return self._best([p for p in self.points if p.critical], "spread", -1.0)

    def summary(self) -> list[dict[str, Any]]:
        """Per (sigma_b2, weights): the peak, the critical point and the global maximum over the map."""
        rows = []
        for sb2 in sorted({p.sigma_b2 for p in self.points}):
            for w in sorted({p.weights for p in self.points}):
                pk, cr = self.peak(sb2, w), self.critical(sb2, w)
                rows.append({"sigma_b2": sb2, "weights": w, "peak": None if pk is None else pk.to_dict(),
                             "critical": None if cr is None else cr.to_dict(),
                             "peak_is_critical": bool(pk is not None and pk.critical)})
        return rows

    def to_dict(self) -> dict[str, Any]:
        best = self._best(list(self.points), "mi_equal_gain", 1.0)
        iso = self.isometry()
        return {"depth": self.depth, "snr": self.snr, "mi_isometry": self.mi_isometry,
                "points": [p.to_dict() for p in self.points], "summary": self.summary(),
                "global_peak": None if best is None else best.to_dict(),
                "isometry": None if iso is None else iso.to_dict()}


def information_map(
    prior: Network,
    sigma_w2: ArrayLike | None = None,
    sigma_b2: ArrayLike | None = None,
    depth: int | None = None,
    *,
    weights: tuple[str, ...] = WEIGHT_KINDS,
    snr: float = 1.0,
    include_critical: bool = True,
    grid: int = 1500,
    **noise: float,
) -> InformationMap:
    """Equal-gain I/N (:func:`equal_gain_information`) and spread (:func:`jacobian_moments`) at q* on the
    grid sigma_w2 x sigma_b2 x weights, plus (``include_critical``) each sigma_b2's critical sigma_w2 with
    chi1 = 1. Points without a finite q* keep NaN values and a reason.

    ``information_map(prior, depth=L)`` takes the axes from the prior's sigma_w2 and sigma_b2 (each a value
    or a 1-d array; its noise single-valued); ``information_map("tanh", sigma_w2, sigma_b2, L)`` is the
    loose form (the axes need not broadcast against each other).
    """
    depth = check_positive_int("depth", depth)
    for w in weights:
        _weight_s1(w)
    if isinstance(prior, NetworkPrior):
        if sigma_w2 is not None or sigma_b2 is not None or noise:
            raise ParameterError("prior", "pass either a NetworkPrior or sigma_w2/sigma_b2/noise values, not both")
        base, sigma_w2, sigma_b2 = prior, prior.sigma_w2, prior.sigma_b2
    else:
        base = as_prior(prior, 1.0, 0.0, **noise)
    base.noise.single()
    sws = [float(s) for s in np.atleast_1d(np.asarray(sigma_w2, dtype=np.float64))]
    pts: list[InformationPoint] = []
    for sb2 in (float(s) for s in np.atleast_1d(np.asarray(sigma_b2, dtype=np.float64))):
        crit = float(critical_sigma_w2(base.replace(sigma_b2=sb2))) if include_critical else math.nan
        grid_sw = sorted(set(sws) | ({crit} if math.isfinite(crit) else set()))
        for w in weights:
            for sw in grid_sw:
                is_crit = math.isfinite(crit) and sw == crit
                try:
                    point = base.replace(sigma_w2=sw, sigma_b2=sb2)
                    m = jacobian_moments(point, depth=depth, weights=w)
                    mi = equal_gain_information(point, depth=depth, weights=w, snr=snr, q=m.q, grid=grid)
                    pts.append(InformationPoint(sw, sb2, w, m.q, m.chi1, m.spread, mi, is_crit))
                except ParameterError as exc:
                    pts.append(InformationPoint(sw, sb2, w, math.nan, math.nan, math.nan, math.nan, is_crit,
                                                str(exc)))
    return InformationMap(tuple(pts), depth, float(snr))
