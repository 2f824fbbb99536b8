"""Finite-width figures: simulation points with error bars beside theory lines.

Mirrors figs. 1b/c (residuals |q^l - q*|, |c^l - c*|), 2b/c (xi_q, xi_c measured vs theory), 3b/c
(c* and xi_c with dropout), 4a/b (gradient norms by layer, xi_grad), plus the Jacobian singular-value
spectrum (Gaussian vs orthogonal at criticality) and the channel mutual information across sigma_w2.
Sizes are arguments: the defaults run in about a minute on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepprop.plots.style import save  # noqa: E402
from deepprop.simulate import jacobian_spectrum, simulate_forward, simulate_gradients  # noqa: E402
from deepprop.theory.meanfield import critical_sigma_w2, mean_field, trajectory  # noqa: E402

SB2 = 0.05
SW2_FIT = tuple(np.linspace(0.8, 4.0, 9))
SW2_DROP = tuple(np.linspace(1.0, 4.0, 7))
SW2_GRAD = tuple(np.linspace(1.0, 4.0, 13))
SW2_JAC = tuple(np.linspace(0.8, 3.0, 12))


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    return save(fig, path)


def figure_forward(out: Path, sweep=(1.0, 1.5, 2.5, 4.0), width: int = 500, depth: int = 20,
                   networks: int = 4, device: str = "cpu") -> Path:
    """Figs. 1b/c: |q^l - q*| and |c^l - c*| against depth (log scale), theory lines, simulation points."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = plt.cm.viridis(np.linspace(0, 1, len(sweep)))
    for sw2, col in zip(sweep, colors, strict=True):
        r = simulate_forward("tanh", sw2, SB2, width=width, depth=depth, networks=networks, pairs=16,
                             dtype="float32", device=device)
        mf = mean_field("tanh", sw2, SB2)
        q_th, c_th = (np.ravel(a) for a in trajectory("tanh", sw2, SB2, q0=0.8, c0=0.6, depth=depth))
        for ax, meas, err, th, star in ((axes[0], r.q, r.q_err, q_th, float(np.ravel(mf.q_star)[0])),
                                        (axes[1], r.c, r.c_err, c_th, float(np.ravel(mf.c_star)[0]))):
            ax.semilogy(r.layers, np.abs(th - star), "-", color=col, label=f"theory sw2={sw2}")
            ax.errorbar(r.layers, np.abs(meas - star), yerr=err, fmt="o", ms=3, color=col, capsize=2)
    axes[0].set(xlabel="layer l", ylabel="|q^l - q*|", title=f"(b) variance, tanh, sb2={SB2}, N={width}")
    axes[1].set(xlabel="layer l", ylabel="|c^l - c*|", title="(c) correlation (points: simulation)")
    axes[0].legend(fontsize=7)
    return _save(fig, out / "sim_fig1_residuals.png")


def figure_depth_scales(out: Path, sweep=SW2_FIT, width: int = 300, depth: int = 30,
                        networks: int = 4, device: str = "cpu") -> Path:
    """Figs. 2b/c: xi_q and xi_c fitted from simulations against the theory's curves.

    xi_q is only 1-2 layers, so the variance residual reaches the finite-width noise floor within a few
    layers: panel (b) starts each network at q0 = 1.3 q* (inside the linear regime the asymptotic theory
    describes) and uses width 1000 and more samples, so that enough layers lie above the floor.
    """
    fine = np.linspace(0.5, 4.0, 200)
    mf = mean_field("tanh", fine, SB2)
    q_star = mean_field("tanh", np.asarray(sweep), SB2).q_star
    xi_q_fits = [
        simulate_forward("tanh", s, SB2, width=1000, depth=12, networks=2 * networks, pairs=32,
                         q0=1.3 * float(qs), c0=0.6, dtype="float64", device=device).xi_q_fit
        for s, qs in zip(sweep, q_star, strict=True)
    ]
    xi_c_fits = [simulate_forward("tanh", s, SB2, width=width, depth=depth, networks=networks, pairs=16,
                                  dtype="float32", device=device).xi_c_fit for s in sweep]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((axes[0], mf.xi_q, xi_q_fits, "xi_q", 1000), (axes[1], mf.xi_c, xi_c_fits, "xi_c", width))
    for ax, th, fits, name, n in panels:
        ax.plot(fine, th, "--k", label="theory")
        ax.plot(sweep, fits, "o", color="C3", label=f"simulation N={n}")
        ax.set(xlabel="sigma_w^2", ylabel=name, yscale="log")
        ax.legend()
    axes[0].set_title(f"(b) xi_q, tanh, sb2={SB2} (start q0 = 1.3 q*)")
    axes[1].set_title("(c) xi_c diverges at criticality")
    return _save(fig, out / "sim_fig2_depth_scales.png")


