"""Claims of Huang, Xu, Du, Zeng, Zhao, "Mean field theory for deep dropout networks: digging up gradient
backpropagation deeply", ECAI 2020 (002; follow-ups section 2)."""

from __future__ import annotations

import math

import numpy as np

from deepprop.report import trainability as tr
from deepprop.report.claims_001 import GRAD_SIZES, _gradient_rows, _gradient_run
from deepprop.report.context import Context
from deepprop.report.measures import median_rel_dev
from deepprop.report.registry import Measurement, claim
from deepprop.report.verdict import Tolerance

PAPER = "Huang et al. 2020"
KEEP = 0.9


def _abs_scales(res) -> tuple[np.ndarray, np.ndarray]:
    fit = np.array([abs(p.xi_grad_fit) if p.finite else np.nan for p in res.points])
    th = np.abs(np.array([float(p.theory["xi_grad"]) if p.theory and p.theory.get("xi_grad") is not None
                          else np.nan for p in res.points]))
    return fit, th


@claim(
    "002-shared-vs-independent",
    source=f"{PAPER}, sec. 3-4 (gradient backpropagation without the independence assumption)",
    statement=f"In tanh dropout networks (rho = {KEEP}), backpropagating through the forward weights and masks "
              "(shared) gives the same gradient depth scale as fresh independent weights, both matching "
              "1/|log chi_1| with the dropout-adjusted chi_1 = (sigma_w^2/rho) E[phi'^2].",
    paper_says="Measured gradient depth scales with real (shared) weights against the mean-field prediction; "
               "the independence assumption of the core paper is not needed for the gradient norm.",
    paper={"shared_median_rel_dev": 0.0, "independent_median_rel_dev": 0.0},
    tolerance={"shared_median_rel_dev": Tolerance("abs", 0.2, "as fig. 4b of the core paper: median within 20%"),
               "independent_median_rel_dev": Tolerance("abs", 0.2, "as fig. 4b of the core paper: median within 20%")},
    sizes=GRAD_SIZES,
)
def shared_vs_independent(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure

    s = ctx.sizes
    sweep = np.linspace(1.0, 4.0, s["n_sw2"])
    out, data, series = {}, [], []
    for mode, colour in (("shared", "red"), ("independent", "blue")):
        res, note = _gradient_run(ctx, sweep, mode, keep_rate=KEEP)
        fit, th = _abs_scales(res)
        keep = np.isfinite(th) & (th <= s["depth"] / 2)
        out[f"{mode}_median_rel_dev"], out[f"{mode}_points"] = median_rel_dev(fit[keep], th[keep])
        data.append(ctx.save_csv(_gradient_rows(res), mode))
        series.append(Series(sweep, fit, mode, "o", color=colour))
        if mode == "shared":
            series.insert(0, Series(sweep, th, "theory 1/|log chi_1|", "--", color="k"))
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel(series, f"gradient depth scale, tanh, rho = {KEEP}", "sigma_w^2", "|xi_grad|",
                               logy=True)])
    return Measurement(ours=out, figure=[rel], data=data, note=note + f"; width {s['width']}, depth {s['depth']}")


