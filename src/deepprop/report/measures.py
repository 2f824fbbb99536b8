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


def finite_or_nan(x: object) -> float:
    """float(x), NaN for None."""
    return math.nan if x is None else float(x)  # type: ignore[arg-type]
