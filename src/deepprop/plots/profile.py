"""Figures of a model's propagation profile: measured q^l, c^l, chi^l with error bars beside the prediction.

* :func:`profile_figure` — three panels along the model's spine (its layers, or the outputs of its residual
  blocks): measured points with error bars, the mean-field prediction as a line; hollow markers where the
  prediction is approximate, grey crosses where there is none (measured only).
* :func:`agreement_figure` — predicted against measured q and c for several models (one colour each), with
  the +-10 % band of the acceptance criterion.
* :func:`training_figure` — test accuracy after a fixed budget, default PyTorch initialisation beside
  ``init_``, one point per seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deepprop.plots.style import label, panels, save


def _spine_rows(profile) -> list[dict]:
    rows = [r for r in profile.rows if r["on_spine"]]
    return rows if len(rows) >= 2 else list(profile.rows)


def profile_figure(profile, path: str | Path, title: str | None = None) -> Path:
    """Draw q^l (log scale), c^l and chi^l along the spine of ``profile`` to ``path``."""
    rows = _spine_rows(profile)
    x = np.arange(len(rows))
    fig, axes = panels(3, width=4.6)
    specs = (("q", "q^l (mean squared activation)", True), ("c", "c^l (correlation of the pair)", False),
             ("chi", "chi^l (gain of the step's Jacobian)", True))
    for ax, (key, ylabel, log) in zip(axes, specs, strict=True):
        val = np.array([r[key] for r in rows], dtype=float)
        err = np.array([r[f"{key}_err"] for r in rows], dtype=float)
        th = np.array([r[f"{key}_theory"] for r in rows], dtype=float)
        kinds = np.array([r["theory"] for r in rows])
        ax.plot(x, th, "-", color="C0", lw=1.2, label="mean-field prediction")
        for lab, style in (("exact", dict(fmt="o", color="C1", ms=3.5)),
                           ("approximate", dict(fmt="o", color="C1", mfc="white", ms=4)),
                           ("none", dict(fmt="x", color="0.45", ms=4))):
            sel = kinds == lab
            if sel.any():
                ax.errorbar(x[sel], val[sel], yerr=np.nan_to_num(err[sel]), lw=0.8, capsize=1.5,
                            label=f"measured ({'no theory' if lab == 'none' else lab})", **style)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step along the spine (layers / block outputs)")
        ax.set_ylabel(ylabel)
    for ax, letter in zip(axes, "abc", strict=True):
        label(ax, letter)
    axes[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def agreement_figure(profiles: Mapping[str, object], path: str | Path, band: float = 0.1) -> Path:
    """Predicted against measured q and c of every step with a prediction, one colour per model."""
    fig, axes = panels(2, width=4.4)
    span = {"q": [], "c": []}
    for i, (name, prof) in enumerate(profiles.items()):
        rows = [r for r in prof.rows if r["theory"] != "none"]
        for ax, key in zip(axes, ("q", "c"), strict=True):
            th = np.array([r[f"{key}_theory"] for r in rows], dtype=float)
            me = np.array([r[key] for r in rows], dtype=float)
            er = np.array([r[f"{key}_err"] for r in rows], dtype=float)
            ax.errorbar(th, me, yerr=np.nan_to_num(er), fmt="o", ms=2.5, lw=0.6, color=f"C{i}", label=name,
                        alpha=0.8)
            span[key] += [v for v in np.concatenate([th, me]) if np.isfinite(v) and (key == "c" or v > 0)]
    for ax, key in zip(axes, ("q", "c"), strict=True):
        values = np.array(span[key] or [1e-3, 1.0])
        lo, hi = float(values.min()), float(values.max())
        if key == "q":
            ax.set_xscale("log")
            ax.set_yscale("log")
            lo, hi = lo / 1.5, hi * 1.5
        else:
            pad = 0.05 * max(hi - lo, 1e-3)
            lo, hi = lo - pad, hi + pad
        grid = np.geomspace(lo, hi, 50) if key == "q" else np.linspace(lo, hi, 50)
        ax.plot(grid, grid, "k-", lw=0.8)
        ax.fill_between(grid, grid * (1 - band), grid * (1 + band), color="0.85", zorder=0,
                        label=f"+-{band:.0%}")
        ax.set_xlabel(f"{key} predicted (mean field)")
        ax.set_ylabel(f"{key} measured")
    label(axes[0], "a")
    label(axes[1], "b")
    axes[0].legend(fontsize=7)
    return save(fig, path)


def training_figure(results: Sequence[Mapping], path: str | Path, chance: float = 0.1) -> Path:
    """Test accuracy per model and initialisation; ``results`` rows have model, init, seed, test_accuracy."""
    models = list(dict.fromkeys(r["model"] for r in results))
    inits = list(dict.fromkeys(r["init"] for r in results))
    fig, ax = plt.subplots(figsize=(1.9 * max(len(models), 2) + 1.5, 3.4), constrained_layout=True)
    width = 0.8 / max(len(inits), 1)
    for j, init in enumerate(inits):
        for i, model in enumerate(models):
            acc = np.array([r["test_accuracy"] for r in results if r["model"] == model and r["init"] == init],
                           dtype=float)
            xs = i + (j - (len(inits) - 1) / 2) * width
            shown = np.nan_to_num(acc, nan=0.0)
            ax.bar(xs, shown.mean() if shown.size else 0.0, width * 0.9, color=f"C{j}", alpha=0.35,
                   label=init if i == 0 else None)
            ax.plot(np.full(shown.shape, xs), shown, "o", color=f"C{j}", ms=4)
            for k, a in enumerate(acc):
                if not np.isfinite(a):
                    ax.annotate("diverged", (xs, 0.02 + 0.05 * k), ha="center", fontsize=7, color=f"C{j}")
    ax.axhline(chance, color="0.4", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.set_ylabel("test accuracy after the budget")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return save(fig, path)
