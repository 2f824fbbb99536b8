r"""Shared vs independent backpropagation with dropout, and the variance-vs-mean law (follow-ups section 2).

:func:`backprop_depth_scales` measures, per keep rate and sigma_w2, two depth scales of the backward pass
with the forward weights and masks reused (``shared``, real backprop) and with fresh ones
(``independent``, the paper's assumption), beside the theory:

* single input: the per-example ||grad_W^l E_a||^2 ~ exp(-(L - l) / xi_grad), xi_grad = -1/log chi_1
  (eq. 16 with the dropout chi_1 = sw2 E[phi'^2] / rho);
* pair: the same-label covariance (grad E_a).(grad E_b) ~ exp(-(L - l) / xi_cov), xi_cov = -1/log chi_c
  (eq. 17; chi_c the slope of the correlation map at c*, where the two inputs see independent masks).

:func:`variance_mean_laws` fits var = A mean^p of ||grad W^l||^2 across networks, over all layers and
sigma_w2, per activation and keep rate, with a 95 % bootstrap interval on p (see
:func:`deepprop.simulate.gradients.variance_mean_law`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepprop.prior import NOISE_KEYWORDS, Network, NetworkPrior, as_prior
from deepprop.results import Result
from deepprop.simulate._inputs import load_inputs
from deepprop.simulate.fitting import fit_log_linear, relative, relative_error
from deepprop.simulate.gradients import BACKPROP_MODES, simulate_gradients
from deepprop.theory.backprop import pair_covariance_profile


@dataclass
class BackpropScales(Result):
    """One (keep rate, sigma_w2): theory and the fits (value, jackknife error, reason) per backprop mode."""

    keep_rate: float
    sigma_w2: float
    xi_grad: float
    xi_cov: float
    fits: dict[str, dict[str, Any]]  # mode -> {"single": (v, err, reason), "pair": (v, err, reason)}

    def rel_err(self, mode: str, which: str) -> float:
        """fit / theory - 1 for ``which`` in ("single", "pair")."""
        return relative_error(self.fits[mode][which][0], self.xi_grad if which == "single" else self.xi_cov)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keep_rate": self.keep_rate, "sigma_w2": self.sigma_w2, "xi_grad": self.xi_grad,
                               "xi_cov": self.xi_cov}
        for mode, f in self.fits.items():
            for which, (v, e, r) in f.items():
                out[f"{which}_{mode}"] = v
                out[f"{which}_{mode}_err"] = e
                out[f"{which}_{mode}_reason"] = r
                out[f"{which}_{mode}_rel_err"] = self.rel_err(mode, which)
        return out


def backprop_depth_scales(
    prior: Network = "tanh",
    sigma_w2: Sequence[float] | None = None,
    sigma_b2: float | None = None,
    *,
    keep_rates: Sequence[float] = (1.0, 0.95, 0.9),
    width: int = 300,
    depth: int = 60,
    networks: int = 8,
    batch_size: int = 32,
    dataset: str = "digits",
    seed: int = 0,
    **kwargs: Any,
) -> list[BackpropScales]:
    """Single-input (eq. 16) and pair (eq. 17) depth scales, shared and independent backprop, per keep rate
    and sigma_w2 (module docstring). ``prior``: a NetworkPrior (its sigma_w2 the sweep, its keep rate replaced
    by each of ``keep_rates``) or an activation with the loose ``sigma_w2`` (default (1.25, 2.5, 3.5)) and
    ``sigma_b2`` (default 0.05). Extra keyword arguments go to :func:`simulate_gradients`."""
    if isinstance(prior, NetworkPrior):
        base = as_prior(prior, sigma_w2, sigma_b2)
    else:
        base = as_prior(prior, np.atleast_1d((1.25, 2.5, 3.5) if sigma_w2 is None else sigma_w2),
                        0.05 if sigma_b2 is None else sigma_b2)
    sweep = np.atleast_1d(base.sigma_w2)
    rows: list[BackpropScales] = []
    for rho in keep_rates:
        res = {m: simulate_gradients(base.replace(keep_rate=rho), width=width, depth=depth, networks=networks,
                                     batch_size=batch_size, dataset=dataset, backprop=m, seed=seed,
                                     **kwargs).points for m in BACKPROP_MODES}
        for i, sw in enumerate(sweep):
            th = res["shared"][i].theory or {}
            fits = {}
            for m in BACKPROP_MODES:
                f1, f2 = res[m][i].fits["xi_grad_fit"], res[m][i].fits["xi_cov_fit"]
                fits[m] = {"single": (f1.value, f1.err, f1.reason), "pair": (f2.value, f2.err, f2.reason)}
            rows.append(BackpropScales(float(rho), float(sw), float(th.get("xi_grad", math.nan)),
                                       float(th.get("xi_cov", math.nan)), fits))
    return rows


@dataclass
class VarianceMeanRow(Result):
    """var = prefactor * mean^exponent for one activation, keep rate and gradient statistic."""

    activation: str
    keep_rate: float
    statistic: str
    exponent: float
    ci_low: float
    ci_high: float
    prefactor: float
    n_points: int


DEFAULT_LAW_SWEEPS: dict[str, tuple[float, ...]] = {
    "tanh": (1.0, 1.5, 2.0, 2.5, 3.5), "erf": (1.0, 1.5, 2.0, 2.5, 3.5), "relu": (1.5, 1.8, 1.95),
}


def variance_mean_laws(
    sweeps: dict[str, Sequence[float]] | None = None,
    sigma_b2: float = 0.05,
    *,
    keep_rates: Sequence[float] = (1.0, 0.9),
    width: int = 300,
    depth: int = 60,
    networks: int = 12,
    batch_size: int = 32,
    dataset: str = "digits",
    backprop: str = "shared",
    seed: int = 0,
) -> list[VarianceMeanRow]:
    """The variance-vs-mean power law per activation (default sweeps :data:`DEFAULT_LAW_SWEEPS`; relu stays
    below its sw2 = 2 edge where q* is finite) and keep rate, for the batch-summed and per-example norms."""
    rows: list[VarianceMeanRow] = []
    for act, sw in (sweeps or DEFAULT_LAW_SWEEPS).items():
        for rho in keep_rates:
            r = simulate_gradients(act, list(sw), sigma_b2, width=width, depth=depth, networks=networks,
                                   batch_size=batch_size, dataset=dataset, backprop=backprop, keep_rate=rho,
                                   seed=seed)
            for key, law in r.var_mean.items():
                rows.append(VarianceMeanRow(act, float(rho), key, law.exponent, law.ci_low, law.ci_high,
                                            law.prefactor, law.n_points))
    return rows


@dataclass
class CovarianceTransient(Result):
    """Eq. 17 at one sigma_w2: the measured same-label covariance scale, the asymptotic xi_cov and the same
    log-linear fit (same layers) of the mean-field profile through the forward transient from the data."""

    sigma_w2: float
    xi_cov: float
    xi_cov_fit: float
    xi_cov_fit_err: float
    xi_cov_fit_reason: str | None
    xi_cov_transient: float  # fit of pair_covariance_profile over the measurement's window
    window: tuple[int, int] | None
    c_first: float  # mean same-label c at the window's first layer (theory)

    RECORD_EXTRA = ("rel_err_transient", "rel_err_asymptotic", "transient_effect")

    rel_err_transient = relative("xi_cov_fit", "xi_cov_transient", "the measurement against the transient theory")
    rel_err_asymptotic = relative("xi_cov_fit", "xi_cov", "the measurement against the asymptotic xi_cov")
    transient_effect = relative("xi_cov_transient", "xi_cov", "the transient theory against the asymptotic xi_cov")


def covariance_transient(
    prior: Network,
    sigma_w2: Sequence[float] | None = None,
    sigma_b2: float | None = None,
    *,
    width: int = 300,
    depth: int = 100,
    networks: int = 8,
    batch_size: int = 32,
    dataset: str = "digits",
    data_dir: str | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> list[CovarianceTransient]:
    """Run :func:`simulate_gradients` and set each ``xi_cov_fit`` beside the theory of the transient: the
    profile of :func:`deepprop.theory.backprop.pair_covariance_profile` for the same batch's same-label
    pairs, fitted log-linearly over the layers the measurement's fit used (the top ``points`` layers
    ending at depth - 1). ``prior``: a NetworkPrior (its sigma_w2 the sweep) or the loose form
    ``("tanh", sigma_w2, sigma_b2, keep_rate=...)``; other keyword arguments go to :func:`simulate_gradients`."""
    noise = {k: kwargs.pop(k) for k in NOISE_KEYWORDS if k in kwargs}
    if not isinstance(prior, NetworkPrior) and sigma_w2 is not None:
        sigma_w2 = np.atleast_1d(np.asarray(sigma_w2, dtype=np.float64))
    prior = as_prior(prior, sigma_w2, sigma_b2, **noise)
    res = simulate_gradients(prior, width=width, depth=depth, networks=networks, batch_size=batch_size,
                             dataset=dataset, data_dir=data_dir, seed=seed, **kwargs)
    data = load_inputs(dataset, data_dir)
    idx = np.random.default_rng(seed).choice(data.x.shape[0], size=batch_size, replace=False)
    x, y = data.x[idx].astype(np.float64), data.y[idx]
    pairs = np.array([(a, b) for a in range(batch_size) for b in range(a + 1, batch_size) if y[a] == y[b]])
    rows = []
    for p in res.points:
        fit = p.fits["xi_cov_fit"]
        th = p.theory or {}
        window, xi_t, c_first = None, math.nan, math.nan
        if fit.n_points >= 3 and len(pairs):
            prof = pair_covariance_profile(prior.replace(sigma_w2=p.sigma_w2), x=x, pairs=pairs, depth=depth)
            top = depth - 1
            window = (top - fit.n_points + 1, top)
            mask = (prof["layers"] >= window[0]) & (prof["layers"] <= window[1])
            lf = fit_log_linear(prof["layers"], prof["profile"], mask)
            xi_t = 1.0 / lf.slope if lf.ok and lf.slope != 0 else math.nan
            c_first = float(prof["c"][:, window[0] - 1].mean())
        rows.append(CovarianceTransient(p.sigma_w2, float(th.get("xi_cov", math.nan)), fit.value, fit.err,
                                        fit.reason, xi_t, window, c_first))
    return rows
