"""Shared figure helpers: colour ramps, panels, saving.

No backend is forced here: a library user keeps whatever matplotlib backend they chose (the command line
selects the file-only Agg backend itself before drawing)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def ramp(n: int, cmap: str = "rainbow_r") -> list:
    """n colours from red to purple, as in the paper's depth plots."""
    return [plt.get_cmap(cmap)(x) for x in np.linspace(0.0, 1.0, max(n, 2))][:n]


def panels(n: int, width: float = 4.2, height: float = 3.6):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), constrained_layout=True)
    return fig, np.atleast_1d(axes)


def label(ax, letter: str) -> None:
    ax.text(-0.14, 1.04, f"({letter})", transform=ax.transAxes, fontsize=12, fontweight="bold")


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