def figure_dropout(out: Path, keep_rates=(1.0, 0.95, 0.8), sweep=SW2_DROP, width: int = 500,
                   depth: int = 60, networks: int = 3, device: str = "cpu") -> Path:
    """Figs. 3b/c: c* and xi_c against sigma_w2 for several keep rates; simulation c* = mean of the last
    quarter of the layers. Without dropout xi_c reaches ~20 near the transition, hence depth 60."""
    fine = np.linspace(1.0, 4.0, 150)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for rho, col in zip(keep_rates, ("k", "C0", "C2"), strict=False):
        mf = mean_field("tanh", fine, SB2, keep_rate=rho)
        axes[0].plot(fine, mf.c_star, "-", color=col, label=f"theory rho={rho}")
        axes[1].plot(fine, mf.xi_c, "-", color=col, label=f"theory rho={rho}")
        cs, errs, xis = [], [], []
        for s in sweep:
            r = simulate_forward("tanh", s, SB2, width=width, depth=depth, networks=networks, pairs=16,
                                 keep_rate=rho, q0=1.0, c0=0.6, dtype="float32", device=device)
            tail = slice(3 * depth // 4, depth + 1)
            cs.append(r.c[tail].mean())
            errs.append(np.nanmean(r.c_err[tail]))
            xis.append(r.xi_c_fit)
        axes[0].errorbar(sweep, cs, yerr=errs, fmt="o", color=col, capsize=2)
        axes[1].plot(sweep, xis, "o", color=col)
    axes[0].set(xlabel="sigma_w^2", ylabel="c*", title=f"(b) c* with dropout, N={width}")
    axes[1].set(xlabel="sigma_w^2", ylabel="xi_c", yscale="log", title="(c) no divergence with dropout")
    axes[0].legend(fontsize=7)
    return _save(fig, out / "sim_fig3_dropout.png")


def figure_gradients(out: Path, sweep=SW2_GRAD, width: int = 150, depth: int = 80,
                     networks: int = 2, backprop: str = "shared", device: str = "cpu") -> Path:
    """Figs. 4a/b: ||dE/dW^l||^2 by layer on digits (cross-entropy), and |xi_grad| fitted vs theory."""
    res = simulate_gradients("tanh", list(sweep), SB2, width=width, depth=depth, networks=networks,
                             backprop=backprop, device=device, progress=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = plt.cm.coolwarm(np.linspace(0, 1, len(sweep)))
    for p, col in zip(res.points, colors, strict=True):
        axes[0].semilogy(p.layers, p.grad_sq_norm, "-", color=col, lw=1)
    axes[0].set(xlabel="layer l", ylabel="||dE/dW^l||^2",
                title=f"(a) depth {depth}, width {width}, sw2 {sweep[0]:.1f} (blue) - {sweep[-1]:.1f} (red)")
    fine = np.linspace(1.0, 4.0, 300)
    axes[1].plot(fine, np.abs(-1 / np.log(mean_field("tanh", fine, SB2).chi1)), "--k", label="theory |xi_grad|")
    axes[1].errorbar(sweep, [abs(p.xi_grad_fit) for p in res.points],
                     yerr=[p.xi_grad_fit_err for p in res.points], fmt="o", color="C3", capsize=2,
                     label=f"simulation ({backprop} backprop)")
    axes[1].set(xlabel="sigma_w^2", ylabel="|xi_grad|", yscale="log", title="(b) gradient depth scale")
    axes[1].legend()
    return _save(fig, out / "sim_fig4_gradients.png")


def figure_jacobian(out: Path, width: int = 200, depth: int = 16, sweep=SW2_JAC,
                    networks: int = 2, device: str = "cpu") -> Path:
    """Jacobian singular values (Gaussian vs orthogonal) at criticality and mutual information vs sigma_w2."""
    sb2 = 1e-3
    sw_c = float(np.ravel(critical_sigma_w2("tanh", sb2))[0])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, col in (("gaussian", "C0"), ("orthogonal", "C1")):
        p = jacobian_spectrum("tanh", sw_c, sb2, width=width, depth=depth, weights=kind, networks=networks,
                              device=device).points[0]
        axes[0].hist(p.singular_values.ravel(), bins=60, density=True, alpha=0.6, color=col,
                     label=f"{kind}: <s^2>={p.mean_sq_singular:.2f}, spread={p.spread:.2f}")
        res = jacobian_spectrum("tanh", list(sweep), sb2, width=width, depth=depth, weights=kind,
                                networks=networks, device=device)
        axes[1].errorbar(sweep, [q.mutual_information for q in res.points],
                         yerr=[q.mutual_information_err for q in res.points], fmt="o-", color=col, capsize=2,
                         label=f"{kind}: peak at sw2={res.mi_peak_sigma_w2:.2f}")
    axes[0].set(xlabel="singular value of J", ylabel="density",
                title=f"(a) spectrum at chi1=1 (sw2={sw_c:.3f}), L={depth}, N={width}")
    axes[1].axvline(sw_c, color="k", ls="--", label="critical sigma_w^2")
    axes[1].set(xlabel="sigma_w^2", ylabel="I (nats)", title="(b) linearised channel information")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return _save(fig, out / "sim_jacobian.png")


FIGURES = (figure_forward, figure_depth_scales, figure_dropout, figure_gradients, figure_jacobian)
"""Every finite-width figure, each called as ``f(out_dir, device=...)`` (the CLI shows one bar over them)."""


def make_all(out: str | Path = "results", device: str = "cpu") -> list[Path]:
    """All finite-width figures at their default (CPU-sized) settings."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [f(out, device=device) for f in FIGURES]