@claim(
    "002-same-depth-scale",
    source=f"{PAPER}, sec. 4 (single input vs pairs of inputs)",
    statement=f"With shared weights and dropout (rho = {KEEP}), the gradient norm of a single input and the "
              "gradient covariance of a pair of inputs propagate over the same depth scale (ordered phase).",
    paper_says="The depth over which gradients propagate is governed by the same depth scale for a single input "
               "(gradient norm) and for a pair of inputs (gradient covariance).",
    paper={"ratio_median_dev": 0.0},
    tolerance={"ratio_median_dev": Tolerance("abs", 0.25, "two noisy exponential fits: median ratio within 25% of 1")},
    sizes=GRAD_SIZES,
)
def same_depth_scale(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure

    s = ctx.sizes
    sweep = np.linspace(1.0, 1.7, max(3, s["n_sw2"] // 2))  # ordered phase for rho = 0.9 (chi_1 < 1)
    res, note = _gradient_run(ctx, sweep, "shared", keep_rate=KEEP)
    norm = np.array([abs(p.xi_grad_fit) for p in res.points])
    cov = np.array([abs(p.xi_cov_fit) for p in res.points])
    dev, n = median_rel_dev(cov, norm)
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel([Series(sweep, norm, "single input: gradient norm", "o-"),
                                Series(sweep, cov, "pair: gradient covariance", "s-")],
                               f"depth scales, tanh, rho = {KEEP}", "sigma_w^2", "fitted depth scale")])
    return Measurement(ours={"ratio_median_dev": dev, "points": n}, figure=[rel],
                       data=[ctx.save_csv({"sigma_w2": sweep, "xi_norm_fit": norm, "xi_cov_fit": cov})],
                       note=note + f"; width {s['width']}, depth {s['depth']}")


UNIV = (("tanh, rho=1", "tanh", 1.0, (1.0, 4.0)), ("tanh, rho=0.9", "tanh", 0.9, (1.0, 4.0)),
        ("relu, rho=0.9", "relu", 0.9, (1.0, 3.0)))


@claim(
    "002-universality",
    source=f"{PAPER}, sec. 4 (variance of gradient statistics against their mean)",
    statement="Across random networks, the variance of ||dE/dW^l||^2 scales as a power of its mean with the same "
              "exponent for different activations and dropout rates.",
    paper_says="Log-log plots of variance against mean of the gradient statistics fall on one universal line.",
    paper={"exponent_spread": 0.0},
    tolerance={"exponent_spread": Tolerance("abs", 0.2, "'universal': exponents equal within 0.2 (fit uncertainty "
                                            "of a few networks per point)")},
    sizes={"smoke": {"width": 32, "depth": 16, "n_sw2": 4, "networks": 3, "batch": 16},
           "quick": {"width": 100, "depth": 40, "n_sw2": 7, "networks": 6, "batch": 32},
           "paper": {"width": 300, "depth": 100, "n_sw2": 13, "networks": 20, "batch": 128}},
)
def universality(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure

    s = ctx.sizes
    ours: dict[str, float] = {}
    series, data = [], []
    for k, (name, act, keep, (lo, hi)) in enumerate(UNIV):
        res, note = _gradient_run(ctx, np.linspace(lo, hi, s["n_sw2"]), "shared", keep_rate=keep, activation=act)
        key = name.replace(", ", "_").replace("=", "_")
        ours[f"exponent_{key}"] = float(res.var_mean_exponent)
        m = np.concatenate([p.grad_sq_norm for p in res.points])
        v = np.concatenate([p.grad_sq_norm_var for p in res.points])
        series.append(Series(m, v, f"{name}: p = {res.var_mean_exponent:.2f}", "o", color=f"C{k}"))
        data.append(ctx.save_csv({"mean": m, "variance": v}, key))
    exps = [v for v in ours.values() if math.isfinite(v)]
    ours["exponent_spread"] = max(exps) - min(exps) if len(exps) == len(UNIV) else math.nan
    path, rel = ctx.figure_path()
    p = Panel(series, "variance vs mean of ||dE/dW^l||^2 across networks", "mean", "variance", logy=True, logx=True)
    panels_figure(path, [p])
    return Measurement(ours=ours, figure=[rel], data=data,
                       note=note + f"; width {s['width']}, depth {s['depth']}, {s['networks']} networks per point")


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
    xi_c = np.nan_to_num(test["xi_c"].to_numpy(dtype=float), nan=0.0)
    xi_1 = np.nan_to_num(test["xi_1"].to_numpy(dtype=float), nan=0.0)
    held_fit = float(np.mean((L <= np.minimum(a * xi_c, b * xi_1)) == lab)) if len(test) else math.nan
    held_six = float(np.mean((L <= 6 * xi_c) == lab)) if len(test) else math.nan
    ours = {k: out.summary[k] for k in ("fraction_6xi_c", "fraction_12xi_c", "fraction_12xi_1", "fitted_multiple")}
    ours.update({"law_a": a, "law_b": b, "heldout_fitted": held_fit, "heldout_6xi_c": held_six,
                 "heldout_gain": held_fit - held_six, "heldout_cells": int(len(test))})
    return Measurement(ours=ours, figure=[tr.heatmap(ctx, out)], data=[tr.save_cells(ctx, out)],
                       note=out.note + ", keep rates 1, 0.99, 0.98, 0.94; fitted on every other sigma_w^2, "
                                       "tested on the rest")
