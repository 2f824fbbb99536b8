"""Finite-width figures: simulation points with error bars beside theory lines, drawn from the records of
:mod:`deepprop.simulate.figure_runs` (which runs the ensembles).

Mirrors figs. 1b/c (residuals |q^l - q*|, |c^l - c*|), 2b/c (xi_q, xi_c measured vs theory), 3b/c
(c* and xi_c with dropout), 4a/b (gradient norms by layer, xi_grad), plus the Jacobian singular-value
spectrum (Gaussian vs orthogonal at criticality) and the channel mutual information across sigma_w2.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deepprop.plots.critical_init import draw_noisy_relu
from deepprop.plots.style import save
from deepprop.simulate import figure_runs as runs
from deepprop.simulate.figure_runs import SB2


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    return save(fig, path)


def draw_forward(data: runs.Residuals, out: Path) -> Path:
    """Figs. 1b/c: |q^l - q*| and |c^l - c*| against depth (log scale), theory lines, simulation points."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = plt.cm.viridis(np.linspace(0, 1, len(data.runs)))
    for run, col in zip(data.runs, colors, strict=True):
        r = run.result
        for ax, meas, err, th, star in ((axes[0], r.q, r.q_err, run.q_theory, run.q_star),
                                        (axes[1], r.c, r.c_err, run.c_theory, run.c_star)):
            ax.semilogy(r.layers, np.abs(th - star), "-", color=col, label=f"theory sw2={run.sigma_w2}")
            ax.errorbar(r.layers, np.abs(meas - star), yerr=err, fmt="o", ms=3, color=col, capsize=2)
    axes[0].set(xlabel="layer l", ylabel="|q^l - q*|", title=f"(b) variance, tanh, sb2={SB2}, N={data.width}")
    axes[1].set(xlabel="layer l", ylabel="|c^l - c*|", title="(c) correlation (points: simulation)")
    axes[0].legend(fontsize=7)
    return _save(fig, out / "sim_fig1_residuals.png")


def draw_depth_scales(data: runs.DepthScaleFits, out: Path) -> Path:
    """Figs. 2b/c: xi_q and xi_c fitted from simulations against the theory's curves."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((axes[0], data.theory.xi_q, data.xi_q_fits, "xi_q", 1000),
              (axes[1], data.theory.xi_c, data.xi_c_fits, "xi_c", data.width))
    for ax, th, fits, name, n in panels:
        ax.plot(data.fine, th, "--k", label="theory")
        ax.plot(data.sweep, fits, "o", color="C3", label=f"simulation N={n}")
        ax.set(xlabel="sigma_w^2", ylabel=name, yscale="log")
        ax.legend()
    axes[0].set_title(f"(b) xi_q, tanh, sb2={SB2} (start q0 = 1.3 q*)")
    axes[1].set_title("(c) xi_c diverges at criticality")
    return _save(fig, out / "sim_fig2_depth_scales.png")


def draw_dropout(data: runs.DropoutScan, out: Path) -> Path:
    """Figs. 3b/c: c* and xi_c against sigma_w2 for several keep rates."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for run, col in zip(data.runs, ("k", "C0", "C2"), strict=False):
        axes[0].plot(data.fine, run.theory.c_star, "-", color=col, label=f"theory rho={run.keep_rate}")
        axes[1].plot(data.fine, run.theory.xi_c, "-", color=col, label=f"theory rho={run.keep_rate}")
        axes[0].errorbar(data.sweep, run.c_star, yerr=run.c_star_err, fmt="o", color=col, capsize=2)
        axes[1].plot(data.sweep, run.xi_c, "o", color=col)
    axes[0].set(xlabel="sigma_w^2", ylabel="c*", title=f"(b) c* with dropout, N={data.width}")
    axes[1].set(xlabel="sigma_w^2", ylabel="xi_c", yscale="log", title="(c) no divergence with dropout")
    axes[0].legend(fontsize=7)
    return _save(fig, out / "sim_fig3_dropout.png")


def draw_gradients(data: runs.GradientScan, out: Path) -> Path:
    """Figs. 4a/b: ||dE/dW^l||^2 by layer on digits (cross-entropy), and |xi_grad| fitted vs theory."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    points, sweep = data.result.points, data.sweep
    colors = plt.cm.coolwarm(np.linspace(0, 1, len(sweep)))
    for p, col in zip(points, colors, strict=True):
        axes[0].semilogy(p.layers, p.grad_sq_norm, "-", color=col, lw=1)
    axes[0].set(xlabel="layer l", ylabel="||dE/dW^l||^2",
                title=f"(a) depth {data.depth}, width {data.width}, sw2 {sweep[0]:.1f} (blue) - {sweep[-1]:.1f} (red)")
    axes[1].plot(data.fine, np.abs(-1 / np.log(data.chi1)), "--k", label="theory |xi_grad|")
    axes[1].errorbar(sweep, [abs(p.xi_grad_fit) for p in points],
                     yerr=[p.fits["xi_grad_fit"].err for p in points], fmt="o", color="C3", capsize=2,
                     label=f"simulation ({data.backprop} backprop)")
    axes[1].set(xlabel="sigma_w^2", ylabel="|xi_grad|", yscale="log", title="(b) gradient depth scale")
    axes[1].legend()
    return _save(fig, out / "sim_fig4_gradients.png")


def draw_jacobian(data: runs.SpectrumScan, out: Path) -> Path:
    """Jacobian singular values (Gaussian vs orthogonal) at criticality and mutual information vs sigma_w2."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, col in (("gaussian", "C0"), ("orthogonal", "C1")):
        p, res = data.at_critical[kind], data.scans[kind]
        axes[0].hist(p.singular_values.ravel(), bins=60, density=True, alpha=0.6, color=col,
                     label=f"{kind}: <s^2>={p.mean_sq_singular:.2f}, spread={p.spread:.2f}")
        axes[1].errorbar(data.sweep, [q.mutual_information for q in res.points],
                         yerr=[q.mutual_information_err for q in res.points], fmt="o-", color=col, capsize=2,
                         label=f"{kind}: peak at sw2={res.mi_peak_sigma_w2:.2f}")
    axes[0].set(xlabel="singular value of J", ylabel="density",
                title=f"(a) spectrum at chi1=1 (sw2={data.critical_sigma_w2:.3f}), L={data.depth}, N={data.width}")
    axes[1].axvline(data.critical_sigma_w2, color="k", ls="--", label="critical sigma_w^2")
    axes[1].set(xlabel="sigma_w^2", ylabel="I (nats)", title="(b) linearised channel information")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return _save(fig, out / "sim_jacobian.png")


FIGURES = (
    (runs.forward_residuals, draw_forward),
    (runs.depth_scale_fits, draw_depth_scales),
    (runs.dropout_scan, draw_dropout),
    (runs.gradient_scan, draw_gradients),
    (runs.spectrum_scan, draw_jacobian),
    (runs.noisy_relu, draw_noisy_relu),
)
"""Every finite-width figure as (run, draw): ``draw(run(device=...), out_dir)``. The caller runs the
experiment (the CLI shows one bar over them) and hands its record to the drawing."""
