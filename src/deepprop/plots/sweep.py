"""Trainability heatmaps of a sweep (figs. 5-6 of the core paper) with the depth-scale laws drawn on top."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from deepprop.plots.style import save
from deepprop.sweep.analysis import cell_table, theory_scales
from deepprop.sweep.schema import row_prior


def plot_heatmap(
    df: pd.DataFrame,
    out: str | Path,
    *,
    metric: str = "train_accuracy",
    n_classes: int = 10,
    multiples: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
) -> Path:
    """Accuracy over (sigma_w2, L) per keep rate, as in figs. 5-6, with n xi_c, 12 xi_c and 12 xi_1 curves."""
    cells = cell_table(df, metric, n_classes)
    keeps = sorted(cells["keep_rate"].unique(), reverse=True)
    fig, axes = plt.subplots(1, len(keeps), figsize=(5.2 * len(keeps), 4.4), squeeze=False)
    first = cells.iloc[0]
    for ax, keep in zip(axes[0], keeps, strict=True):
        g = cells[cells["keep_rate"] == keep]
        grid = g.pivot_table(index="depth", columns="sigma_w2", values="value")
        sw2 = grid.columns.to_numpy(dtype=float)
        depth = grid.index.to_numpy(dtype=float)
        mesh = ax.pcolormesh(
            _edges(sw2),
            _edges(depth),
            grid.to_numpy(),
            cmap="hot",
            vmin=1.0 / n_classes,
            vmax=1.0,
            shading="flat",
        )
        fine = np.linspace(sw2.min(), sw2.max(), 400)
        xi_c, xi_1 = theory_scales(row_prior({**first, "sigma_w2": fine, "keep_rate": float(keep)}))
        for n in multiples:
            ax.plot(
                fine, n * xi_c, color="0.6", ls="--", lw=1.0, label=r"$n\,\xi_c$, n=1..6" if n == 1 else None
            )
            if n == 6:
                from matplotlib import patheffects

                outline = [patheffects.Stroke(linewidth=3.2, foreground="black"), patheffects.Normal()]
                ax.plot(fine, 6 * xi_c, color="white", ls="--", lw=1.6, label=r"$6\,\xi_c$", path_effects=outline)
        ax.plot(fine, 12 * xi_c, color="cyan", ls=":", lw=1.4, label=r"$12\,\xi_c$")
        ax.plot(fine, 12 * xi_1, color="lime", ls="-.", lw=1.2, label=r"$12\,\xi_1$")
        ax.set_ylim(_edges(depth)[0], _edges(depth)[-1])
        ax.set_xlim(_edges(sw2)[0], _edges(sw2)[-1])
        ax.set_xlabel(r"$\sigma_w^2$")
        ax.set_ylabel("depth L")
        ax.set_title(
            f"{first['activation']}, $\\sigma_b^2$={first['sigma_b2']:g}, keep rate $\\rho$={keep:g}"
        )
        fig.colorbar(mesh, ax=ax, label=metric.replace("_", " "))
    axes[0][0].legend(loc="upper right", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    return save(fig, out)


def _edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[:-1] + c[1:]) / 2
    lo = max(c[0] - (mid[0] - c[0]), 0.0) if c[0] > 0 else c[0] - (mid[0] - c[0])
    return np.concatenate([[lo], mid, [c[-1] + (c[-1] - mid[-1])]])
