"""Analysis of a sweep store: accuracy heatmaps over (sigma_w2, L), trainable-depth laws, export.

Trainability of a grid cell (depth L, sigma_w2, keep_rate): the mean training accuracy over seeds is at
least ``threshold`` (default: halfway between chance 1/C and the best cell of the sweep,
chance + (best - chance) / 2) and above chance; a diverged network counts as accuracy = chance. A network
without a recorded accuracy that did not diverge (a hand-edited or damaged row) is left out of its cell's
mean; a cell with no accuracy at all is left out of the fit and counted. Where no cell trained above chance
there is no boundary to fit: every law's constants and fraction are None with a reason; where every cell
trained, the fitted laws' constants are None with a reason too (the data bound them from below only).

Laws compared (xi_c and xi_1 = 1 / |log chi_1| from the mean-field engine at each cell's sigma_w2,
sigma_b2 and keep rate; xi_c = inf at criticality):

* the paper's L_max = 6 xi_c (section 5);
* L_max = a xi_c with a fitted;
* L_max = min(a xi_c, b xi_1) with a, b fitted (follow-ups section 2).

A law classifies a cell as trainable iff L <= L_max; fitting maximises the fraction of cells classified
correctly, by exhaustive search over the constants at which some cell changes class (the ratios L/xi).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from deepprop.errors import ParameterError
from deepprop.prior import NOISE_FIELDS, Network
from deepprop.sweep.schema import EXPORT_COLUMNS, NETWORK_COLUMNS, SHARED_NOISE, row_prior


def cell_table(df: pd.DataFrame, metric: str = "train_accuracy", n_classes: int = 10) -> pd.DataFrame:
    """Mean ``metric`` over seeds per (keep_rate, depth, sigma_w2); diverged runs count as chance."""
    if metric not in df.columns:
        raise ParameterError("metric", f"unknown metric {metric!r}")
    d = df.copy()
    if metric.endswith("accuracy"):
        d[metric] = d[metric].where(~d["diverged"], 1.0 / n_classes)  # NULL and not diverged: no value
    keys = ["keep_rate", "depth", "sigma_w2", "sigma_b2", "activation", *SHARED_NOISE]
    return d.groupby(keys, as_index=False).agg(
        value=(metric, "mean"), n=(metric, "size"), diverged=("diverged", "mean")
    )


def theory_scales(prior: Network, *loose: ArrayLike, **noise: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(xi_c, xi_1) from the mean-field engine for a prior whose sigma_w2 is an array; xi_1 = 1/|log chi_1| =
    |xi_grad|. The loose form ``theory_scales(activation, sigma_w2, sigma_b2[, the three standard noise
    numbers])`` is converted once."""
    from deepprop.theory.meanfield import mean_field

    noise.update(zip(NOISE_FIELDS, loose[2:], strict=False))
    mf = mean_field(prior, *loose[:2], **noise)
    return np.asarray(mf.xi_c, dtype=float), np.abs(np.asarray(mf.xi_grad, dtype=float))


def _with_theory(cells: pd.DataFrame) -> pd.DataFrame:
    out = []
    keys = [c for c in NETWORK_COLUMNS if c != "sigma_w2"]
    for values, g in cells.groupby(keys):
        g = g.copy()
        xi_c, xi_1 = theory_scales(row_prior({**dict(zip(keys, values, strict=True)),
                                              "sigma_w2": g["sigma_w2"].to_numpy()}))
        g["xi_c"], g["xi_1"] = xi_c, xi_1
        out.append(g)
    return pd.concat(out, ignore_index=True)


@dataclass
class LawFit:
    name: str
    constants: dict[str, float | None]
    fraction_correct: float | None
    n_cells: int
    reason: str | None = None  # why there is no fit (constants and fraction None)

    def line(self) -> str:
        if self.reason is not None:
            return f"{self.name:<30} no fit: {self.reason}"
        consts = ", ".join(f"{k} = {v:.3g}" for k, v in self.constants.items())
        frac = f"fraction correct = {self.fraction_correct:.3f} ({self.n_cells} cells)"
        return f"{self.name:<30} {consts:<26} {frac}"


def _accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    return float(np.mean(pred == label))


def _candidates(ratio: np.ndarray) -> np.ndarray:
    """Constants a at which L <= a * xi changes for some cell, plus one beyond each end."""
    r = np.unique(ratio[np.isfinite(ratio) & (ratio > 0)])
    if r.size == 0:
        return np.array([1.0])
    mids = np.concatenate([[r[0] * 0.5], (r[:-1] + r[1:]) / 2, [r[-1] * 1.5]])
    return mids


LAW_NAMES = ("paper: L <= 6 xi_c", "fit: L <= a xi_c", "fit: L <= min(a xi_c, b xi_1)")


