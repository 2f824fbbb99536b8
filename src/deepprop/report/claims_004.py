"""Claims of Pretorius, van Biljon, Kroon, Kamper, "Critical initialisation for deep signal propagation in
noisy rectifier neural networks", NeurIPS 2018 (004; follow-ups section 1)."""

from __future__ import annotations

import math

import numpy as np

from deepprop.noise_models import Dropout, GaussianMultiplicative
from deepprop.prior import NetworkPrior, Noise
from deepprop.report import trainability as tr
from deepprop.report.context import Context
from deepprop.report.registry import Measurement, claim
from deepprop.report.verdict import Tolerance, deciding_worst

PAPER = "Pretorius et al. 2018"
NOISES = (("dropout rho=0.8", Noise.of(Dropout(0.8))), ("dropout rho=0.6", Noise.of(Dropout(0.6))),
          ("Gaussian s=0.25", Noise.of(GaussianMultiplicative(0.25))))
MU2 = {"dropout rho=0.8": 1 / 0.8, "dropout rho=0.6": 1 / 0.6, "Gaussian s=0.25": 1 + 0.25**2}
KEYS = {"dropout rho=0.8": "rho_0.8", "dropout rho=0.6": "rho_0.6", "Gaussian s=0.25": "gauss_0.25"}
EXACT = Tolerance("abs", 1e-9, "a closed form: agreement to solver precision")


def relu(noise: Noise, sigma_w2: float = 1.0) -> NetworkPrior:
    """A bias-free ReLU network with this noise (sigma_w2: where the advice is asked, the one it chooses)."""
    return NetworkPrior("relu", sigma_w2, 0.0, noise)


@claim(
    "004-critical-init",
    kind="engine",
    source=f"{PAPER}, sec. 3 (critical initialisation for multiplicative noise), against deepprop.critical_init",
    statement="For ReLU with multiplicative noise of second moment mu2 and no bias, sigma_w^2 = 2/mu2 preserves "
              "the signal variance exactly (2 rho for dropout; He init is mu2 = 1).",
    paper_says="Closed form: q' = (sigma_w^2 mu2 / 2) q, critical at sigma_w^2 = 2/mu2.",
    paper={f"sigma_w2_{KEYS[n]}": 2 / MU2[n] for n, _ in NOISES} | {"q_map_gain_max_dev": 0.0},
    tolerance={f"sigma_w2_{KEYS[n]}": EXACT for n, _ in NOISES} | {"q_map_gain_max_dev": EXACT},
    sizes={t: {} for t in ("smoke", "quick", "paper")},
)
def critical_init_rows(ctx: Context) -> Measurement:
    from deepprop.advice import critical_init
    from deepprop.theory.meanfield import trajectory

    ours: dict[str, float] = {}
    dev = 0.0
    rows = []
    for name, noise in NOISES:
        adv = critical_init(relu(noise))
        ours[f"sigma_w2_{KEYS[name]}"] = float(adv.sigma_w2)
        q, _ = trajectory(relu(noise, adv.sigma_w2), q0=np.array([0.1, 1.0, 10.0]), c0=0.5, depth=50)
        gain = q[:, -1] / q[:, 0]
        dev = max(dev, float(np.max(np.abs(gain - 1.0))))
        rows.append((name, adv.sigma_w2, 2 / MU2[name], float(gain.max())))
    ours["q_map_gain_max_dev"] = dev
    data = [ctx.save_csv({"noise": [r[0] for r in rows], "sigma_w2_advice": [r[1] for r in rows],
                          "two_over_mu2": [r[2] for r in rows], "q50_over_q0_max": [r[3] for r in rows]})]
    return Measurement(ours=ours, data=data, note="deepprop.critical_init; q^50/q^0 from the engine's variance map")


