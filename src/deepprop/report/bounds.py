"""Trainability judged as the papers state it: pure functions from trained networks to checked numbers.

Input: one row per network and budget (columns depth, sigma_w2, keep_rate, seed, steps, train_accuracy,
diverged, xi_c, xi_1), as :func:`deepprop.report.trainability.load` gives; nothing here trains or reads files,
so the test suite feeds these functions what wrong physics would give.

* A **heatmap** is one (keep rate, budget) of a sweep, as in the papers' figures. A cell's accuracy is the mean
  over seeds (a diverged network counts as chance); the cell is *trained* when that mean reaches halfway from
  chance to the heatmap's best cell. A heatmap whose best cell is not a third of the way from chance to 100 %
  has not trained anything at that budget and is set aside (*uninformative*).
* **Seed noise**: the pooled seed-to-seed standard deviation of cell accuracies over the cells in transit
  (mean between chance + 0.02 and 0.98), at least 0.02 (the scoring noise of 1000 examples); the unit of every
  trainability margin.
* **Bound** (figs. 5-8, "trainable when L <~ n xi"): no trained cell beyond SLACK * n * xi in any informative
  heatmap. The deciding number is the largest excess of a beyond cell's accuracy over its heatmap's threshold
  (at most 0), in seed standard deviations, the worst of all beyond cells (Bonferroni). "<~" is read as within
  25 % of the line: the paper draws it by eye over a grid of 10-layer steps.
* **Reach** (not vacuous): the deepest trained cell of the longest informative budget, in units of xi, is at
  least half the bound (3 xi for n = 6): a trainer that trains nothing does not pass.
* **Growth** (figs. 7-8): the fraction of cells inside n xi that are trained does not fall from the shortest
  to the longest informative budget ("networks closer to their critical point train more quickly").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SLACK = 1.25
SD_FLOOR = 0.02
INFORMATIVE = 1.0 / 3.0
KEYS = ["keep_rate", "steps", "depth", "sigma_w2"]


def cell_table(networks: pd.DataFrame, chance: float) -> pd.DataFrame:
    """Per (keep rate, budget, depth, sigma_w2): mean, sd (ddof 1) and count of the seeds' accuracies, the
    theory scales, the heatmap's best cell, threshold and whether it is informative, and ``trained``."""
    d = networks.copy()
    acc = d["train_accuracy"].where(~d["diverged"].astype(bool), chance).fillna(chance)
    d = d.assign(acc=acc.astype(float))
    cells = d.groupby(KEYS, as_index=False).agg(mean=("acc", "mean"), sd=("acc", "std"), n=("acc", "size"),
                                                xi_c=("xi_c", "first"), xi_1=("xi_1", "first"))
    best = cells.groupby(["keep_rate", "steps"])["mean"].transform("max")
    cells["best"] = best
    cells["threshold"] = chance + 0.5 * (best - chance)
    cells["informative"] = (best - chance) >= INFORMATIVE * (1.0 - chance)
    cells["trained"] = cells["mean"] >= cells["threshold"]
    return cells


def pooled_sd(cells: pd.DataFrame, chance: float) -> float:
    """Pooled seed-to-seed standard deviation of cell accuracies (module docstring); NaN with one seed."""
    multi = cells[cells["n"] >= 2]
    if not len(multi):
        return math.nan
    transit = multi[(multi["mean"] > chance + 0.02) & (multi["mean"] < 0.98)]
    use = transit if len(transit) else multi
    weights = use["n"] - 1
    var = float((use["sd"].fillna(0.0) ** 2 * weights).sum() / weights.sum())
    return max(math.sqrt(var), SD_FLOOR)


def _scale(cells: pd.DataFrame, scale: str) -> np.ndarray:
    """The depth scale per cell; inf where the theory gives none (criticality), NaN kept as NaN."""
    return cells[scale].to_numpy(dtype=float)


def _where(row: Any) -> str:
    return (f"rho {row['keep_rate']:g}, {int(row['steps'])} steps, L {int(row['depth'])}, sigma_w^2 "
            f"{row['sigma_w2']:g}")


