r"""Depth scales, phases, the critical line, and depth scales measured from the recursions.

* xi_q = -1 / log|dQ/dq (q*)|          (eq. 7; dQ/dq = chi_1 + sigma_w^2 mu2 E[phi'' phi])
* xi_c = -1 / log chi_c,  chi_c = sigma_w^2 E[phi'(u1*) phi'(u2*)]   (eq. 9; chi_c = chi_1 when c* = 1)
* xi_grad = -1 / log chi_1             (eq. 16; signed: negative means exploding gradients)

Phase: "unbounded" where the variance map has no finite fixed point; otherwise "critical" where
|chi_1 - 1| <= tol (default 1e-3), "ordered" where chi_1 < 1 and "chaotic" where chi_1 > 1. With
noise the phase still names the gradient regime (chi_1 carries the noise factor mu2), but c* < 1
everywhere and xi_c stays finite (section 3.1 of the paper). A bounded activation (|phi| <= M: tanh, erf,
sigmoid, hard_tanh, sin, ...) always has a finite q* <= sigma_w^2 (mu2 M^2 + s_add^2) + sigma_b^2: where
the solver's range ends first (q* > 1e15, at astronomically large sigma_w^2) the phase is "chaotic"
(chi_1 grows like sqrt(sigma_w^2) there), never "unbounded".

The critical rule (one for every activation and noise). A depth scale xi = -1 / log r is the number of
layers over which a deviation shrinks by e at rate r per layer. Where |1 - r| <= tol (the same ``tol``
as the phase, default 1e-3) the depth scale is reported as critical: +inf in Python, null with reason
"critical" in JSON. Such a depth scale exceeds ~1/tol = 1000 layers, and at this tolerance the rate is
not resolved: finite networks of width N <= 1/tol move it by O(1/N), and the quadrature error of r is
amplified 1/|1 - r| times in xi. Each depth scale follows its own rate: xi_grad (r = chi_1) at every
critical point, xi_c (r = chi_c) where c* = 1 is marginal (no noise), xi_q (r = dQ/dq at q*) where q* is
marginal (e.g. tanh at sigma_w^2 = 1, sigma_b^2 = 0, where q* = 0).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from deepprop.theory.fixed_points import q_star
from deepprop.theory.maps import TensorPrior, chi1


def depth_scale(rate: torch.Tensor) -> torch.Tensor:
    """xi = -1 / log(rate) for 0 <= rate < 1; +inf at rate 1; NaN above 1 (no decay) or for NaN."""
    rate = torch.as_tensor(rate)
    with torch.no_grad():
        xi = -1.0 / torch.log(rate)
    xi = torch.where(rate == 1.0, torch.full_like(xi, float("inf")), xi)
    return torch.where((rate > 1.0) | torch.isnan(rate), torch.full_like(xi, float("nan")), xi)


def gradient_depth_scale(chi_1: torch.Tensor) -> torch.Tensor:
    """xi_grad = -1 / log chi_1, signed (eq. 16): > 0 vanishing, < 0 exploding, inf at chi_1 = 1."""
    xi = -1.0 / torch.log(chi_1)
    return torch.where(chi_1 == 1.0, torch.full_like(xi, float("inf")), xi)


def critical_rule(xi: np.ndarray, tol: float, rate: np.ndarray | None = None) -> np.ndarray:
    """``xi`` with +inf where its rate r (given, or exp(-1/xi)) lies within ``tol`` of 1 (module docstring).

    Applied to xi_q, xi_c and xi_grad alike; NaN stays NaN."""
    xi = np.asarray(xi, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        r = np.exp(-1.0 / xi) if rate is None else np.asarray(rate, dtype=np.float64)
        critical = np.abs(1.0 - r) <= tol
    return np.where(critical & ~np.isnan(xi), np.inf, xi)


CRITICAL_TOL = 1e-3
"""Default tolerance of the critical rule and of the phase label (``mean_field(critical_tol=...)``)."""


@functools.lru_cache(maxsize=256)
def is_bounded_activation(activation) -> bool:
    """Whether |phi| stays bounded: |phi(x)| at |x| up to 1e300 is no larger than 10 (1 + max |phi| on
    [-10, 10]). True for tanh, erf, sigmoid, hard_tanh, sin; False for relu, gelu, elu, softplus, linear."""
    x = torch.cat([torch.linspace(-10.0, 10.0, 201, dtype=torch.float64),
                   torch.logspace(1.0, 300.0, 300, dtype=torch.float64)])
    x = torch.cat([x, -x])
    try:
        with torch.no_grad():
            y = torch.as_tensor(activation.fn(x), dtype=torch.float64).abs()
    except Exception:  # noqa: BLE001 - a callable that cannot take the probe: treat as unbounded
        return False
    if not bool(torch.isfinite(y).all()):
        return False
    inner = float(y[:201].max())
    return bool(float(y.max()) <= 10.0 * (1.0 + inner))


def classify(chi_1: np.ndarray, bounded: np.ndarray, tol: float = 1e-3,
             unsolved: np.ndarray | None = None, *, bounded_activation: bool = False) -> np.ndarray:
    """Phase label per point (see module docstring); "unsolved" where the fixed-point iteration neither
    converged nor diverged (no answer, said so rather than reported as unbounded). With
    ``bounded_activation`` a point the solver could not follow to its (finite) q* is "chaotic"."""
    chi_1 = np.asarray(chi_1)
    out = np.full(chi_1.shape, "chaotic", dtype="<U9")  # filled in place: one label array, no temporaries
    out[chi_1 < 1.0] = "ordered"
    out[np.abs(chi_1 - 1.0) <= tol] = "critical"
    if not bounded_activation:
        out[~np.asarray(bounded)] = "unbounded"
    if unsolved is not None:
        out[np.asarray(unsolved)] = "unsolved"
    return out


def critical_sigma_w2_setting(s: TensorPrior, q0: float = 1.0) -> torch.Tensor:
    """sigma_w^2 where chi_1 = 1, for each sigma_b^2 and noise in ``s`` (its sigma_w2 is ignored).

    Bisection on log sigma_w^2 over [1e-4, 1e4]; chi_1 is taken as > 1 where the variance map is
    unbounded. NaN where chi_1 - 1 does not change sign on that bracket, or where the sign change is
    the edge of the bounded region rather than chi_1 = 1: a genuine critical point keeps a finite q* just
    above the root too (relu with a bias or additive noise loses it exactly where chi_1 reaches 1: no
    critical point), unless the maps do not depend on q at all (relu / linear without bias and additive
    noise, where sigma_w^2 mu2 = 2 resp. 1 is critical for every q).
    """
    lo = torch.full(s.shape, -4.0, dtype=torch.float64, device=s.sigma_w2.device)
    hi = torch.full_like(lo, 4.0)

    def excess(log_sw2: torch.Tensor) -> torch.Tensor:
        sub = TensorPrior(s.activation, s.kernel, 10.0**log_sw2, s.sigma_b2, s.mu2, s.add_var)
        q, bounded = q_star(sub, q0)
        val = chi1(sub, torch.nan_to_num(q, nan=1.0)) - 1.0
        return torch.where(bounded, val, torch.ones_like(val))

    f_lo, f_hi = excess(lo), excess(hi)
    valid = (f_lo < 0) & (f_hi > 0)
    for _ in range(60):  # bisection to ~1e-17 in log10 sigma_w^2
        mid = 0.5 * (lo + hi)
        f_mid = excess(mid)
        up = f_mid > 0
        hi = torch.where(up, mid, hi)
        lo = torch.where(up, lo, mid)
        if bool(((hi - lo) < 1e-14).all()):
            break
    root = 10.0 ** (0.5 * (lo + hi))
    # The sign change can also be the edge of the bounded region (e.g. gelu, whose variance map loses
    # its stable fixed point before chi_1 reaches 1): keep only genuine roots of chi_1 = 1.
    at_root = TensorPrior(s.activation, s.kernel, root, s.sigma_b2, s.mu2, s.add_var)
    q, bounded = q_star(at_root, q0)
    genuine = bounded & ((chi1(at_root, torch.nan_to_num(q, nan=1.0)) - 1.0).abs() < 1e-6)
    above = TensorPrior(s.activation, s.kernel, root * (1.0 + 1e-6), s.sigma_b2, s.mu2, s.add_var)
    _, bounded_above = q_star(above, q0)
    scale_free = s.activation.homogeneous & (s.sigma_b2 == 0) & (s.add_var == 0)
    genuine = genuine & (bounded_above | scale_free)
    return torch.where(valid & genuine, root, torch.full_like(root, float("nan")))


def fit_depth_scale(residual: np.ndarray, floor: float = 1e-11, skip: int = 1, min_points: int = 4) -> np.ndarray:
    """Fit |x^l - x*| ~ A exp(-l / xi) along the last axis, as in fig. 2 (b, c).

    Layers before ``skip`` (the transient) and residuals below ``floor`` (round-off) are left out;
    the fit is a least-squares line through log residual against l. NaN where fewer than
    ``min_points`` layers qualify or the residual does not decay.
    """
    r = np.abs(np.asarray(residual, dtype=np.float64))
    depth = r.shape[-1]
    layers = np.arange(depth, dtype=np.float64)
    ok = (r > floor) & np.isfinite(r)
    ok[..., :skip] = False
    # Keep only the run of layers before the residual first hits the floor.
    first_bad = np.where(~ok[..., skip:], np.arange(skip, depth), depth).min(axis=-1)
    ok &= layers < first_bad[..., None]
    n = ok.sum(-1)
    logr = np.where(ok, np.log(np.where(ok, r, 1.0)), 0.0)
    sx = (ok * layers).sum(-1)
    sy = logr.sum(-1)
    sxx = (ok * layers**2).sum(-1)
    sxy = (ok * layers * logr).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * sxy - sx * sy) / (n * sxx - sx**2)
        xi = -1.0 / slope
    return np.where((n >= min_points) & (slope < 0), xi, np.nan)
