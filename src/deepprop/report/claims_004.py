"""Claims of Pretorius, van Biljon, Kroon, Kamper, "Critical initialisation for deep signal propagation in
noisy rectifier neural networks", NeurIPS 2018 (004; follow-ups section 1)."""

from __future__ import annotations

import math

import numpy as np

from deepprop.report.context import Context
from deepprop.report.registry import Measurement, claim
from deepprop.report.verdict import Tolerance

PAPER = "Pretorius et al. 2018"
NOISES = (("dropout rho=0.8", {"keep_rate": 0.8}), ("dropout rho=0.6", {"keep_rate": 0.6}),
          ("Gaussian s=0.25", {"noise_mult": 0.25}))
MU2 = {"dropout rho=0.8": 1 / 0.8, "dropout rho=0.6": 1 / 0.6, "Gaussian s=0.25": 1 + 0.25**2}
KEYS = {"dropout rho=0.8": "rho_0.8", "dropout rho=0.6": "rho_0.6", "Gaussian s=0.25": "gauss_0.25"}
EXACT = Tolerance("abs", 1e-9, "a closed form: agreement to solver precision")


@claim(
    "004-critical-init",
    source=f"{PAPER}, sec. 3 (critical initialisation for multiplicative noise)",
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
        adv = critical_init("relu", **noise)
        ours[f"sigma_w2_{KEYS[name]}"] = float(adv.sigma_w2)
        q, _ = trajectory("relu", adv.sigma_w2, 0.0, q0=np.array([0.1, 1.0, 10.0]), c0=0.5, depth=50, **noise)
        gain = q[:, -1] / q[:, 0]
        dev = max(dev, float(np.max(np.abs(gain - 1.0))))
        rows.append((name, adv.sigma_w2, 2 / MU2[name], float(gain.max())))
    ours["q_map_gain_max_dev"] = dev
    data = [ctx.save_csv({"noise": [r[0] for r in rows], "sigma_w2_advice": [r[1] for r in rows],
                          "two_over_mu2": [r[2] for r in rows], "q50_over_q0_max": [r[3] for r in rows]})]
    return Measurement(ours=ours, data=data, note="deepprop.critical_init; q^50/q^0 from the engine's variance map")


@claim(
    "004-closed-forms",
    source=f"{PAPER}, closed forms for c* and xi_c at sigma_w^2 = 2/mu2 (follow-ups section 1)",
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
        mf = mean_field("relu", 2 / MU2[name], 0.0, show_progress=False, **noise)
        ours[f"c_star_{KEYS[name]}"] = float(mf.c_star)
        ours[f"xi_c_{KEYS[name]}"] = float(mf.xi_c)
    data = [ctx.save_csv({"quantity": list(ours), "deepprop": list(ours.values())})]
    return Measurement(ours=ours, data=data, note="deepprop.mean_field (engine) against the quoted closed-form values")


@claim(
    "004-finite-width",
    source=f"{PAPER}, finite-network experiments (fig. of q^l at criticality)",
    statement="In finite noisy ReLU networks at sigma_w^2 = 2/mu2 the variance q^l stays at q^0 at every depth "
              "and c^l follows the mean-field map to c* < 1.",
    paper_says="Simulated q^l flat at the critical initialisation for dropout and Gaussian noise; c^l converging to "
               "the noise-limited c*.",
    paper={"q_ratio": 1.0, "c_final_dev": 0.0},
    tolerance={"q_ratio": Tolerance("sigma", 4.0, "4 standard errors of the ensemble mean of q^L / q^0"),
               "c_final_dev": Tolerance("abs", 0.03, "O(1/N) finite-width bias of c^l plus the ensemble's noise")},
    sizes={"smoke": {"width": 64, "depth": 10, "networks": 4}, "quick": {"width": 500, "depth": 20, "networks": 8},
           "paper": {"width": 1000, "depth": 50, "networks": 32}},
)
def finite_width(ctx: Context) -> Measurement:
    from deepprop.advice import critical_init
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate import simulate_forward

    s = ctx.sizes
    ratios, errs, cdev, qp, cp, rows = [], [], [], [], [], []
    for k, (name, noise) in enumerate(NOISES):
        adv = critical_init("relu", **noise)
        r = simulate_forward("relu", adv.sigma_w2, 0.0, width=s["width"], depth=s["depth"], q0=1.0, c0=0.9,
                             networks=s["networks"], pairs=4, seed=k, device=ctx.device, **noise)
        ratios.append(float(r.q[-1] / r.q[0]))
        errs.append(float(r.q_err[-1] / r.q[0]))
        cdev.append(float(abs(r.c[-1] - r.c_theory[-1])))
        qp += [Series(r.layers, r.q, name, "o", yerr=r.q_err, color=f"C{k}"),
               Series(r.layers, r.q_theory, None, "-", color=f"C{k}")]
        cp += [Series(r.layers, r.c, name, "o", yerr=r.c_err, color=f"C{k}"),
               Series(r.layers, r.c_theory, None, "-", color=f"C{k}")]
        for i, layer in enumerate(r.layers):
            rows.append((name, int(layer), r.q[i], r.q_err[i], r.q_theory[i], r.c[i], r.c_err[i], r.c_theory[i]))
    worst = int(np.argmax(np.abs(np.array(ratios) - 1) / np.maximum(errs, 1e-300)))
    a = np.array(rows, dtype=object)
    data = [ctx.save_csv({"noise": a[:, 0], "layer": a[:, 1], "q": a[:, 2], "q_err": a[:, 3], "q_theory": a[:, 4],
                          "c": a[:, 5], "c_err": a[:, 6], "c_theory": a[:, 7]})]
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel(qp, f"q^l at sw2 = 2/mu2 (width {s['width']}); lines: theory", "layer l", "q^l",
                               ylim=(0, 2)),
                         Panel(cp, "c^l -> c* < 1", "layer l", "c^l")])
    return Measurement(ours={"q_ratio": ratios[worst], "q_ratio_err": errs[worst], "c_final_dev": max(cdev),
                             "worst_setting": worst},
                       figure=[rel], data=data,
                       note=f"width {s['width']}, depth {s['depth']}, {s['networks']} networks x 4 pairs; the "
                            "setting furthest from q^L = q^0 (in standard errors) is checked")