@claim(
    "004-closed-forms",
    kind="engine",
    source=f"{PAPER}, closed forms for c* and xi_c at sigma_w^2 = 2/mu2 (follow-ups section 1: values computed from "
           "the closed-form map, not quoted by the paper), against the engine",
    statement="At the critical ReLU initialisation the correlation fixed point c* < 1 and depth scale xi_c take the "
              "closed-form values 0.47280 / 1.554 (rho = 0.8), 0.28391 / 0.966 (rho = 0.6), 0.72038 / 2.939 "
              "(Gaussian s = 0.25).",
    paper_says="Numbers from the closed-form c-map c' = (sqrt(1 - c^2) + (pi - arccos c) c) / (pi mu2).",
    paper={"c_star_rho_0.8": 0.47280, "xi_c_rho_0.8": 1.554, "c_star_rho_0.6": 0.28391, "xi_c_rho_0.6": 0.966,
           "c_star_gauss_0.25": 0.72038, "xi_c_gauss_0.25": 2.939},
    tolerance={f"{q}_{k}": Tolerance("abs", 5e-6 if q == "c_star" else 5e-4,
                                     "half a unit in the last quoted digit")
               for q in ("c_star", "xi_c") for k in ("rho_0.8", "rho_0.6", "gauss_0.25")},
    sizes={t: {} for t in ("smoke", "quick", "paper")},
)
def closed_forms(ctx: Context) -> Measurement:
    from deepprop.theory.meanfield import mean_field

    ours: dict[str, float] = {}
    for name, noise in NOISES:
        mf = mean_field(relu(noise, 2 / MU2[name]))
        ours[f"c_star_{KEYS[name]}"] = float(mf.c_star)
        ours[f"xi_c_{KEYS[name]}"] = float(mf.xi_c)
    data = [ctx.save_csv({"quantity": list(ours), "deepprop": list(ours.values())})]
    return Measurement(ours=ours, data=data, note="deepprop.mean_field (engine) against the quoted closed-form values")


def finite_width_summary(ratio, ratio_err, c_dev, c_err, names: list[str]) -> dict:
    """Checked numbers of 004-finite-width: the setting whose q^L / q^0 is closest to leaving 1 +- 0.2 and the
    one whose |c^L - c^L_theory| is closest to leaving 0.03, each with its standard error over networks and the
    settings as comparisons."""
    ours: dict = {}
    for key, vals, errs, tol in (("q_ratio_dev", np.abs(np.asarray(ratio) - 1.0), ratio_err, Q_TOL),
                                 ("c_final_dev", np.abs(np.asarray(c_dev)), c_err, C_TOL)):
        ours.update(deciding_worst(key, tol, list(vals), list(errs), names))
    return ours


Q_TOL = Tolerance("at_most", 0.2, "'the variance is preserved': q^L / q^0 within 20% of 1 (off-critical by 10% in "
                  "sigma_w^2 gives 1.1^20 = 6.7 at depth 20; He init with dropout 0.8 gives 87); standard error "
                  "over networks, worst setting (Bonferroni)")
C_TOL = Tolerance("at_most", 0.03, "O(1/N) finite-width bias of c^l; standard error over networks, worst setting")


