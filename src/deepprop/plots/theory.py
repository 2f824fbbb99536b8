"""Figures 1-3 of the paper from the mean-field engine (theory only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepprop.plots.style import label, panels, ramp, save
from deepprop.theory.fixed_points import q_star
from deepprop.theory.maps import CorrelationMap, TensorPrior
from deepprop.theory.meanfield import critical_sigma_w2, mean_field, measured_depth_scales, trajectory


def correlation_map_curve(activation: str, sigma_w2: float, sigma_b2: float, c: np.ndarray, **noise) -> np.ndarray:
    """c^{l+1} as a function of c^l at q = q* (fig. 2a, 3a)."""
    s = TensorPrior.build(activation, np.full(c.shape, sigma_w2), np.full(c.shape, sigma_b2), **noise)
    q, _ = q_star(s)
    with torch.no_grad():
        return CorrelationMap(s, q)(torch.as_tensor(c, dtype=torch.float64)).numpy()


def figure1(out: Path, quick: bool = False) -> Path:
    """(a) phase diagram of tanh with the critical line; (b, c) |q^l - q*| and |c^l - c*| against depth."""
    n = 61 if quick else 201
    sw2 = np.linspace(0.5, 4.0, n)
    sb2 = np.linspace(0.0, 0.3, n // 2 + 1)
    mf = mean_field("tanh", sw2[:, None], sb2[None, :])
    fig, ax = panels(3)
    im = ax[0].pcolormesh(sw2, sb2, np.log(mf.chi1.T), cmap="RdBu_r", vmin=-1, vmax=1, shading="auto")
    crit_b = np.linspace(0.0, 0.3, 16 if quick else 31)
    ax[0].plot(critical_sigma_w2("tanh", crit_b), crit_b, "k-", lw=2, label=r"$\chi_1 = 1$")
    ax[0].text(1.0, 0.22, "ordered", fontsize=12)
    ax[0].text(3.0, 0.05, "chaotic", fontsize=12)
    ax[0].set(xlabel=r"$\sigma_w^2$", ylabel=r"$\sigma_b^2$", title=r"tanh phase diagram, $\log\chi_1$")
    fig.colorbar(im, ax=ax[0])
    ax[0].legend(loc="upper right")
    depth = 60
    sws = np.linspace(0.1, 1.7, 9)
    q, c = trajectory("tanh", sws, 0.05, q0=0.8, c0=0.6, depth=depth)
    fixed = mean_field("tanh", sws, 0.05)
    for i, col in enumerate(ramp(len(sws))):
        ax[1].semilogy(np.abs(q[i] - fixed.q_star[i]) + 1e-300, color=col, label=f"{sws[i]:.2f}")
        ax[2].semilogy(np.abs(c[i] - fixed.c_star[i]) + 1e-300, color=col)
    for a, name in ((ax[1], r"$|q^* - q^l_{aa}|$"), (ax[2], r"$|c^* - c^l_{ab}|$")):
        a.set(xlabel="layer l", ylabel=name, ylim=(1e-14, 10), title=r"$\sigma_b^2 = 0.05$, $q^0=0.8$, $c^0=0.6$")
    ax[1].legend(title=r"$\sigma_w^2$", fontsize=7, ncol=2)
    for a, letter in zip(ax, "abc", strict=True):
        label(a, letter)
    return save(fig, out / "fig1_phase_diagram.png")


def _correlation_maps(ax, curves, c: np.ndarray, xlabel: str, ylabel: str, title: str) -> None:
    """Panel (a) of figs. 2 and 3: correlation maps c^{l+1}(c^l) beside the diagonal."""
    for values, col, text in curves:
        ax.plot(c, values, color=col, label=text)
    ax.plot(c, c, "k--", lw=0.8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)


def figure2(out: Path, quick: bool = False) -> Path:
    """(a) correlation map for ordered / critical / chaotic; (b, c) xi_q and xi_c, theory vs measured."""
    fig, ax = panels(3)
    c = np.linspace(0.0, 1.0, 201)
    crit = critical_sigma_w2("tanh", 0.05)
    _correlation_maps(ax[0], [(correlation_map_curve("tanh", sw2, 0.05, c), col, f"{name} ($\\sigma_w^2$={sw2:.2f})")
                              for sw2, col, name in ((1.2, "red", "ordered"), (crit, "purple", "critical"),
                                                     (3.5, "blue", "chaotic"))],
                      c, r"$c^l_{ab}$", r"$c^{l+1}_{ab}$", r"correlation map, $\sigma_b^2=0.05$")
    sw2 = np.linspace(0.2, 3.0, 29 if quick else 113)
    sb2s = [0.01, 0.05, 0.1, 0.2, 0.3]
    for sb2, col in zip(sb2s, ramp(len(sb2s), "viridis"), strict=True):
        m = measured_depth_scales("tanh", sw2, sb2, q0=0.8, c0=0.6, depth=300)
        ax[1].plot(sw2, m["xi_q"], "--", color=col)
        ax[1].plot(sw2, m["xi_q_measured"], "-", color=col, alpha=0.8, label=f"{sb2:g}")
        ax[2].plot(sw2, m["xi_c"], "--", color=col)
        ax[2].plot(sw2, m["xi_c_measured"], "-", color=col, alpha=0.8)
    ax[1].set(xlabel=r"$\sigma_w^2$", ylabel=r"$\xi_q$", title="dashed: theory, solid: measured")
    ax[1].legend(title=r"$\sigma_b^2$", fontsize=7)
    ax[2].set(xlabel=r"$\sigma_w^2$", ylabel=r"$\xi_c$", yscale="log", title="divergence at the transition")
    for a, letter in zip(ax, "abc", strict=True):
        label(a, letter)
    return save(fig, out / "fig2_depth_scales.png")


def figure3(out: Path, quick: bool = False) -> Path:
    """Dropout: (a) correlation map near criticality; (b) c* and (c) xi_c against sigma_w^2, rho 1 -> 0.8."""
    fig, ax = panels(3)
    c = np.linspace(0.0, 1.0, 201)
    crit = critical_sigma_w2("tanh", 0.05)
    _correlation_maps(ax[0], [(correlation_map_curve("tanh", crit, 0.05, c, keep_rate=rho), col, rf"$\rho$={rho:g}")
                              for rho, col in zip((1.0, 0.95, 0.8), ("black", "purple", "blue"), strict=True)],
                      c, r"$\bar c^l_{ab}$", r"$\bar c^{l+1}_{ab}$",
                      rf"$\sigma_w^2$={crit:.3f} (critical for $\rho$=1)")
    sw2 = np.linspace(1.0, 4.0, 61 if quick else 241)
    rhos = np.array([1.0, 0.99, 0.98, 0.95, 0.9, 0.85, 0.8])
    mf = mean_field("tanh", sw2[:, None], 0.05, keep_rate=rhos[None, :])
    for j, col in enumerate(ramp(len(rhos), "cool")):
        colour = "black" if j == 0 else col
        ax[1].plot(sw2, mf.c_star[:, j], color=colour, label=rf"{rhos[j]:g}")
        ax[2].plot(sw2, mf.xi_c[:, j], color=colour)
    ax[1].set(xlabel=r"$\sigma_w^2$", ylabel=r"$c^*$", title=r"dropout keep rate $\rho$")
    ax[1].legend(title=r"$\rho$", fontsize=7)
    ax[2].set(xlabel=r"$\sigma_w^2$", ylabel=r"$\xi_c$", yscale="log", title="no divergence for $\\rho<1$")
    for a, letter in zip(ax, "abc", strict=True):
        label(a, letter)
    return save(fig, out / "fig3_dropout.png")