def fit_laws(
    df: pd.DataFrame, *, threshold: float | None = None, n_classes: int = 10, metric: str = "train_accuracy"
) -> tuple[list[LawFit], pd.DataFrame, float]:
    """Fit the trainable-depth laws to the store's cells; return (fits, cells with labels, threshold).

    Cells without any accuracy are dropped (``cells`` holds the rest); where no cell trained above chance
    every fit is None with its reason."""
    cells = cell_table(df, metric, n_classes)
    cells = cells[cells["value"].notna()].reset_index(drop=True)
    cells = _with_theory(cells) if len(cells) else cells.assign(xi_c=np.nan, xi_1=np.nan)
    chance = 1.0 / n_classes
    best = float(cells["value"].max()) if len(cells) else float("nan")
    if threshold is None:
        threshold = chance + 0.5 * (best - chance) if np.isfinite(best) else float("nan")
    label = ((cells["value"] >= threshold) & (cells["value"] > chance + 1e-12)).to_numpy()
    cells["trainable"] = label
    names = LAW_NAMES
    if not len(cells) or not label.any():
        if not len(cells):
            why = "no cell has a recorded accuracy"
        elif best > chance + 1e-12:
            why = f"no cell reaches the threshold {threshold:.3g} (best {best:.3g}): no boundary to fit"
        else:
            why = f"no cell trained above chance ({chance:.3g}): no boundary to fit"
        consts: list[dict[str, float | None]] = [{"a": 6.0}, {"a": None}, {"a": None, "b": None}]
        return [LawFit(n, c, None, len(cells), why) for n, c in zip(names, consts, strict=True)], cells, \
            float(threshold)
    L = cells["depth"].to_numpy(dtype=float)
    xi_c = cells["xi_c"].to_numpy()
    xi_1 = cells["xi_1"].to_numpy()
    xi_c_safe = np.where(np.isnan(xi_c), 0.0, xi_c)  # no depth scale: nothing is predicted trainable
    xi_1_safe = np.where(np.isnan(xi_1), 0.0, xi_1)
    fits = [LawFit(names[0], {"a": 6.0}, _accuracy(L <= 6 * xi_c_safe, label), len(cells))]
    if label.all():  # no untrainable cell: the data bound the constants from below only
        with np.errstate(divide="ignore", invalid="ignore"):
            lower = float(np.nanmax(L / xi_c_safe))
        why = (f"every cell is trainable: nothing bounds the constants from above (a >= {lower:.3g}, the largest "
               "L / xi_c of the grid); sweep deeper networks to find the boundary")
        fits += [LawFit(names[1], {"a": None}, None, len(cells), why),
                 LawFit(names[2], {"a": None, "b": None}, None, len(cells), why)]
        return fits, cells, float(threshold)
    cand_a = _candidates(L / xi_c_safe)
    acc_a = np.array([_accuracy(L <= a * xi_c_safe, label) for a in cand_a])
    best_a = cand_a[_middle_of_best(acc_a)]
    fits.append(LawFit(names[1], {"a": float(best_a)}, float(acc_a.max()), len(cells)))
    cand_b = np.concatenate([_candidates(L / xi_1_safe), [np.inf]])
    best = (-1.0, best_a, np.inf)
    below_b = L[None, :] <= cand_b[:, None] * xi_1_safe[None, :]  # (n_b, n_cells)
    for a in cand_a:
        pa = L <= a * xi_c_safe
        acc_b = ((pa[None, :] & below_b) == label[None, :]).mean(axis=1)
        j = int(np.argmax(acc_b))
        if acc_b[j] > best[0] + 1e-12:
            best = (float(acc_b[j]), a, cand_b[j])
    fits.append(
        LawFit(names[2], {"a": float(best[1]), "b": float(best[2])}, best[0], len(cells))
    )
    return fits, cells, float(threshold)


def _middle_of_best(acc: np.ndarray) -> int:
    idx = np.flatnonzero(acc >= acc.max() - 1e-12)
    return int(idx[len(idx) // 2])


def export(df: pd.DataFrame, out: str | Path) -> Path:
    """Write one row per trained network to ``out`` (.csv or .parquet)."""
    from deepprop.validation import check_output_path

    out = check_output_path(out, suffixes=(".csv", ".parquet", ".pq"))  # its folder exists: never created here
    from deepprop.atomic import write_atomically

    table = df[[c for c in EXPORT_COLUMNS if c in df.columns]]
    if out.suffix.lower() == ".csv":
        return write_atomically(out, lambda tmp: table.to_csv(tmp, index=False))
    from deepprop.errors import require

    require("pyarrow", "io", "parquet export")
    return write_atomically(out, lambda tmp: table.to_parquet(tmp, index=False))
