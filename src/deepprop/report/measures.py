"""Small summaries the claims share: goodness of exponential fits, relative deviations, slopes."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from deepprop.simulate.fitting import fit_log_linear, leading_run


def exponential_r2(residual: ArrayLike, floor: float = 1e-12, skip: int = 1) -> tuple[float, float, int]:
    """How exponential a residual |r^l| is asymptotically: R^2 of log|r^l| against l over the second half of
    its leading run above ``floor`` (the first half is the transient before the asymptotic regime).

    Returns (R^2, decades spanned by the fitted part, points); R^2 is NaN with fewer than 4 points.
    """
    r = np.abs(np.asarray(residual, dtype=np.float64))
    layers = np.arange(r.size, dtype=np.float64)
    mask = leading_run(np.isfinite(r) & (r > floor), start=skip)
    idx = np.flatnonzero(mask)
    mask[idx[: idx.size // 2]] = False
    n = int(mask.sum())
    if n < 4:
        return math.nan, math.nan, n
    fit = fit_log_linear(layers, r, mask)
    ly = np.log(r[mask])
    pred = fit.intercept + fit.slope * layers[mask]
    ss_res = float(((ly - pred) ** 2).sum())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return r2, float((ly.max() - ly.min()) / math.log(10)), n


def median_rel_dev(measured: ArrayLike, theory: ArrayLike) -> tuple[float, int]:
    """Median of |measured / theory - 1| over the entries where both are finite and theory != 0."""
    m = np.asarray(measured, dtype=np.float64).reshape(-1)
    t = np.asarray(theory, dtype=np.float64).reshape(-1)
    ok = np.isfinite(m) & np.isfinite(t) & (t != 0)
    if not ok.any():
        return math.nan, 0
    return float(np.median(np.abs(m[ok] / t[ok] - 1.0))), int(ok.sum())


def median_with_error(devs: ArrayLike, errs: ArrayLike, draws: int = 400, seed: int = 0) -> tuple[float, float]:
    """Median of |dev_i| and its standard error by a parametric bootstrap: each deviation redrawn from
    N(dev_i, err_i^2) (its own fit error), the median of the absolute values recomputed.

    An infinite deviation (a failed fit) stays infinite in every draw. The error is NaN (unknown) when a finite
    deviation has no finite positive error, and the median NaN when there are no deviations."""
    d = np.asarray(devs, dtype=np.float64).reshape(-1)
    e = np.asarray(errs, dtype=np.float64).reshape(-1)
    ok = ~np.isnan(d)
    if not ok.any():
        return math.nan, math.nan
    d, e = d[ok], e[ok]
    fin = np.isfinite(d)
    if not np.all(np.isfinite(e[fin]) & (e[fin] > 0)):
        return float(np.median(np.abs(d))), math.nan
    e = np.where(fin, e, 0.0)
    med = float(np.median(np.abs(d)))
    z = np.random.default_rng(seed).standard_normal((draws, d.size))
    boot = np.median(np.abs(np.where(fin, d, 0.0)[None, :] + e[None, :] * z) + np.where(fin, 0.0, np.inf), axis=1)
    good = boot[np.isfinite(boot)]
    return med, float(good.std(ddof=1)) if good.size == boot.size else math.nan


def rel_dev_errors(measured: ArrayLike, err: ArrayLike, theory: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(measured / theory - 1, err / |theory|) elementwise (NaN where theory is 0 or not finite)."""
    m = np.asarray(measured, dtype=np.float64)
    e = np.asarray(err, dtype=np.float64)
    t = np.asarray(theory, dtype=np.float64)
    ok = np.isfinite(t) & (t != 0)
    safe = np.where(ok, t, 1.0)
    return np.where(ok, m / safe - 1.0, np.nan), np.where(ok, e / np.abs(safe), np.nan)
