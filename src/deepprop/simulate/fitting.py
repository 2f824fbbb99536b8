"""Exponential depth-scale fits of layer-by-layer measurements.

A quantity that relaxes or grows exponentially with depth, r^l ~ A exp(l / s), is fitted by least
squares of log|r^l| against l over the points above the measurement's noise floor:

* forward residuals |q^l - q*| ~ exp(-l / xi_q) and |c^l - c*| ~ exp(-l / xi_c): ``xi = -1 / slope``;
* backward gradients ||dE/dW^l||^2 ~ exp(-(L - l) / xi_grad): ``xi = +1 / slope`` (signed: positive
  where gradients vanish towards the input, negative where they explode).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class LogLinearFit:
    """log|y| = intercept + slope * x over ``n_points`` points (NaN slope when fewer than 3)."""

    slope: float
    intercept: float
    slope_err: float
    n_points: int

    @property
    def ok(self) -> bool:
        return self.n_points >= 3 and math.isfinite(self.slope)


def relative_error(a: float, b: float) -> float:
    """a / b - 1, NaN where either is not finite or b is 0."""
    return a / b - 1.0 if math.isfinite(a) and math.isfinite(b) and b != 0 else math.nan


def relative(measured: str, reference: str, doc: str) -> property:
    """A read-only property: :func:`relative_error` of two attributes of a result record."""
    return property(lambda self: relative_error(getattr(self, measured), getattr(self, reference)), doc=doc)


def fit_log_linear(x: ArrayLike, y: ArrayLike, mask: ArrayLike | None = None) -> LogLinearFit:
    """Least-squares line through (x, log|y|) over ``mask`` (and finite, nonzero y); slope std error."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(np.asarray(y, dtype=np.float64))
    m = np.isfinite(y) & (y > 0) & np.isfinite(x)
    if mask is not None:
        m &= np.asarray(mask, dtype=bool)
    n = int(m.sum())
    if n < 3:
        return LogLinearFit(math.nan, math.nan, math.nan, n)
    xs, ly = x[m], np.log(y[m])
    xc = xs - xs.mean()
    sxx = float(xc @ xc)
    if sxx == 0:
        return LogLinearFit(math.nan, math.nan, math.nan, n)
    slope = float(xc @ (ly - ly.mean())) / sxx
    intercept = float(ly.mean() - slope * xs.mean())
    resid = ly - (intercept + slope * xs)
    err = math.sqrt(float(resid @ resid) / max(n - 2, 1) / sxx)
    return LogLinearFit(slope, intercept, err, n)


def leading_run(mask: ArrayLike, start: int = 0) -> np.ndarray:
    """Boolean mask keeping only the first unbroken run of True at or after index ``start``."""
    m = np.asarray(mask, dtype=bool).copy()
    out = np.zeros_like(m)
    i = start
    while i < m.size and not m[i]:
        i += 1
    while i < m.size and m[i]:
        out[i] = True
        i += 1
    return out


def fit_relaxation(layers: ArrayLike, residual: ArrayLike, floor: ArrayLike, start: int = 1) -> tuple[float, int]:
    """Depth scale xi of a residual |r^l| ~ exp(-l / xi), fitted over its leading run above ``floor``.

    ``floor`` (scalar or per layer) is where the finite-width / finite-ensemble noise takes over; the
    fit starts at layer index ``start``. Returns (xi, number of points); xi is NaN with < 3 points and
    inf where the residual does not decay.
    """
    r = np.abs(np.asarray(residual, dtype=np.float64))
    above = r > np.broadcast_to(np.asarray(floor, dtype=np.float64), r.shape)
    fit = fit_log_linear(layers, r, leading_run(above, start))
    if not fit.ok:
        return math.nan, fit.n_points
    return (-1.0 / fit.slope if fit.slope != 0 else math.inf), fit.n_points


def relaxation_jackknife(layers: ArrayLike, per_net: np.ndarray, star: float, floor: ArrayLike,
                         start: int = 0) -> float:
    """Standard error of :func:`fit_relaxation`'s xi for the network mean of ``per_net`` (networks, layers)
    against the fixed point ``star``, by the jackknife over networks: each network left out in turn, the
    slope refitted over the full fit's own layer window, its spread propagated to xi = -1/slope. NaN with
    fewer than 3 networks or where the full fit has no answer."""
    per_net = np.asarray(per_net, dtype=np.float64)
    k = per_net.shape[0]
    mean = per_net.mean(axis=0)
    r = np.abs(mean - star)
    mask = leading_run(r > np.broadcast_to(np.asarray(floor, dtype=np.float64), r.shape), start)
    full = fit_log_linear(layers, mean - star, mask)
    if k < 3 or not full.ok or full.slope == 0:
        return math.nan
    slopes = np.array([fit_log_linear(layers, np.delete(per_net, i, axis=0).mean(axis=0) - star, mask).slope
                       for i in range(k)])
    if not np.all(np.isfinite(slopes)):
        return math.nan
    se = math.sqrt((k - 1) / k * float(((slopes - slopes.mean()) ** 2).sum()))
    return se / full.slope**2