@claim(
    "004-finite-width",
    source=f"{PAPER}, sec. 3 and its simulations of noisy ReLU networks at the critical initialisation",
    statement="In finite noisy ReLU networks at sigma_w^2 = 2/mu2 the variance q^l stays at q^0 at every depth "
              "and c^l follows the mean-field map to c* < 1.",
    paper_says="Simulated q^l flat at the critical initialisation for dropout and Gaussian noise; c^l converging to "
               "the noise-limited c* (the paper's figure read-off; protocols.md gives no sizes for it).",
    paper={"q_ratio_dev": 0.0, "c_final_dev": 0.0},
    tolerance={"q_ratio_dev": Q_TOL, "c_final_dev": C_TOL},
    sizes={"smoke": {"width": 64, "depth": 10, "networks": 4}, "quick": {"width": 500, "depth": 20, "networks": 32},
           "full": {"width": 1000, "depth": 30, "networks": 48}, "paper": {"width": 1000, "depth": 50, "networks": 64}},
)
def finite_width(ctx: Context) -> Measurement:
    from deepprop.advice import critical_init
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate import simulate_forward

    s = ctx.sizes
    ratios, errs, cdev, cerr, qp, cp, rows = [], [], [], [], [], [], []
    for k, (name, noise) in enumerate(NOISES):
        adv = critical_init(relu(noise))
        r = simulate_forward(relu(noise, adv.sigma_w2), width=s["width"], depth=s["depth"], q0=1.0, c0=0.9,
                             networks=s["networks"], pairs=4, seed=k, device=ctx.device)
        ratios.append(float(r.q[-1] / r.q[0]))
        errs.append(float(r.q_err[-1] / r.q[0]))
        cdev.append(float(r.c[-1] - r.c_theory[-1]))
        cerr.append(float(r.c_err[-1]))
        qp += [Series(r.layers, r.q, name, "o", yerr=r.q_err, color=f"C{k}"),
               Series(r.layers, r.q_theory, None, "-", color=f"C{k}")]
        cp += [Series(r.layers, r.c, name, "o", yerr=r.c_err, color=f"C{k}"),
               Series(r.layers, r.c_theory, None, "-", color=f"C{k}")]
        for i, layer in enumerate(r.layers):
            rows.append((name, int(layer), r.q[i], r.q_err[i], r.q_theory[i], r.c[i], r.c_err[i], r.c_theory[i]))
    a = np.array(rows, dtype=object)
    data = [ctx.save_csv({"noise": a[:, 0], "layer": a[:, 1], "q": a[:, 2], "q_err": a[:, 3], "q_theory": a[:, 4],
                          "c": a[:, 5], "c_err": a[:, 6], "c_theory": a[:, 7]})]
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel(qp, f"q^l at sw2 = 2/mu2 (width {s['width']}); lines: theory", "layer l", "q^l",
                               ylim=(0, 2)),
                         Panel(cp, "c^l -> c* < 1", "layer l", "c^l")])
    ours = finite_width_summary(ratios, errs, cdev, cerr, [n for n, _ in NOISES])
    ours.update({f"q_ratio_{KEYS[n]}": v for (n, _), v in zip(NOISES, ratios, strict=True)})
    return Measurement(ours=ours, figure=[rel], data=data,
                       note=f"width {s['width']}, depth {s['depth']}, {s['networks']} networks x 4 pairs, q0 = 1, "
                            "c0 = 0.9; errors over networks")


def vs_he_summary(table) -> dict:
    """Checked number of 004-vs-he from the (init, depth, seed, train_acc) table: the deepest depth whose seed-mean
    accuracy is halfway from chance to the best cell, per initialisation, and their gap in rungs of the depth
    grid."""
    best = float(table["train_acc"].max())
    threshold = 0.1 + 0.5 * (best - 0.1)
    depths = sorted(table["depth"].unique())
    mean = table.groupby(["init", "depth"])["train_acc"].mean()
    deepest = {}
    for init in ("critical", "He"):
        ok = [d for d in depths if (init, d) in mean.index and mean[(init, d)] >= threshold]
        deepest[init] = max(ok) if ok else 0
    rung = {d: i for i, d in enumerate(depths)}
    gap = abs(rung.get(deepest["critical"], -1) - rung.get(deepest["He"], -1))
    return {"rung_gap": float(gap), "deepest_trainable_critical": float(deepest["critical"]),
            "deepest_trainable_he": float(deepest["He"]), "threshold": threshold}


