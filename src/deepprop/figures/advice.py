"""Evidence for noise-aware critical initialisation (follow-ups section 1).

:func:`noisy_relu_figure`: finite ReLU networks with dropout or multiplicative Gaussian noise, initialised
at sigma_w^2 = 2/mu2, sigma_b^2 = 0. Points (mean +- std over independent networks) are simulated
q^l and c^l; lines are the engine's ``trajectory``. q^l stays at q0 for every depth and c^l converges
to the noise-limited fixed point c* < 1 (dashed).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

SETTINGS = (
    ("dropout keep 0.8", dict(keep_rate=0.8, noise_mult=0.0)),
    ("dropout keep 0.6", dict(keep_rate=0.6, noise_mult=0.0)),
    ("Gaussian s = 0.25", dict(keep_rate=1.0, noise_mult=0.25)),
)


def simulate_noisy_relu(
    *, keep_rate: float, noise_mult: float, sigma_w2: float, q0: float, c0: tuple[float, ...], depth: int,
    width: int, networks: int, generator: torch.Generator, device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched forward pass of ``networks`` random ReLU nets, z^{l+1} = W (relu(z^l) * eps), no bias.

    Layer-0 pre-activations of each input pair are Gaussian with variance q0 and correlation c0. Noise
    eps is drawn per unit and per input: inverted dropout Bernoulli(rho)/rho times N(1, s^2).
    Returns q of shape (networks, pairs, depth + 1) (first input of each pair) and c of the same shape.
    """
    dev = torch.device(device or "cpu")
    kw = dict(dtype=torch.float64, device=dev)
    p = len(c0)
    cc = torch.tensor(c0, **kw)
    g1 = torch.randn(networks, width, p, generator=generator, **kw)
    g2 = torch.randn(networks, width, p, generator=generator, **kw)
    za = math.sqrt(q0) * g1
    zb = math.sqrt(q0) * (cc * g1 + torch.sqrt(1 - cc * cc) * g2)
    z = torch.cat([za, zb], dim=2)  # (B, N, 2p)

    def stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = z[..., :p], z[..., p:]
        q = a.square().mean(1)
        c = (a * b).sum(1) / torch.sqrt(a.square().sum(1) * b.square().sum(1))
        return q, c

    qs, cs = [], []
    q, c = stats(z)
    qs.append(q)
    cs.append(c)
    for _ in range(depth):
        y = torch.relu(z)
        eps = torch.ones_like(y)
        if keep_rate < 1:
            eps = (torch.rand(y.shape, generator=generator, **kw) < keep_rate).to(y.dtype) / keep_rate
        if noise_mult > 0:
            eps = eps * (1 + noise_mult * torch.randn(y.shape, generator=generator, **kw))
        w = torch.randn(networks, width, width, generator=generator, **kw) * math.sqrt(sigma_w2 / width)
        z = torch.bmm(w, y * eps)
        q, c = stats(z)
        qs.append(q)
        cs.append(c)
    return torch.stack(qs, -1).cpu().numpy(), torch.stack(cs, -1).cpu().numpy()


def noisy_relu_figure(out_dir: str | Path, *, width: int = 1000, networks: int = 8, depth: int = 20,
                      seed: int = 0, device: str | None = None) -> Path:
    """Write ``noisy_relu_critical.png``: simulated q^l, c^l vs the engine at sw2 = 2/mu2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepprop.advice import critical_init
    from deepprop.meanfield import trajectory

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device=device or "cpu").manual_seed(seed)
    c0 = (0.95, 0.05)
    fig, (axq, axc) = plt.subplots(1, 2, figsize=(11, 4.2))
    layers = np.arange(depth + 1)
    for k, (label, noise) in enumerate(SETTINGS):
        color = f"C{k}"
        advice = critical_init("relu", **noise)
        q, c = simulate_noisy_relu(**noise, sigma_w2=advice.sigma_w2, q0=1.0, c0=c0, depth=depth, width=width,
                                   networks=networks, generator=gen, device=device)
        tq, tc = trajectory("relu", advice.sigma_w2, 0.0, q0=1.0, c0=np.array(c0), depth=depth, **noise)
        axq.errorbar(layers + 0.1 * k, q[:, 0].mean(0), yerr=q[:, 0].std(0), fmt="o", ms=3, color=color,
                     capsize=2, label=f"{label}: sw2 = {advice.sigma_w2:.3g}")
        axq.plot(layers, tq[0], "-", color=color, lw=1)
        for j in range(len(c0)):
            axc.errorbar(layers + 0.1 * k, c[:, j].mean(0), yerr=c[:, j].std(0), fmt="o", ms=3, color=color,
                         capsize=2, label=label if j == 0 else None)
            axc.plot(layers, tc[j], "-", color=color, lw=1)
        axc.axhline(advice.c_star, ls="--", color=color, lw=0.8)
    axq.set(xlabel="layer l", ylabel="q^l (pre-activation variance)", ylim=(0, 2),
            title=f"ReLU at sw2 = 2/mu2: q^l preserved (width {width}, {networks} nets)")
    axc.set(xlabel="layer l", ylabel="c^l (correlation of an input pair)",
            title="c^l -> c* < 1 (dashed); lines: mean-field theory")
    axq.legend(fontsize=8)
    axc.legend(fontsize=8)
    fig.tight_layout()
    path = out / "noisy_relu_critical.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
