"""Evidence for noise-aware critical initialisation (follow-ups section 1), drawn from finished runs.

:func:`draw_noisy_relu`: finite ReLU networks with dropout or multiplicative Gaussian noise, initialised
at sigma_w^2 = 2/mu2, sigma_b^2 = 0 (the runs: :func:`deepprop.simulate.figure_runs.noisy_relu`). Points
(mean +- standard error over networks) are simulated q^l and c^l; lines are the engine's trajectory. q^l
stays at q0 for every depth and c^l converges to the noise-limited fixed point c* < 1 (dashed).

:func:`draw_init_vs_he`: ReLU networks without bias trained with dropout at the noise-aware critical init
sigma_w^2 = 2 rho and at He's sigma_w^2 = 2 over a range of depths (the training:
:func:`deepprop.sweep.compare.compare_inits`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from deepprop.plots.style import panels, save


def draw_noisy_relu(data, out_dir: str | Path) -> Path:
    """Write ``noisy_relu_critical.png`` from a :class:`deepprop.simulate.figure_runs.NoisyRelu`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, (axq, axc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, setting in enumerate(data.settings):
        color = f"C{k}"
        for j, r in enumerate(setting.runs):
            if j == 0:
                axq.errorbar(r.layers + 0.1 * k, r.q, yerr=r.q_err, fmt="o", ms=3, color=color, capsize=2,
                             label=f"{setting.label}: sw2 = {setting.sigma_w2:.3g}")
                axq.plot(r.layers, r.q_theory, "-", color=color, lw=1)
            axc.errorbar(r.layers + 0.1 * k, r.c, yerr=r.c_err, fmt="o", ms=3, color=color, capsize=2,
                         label=setting.label if j == 0 else None)
            axc.plot(r.layers, r.c_theory, "-", color=color, lw=1)
        axc.axhline(setting.c_star, ls="--", color=color, lw=0.8)
    axq.set(xlabel="layer l", ylabel="q^l (pre-activation variance)", ylim=(0, 2),
            title=f"ReLU at sw2 = 2/mu2: q^l preserved (width {data.width}, {data.networks} nets)")
    axc.set(xlabel="layer l", ylabel="c^l (correlation of an input pair)",
            title="c^l -> c* < 1 (dashed); lines: mean-field theory")
    axq.legend(fontsize=8)
    axc.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, out / "noisy_relu_critical.png")


# ---- trainability: noise-aware critical init vs He init, same dropout ------------------------------------

COMPARE_PNG = "init_vs_he.png"


def draw_init_vs_he(table: pd.DataFrame, cfg, q_curves: dict[str, np.ndarray], out_dir: str | Path) -> Path:
    """Write ``init_vs_he.png``: final training accuracy vs depth at sw2 = 2 rho and at He's sw2 = 2.

    (a) training accuracy (mean +- std over seeds; diverged networks at chance) with each setting's
    predicted trainable depth 6 xi_c (vertical lines). For bias-free ReLU the correlation map does not
    depend on q, so both settings have the same xi_c: the mean-field theory predicts the same
    correlation-limited depth, and any difference comes from the signal growth. (b) the engine's q^l
    (``q_curves``, one per init): flat at the critical init, growing as (1/rho)^l for He with dropout.
    ``table`` and ``cfg`` come from :func:`deepprop.sweep.compare.compare_inits`.
    """
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
        q = q_curves[str(init)]
        axq.semilogy(np.arange(q.size), q, ls="-", color=color,
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
    return save(fig, Path(out_dir) / COMPARE_PNG)