@claim(
    "004-vs-he",
    kind="own",
    source=f"deepprop, on {PAPER}: the authors train the critical initialisation only",
    statement="With dropout (keep rate 0.8) and no bias, ReLU networks at the critical sigma_w^2 = 2 rho and at He's "
              "sigma_w^2 = 2 train to the same depth within one rung of the depth grid: without bias the ReLU "
              "correlation map does not depend on sigma_w^2, so both share xi_c (He's variance grows as (1/rho)^L "
              "but stays far from float32 overflow at these depths).",
    paper_says="The paper's evidence against non-critical initialisation is numerical overflow (row "
               "004-overflow-depth), not a training comparison: it trains the critical initialisation only "
               "(protocols.md). This comparison is deepprop's own.",
    paper={"rung_gap": 0.0},
    tolerance={"rung_gap": Tolerance("at_most", 1.0, "shared xi_c: the deepest trainable depths differ by at most "
                                     "one rung of the depth grid (the grid's resolution)")},
    sizes={"smoke": {"depths": (2, 8, 24), "steps": 30, "seeds": (0,), "width": 16},
           "quick": {"depths": (2, 4, 6, 8, 10, 12, 16), "steps": 200, "seeds": (0, 1, 2), "width": 64},
           "paper": {"depths": (10, 20, 40, 60, 80, 100), "steps": 2000, "seeds": (0, 1, 2), "width": 1000}},
)
def vs_he(ctx: Context) -> Measurement:
    import shutil

    from deepprop.plots.critical_init import draw_init_vs_he
    from deepprop.sweep.compare import compare_inits, q_curves

    s = ctx.sizes
    dataset, note = ctx.mnist_like(fast=True)
    work = ctx.work_dir / "init_vs_he"
    table, cfg = compare_inits(work, progress=ctx.progress, depths=s["depths"], steps=s["steps"], width=s["width"],
                               dataset=dataset, seeds=s["seeds"], device=ctx.device)
    png = draw_init_vs_he(table, cfg, q_curves(table, cfg), work)
    path, rel = ctx.figure_path()
    shutil.copyfile(png, path)
    return Measurement(
        ours=vs_he_summary(table), figure=[rel], data=[ctx.save_csv(table)],
        note=note + f"; width {s['width']}, {s['steps']} SGD steps, keep rate 0.8, seeds {list(s['seeds'])}; "
                    "trainable: seed-mean accuracy halfway between chance and the best cell")


@claim(
    "004-trainable-depth",
    source=f"{PAPER}, trainability experiments (critical initialisation, keep rates 0.1 to 1)",
    statement="Under the critical initialisation sigma_w^2 = 2 rho (ReLU, no bias), no network deeper than 6 xi_c "
              "of its noise trains: the trainable depth follows the correlation depth scale of the dropout rate, "
              "finite for every rho < 1.",
    paper_says="ReLU, no bias, width 1000, keep rates 0.1 to 1.0, depths 2 to 40; reconstruction of the input "
               "(MSE) on MNIST / CIFAR-10, SGD lr 1e-3, batch 128, 200 epochs: the trainable depth follows about "
               "6 xi_c of the noise and dropout limits it whatever the initialisation (protocols.md).",
    paper={"excess_beyond": 0.0, "reach": 3.0},
    tolerance={
        "excess_beyond": Tolerance("at_most", 0.0, "'trainable depth ~ 6 xi_c': no cell beyond 1.25 x 6 xi_c(rho) "
                                   "reaches its heatmap's trained threshold (halfway from chance to the best cell); "
                                   "in seed-to-seed standard deviations, worst of the beyond cells (Bonferroni)"),
        "reach": Tolerance("at_least", 0.0, "not vacuous: with dropout some trained cell lies at >= 3 xi_c (else the "
                           "budget has not trained the region the bound limits: undecided)", fail_means="undecided"),
    },
    sizes=tr.SPECS,
    decides="the paper tier (width 1000, keep rates 0.1 to 1, the authors' reconstruction task is not implemented)",
)
def trainable_depth(ctx: Context) -> Measurement:
    from deepprop.report import bounds as bd

    sw = tr.load(ctx, "relu")
    nets = sw.networks[sw.networks["keep_rate"] < 1.0]
    cells = bd.cell_table(sw.networks, sw.chance)
    sd = bd.pooled_sd(cells, sw.chance)
    ours = bd.bound_summary(bd.cell_table(nets, sw.chance), sd)
    ours["lr_per_depth"] = {f"L{d}": v for d, v in sorted(sw.lrs.items())}
    ours["six_xi_c"] = {f"rho {k:g}": float(6 * g["xi_c"].iloc[0]) for k, g in cells.groupby("keep_rate")}
    figs = tr.heatmap_figures(ctx, sw, sorted(sw.networks["steps"].unique()))
    data = [ctx.save_csv(cells)] + tr.save_networks(ctx, sw, "networks")
    return Measurement(ours=ours, figure=figs, data=data,
                       note=sw.note() + "; classification with cross-entropy stands in for the authors' input "
                       "reconstruction (MSE); trained: seed-mean accuracy halfway from chance to the heatmap's best "
                       "cell; keep rate 1 (He = critical) is the control that the budget trains these depths")