def fit_growth(layers: ArrayLike, values: ArrayLike, mask: ArrayLike | None = None) -> tuple[float, float, int]:
    """Signed depth scale s of values^l ~ exp(l / s) (s = 1 / slope); returns (s, its std error, points)."""
    fit = fit_log_linear(layers, values, mask)
    if not fit.ok:
        return math.nan, math.nan, fit.n_points
    if fit.slope == 0:
        return math.inf, math.inf, fit.n_points
    return 1.0 / fit.slope, fit.slope_err / fit.slope**2, fit.n_points


AMPLITUDE_SE = 3.0
"""A free-asymptote fit is a measurement only when its amplitude A stands this many standard errors from zero."""


def fit_exponential_approach(layers: ArrayLike, values: ArrayLike, sigma: ArrayLike | None = None,
                             xi_guess: float = 5.0) -> tuple[float, float, str | None]:
    """Fit values^l = y_inf + A exp(-l / xi) with the asymptote y_inf FREE (weighted least squares).

    Unlike :func:`fit_relaxation` against a theoretical fixed point, this is blind to an O(1/N) shift of
    the finite network's own fixed point, which otherwise leaves a plateau in |y^l - y*| that the
    log-linear fit reads as a longer depth scale. Returns (xi, y_inf, reason); reason is None on success.
    The fit fails (xi nan, with its reason) when it does not converge, when the rate is not a decay, and when
    the amplitude A is within ``AMPLITUDE_SE`` standard errors of zero (a flat series: no relaxation to time).
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    x = np.asarray(layers, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 5:
        return math.nan, math.nan, f"only {int(ok.sum())} finite layers (need 5 for a 3-parameter fit)"
    s = None
    if sigma is not None:  # exact layers (the prepared input has zero error) must not pin the fit
        s = np.asarray(sigma, dtype=np.float64)[ok]
        pos = s[np.isfinite(s) & (s > 0)]
        s = np.maximum(np.nan_to_num(s, nan=0.0), np.median(pos) if pos.size else 1.0)
    x, y = x[ok], y[ok]
    tail = y[-max(3, y.size // 4):].mean()
    p0 = (tail, y[0] - tail, 1.0 / max(xi_guess, 0.1))

    def model(xx: np.ndarray, y_inf: float, amp: float, rate: float) -> np.ndarray:
        with np.errstate(over="ignore"):  # a trial growing rate overflows; the search then steps back
            return y_inf + amp * np.exp(-rate * (xx - x[0]))

    try:
        with warnings.catch_warnings():  # the covariance is not used: its warning says nothing about xi
            warnings.simplefilter("ignore", OptimizeWarning)
            (y_inf, amp, rate), cov = curve_fit(model, x, y, p0=p0, sigma=s, maxfev=5000)
    except (RuntimeError, ValueError) as exc:
        return math.nan, math.nan, f"the 3-parameter fit did not converge ({exc})"
    if not math.isfinite(y_inf):
        return math.nan, math.nan, "the fitted asymptote is not finite (no relaxation resolved)"
    if not (math.isfinite(rate) and rate > 0):
        return math.nan, float(y_inf), f"fitted rate {rate:.3g} is not a decay (no relaxation resolved)"
    amp_err = math.sqrt(cov[1, 1]) if np.isfinite(cov[1, 1]) and cov[1, 1] >= 0 else math.inf
    if not abs(amp) > AMPLITUDE_SE * amp_err:  # a flat, noisy series: the "scale" would be read off the noise
        spread = (f"within {AMPLITUDE_SE:g} standard errors ({amp_err:.3g}) of zero" if math.isfinite(amp_err)
                  else "without an estimable standard error")
        return math.nan, float(y_inf), (f"the relaxation's amplitude {amp:.3g} is {spread}: no relaxation resolved "
                                        "above the noise")
    return 1.0 / rate, float(y_inf), None
