"""Claims of Huang, Xu, Du, Zeng, Zhao, "Mean field theory for deep dropout networks: digging up gradient
backpropagation deeply", ECAI 2020 (002; follow-ups section 2)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from deepprop.report import trainability as tr
from deepprop.report.context import Context
from deepprop.report.registry import Measurement, claim
from deepprop.report.verdict import Tolerance

PAPER = "Huang et al. 2020"
SB2 = 0.05


BACKPROP_SIZES = {
    "smoke": {"width": 32, "depth": 24, "networks": 3, "batch": 16, "keep_rates": [1.0, 0.9], "sw2": [1.0, 2.5]},
    "quick": {"width": 300, "depth": 60, "networks": 8, "batch": 32, "keep_rates": [1.0, 0.95, 0.9],
              "sw2": [1.0, 1.25, 1.5, 2.5, 3.5]},
    "paper": {"width": 300, "depth": 120, "networks": 16, "batch": 128, "keep_rates": [1.0, 0.99, 0.95, 0.9],
              "sw2": [1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]},
}
RESOLVED = 5.0  # a depth scale is compared where the network is at least 5 of them deep
_SCALES: dict[tuple, tuple[list[dict[str, Any]], str]] = {}


def _backprop_scales(ctx: Context) -> tuple[list[dict[str, Any]], str]:
    """deepprop.simulate.backprop_modes.backprop_depth_scales at this tier's sizes (tanh, sb2 0.05), as
    plain rows; computed once per process for the two rows that share it."""
    from deepprop.simulate.backprop_modes import backprop_depth_scales

    s = ctx.sizes
    dataset, note = ctx.mnist_like(fast=True)
    key = (ctx.tier, ctx.device, ctx.data_dir, dataset, repr(sorted(s.items())))
    if key not in _SCALES:
        rows = backprop_depth_scales("tanh", s["sw2"], SB2, keep_rates=s["keep_rates"], width=s["width"],
                                     depth=s["depth"], networks=s["networks"], batch_size=s["batch"],
                                     dataset=dataset, seed=0, data_dir=ctx.data_dir, device=ctx.device)
        _SCALES[key] = ([r.to_dict() for r in rows], note + f"; width {s['width']}, depth {s['depth']}, "
                        f"{s['networks']} networks, batch {s['batch']}; errors: jackknife over networks")
    return _SCALES[key]


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _median_with_failures(devs: list[float]) -> float:
    """Median of |deviations|, a failed fit (non-finite) counting as an infinite deviation; NaN when empty."""
    if not devs:
        return math.nan
    return float(np.median([abs(d) if math.isfinite(d) else math.inf for d in devs]))


def _tag(r: dict[str, Any]) -> str:
    return f"rho{r['keep_rate']:g}_sw2_{r['sigma_w2']:g}"


@claim(
    "002-shared-vs-independent",
    source=f"{PAPER}, sec. 3-4 (gradient backpropagation without the independence assumption)",
    statement="In tanh dropout networks (keep rates 1 to 0.9), backpropagating through the forward weights and "
              "masks (shared) gives the same single-input gradient depth scale as fresh independent weights, both "
              "matching eq. 16, xi_grad = -1/log chi_1, with the dropout chi_1 = (sigma_w^2/rho) E[phi'^2].",
    paper_says="Measured gradient depth scales with real (shared) weights against the mean-field prediction; "
               "the independence assumption of the core paper is not needed for the gradient norm.",
    paper={"shared_median_rel_dev": 0.0, "independent_median_rel_dev": 0.0, "shared_vs_independent_max_abs_z": 0.0},
    tolerance={
        "shared_median_rel_dev": Tolerance(
            "abs", 0.2, "as fig. 4b of the core paper: median within 20%, over points with depth >= 5 |xi_grad| "
                        "(a failed fit there counts as an infinite deviation)"),
        "independent_median_rel_dev": Tolerance(
            "abs", 0.2, "as fig. 4b of the core paper: median within 20%, over points with depth >= 5 |xi_grad| "
                        "(a failed fit there counts as an infinite deviation)"),
        "shared_vs_independent_max_abs_z": Tolerance(
            "at_most", 3.0, "no difference beyond sampling noise: at every compared point the two modes' fits lie "
                            "within 3 combined jackknife standard errors (over networks) of each other"),
    },
    sizes=BACKPROP_SIZES,
)
def shared_vs_independent(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.theory.meanfield import mean_field

    s = ctx.sizes
    rows, note = _backprop_scales(ctx)
    ours: dict[str, Any] = {}
    devs: dict[str, list[float]] = {"shared": [], "independent": []}
    zs, diffs, failed = [], [], []
    for r in rows:
        xi = _num(r["xi_grad"])
        if not (math.isfinite(xi) and s["depth"] >= RESOLVED * abs(xi)):
            continue
        for mode in devs:
            v = _num(r[f"single_{mode}"])
            devs[mode].append(v / xi - 1.0)
            ours[f"{mode}_{_tag(r)}_rel_err"] = v / xi - 1.0
            if r[f"single_{mode}_reason"]:
                failed.append(f"{mode} {_tag(r)}: {r[f'single_{mode}_reason']}")
        a, b = _num(r["single_shared"]), _num(r["single_independent"])
        ea, eb = _num(r["single_shared_err"]), _num(r["single_independent_err"])
        zs.append(abs(a - b) / math.hypot(ea, eb) if math.hypot(ea, eb) > 0 else math.inf)
        diffs.append(abs(a / b - 1.0))
        if zs[-1] == max(zs):
            ours["max_abs_z_at"] = (f"{_tag(r)}: shared {a:.4g} +- {ea:.2g}, independent {b:.4g} +- {eb:.2g} "
                                    "(jackknife over networks)")
    for mode, d in devs.items():
        ours[f"{mode}_median_rel_dev"] = _median_with_failures(d)
        ours[f"{mode}_max_abs_rel_err"] = max((abs(x) for x in d), default=math.nan)
    ours.update({"shared_vs_independent_max_abs_z": max((z if math.isfinite(z) else math.inf for z in zs),
                                                        default=math.nan),
                 "shared_vs_independent_max_rel_diff": max(diffs, default=math.nan),
                 "points_compared": len(zs), "points_excluded_depth_lt_5_xi": len(rows) - len(zs),
                 "failed_fits": failed})
    rhos = list(dict.fromkeys(r["keep_rate"] for r in rows))
    fine = np.linspace(min(s["sw2"]), max(s["sw2"]), 201)
    panels = []
    for rho in rhos:
        mine = [r for r in rows if r["keep_rate"] == rho]
        sw = [r["sigma_w2"] for r in mine]
        th = np.abs(np.asarray(mean_field("tanh", fine, SB2, keep_rate=rho, show_progress=False).xi_grad))
        series = [Series(fine, np.where(th <= s["depth"] / RESOLVED, th, np.nan), "eq. 16 (L >= 5 |xi|)", "-",
                         color="k"), Series(fine, th, None, ":", color="k")]
        for mode, colour, mk in (("shared", "red", "o"), ("independent", "blue", "s")):
            series.append(Series(sw, [abs(_num(r[f"single_{mode}"])) for r in mine], mode, mk,
                                 yerr=[_num(r[f"single_{mode}_err"]) for r in mine], color=colour))
        panels.append(Panel(series, f"single input, tanh, rho = {rho:g}", "sigma_w^2", "|xi_grad|", logy=True))
    path, rel = ctx.figure_path()
    panels_figure(path, panels)
    data = [ctx.save_csv(pd.DataFrame(rows).drop(columns=[c for c in rows[0] if c.endswith("_reason")]))]
    return Measurement(ours=ours, figure=[rel], data=data, note=note)


@claim(
    "002-same-depth-scale",
    source=f"{PAPER}, sec. 4 (single input vs pairs of inputs)",
    statement="With shared weights and dropout (keep rates < 1), the gradient norm of a single input and the "
              "gradient covariance of a pair of inputs propagate over the same depth scale (ordered phase).",
    paper_says="The depth over which gradients propagate is governed by the same depth scale for a single input "
               "(gradient norm) and for a pair of inputs (gradient covariance).",
    paper={"ratio_median_dev": 0.0},
    tolerance={"ratio_median_dev": Tolerance(
        "abs", 0.25, "two noisy exponential fits: median of |xi_pair / xi_single - 1| within 25%, over dropout "
                     "points of the ordered phase (chi_1 < 1) with depth >= 5 xi for both theory scales (a failed "
                     "fit there counts as an infinite deviation)")},
    sizes=BACKPROP_SIZES,
)
def same_depth_scale(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.theory.meanfield import mean_field

    s = ctx.sizes
    rows, note = _backprop_scales(ctx)
    ours: dict[str, Any] = {}
    devs, factors, single_dev, pair_dev, opposite, failed = [], [], [], [], 0, []
    for r in rows:
        xg, xc = _num(r["xi_grad"]), _num(r["xi_cov"])
        a, b = _num(r["single_shared"]), _num(r["pair_shared"])
        ratio = b / a if a else math.nan
        ours[f"ratio_{_tag(r)}"] = ratio
        ours[f"theory_ratio_{_tag(r)}"] = xc / xg if xg else math.nan
        if not (math.isfinite(xg) and math.isfinite(xc)
                and s["depth"] >= RESOLVED * max(abs(xg), abs(xc))):
            continue
        single_dev.append(a / xg - 1.0)
        pair_dev.append(b / xc - 1.0)
        opposite += bool(math.isfinite(ratio) and ratio < 0)
        for which in ("single", "pair"):
            if r[f"{which}_shared_reason"]:
                failed.append(f"{which} {_tag(r)}: {r[f'{which}_shared_reason']}")
        if r["keep_rate"] < 1.0 and xg > 0:
            devs.append(abs(b) / abs(a) - 1.0 if a else math.nan)
            if math.isfinite(ratio) and ratio != 0:
                factors.append(max(abs(ratio), 1.0 / abs(ratio)))
    ours.update({"ratio_median_dev": _median_with_failures(devs), "points_compared": len(devs),
                 "max_factor_pair_vs_single": max(factors, default=math.nan),
                 "single_vs_xi_grad_median_rel_dev": _median_with_failures(single_dev),
                 "pair_vs_xi_cov_median_rel_dev": _median_with_failures(pair_dev),
                 "own_theory_points": len(single_dev), "opposite_sign_points": opposite, "failed_fits": failed})
    rhos = list(dict.fromkeys(r["keep_rate"] for r in rows))
    fine = np.linspace(min(s["sw2"]), max(s["sw2"]), 201)
    panels = [Panel([Series([r["sigma_w2"] for r in rows if r["keep_rate"] == rho],
                            [ours[f"ratio_{_tag(r)}"] for r in rows if r["keep_rate"] == rho], f"rho = {rho:g}", "o-",
                            color=f"C{k}") for k, rho in enumerate(rhos)],
                    "xi_pair / xi_single (shared), signed", "sigma_w^2", "ratio", hlines=((1.0, "same scale"),))]
    for rho in rhos:
        mine = [r for r in rows if r["keep_rate"] == rho]
        sw = [r["sigma_w2"] for r in mine]
        mf = mean_field("tanh", fine, SB2, keep_rate=rho, show_progress=False)
        panels.append(Panel([
            Series(fine, np.abs(np.asarray(mf.xi_grad)), "|xi_grad| (eq. 16)", "-", color="red"),
            Series(fine, np.asarray(mf.xi_cov), "xi_cov (eq. 17)", "--", color="blue"),
            Series(sw, [abs(_num(r["single_shared"])) for r in mine], "single input", "o",
                   yerr=[_num(r["single_shared_err"]) for r in mine], color="red"),
            Series(sw, [abs(_num(r["pair_shared"])) for r in mine], "pair", "s",
                   yerr=[_num(r["pair_shared_err"]) for r in mine], color="blue")],
            f"shared backprop, rho = {rho:g}", "sigma_w^2", "depth scale", logy=True))
    path, rel = ctx.figure_path()
    panels_figure(path, panels)
    data = [ctx.save_csv(pd.DataFrame(rows).drop(columns=[c for c in rows[0] if c.endswith("_reason")]))]
    return Measurement(ours=ours, figure=[rel], data=data, note=note + "; pair = same-label gradient covariance")


UNIV_KEEP_RATES = (1.0, 0.9)
UNIV_STATISTIC = "grad_sq_norm"


@claim(
    "002-universality",
    source=f"{PAPER}, sec. 4 (variance of gradient statistics against their mean)",
    statement="Across random networks, the variance of ||dE/dW^l||^2 scales as a power of its mean, var = A mean^p, "
              "with the same exponent p for different activations (tanh, erf, relu) and keep rates (1, 0.9).",
    paper_says="Log-log plots of variance against mean of the gradient statistics fall on one universal line.",
    paper={"exponent_spread": 0.0, "ci_gap": 0.0},
    tolerance={"exponent_spread": Tolerance("abs", 0.2, "'universal': exponents equal within 0.2 (fit uncertainty "
                                            "of a few networks per point)"),
               "ci_gap": Tolerance("at_most", 0.0, "'universal': the 95% bootstrap intervals of all exponents share "
                                   "a value (largest lower end <= smallest upper end)")},
    sizes={"smoke": {"width": 32, "depth": 16, "networks": 4, "batch": 16},
           "quick": {"width": 300, "depth": 60, "networks": 12, "batch": 32},
           "paper": {"width": 300, "depth": 100, "networks": 20, "batch": 128}},
)
def universality(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate.backprop_modes import DEFAULT_LAW_SWEEPS
    from deepprop.simulate.gradients import simulate_gradients

    s = ctx.sizes
    dataset, note = ctx.mnist_like(fast=True)
    ours: dict[str, Any] = {}
    series, table, checked = [], [], []
    # the loop of deepprop.simulate.backprop_modes.variance_mean_laws, which takes no device or data_dir
    for act, sweep in DEFAULT_LAW_SWEEPS.items():
        for rho in UNIV_KEEP_RATES:
            res = simulate_gradients(act, list(sweep), SB2, width=s["width"], depth=s["depth"],
                                     networks=s["networks"], batch_size=s["batch"], dataset=dataset,
                                     data_dir=ctx.data_dir, backprop="shared", keep_rate=rho, seed=0,
                                     device=ctx.device, progress=ctx.progress)
            name = f"{act}_rho{rho:g}"
            for stat, law in res.var_mean.items():
                key = name if stat == UNIV_STATISTIC else f"{name}_{stat}"
                ours.update({f"exponent_{key}": law.exponent, f"ci_low_{key}": law.ci_low,
                             f"ci_high_{key}": law.ci_high, f"prefactor_{key}": law.prefactor})
                table.append({"activation": act, "keep_rate": rho, "statistic": stat, "exponent": law.exponent,
                              "ci_low": law.ci_low, "ci_high": law.ci_high, "prefactor": law.prefactor,
                              "n_points": law.n_points})
                if stat == UNIV_STATISTIC:
                    checked.append(law)
            m = np.concatenate([p.grad_sq_norm for p in res.points])
            v = np.concatenate([p.grad_sq_norm_var for p in res.points])
            law = res.var_mean[UNIV_STATISTIC]
            series.append(Series(m, v, f"{act}, rho {rho:g}: p = {law.exponent:.2f}", "o", color=f"C{len(series)}"))
    exps = [law.exponent for law in checked if math.isfinite(law.exponent)]
    pre = [law.prefactor for law in checked if math.isfinite(law.prefactor) and law.prefactor > 0]
    ours["exponent_spread"] = max(exps) - min(exps) if len(exps) == len(checked) else math.nan
    ours["ci_gap"] = (max(law.ci_low for law in checked) - min(law.ci_high for law in checked)
                      if len(exps) == len(checked) else math.nan)
    ours["prefactor_max_over_min"] = max(pre) / min(pre) if len(pre) == len(checked) else math.nan
    ours["fits_with_2_in_ci"] = sum(law.ci_low <= 2.0 <= law.ci_high for law in checked)
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel(series, "variance vs mean of ||dE/dW^l||^2 across networks", "mean", "variance",
                               logy=True, logx=True)])
    sweeps = "; ".join(f"{a} {', '.join(f'{x:g}' for x in sw)}" for a, sw in DEFAULT_LAW_SWEEPS.items())
    return Measurement(ours=ours, figure=[rel], data=[ctx.save_csv(pd.DataFrame(table))],
                       note=note + f"; width {s['width']}, depth {s['depth']}, {s['networks']} networks, batch "
                       f"{s['batch']}, shared backprop; all layers and sigma_w^2 pooled (sw2: {sweeps}); 95% basic "
                       f"bootstrap CI over networks; checked statistic {UNIV_STATISTIC}")


@claim(
    "002-trainable-law",
    source=f"{PAPER}, trainability figures (6 xi_c, 12 xi_c, 12 xi_1 overlays) and their empirical law",
    statement="For dropout networks a law in the depth scales, L_max = min(a xi_c, b xi_1), fitted on half the "
              "grid, predicts the other half at least as well as the core paper's 6 xi_c.",
    paper_says="Accuracy heatmaps (tanh, sigma_b^2 = 0.05, keep rates 1 to 0.95) with 6 xi_c, 12 xi_c and 12 xi_1 "
               "overlaid; an empirical formula in the depth scales fits better than 6 xi_c (exact form not given).",
    paper={"heldout_gain": 0.0},
    tolerance={"heldout_gain": Tolerance("at_least", 0.0, "'fits better than 6 xi_c': held-out fraction correct "
                                         "not below that of 6 xi_c")},
    sizes={t: dict(tr.GRID[t]) for t in tr.GRID},
)
def trainable_law(ctx: Context) -> Measurement:
    from deepprop.sweep.analysis import fit_laws

    out = tr.run_grid(ctx, optimizer="sgd", steps={"smoke": 20, "quick": 200, "paper": 200}[ctx.tier],
                      keep_rates=(1.0, 0.99, 0.98, 0.94))
    cells = out.cells
    sw = np.sort(cells["sigma_w2"].unique())
    train_sw = set(sw[::2])
    train = out.frame[out.frame["sigma_w2"].isin(train_sw)]
    fits, _, _ = fit_laws(train, threshold=out.threshold, n_classes=out.n_classes)
    a, b = fits[2].constants["a"], fits[2].constants["b"]
    test = cells[~cells["sigma_w2"].isin(train_sw)]
    L = test["depth"].to_numpy(dtype=float)
    lab = test["trainable"].to_numpy(dtype=bool)
    xi_c = np.nan_to_num(test["xi_c"].to_numpy(dtype=float), nan=0.0, posinf=np.inf)
    xi_1 = np.nan_to_num(test["xi_1"].to_numpy(dtype=float), nan=0.0, posinf=np.inf)
    held_fit = float(np.mean((L <= np.minimum(a * xi_c, b * xi_1)) == lab)) if len(test) else math.nan
    held_six = float(np.mean((L <= 6 * xi_c) == lab)) if len(test) else math.nan
    ours = {k: out.summary[k] for k in ("fraction_6xi_c", "fraction_12xi_c", "fraction_12xi_1", "fitted_multiple")}
    ours.update({"law_a": a, "law_b": b, "heldout_fitted": held_fit, "heldout_6xi_c": held_six,
                 "heldout_gain": held_fit - held_six, "heldout_cells": int(len(test))})
    return Measurement(ours=ours, figure=[tr.heatmap(ctx, out)], data=[tr.save_cells(ctx, out)],
                       note=out.note + ", keep rates 1, 0.99, 0.98, 0.94; fitted on every other sigma_w^2, "
                                       "tested on the rest")