OVERFLOW_TOL = Tolerance("at_most", 0.1, "the paper compares the measured depth with L* over sigma_w^2 0.1-2.5 "
                         "(depths 35-1000): within 10%, per sigma_w^2 with |ln g| >= 0.4 (nearer criticality the "
                         "finite-width drift of ln q^l, E ln gain < ln E gain, shifts the depth by O(1/(N |ln g|))); "
                         "standard error over networks, worst sigma_w^2 (Bonferroni)")
OVERFLOW_LNG = 0.4


def overflow_summary(res, floor: float = 0.3) -> dict:
    """Checked numbers of 004-overflow-depth from a RangeDepths: per sigma_w^2 the mean first layer leaving the
    float32 range over networks and inputs, its standard error over networks (at least ``floor`` layers / sqrt(K):
    the depth is an integer), the prediction from each network's measured q^1, and the worst relative deviation
    among the deciding sigma_w^2 (|ln g| >= OVERFLOW_LNG). A sigma_w^2 whose networks never leave the range within
    the depth counts as an infinite deviation."""
    first = np.asarray(res.first, dtype=float)
    pred = np.asarray(res.predicted(), dtype=float)
    k = first.shape[0]
    lng = np.log(res.sigma_w2 / res.keep_rate / 2.0)
    deciding = np.abs(lng) >= OVERFLOW_LNG
    rel, err, where, ours = [], [], [], {}
    for j, sw in enumerate(res.sigma_w2):
        p = float(np.mean(pred[:, :, j]))
        never = bool(np.isnan(first[:, :, j]).any())
        per_net = first[:, :, j].mean(axis=1)
        m = float(np.mean(per_net)) if not never else math.inf
        se = max(float(np.std(per_net, ddof=1) / math.sqrt(k)) if k > 1 and not never else 0.0, floor / math.sqrt(k))
        ours[f"sw2_{sw:g}_{res.kind[j]}_depth"] = m if math.isfinite(m) else None
        ours[f"sw2_{sw:g}_predicted"] = p
        ours[f"sw2_{sw:g}_paper_l_star"] = float(res.paper_l_star()[j])
        if deciding[j] and p <= 0.85 * res.depth:  # room for a crossing 15% later than predicted
            rel.append(abs(m / p - 1.0) if math.isfinite(m) else math.inf)
            err.append(se / p)
            where.append(f"sigma_w^2 {sw:g} ({res.kind[j]}): measured {m:.4g} +- {se:.2g}, predicted {p:.4g}")
    ours.update(deciding_worst("worst_rel_dev", OVERFLOW_TOL, rel, err, where,
                               none_reason="no deciding sigma_w^2 within the depth"))
    ours["deciding_sw2"] = [float(x) for x in res.sigma_w2[deciding]]
    return ours


OVERFLOW_SW2 = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5)