@claim(
    "004-vs-he",
    source=f"{PAPER}, trainability experiments (critical init vs He init with dropout)",
    statement="With dropout, ReLU networks initialised at sigma_w^2 = 2 rho train deeper than at He's "
              "sigma_w^2 = 2.",
    paper_says="Trainability against depth: the noise-aware critical initialisation keeps training at depths where "
               "He initialisation fails (its signal grows as (1/rho)^L).",
    paper={"depth_gain": 1.0},
    tolerance={"depth_gain": Tolerance("at_least", 0.0, "'trains deeper': the deepest trainable depth is larger")},
    sizes={"smoke": {"depths": (2, 8, 24), "steps": 30, "seeds": (0,), "width": 16},
           "quick": {"depths": (2, 4, 6, 8, 10, 12, 16), "steps": 200, "seeds": (0, 1, 2), "width": 64},
           "paper": {"depths": (10, 20, 40, 60, 80, 100), "steps": 2000, "seeds": (0, 1, 2), "width": 1000}},
)
def vs_he(ctx: Context) -> Measurement:
    import shutil

    from deepprop.plots.critical_init import init_trainability_figure

    s = ctx.sizes
    dataset, note = ctx.mnist_like(fast=True)
    work = ctx.work_dir / "init_vs_he"
    png, table = init_trainability_figure(work, progress=ctx.progress, depths=s["depths"], steps=s["steps"],
                                          width=s["width"], dataset=dataset, seeds=s["seeds"], device=ctx.device)
    path, rel = ctx.figure_path()
    shutil.copyfile(png, path)
    best = float(table["train_acc"].max())
    threshold = 0.1 + 0.5 * (best - 0.1)
    deepest = {}
    for init, g in table.groupby("init"):
        ok = g[g["train_acc"] >= threshold]["depth"]
        deepest[str(init)] = float(ok.max()) if len(ok) else 0.0
    return Measurement(
        ours={"deepest_trainable_critical": deepest.get("critical", math.nan),
              "deepest_trainable_he": deepest.get("He", math.nan),
              "depth_gain": deepest.get("critical", math.nan) - deepest.get("He", math.nan), "threshold": threshold},
        figure=[rel], data=[ctx.save_csv(table)],
        note=note + f"; width {s['width']}, {s['steps']} SGD steps, keep rate 0.8, seeds {list(s['seeds'])}; "
                    "trainable: mean accuracy halfway between chance and the best cell")


@claim(
    "004-overflow-depth",
    source=f"{PAPER}, numerical overflow depth L* = ln K / ln(sigma_w^2 mu2 / 2)",
    statement="A non-critical ReLU network in float32 overflows at depth L* = ln K / ln(sigma_w^2 mu2 / 2), "
              "K the largest float32 (He init with dropout rho = 0.5: L* = 128).",
    paper_says="Closed form for the depth at which the signal variance leaves the float32 range.",
    paper={"overflow_depth": math.log(float(np.finfo(np.float32).max)) / math.log(2.0 * 2.0 / 2.0)},
    tolerance={"overflow_depth": Tolerance("rel", 0.05, "finite-width fluctuations of log q^l (~sqrt(L/N) in "
                                           "units of ln 2 per layer)")},
    sizes={"smoke": {"width": 64, "networks": 2}, "quick": {"width": 1000, "networks": 8},
           "paper": {"width": 1000, "networks": 8}},
)
def overflow_depth(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate import simulate_forward

    s = ctx.sizes
    r = simulate_forward("relu", 2.0, 0.0, width=s["width"], depth=160, q0=1.0, c0=0.5, keep_rate=0.5,
                         networks=s["networks"], pairs=1, dtype="float64", device=ctx.device, with_theory=False)
    big = float(np.finfo(np.float32).max)
    bad = np.flatnonzero(~(r.q <= big))
    measured = float(bad[0]) if bad.size else math.nan
    predicted = math.log(big) / math.log(2.0)
    data = [ctx.save_csv({"layer": r.layers, "q": r.q, "above_float32_max": r.q > big})]
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel([Series(r.layers, r.q, "q^l (ensemble mean)", "o"),
                                Series(r.layers, 2.0 ** r.layers, "theory q^0 2^l", "--")],
                               "ReLU, sw2 = 2, dropout rho = 0.5", "layer l", "q^l", logy=True,
                               vlines=((predicted, f"L* = {predicted:.1f}"),))])
    return Measurement(ours={"overflow_depth": measured}, figure=[rel], data=data,
                       note=f"width {s['width']}, {s['networks']} networks; first layer whose q^l (measured in "
                            "float64) exceeds "
                            "the largest float32, K = 3.4e38 (a float32 sum of N squares overflows ~log2(N) "
                            "layers earlier)")