def bound_summary(cells: pd.DataFrame, sd: float, *, multiple: float = 6.0, scale: str = "xi_c",
                  slack: float = SLACK, prefix: str = "") -> dict[str, Any]:
    """Checked numbers of a bound claim over the informative heatmaps of ``cells`` (module docstring):
    ``excess_beyond`` (with ``_err`` = seed SD and ``_comparisons``), ``reach`` and descriptions."""
    info = cells[cells["informative"]]
    out: dict[str, Any] = {f"{prefix}heatmaps": int(cells.groupby(["keep_rate", "steps"]).ngroups),
                           f"{prefix}informative_heatmaps": int(info.groupby(["keep_rate", "steps"]).ngroups),
                           f"{prefix}seed_sd": sd}
    xi = _scale(info, scale)
    ratio = info["depth"].to_numpy(dtype=float) / xi
    beyond = info[np.isfinite(ratio) & (ratio > slack * multiple)]
    if len(beyond):
        excess = beyond["mean"] - beyond["threshold"]
        w = beyond.loc[excess.idxmax()]
        out.update({f"{prefix}excess_beyond": float(excess.max()), f"{prefix}excess_beyond_err": sd,
                    f"{prefix}excess_beyond_comparisons": int(len(beyond)),
                    f"{prefix}excess_beyond_at": f"{_where(w)} ({w['depth'] / w[scale]:.3g} {scale}): accuracy "
                                             f"{w['mean']:.4g} vs threshold {w['threshold']:.4g}",
                    f"{prefix}trained_beyond": int(beyond["trained"].sum())})
    else:
        out.update({f"{prefix}excess_beyond": None, f"{prefix}excess_beyond_undecided":
                    f"no cell of an informative heatmap lies beyond {slack:g} x {multiple:g} {scale}: deeper cells "
                    "decide", f"{prefix}trained_beyond": 0})
    out[f"{prefix}beyond_cells"] = int(len(beyond))
    if len(info):
        last = info[info["steps"] == info["steps"].max()]
        lx = _scale(last, scale)
        r = last["depth"].to_numpy(dtype=float) / lx
        tr = last["trained"].to_numpy(dtype=bool) & np.isfinite(r)
        out[f"{prefix}reach"] = float(np.max(r[tr])) if tr.any() else 0.0
        out[f"{prefix}reach_budget"] = int(last["steps"].iloc[0])
        deepest = last[last["trained"]].groupby("keep_rate")["depth"].max()
        out[f"{prefix}deepest_trained"] = {f"rho {k:g}": int(v) for k, v in deepest.items()}
    else:
        out[f"{prefix}reach"] = None
        out[f"{prefix}reach_undecided"] = "no budget trained any cell a third of the way from chance: longer " \
                                          "budgets decide"
    return out


def growth_summary(cells: pd.DataFrame, sd: float, *, multiple: float = 6.0, scale: str = "xi_c") -> dict[str, Any]:
    """Fraction of the cells inside multiple * xi that are trained at the shortest and the longest informative
    budget (keep rates pooled); ``inside_growth`` = longest - shortest. Its error counts the cells whose label the
    seed noise could flip (within 2 ``sd`` of their threshold) at either budget: sqrt(flippable) / cells, at least
    half a cell."""
    info = cells[cells["informative"]]
    if info["steps"].nunique() < 2:
        return {"inside_growth": None, "inside_growth_undecided": "fewer than two informative budgets"}
    inside = info[info["depth"].to_numpy(dtype=float) <= multiple * _scale(info, scale)]
    f = inside.groupby("steps")["trained"].agg(["mean", "size"])
    near = (inside["mean"] - inside["threshold"]).abs() < 2 * (sd if math.isfinite(sd) else SD_FLOOR)
    ends = inside["steps"].isin([f.index[0], f.index[-1]])
    n = float(f["size"].iloc[-1])
    return {"inside_growth": float(f["mean"].iloc[-1] - f["mean"].iloc[0]),
            "inside_growth_err": max(math.sqrt(float((near & ends).sum())) / n, 0.5 / n),
            "inside_trained_by_budget": {str(int(k)): float(v) for k, v in f["mean"].items()}}


