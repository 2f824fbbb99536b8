"""Figures of the reproduction report (``deepprop reproduce``): panels of lines and points from plain arrays.

Claims compute their numbers and describe each panel as :class:`Panel` of :class:`Series`; this module only
draws. Heatmaps of trainability sweeps reuse :func:`deepprop.sweep.analysis.plot_heatmap`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import ArrayLike

from deepprop.plots.style import save


@dataclass
class Series:
    """One curve or set of points: ``style`` is a matplotlib format ('-', '--', 'o', 'o-')."""

    x: ArrayLike
    y: ArrayLike
    label: str | None = None
    style: str = "-"
    yerr: ArrayLike | None = None
    color: str | None = None


@dataclass
class Panel:
    series: list[Series]
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    logy: bool = False
    logx: bool = False
    hlines: Sequence[tuple[float, str]] = field(default_factory=tuple)
    vlines: Sequence[tuple[float, str]] = field(default_factory=tuple)
    ylim: tuple[float, float] | None = None


def _draw(ax, panel: Panel) -> None:
    for s in panel.series:
        x = np.asarray(s.x, dtype=float)
        y = np.asarray(s.y, dtype=float)
        if panel.logy:
            y = np.where(y > 0, y, np.nan)
        kw = {"color": s.color} if s.color is not None else {}
        if s.yerr is not None:
            ax.errorbar(x, y, yerr=np.asarray(s.yerr, dtype=float), fmt=s.style, ms=3, capsize=2, lw=1,
                        label=s.label, **kw)
        else:
            ax.plot(x, y, s.style, ms=3, lw=1.2, label=s.label, **kw)
    for y0, label in panel.hlines:
        ax.axhline(y0, color="gray", ls=":", lw=1, label=label or None)
    for x0, label in panel.vlines:
        ax.axvline(x0, color="gray", ls="--", lw=1, label=label or None)
    if panel.logy:
        ax.set_yscale("log")
    if panel.logx:
        ax.set_xscale("log")
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title, fontsize=9)
    if any(s.label for s in panel.series) or any(lbl for _, lbl in (*panel.hlines, *panel.vlines)):
        ax.legend(fontsize=7)


def panels_figure(path: str | Path, panels: Sequence[Panel], suptitle: str = "") -> Path:
    """Draw ``panels`` side by side into ``path`` (PNG)."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 3.6), constrained_layout=True, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        _draw(ax, panel)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save(fig, Path(path))
