"""Claims of Weng, Cheng, Zhang, Sun, Tian, "Statistical physics of deep neural networks: initialization toward
optimal channels", 2022 (003; follow-ups section 3), with Pennington et al.'s Jacobian spectrum theory."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepprop.report.context import Context
from deepprop.report.registry import Measurement, claim
from deepprop.report.verdict import Tolerance

PAPER = "Weng et al. 2022"
SB2 = 0.05
JAC_SIZES = {"smoke": {"width": 32, "depth": 4, "networks": 2, "n_sw2": 5},
             "quick": {"width": 256, "depth": 16, "networks": 8, "n_sw2": 9},
             "paper": {"width": 1000, "depth": 64, "networks": 8, "n_sw2": 17}}


@claim(
    "003-jacobian-spectrum",
    source=f"{PAPER} and Pennington et al. 2017 (moments of the Jacobian spectrum at criticality)",
    statement="At criticality (tanh, sigma_b^2 = 0.05) the squared singular values of the input-output Jacobian "
              "have mean chi_1^L = 1 and spread var/mean^2 = L (E[phi'^4]/E[phi'^2]^2 - 1 + s_W), larger for "
              "Gaussian (s_W = 1) than orthogonal (s_W = 0) weights.",
    paper_says="Dynamical isometry: orthogonal weights at criticality keep the singular values of J near 1 while "
               "Gaussian weights spread them with depth.",
    tolerance={"spread_gaussian": Tolerance("rel", 0.25, "large-N theory; finite-width corrections O(L/N) and "
                                            "sampling over a few networks"),
               "spread_orthogonal": Tolerance("rel", 0.25, "large-N theory; finite-width corrections O(L/N) and "
                                              "sampling over a few networks"),
               "mean_sq_gaussian": Tolerance("sigma", 4.0, "4 standard errors over networks"),
               "mean_sq_orthogonal": Tolerance("sigma", 4.0, "4 standard errors over networks")},
    sizes=JAC_SIZES,
)
def jacobian_spectrum_claim(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate import jacobian_spectrum
    from deepprop.theory.meanfield import critical_sigma_w2
    from deepprop.theory.spectrum import jacobian_moments

    s = ctx.sizes
    crit = float(np.asarray(critical_sigma_w2("tanh", SB2)).reshape(-1)[0])
    ours, ref, series, data = {}, {}, [], []
    for k, w in enumerate(("gaussian", "orthogonal")):
        res = jacobian_spectrum("tanh", crit, SB2, width=s["width"], depth=s["depth"], weights=w,
                                networks=s["networks"], device=ctx.device)
        p = res.points[0]
        th = jacobian_moments("tanh", crit, SB2, s["depth"], weights=w)
        ours[f"spread_{w}"] = p.spread
        ours[f"mean_sq_{w}"], ours[f"mean_sq_{w}_err"] = p.mean_sq_singular, p.mean_sq_singular_err
        ref[f"spread_{w}"], ref[f"mean_sq_{w}"] = float(th.spread), float(th.mean)
        sv2 = np.sort((np.asarray(p.singular_values) ** 2).reshape(-1))
        series.append(Series(sv2, np.linspace(0, 1, sv2.size), f"{w}: spread {p.spread:.2f} (theory "
                                                                f"{th.spread:.2f})", "-", color=f"C{k}"))
        data.append(ctx.save_csv({"squared_singular_value": sv2}, w))
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel(series, f"CDF of sigma_i^2 at criticality, L = {s['depth']}, N = {s['width']}",
                               "squared singular value", "fraction", logx=True)])
    return Measurement(ours=ours, reference=ref, figure=[rel], data=data,
                       note=f"width {s['width']}, depth {s['depth']}, {s['networks']} networks; theory "
                            "from deepprop.theory.spectrum")


@claim(
    "003-mutual-information",
    source=f"{PAPER}, main result (mutual information is maximal at dynamical isometry)",
    statement="The mutual information of the linearised Gaussian channel x -> J x + n, compared at equal gain "
              "(J scaled to mean squared singular value 1, so that it measures the shape of the spectrum), is "
              "maximal at the critical initialisation (dynamical isometry), and orthogonal weights carry more of "
              "it than Gaussian ones.",
    paper_says="The input-representation mutual information peaks when the network is initialised at dynamical "
               "isometry (validated on finite networks).",
    paper={"orthogonal_minus_gaussian": 0.0},
    tolerance={"mi_peak_sigma_w2": Tolerance("abs", 0.0, "the peak must fall within one step of the sigma_w^2 grid "
                                             "of the critical value (grid step added to the target's window)"),
               "orthogonal_minus_gaussian": Tolerance("at_least", 0.0, "isometry carries more information")},
    sizes={t: {**v, "mi_grid": 400 if t == "smoke" else 1500} for t, v in JAC_SIZES.items()},
)
def mutual_information_claim(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate import jacobian_spectrum
    from deepprop.theory.meanfield import critical_sigma_w2
    from deepprop.theory.spectrum import information_map

    s = ctx.sizes
    crit = float(np.asarray(critical_sigma_w2("tanh", SB2)).reshape(-1)[0])
    grid = np.linspace(0.6 * crit, 1.6 * crit, s["n_sw2"])
    grid[np.argmin(np.abs(grid - crit))] = crit
    step = float(grid[1] - grid[0])
    mi, eq = {}, {}
    for w in ("gaussian", "orthogonal"):
        res = jacobian_spectrum("tanh", list(map(float, grid)), SB2, width=s["width"], depth=s["depth"], weights=w,
                                networks=s["networks"], device=ctx.device)
        mi[w] = np.array([p.mutual_information for p in res.points])
        eq[w] = np.array([p.mi_equal_gain for p in res.points])
        if w == "gaussian":
            peak = res.mi_peak_sigma_w2
    i = int(np.argmin(np.abs(grid - crit)))
    # The raw information grows with the gain chi_1^L, so its peak is the largest sigma_w^2 swept; the claim is
    # judged at equal gain (the definition is fixed before looking: issue "channel mutual information").
    # The peak is "at criticality" when it is the grid point nearest to it: |peak - crit| <= one step.
    eq_peak = float(grid[int(np.nanargmax(eq["gaussian"]))])
    ours = {"mi_peak_sigma_w2": eq_peak if abs(eq_peak - crit) > step else crit,
            "mi_peak_sigma_w2_equal_gain": eq_peak, "mi_peak_sigma_w2_raw": float(peak), "critical_sigma_w2": crit,
            "grid_step": step,
            "orthogonal_minus_gaussian": float(eq["orthogonal"][i] - eq["gaussian"][i]),
            "orthogonal_minus_gaussian_raw": float(mi["orthogonal"][i] - mi["gaussian"][i])}
    # the large-N theory of the same equal-gain information (deepprop.theory.spectrum.information_map) beside
    # the simulated points: its peak over the same grid, and how far the simulation sits from it
    imap = information_map("tanh", grid, SB2, s["depth"], weights=("gaussian", "orthogonal"), grid=s["mi_grid"])
    th = {w: np.array([next(p.mi_equal_gain for p in imap.points if p.weights == w and p.sigma_w2 == g)
                       for g in grid]) for w in eq}
    for w in eq:
        pk = imap.peak(SB2, w)
        ours[f"theory_mi_peak_sigma_w2_{w}"] = pk.sigma_w2 if pk is not None else float("nan")
        ours[f"theory_mi_at_critical_{w}"] = float(th[w][i])
        ours[f"sim_vs_theory_max_abs_rel_dev_{w}"] = float(np.nanmax(np.abs(eq[w] / th[w] - 1.0)))
    ours["mi_isometry_bound"] = imap.mi_isometry
    data = [ctx.save_csv({"sigma_w2": grid, "mi_gaussian": mi["gaussian"], "mi_orthogonal": mi["orthogonal"],
                          "mi_equal_gain_gaussian": eq["gaussian"], "mi_equal_gain_orthogonal": eq["orthogonal"],
                          "mi_equal_gain_theory_gaussian": th["gaussian"],
                          "mi_equal_gain_theory_orthogonal": th["orthogonal"]})]
    path, rel = ctx.figure_path()
    panels_figure(path, [
        Panel([Series(grid, mi["gaussian"], "Gaussian", "o-"), Series(grid, mi["orthogonal"], "orthogonal", "s-")],
              "channel mutual information I (nats)", "sigma_w^2", "I", vlines=((crit, "critical"),)),
        Panel([Series(grid, eq["gaussian"], "Gaussian", "o", color="C0"),
               Series(grid, th["gaussian"], "Gaussian, theory", "-", color="C0"),
               Series(grid, eq["orthogonal"], "orthogonal", "s", color="C1"),
               Series(grid, th["orthogonal"], "orthogonal, theory", "-", color="C1")],
              "at equal gain (J / sqrt(mean sigma^2)), per unit", "sigma_w^2", "I / N", vlines=((crit, "critical"),)),
    ])
    return Measurement(ours=ours, reference={"mi_peak_sigma_w2": crit}, figure=[rel], data=data,
                       note=f"width {s['width']}, depth {s['depth']}, {s['networks']} networks, s_x^2 = s_n^2 = 1; "
                            "checked at equal gain; the raw information's peak is reported beside it; theory: "
                            "deepprop.theory.spectrum.information_map (large N)")


@claim(
    "003-mutual-information/critical-line",
    source=f"{PAPER}, main result, read along the critical line chi_1 = 1 (Pennington et al. 2017 spectrum theory)",
    statement="Among critical initialisations (chi_1 = 1, tanh, over sigma_b^2 and Gaussian or orthogonal "
              "weights), the equal-gain mutual information is largest at the one closest to dynamical isometry "
              "(the smallest spread of the Jacobian's squared singular values).",
    paper_says="The input-representation mutual information peaks when the network is initialised at dynamical "
               "isometry (all singular values of J near 1).",
    paper={"mi_at_isometry_minus_max": 0.0},
    tolerance={"mi_at_isometry_minus_max": Tolerance(
        "at_least", 0.0, "'maximised at dynamical isometry': on the critical line, the point of smallest spread "
                         "(InformationMap.isometry) carries the largest I/N (computed from the large-N map)")},
    sizes={"smoke": {"sigma_b2": [0.001, 0.05, 0.2], "depth": 8, "grid": 400},
           "quick": {"sigma_b2": [0.001, 0.01, 0.05, 0.1, 0.2], "depth": 32, "grid": 1500},
           "paper": {"sigma_b2": [0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3], "depth": 64, "grid": 1500}},
)
def critical_line_claim(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.theory.spectrum import information_map

    s = ctx.sizes
    imap = information_map("tanh", [], s["sigma_b2"], s["depth"], weights=("gaussian", "orthogonal"),
                           include_critical=True, grid=s["grid"])
    pts = [p for p in imap.points if p.critical]
    ok = [p for p in pts if np.isfinite(p.mi_equal_gain) and np.isfinite(p.spread)]
    iso = imap.isometry()
    if iso is None or not ok:
        return Measurement(not_run="no critical point with a finite spread and information on this map: "
                           + "; ".join(f"sb2 {p.sigma_b2:g} {p.weights}: {p.reason}" for p in pts))
    best = max(ok, key=lambda p: p.mi_equal_gain)
    spread = np.array([p.spread for p in ok])
    info = np.array([p.mi_equal_gain for p in ok])
    rank = np.corrcoef(np.argsort(np.argsort(spread)), np.argsort(np.argsort(info)))[0, 1]
    ours = {"mi_at_isometry_minus_max": iso.mi_equal_gain - best.mi_equal_gain,
            "isometry_sigma_b2": iso.sigma_b2, "isometry_sigma_w2": iso.sigma_w2, "isometry_spread": iso.spread,
            "isometry_mi": iso.mi_equal_gain, "isometry_is_orthogonal": int(iso.weights == "orthogonal"),
            "max_mi_sigma_b2": best.sigma_b2, "max_mi_is_orthogonal": int(best.weights == "orthogonal"),
            "mi_isometry_bound": imap.mi_isometry, "isometry_fraction_of_bound": iso.mi_equal_gain / imap.mi_isometry,
            "spearman_spread_vs_mi": float(rank), "critical_points": len(pts),
            "failed_points": [f"sb2 {p.sigma_b2:g} {p.weights}: {p.reason}" for p in pts if p.reason]}
    for w in ("gaussian", "orthogonal"):
        mine = [p for p in ok if p.weights == w]
        low = min(mine, key=lambda p: p.spread)
        ours[f"{w}_mi_at_min_spread_minus_max"] = low.mi_equal_gain - max(p.mi_equal_gain for p in mine)
        ours[f"{w}_best_fraction_of_bound"] = max(p.mi_equal_gain for p in mine) / imap.mi_isometry
    data = [ctx.save_csv(pd.DataFrame([p.to_dict() for p in pts]))]
    series_a, series_b = [], []
    for k, w in enumerate(("gaussian", "orthogonal")):
        mine = sorted((p for p in ok if p.weights == w), key=lambda p: p.sigma_b2)
        series_a.append(Series([p.spread for p in mine], [p.mi_equal_gain for p in mine], w, "o-", color=f"C{k}"))
        series_b.append(Series([p.sigma_b2 for p in mine], [p.mi_equal_gain for p in mine], w, "o-", color=f"C{k}"))
    bound = ((imap.mi_isometry, "isometry bound log(1 + snr)/2"),)
    path, rel = ctx.figure_path()
    panels_figure(path, [
        Panel(series_a, f"critical line chi_1 = 1, tanh, L = {s['depth']}", "spread var/mean^2 of sigma^2",
              "I / N (equal gain)", logx=True, hlines=bound),
        Panel(series_b, "I / N along the critical line", "sigma_b^2", "I / N (equal gain)", logx=True, hlines=bound),
    ])
    return Measurement(ours=ours, figure=[rel], data=data,
                       note=f"large-N theory (deepprop.theory.spectrum.information_map), depth {s['depth']}, snr 1, "
                            f"sigma_b^2 in {', '.join(f'{x:g}' for x in s['sigma_b2'])}; the simulated check of "
                            "the same map is row 003-mutual-information")