@claim(
    "004-overflow-depth",
    source=f"{PAPER}, numerical overflow depth L* = ln K / ln(sigma_w^2 mu2 / 2) (evidence against non-critical "
           "initialisation)",
    statement="A bias-free ReLU network with dropout (keep rate 0.6) computed in float32 leaves the float32 range "
              "where the mean-field variance does: the float32 sum of squares overflows when N q^l reaches the "
              "largest float32 (above criticality, sigma_w^2 > 1.2), the variance underflows below the smallest "
              "normal float32 (below it), at L* = ln(K / (N q^1)) / ln(sigma_w^2 mu2 / 2) + 1 within 10%.",
    paper_says="float32 networks, keep rate 0.6, sigma_w^2 from 0.1 to 2.5, depth up to 1000, real data: the depth at "
               "which the variance becomes inf/NaN (or underflows) against L* = ln K / ln(sigma_w^2 mu2 / 2); the "
               "float32 sum of squares overflows somewhat earlier than the variance itself (protocols.md).",
    paper={"worst_rel_dev": 0.0},
    tolerance={"worst_rel_dev": OVERFLOW_TOL},
    sizes={"smoke": {"width": 64, "depth": 120, "networks": 3, "inputs": 2},
           "quick": {"width": 300, "depth": 250, "networks": 8, "inputs": 4},
           "full": {"width": 1000, "depth": 600, "networks": 8, "inputs": 4},
           "paper": {"width": 1000, "depth": 1000, "networks": 16, "inputs": 8}},
)
def overflow_depth(ctx: Context) -> Measurement:
    from deepprop.data import load_dataset
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate.overflow import float32_range_depths

    s = ctx.sizes
    dataset, note = ctx.mnist_like(fast=True)
    x = load_dataset(dataset, ctx.data_dir).x_train[: s["inputs"]]
    res = float32_range_depths(x, OVERFLOW_SW2, keep_rate=0.6, width=s["width"], depth=s["depth"],
                               networks=s["networks"], seed=0, device=ctx.device)
    ours = overflow_summary(res)
    first = np.where(np.isnan(res.first).any(axis=(0, 1)), np.nan, res.first.mean(axis=(0, 1)))
    pred = np.mean(res.predicted(), axis=(0, 1))
    data = [ctx.save_csv({"sigma_w2": np.repeat(res.sigma_w2, res.first.shape[0] * res.first.shape[1]),
                          "network": np.tile(np.repeat(np.arange(res.first.shape[0]), res.first.shape[1]),
                                             res.sigma_w2.size),
                          "first_layer_out_of_range": res.first.transpose(2, 0, 1).reshape(-1),
                          "predicted": res.predicted().transpose(2, 0, 1).reshape(-1),
                          "q1": res.q1.transpose(2, 0, 1).reshape(-1)})]
    fine = np.linspace(0.05, 2.6, 400)
    lng = np.log(fine / 0.6 / 2.0)
    star = np.where(np.abs(lng) > 0.02, np.where(lng > 0, math.log(float(np.finfo(np.float32).max)),
                                                 math.log(float(np.finfo(np.float32).tiny))) / lng, np.nan)
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel([Series(fine, star, "paper's L* = ln K / ln(sw2 mu2 / 2)", "--", color="k"),
                                Series(res.sigma_w2, pred, "L* from q^1, float32 sum of N squares", "s", color="gray"),
                                Series(res.sigma_w2, first, "measured (float32)", "o", color="red")],
                               f"ReLU, dropout rho = 0.6, width {s['width']}", "sigma_w^2",
                               "first layer out of float32 range", logy=True, ylim=(10, 3 * s["depth"]),
                               vlines=((1.2, "critical 2 rho"),))])
    return Measurement(ours=ours, figure=[rel], data=data,
                       note=note + f"; width {s['width']}, depth <= {s['depth']}, {s['networks']} networks x "
                       f"{s['inputs']} inputs, float32 throughout (deepprop.simulate.overflow); a sigma_w^2 whose "
                       "predicted depth exceeds the depth is reported, not compared")