def best_multiple(ratio: np.ndarray, trained: np.ndarray) -> float:
    """The boundary multiple a that classifies most cells right with "trained iff L <= a xi" (``ratio`` = L/xi);
    the middle of the best run of candidate boundaries (between consecutive ratios). NaN without cells."""
    r = np.asarray(ratio, dtype=float)
    y = np.asarray(trained, dtype=bool)
    ok = np.isfinite(r)
    if not ok.any():
        return math.nan
    r, y = r[ok], y[ok]
    u = np.unique(r)
    cand = np.concatenate([[u[0] / 2], (u[:-1] + u[1:]) / 2, [u[-1] * 1.5]])
    score = ((r[None, :] <= cand[:, None]) == y[None, :]).sum(axis=1)
    best = np.flatnonzero(score == score.max())
    return float(cand[best[len(best) // 2]])


def _resampled(networks: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Each cell's networks redrawn with replacement from its seeds (a bootstrap over networks); a network keeps
    its rows at every budget together."""
    cell = ["keep_rate", "depth", "sigma_w2"]
    nets = networks[cell + ["seed"]].drop_duplicates()
    counts = nets.groupby(cell)["seed"].transform("size").to_numpy()
    # for each network slot of a cell, the position (within the cell) of the network drawn into it
    pos = nets.groupby(cell).cumcount().to_numpy()
    first = np.arange(len(nets)) - pos
    drawn = first + (rng.random(len(nets)) * counts).astype(int)
    picks = nets.iloc[drawn].reset_index(drop=True).assign(slot=np.arange(len(nets)))
    return picks.merge(networks, on=cell + ["seed"], how="left")


@dataclass
class Multiple:
    budget: int
    value: float
    low: float
    high: float
    se_log: float


def multiples_by_budget(networks: pd.DataFrame, chance: float, *, scale: str = "xi_c", boot: int = 100,
                        seed: int = 0) -> list[Multiple]:
    """The fitted trainable multiple n (:func:`best_multiple`) at each informative budget, with a 90 % bootstrap
    interval and the standard error of log n (seeds resampled with replacement, the whole fit repeated). Only the
    depths trained to every budget enter, so that each budget is fitted on the same cells."""
    per_depth = networks.groupby("depth")["steps"].nunique()
    networks = networks[networks["depth"].isin(per_depth[per_depth == networks["steps"].nunique()].index)]

    def fit(nets: pd.DataFrame) -> dict[int, float]:
        cells = cell_table(nets, chance)
        out = {}
        for b, g in cells[cells["informative"]].groupby("steps"):
            out[int(b)] = best_multiple(g["depth"].to_numpy(float) / _scale(g, scale), g["trained"].to_numpy())
        return out

    point = fit(networks)
    rng = np.random.default_rng(seed)
    draws = [fit(_resampled(networks, rng)) for _ in range(boot)]
    res = []
    for b, v in sorted(point.items()):
        d = np.array([x.get(b, math.nan) for x in draws], dtype=float)
        d = d[np.isfinite(d) & (d > 0)]
        lo, hi = (np.quantile(d, 0.05), np.quantile(d, 0.95)) if d.size >= 10 else (math.nan, math.nan)
        se = float(np.std(np.log(d), ddof=1)) if d.size >= 10 else math.nan
        res.append(Multiple(b, v, float(lo), float(hi), se))
    return res


def law_scores(cells: pd.DataFrame, laws: Sequence[tuple[float, str]] = ((6, "xi_c"), (12, "xi_c"), (12, "xi_1"))
               ) -> dict[str, float]:
    """Fraction of cells that "trained iff L <= n xi" classifies right, per fixed law (n, scale)."""
    L = cells["depth"].to_numpy(dtype=float)
    y = cells["trained"].to_numpy(dtype=bool)
    return {f"{n:g}{sc}": float(np.mean((L <= n * np.nan_to_num(_scale(cells, sc), nan=0.0)) == y)) for n, sc in laws}


def law_gain(networks: pd.DataFrame, chance: float, budget: int, *, boot: int = 100, seed: int = 0
             ) -> dict[str, Any]:
    """Huang et al.'s three fixed curves scored at ``budget`` over informative heatmaps: the gain of the better
    of 12 xi_c and 12 xi_1 over 6 xi_c in fraction of cells classified right, with a bootstrap error."""
    def gain(nets: pd.DataFrame) -> tuple[float, dict[str, float]]:
        cells = cell_table(nets[nets["steps"] == budget], chance)
        cells = cells[cells["informative"]]
        if not len(cells):
            return math.nan, {}
        s = law_scores(cells)
        return max(s["12xi_c"], s["12xi_1"]) - s["6xi_c"], s

    g, scores = gain(networks)
    rng = np.random.default_rng(seed)
    d = np.array([gain(_resampled(networks, rng))[0] for _ in range(boot)])
    d = d[np.isfinite(d)]
    n = int(len(cell_table(networks[networks["steps"] == budget], chance)))
    out = {"law_gain": g if math.isfinite(g) else None,
           "law_gain_err": float(np.std(d, ddof=1)) if d.size >= 10 else math.nan,
           **{f"fraction_{k}": v for k, v in scores.items()}, "law_cells": n}
    if not math.isfinite(g):
        out["law_gain_undecided"] = f"no informative heatmap at {budget} steps (nothing trained a third of the way)"
    return out
