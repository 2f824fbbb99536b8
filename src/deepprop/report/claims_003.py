"""Claims of Weng, Cheng, Zhang, Sun, Tian, "Statistical physics of deep neural networks: initialization toward
optimal channels", 2022 (003; follow-ups section 3), with Pennington et al.'s Jacobian spectrum theory."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepprop.report.context import Context
from deepprop.report.registry import Measurement, claim
from deepprop.report.verdict import Tolerance, deciding_worst

PAPER = "Weng et al. 2022"
SB2 = 0.05
JAC_SIZES = {"smoke": {"width": 32, "depth": 4, "networks": 3, "n_sw2": 5},
             "quick": {"width": 256, "depth": 16, "networks": 32, "n_sw2": 9},
             "paper": {"width": 1000, "depth": 64, "networks": 8, "n_sw2": 17}}


@claim(
    "003-jacobian-spectrum",
    source="Pennington, Schoenholz, Ganguli 2017 (moments of the Jacobian spectrum at criticality), used by "
           f"{PAPER} for dynamical isometry",
    statement="At criticality (tanh, sigma_b^2 = 0.05) the squared singular values of the input-output Jacobian "
              "have mean chi_1^L = 1 and spread var/mean^2 = L (E[phi'^4]/E[phi'^2]^2 - 1 + s_W), larger for "
              "Gaussian (s_W = 1) than orthogonal (s_W = 0) weights.",
    paper_says="Dynamical isometry: orthogonal weights at criticality keep the singular values of J near 1 while "
               "Gaussian weights spread them with depth.",
    tolerance={"spread_gaussian": Tolerance("rel", 0.25, "large-N theory (Pennington et al.): finite-width "
                                            "corrections O(L/N); error over networks"),
               "spread_orthogonal": Tolerance("rel", 0.25, "large-N theory (Pennington et al.): finite-width "
                                              "corrections O(L/N); error over networks"),
               "mean_sq_gaussian": Tolerance("rel", 0.15, "chi_1^L = 1 at criticality; finite-width corrections O(L/N) "
                                             "(6% at L = 16, N = 256); error over networks"),
               "mean_sq_orthogonal": Tolerance("rel", 0.15, "chi_1^L = 1 at criticality; finite-width corrections "
                                               "O(L/N); error over networks")},
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
        sv2_net = np.asarray(p.singular_values, dtype=float) ** 2
        per_net = sv2_net.var(axis=1) / sv2_net.mean(axis=1) ** 2
        ours[f"spread_{w}_err"] = float(per_net.std(ddof=1) / np.sqrt(per_net.size)) if per_net.size > 1 else None
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


MI_NOT_IMPLEMENTED = (
    "not implemented: the paper's own mutual-information quantity on finite networks (its channel between input and "
    "propagated signal, the noise model and the estimator of its corrected mean-field framework) is not available "
    "to us - the public copy that protocols.md points to is stored only as its abstract. deepprop's linearised "
    "Gaussian channel at equal gain falls monotonically with sigma_w^2 whatever the networks do, so its peak is "
    "the grid's edge and cannot test 'maximal at dynamical isometry'; it is kept as deepprop's own row "
    "own-channel-information")


@claim(
    "003-mutual-information",
    source=f"{PAPER}, main result (mutual information between input and propagated signal is maximal at dynamical "
           "isometry, validated on real finite networks)",
    statement="The mutual information between the input and the propagated signal of a finite network is maximal "
              "when it is initialised at dynamical isometry.",
    paper_says="A corrected mean-field framework gives the mutual information between inputs and propagated "
               "signals; it is maximised at dynamical isometry (norm-preserving maps), validated on real networks.",
    paper={"not_implemented": 0.0},
    tolerance={"not_implemented": Tolerance("abs", 0.0, "the paper's quantity is not implemented")},
    sizes={t: {} for t in ("smoke", "quick", "paper")},
)
def mutual_information_claim(ctx: Context) -> Measurement:
    return Measurement(not_run=MI_NOT_IMPLEMENTED)


def channel_summary(eq: dict, eq_err: dict, theory: dict, i_crit: int) -> dict:
    """Checked numbers of own-channel-information: the (sigma_w^2, weights) point whose simulated equal-gain
    information is closest to leaving 5% of the large-N theory, and orthogonal minus Gaussian at criticality."""

    dev, err, where = [], [], []
    for w in eq:
        for j in range(len(eq[w])):
            t = theory[w][j]
            dev.append(abs(eq[w][j] / t - 1.0) if np.isfinite(eq[w][j]) and t else np.inf)
            err.append(eq_err[w][j] / abs(t) if t else np.nan)
            where.append(f"{w} #{j}")
    diff = float(eq["orthogonal"][i_crit] - eq["gaussian"][i_crit])
    return {**deciding_worst("worst_rel_dev", CHANNEL_TOL, dev, err, where), "orthogonal_minus_gaussian": diff,
            "orthogonal_minus_gaussian_err": float(np.hypot(eq_err["orthogonal"][i_crit], eq_err["gaussian"][i_crit]))}


CHANNEL_TOL = Tolerance("at_most", 0.05, "large-N theory of the equal-gain information (deepprop.theory.spectrum."
                        "information_map) against finite networks: within 5% (finite-width corrections O(L/N)); "
                        "error over networks, the worst point (Bonferroni)")


@claim(
    "own-channel-information",
    kind="own",
    source="deepprop: the linearised Gaussian channel x -> J x + n (follow-ups section 3) at equal gain, with "
           "Pennington et al.'s spectrum theory",
    statement="For tanh networks around criticality, the equal-gain information of the linearised channel "
              "(J scaled to mean squared singular value 1, snr 1) of finite networks matches the large-N theory "
              "within 5%, and at the critical sigma_w^2 orthogonal weights carry more of it than Gaussian ones.",
    paper_says="(deepprop's own channel quantity: not the paper's mutual information, which row "
               "003-mutual-information leaves not implemented; it falls monotonically with sigma_w^2, so it says "
               "nothing about a peak at chi_1 = 1)",
    paper={"worst_rel_dev": 0.0, "orthogonal_minus_gaussian": 0.0},
    tolerance={"worst_rel_dev": CHANNEL_TOL,
               "orthogonal_minus_gaussian": Tolerance("at_least", 0.0, "a narrower spectrum carries more information "
                                                      "at equal gain; error over networks")},
    sizes={t: {**v, "mi_grid": 400 if t == "smoke" else 1500, "networks": min(v["networks"], 12)}
           for t, v in JAC_SIZES.items()},
)
def channel_information(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate import jacobian_spectrum
    from deepprop.theory.meanfield import critical_sigma_w2
    from deepprop.theory.spectrum import information_map

    s = ctx.sizes
    crit = float(np.asarray(critical_sigma_w2("tanh", SB2)).reshape(-1)[0])
    grid = np.linspace(0.6 * crit, 1.6 * crit, s["n_sw2"])
    grid[np.argmin(np.abs(grid - crit))] = crit
    mi, eq, eq_err = {}, {}, {}
    for w in ("gaussian", "orthogonal"):
        res = jacobian_spectrum("tanh", list(map(float, grid)), SB2, width=s["width"], depth=s["depth"], weights=w,
                                networks=s["networks"], device=ctx.device)
        mi[w] = np.array([p.mutual_information for p in res.points])
        eq[w] = np.array([p.mi_equal_gain for p in res.points])
        eq_err[w] = np.array([p.mi_equal_gain_err for p in res.points])
    i = int(np.argmin(np.abs(grid - crit)))
    imap = information_map("tanh", grid, SB2, s["depth"], weights=("gaussian", "orthogonal"), grid=s["mi_grid"])
    th = {w: np.array([next(p.mi_equal_gain for p in imap.points if p.weights == w and p.sigma_w2 == g)
                       for g in grid]) for w in eq}
    ours = channel_summary(eq, eq_err, th, i)
    ours.update({"critical_sigma_w2": crit, "mi_isometry_bound": imap.mi_isometry,
                 "equal_gain_peak_sigma_w2": float(grid[int(np.nanargmax(eq["gaussian"]))]),
                 "raw_peak_sigma_w2": float(grid[int(np.nanargmax(mi["gaussian"]))])})
    data = [ctx.save_csv({"sigma_w2": grid, "mi_gaussian": mi["gaussian"], "mi_orthogonal": mi["orthogonal"],
                          "mi_equal_gain_gaussian": eq["gaussian"], "mi_equal_gain_orthogonal": eq["orthogonal"],
                          "mi_equal_gain_err_gaussian": eq_err["gaussian"],
                          "mi_equal_gain_err_orthogonal": eq_err["orthogonal"],
                          "mi_equal_gain_theory_gaussian": th["gaussian"],
                          "mi_equal_gain_theory_orthogonal": th["orthogonal"]})]
    path, rel = ctx.figure_path()
    panels_figure(path, [
        Panel([Series(grid, mi["gaussian"], "Gaussian", "o-"), Series(grid, mi["orthogonal"], "orthogonal", "s-")],
              "channel information I (nats), raw gain", "sigma_w^2", "I", vlines=((crit, "critical"),)),
        Panel([Series(grid, eq["gaussian"], "Gaussian", "o", yerr=eq_err["gaussian"], color="C0"),
               Series(grid, th["gaussian"], "Gaussian, theory", "-", color="C0"),
               Series(grid, eq["orthogonal"], "orthogonal", "s", yerr=eq_err["orthogonal"], color="C1"),
               Series(grid, th["orthogonal"], "orthogonal, theory", "-", color="C1")],
              "at equal gain (J / sqrt(mean sigma^2)), per unit", "sigma_w^2", "I / N", vlines=((crit, "critical"),)),
    ])
    return Measurement(ours=ours, figure=[rel], data=data,
                       note=f"width {s['width']}, depth {s['depth']}, {s['networks']} networks, s_x^2 = s_n^2 = 1; "
                            "theory: deepprop.theory.spectrum.information_map (large N)")


@claim(
    "003-mutual-information/critical-line",
    kind="engine",
    source="deepprop.theory.spectrum.information_map along the critical line chi_1 = 1 (Pennington et al. 2017 "
           "spectrum theory): Jensen's inequality at equal gain",
    statement="Among critical initialisations (chi_1 = 1, tanh, over sigma_b^2 and Gaussian or orthogonal "
              "weights), the engine's equal-gain channel information is largest at the smallest spread of the "
              "Jacobian's squared singular values.",
    paper_says="(an engine check, not a paper claim: at equal gain sum log(1 + snr sigma^2) is concave in sigma^2, "
               "so by Jensen's inequality a narrower spectrum always carries more; it can only fail through a bug)",
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
