"""Evidence for noise-aware critical initialisation (follow-ups section 1).

:func:`noisy_relu_figure`: finite ReLU networks with dropout or multiplicative Gaussian noise, initialised
at sigma_w^2 = 2/mu2, sigma_b^2 = 0. Points (mean +- std over independent networks) are simulated
q^l and c^l; lines are the engine's ``trajectory``. q^l stays at q0 for every depth and c^l converges
to the noise-limited fixed point c* < 1 (dashed). The simulation is :func:`deepprop.simulate.simulate_forward`
(points: mean +- standard error over networks).

:func:`init_trainability_figure`: with the sweep engine, ReLU networks without bias trained with dropout at
the noise-aware critical init sigma_w^2 = 2 rho and at He's sigma_w^2 = 2 over a range of depths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepprop.sweep.compare import compare_inits

SETTINGS = (
    ("dropout keep 0.8", dict(keep_rate=0.8, noise_mult=0.0)),
    ("dropout keep 0.6", dict(keep_rate=0.6, noise_mult=0.0)),
    ("Gaussian s = 0.25", dict(keep_rate=1.0, noise_mult=0.25)),
)


def noisy_relu_figure(out_dir: str | Path, *, width: int = 1000, networks: int = 8, depth: int = 20,
                      seed: int = 0, device: str | None = None) -> Path:
    """Write ``noisy_relu_critical.png``: simulated q^l, c^l vs the engine at sw2 = 2/mu2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepprop.advice import critical_init
    from deepprop.plots.style import save
    from deepprop.simulate import simulate_forward

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c0 = (0.95, 0.05)
    fig, (axq, axc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, (label, noise) in enumerate(SETTINGS):
        color = f"C{k}"
        advice = critical_init("relu", **noise)
        for j, c_start in enumerate(c0):
            r = simulate_forward("relu", advice.sigma_w2, 0.0, width=width, depth=depth, q0=1.0, c0=c_start,
                                 networks=networks, pairs=4, seed=seed + j, device=device, **noise)
            if j == 0:
                axq.errorbar(r.layers + 0.1 * k, r.q, yerr=r.q_err, fmt="o", ms=3, color=color, capsize=2,
                             label=f"{label}: sw2 = {advice.sigma_w2:.3g}")
                axq.plot(r.layers, r.q_theory, "-", color=color, lw=1)
            axc.errorbar(r.layers + 0.1 * k, r.c, yerr=r.c_err, fmt="o", ms=3, color=color, capsize=2,
                         label=label if j == 0 else None)
            axc.plot(r.layers, r.c_theory, "-", color=color, lw=1)
        axc.axhline(advice.c_star, ls="--", color=color, lw=0.8)
    axq.set(xlabel="layer l", ylabel="q^l (pre-activation variance)", ylim=(0, 2),
            title=f"ReLU at sw2 = 2/mu2: q^l preserved (width {width}, {networks} nets)")
    axc.set(xlabel="layer l", ylabel="c^l (correlation of an input pair)",
            title="c^l -> c* < 1 (dashed); lines: mean-field theory")
    axq.legend(fontsize=8)
    axc.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, out / "noisy_relu_critical.png")


# ---- trainability: noise-aware critical init vs He init, same dropout ------------------------------------

COMPARE_PNG = "init_vs_he.png"


def init_trainability_figure(
    out_dir: str | Path, *, progress: bool = True, **kwargs: object
) -> tuple[Path, pd.DataFrame]:
    """Write ``init_vs_he.png``: final training accuracy vs depth at sw2 = 2 rho and at He's sw2 = 2.

    (a) training accuracy (mean +- std over seeds; diverged networks at chance) with each setting's
    predicted trainable depth 6 xi_c (vertical lines). For bias-free ReLU the correlation map does not
    depend on q, so both settings have the same xi_c: the mean-field theory predicts the same
    correlation-limited depth, and any difference comes from the signal growth. (b) the engine's q^l:
    flat at the critical init, growing as (1/rho)^l for He with dropout (chi_1 = 1/rho).
    Keyword arguments are those of :func:`deepprop.sweep.compare.compare_config`.
    """
    from deepprop.plots.style import panels, save
    from deepprop.theory.meanfield import trajectory

    table, cfg = compare_inits(out_dir, progress=progress, **kwargs)
    keep = cfg.keep_rates[0]
    fig, (ax, axq) = panels(2, width=5.2, height=4.0)
    styles = {"critical": ("C0", "o", "--"), "He": ("C3", "s", ":")}
    for init, g in table.groupby("init"):
        color, marker, ls = styles[str(init)]
        sw2 = g["sigma_w2"].iloc[0]
        ax.errorbar(g["depth"], g["train_acc"], yerr=g["train_acc_std"], fmt=marker + "-", color=color,
                    capsize=3, ms=5, lw=1, label=f"{init}: sw2 = {sw2:.3g}")
        div = g[g["n_diverged"] > 0]
        for _, r in div.iterrows():
            ax.annotate(f"{r['n_diverged']} div.", (r["depth"], r["train_acc"]), fontsize=7, color=color,
                        textcoords="offset points", xytext=(4, 6))
        md = g["max_depth"].iloc[0]
        same = np.allclose(table["max_depth"], md, rtol=1e-6)
        if np.isfinite(md) and not (same and init == "He"):
            who = "both inits (c-map independent of q)" if same else str(init)
            ax.axvline(md, color="k" if same else color, ls=ls, lw=1.2, label=f"6 xi_c = {md:.1f}: {who}")
        layers = np.arange(int(max(cfg.depths)) + 1)
        q, _ = trajectory("relu", float(sw2), 0.0, q0=1.0, c0=0.5, depth=int(layers[-1]), keep_rate=keep)
        axq.semilogy(layers, np.asarray(q).reshape(-1), ls="-", color=color,
                     label=f"{init}: q^l x {g['q_growth'].iloc[0]:.3g} per layer")
    ax.axhline(0.1, color="gray", lw=0.8, ls="-.", label="chance")
    ax.set(xlabel="depth L", ylabel="final training accuracy",
           title=f"ReLU, dropout keep {keep:g}, {cfg.dataset}, width {cfg.width}, {cfg.steps} SGD steps",
           ylim=(0, 1.02))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    axq.set(xlabel="layer l", ylabel="q^l (mean-field, q^0 = 1)",
            title="signal variance: flat at sw2 = 2 rho, (1/rho)^l for He")
    axq.title.set_fontsize(9)
    axq.legend(fontsize=7)
    path = save(fig, Path(out_dir) / COMPARE_PNG)
    return path, table
