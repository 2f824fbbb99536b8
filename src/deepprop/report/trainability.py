"""Trainability sweeps shared by the claims of figs. 5-8 (001) and the trainable-depth law (002).

Every sweep of a report run writes into one store, OUT/work/trainability.sqlite; a network is keyed by its
run identity, so two claims asking for the same network (fig. 5's long SGD run and fig. 7's longest
budget) train it once, and a killed run resumes where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepprop.report.context import Context

STORE = "trainability.sqlite"

GRID = {
    "smoke": {"width": 16, "depths": [4, 16], "sigma_w2": [1.0, 1.76, 4.0], "batch_size": 32, "seeds": [0],
              "sgd_lr": 0.02, "rmsprop_lr": 1e-3, "eval": 300},
    "quick": {"width": 32, "depths": [6, 12, 24, 48], "sigma_w2": [1.0, 1.4, 1.76, 2.2, 3.0, 4.0],
              "batch_size": 32, "seeds": [0, 1], "sgd_lr": 0.01, "rmsprop_lr": 1e-3, "eval": 1000},
    "paper": {"width": 300, "depths": "10:300:30", "sigma_w2": "1:4:30", "batch_size": 128, "seeds": [0],
              "sgd_lr": "paper", "rmsprop_lr": "paper", "eval": 10000},
}
"""Grid of each tier. smoke/quick are reduced for a CPU: small width, few cells, and learning rates raised
from the paper's 1e-3 (SGD) / 1e-5 (RMSProp), which barely move a width-32 network within these budgets.
Quick-tier sizes were set by time: the first full quick run took 2.5 of its 10 minutes on a quiet 2-core
CPU, so every statistical size below 8 (networks, replicates) was raised to 8 and the trainability grid
got a second seed, with tolerances unchanged."""


@dataclass
class SweepOutcome:
    cells: pd.DataFrame  # one row per (keep_rate, depth, sigma_w2): value, xi_c, xi_1, trainable
    frame: pd.DataFrame  # one row per trained network
    threshold: float
    n_classes: int
    summary: dict[str, float]
    note: str


def grid_note(ctx: Context, optimizer: str, steps: int, dataset_note: str) -> str:
    g = GRID[ctx.tier]
    lr = g["sgd_lr"] if optimizer == "sgd" else g["rmsprop_lr"]
    lr_text = "the paper's learning rates" if lr == "paper" else f"lr {lr:g}"
    return (f"{dataset_note}; width {g['width']}, depths {g['depths']}, sigma_w^2 {g['sigma_w2']}, "
            f"{optimizer} {steps} steps, {lr_text}, batch {g['batch_size']}")


def run_grid(ctx: Context, *, optimizer: str, steps: int, keep_rates: Sequence[float] = (1.0,),
             dataset: str | None = None) -> SweepOutcome:
    """Train the tier's grid (tanh, sigma_b^2 = 0.05) and classify its cells with the depth-scale laws."""
    from deepprop.sweep.analysis import fit_laws
    from deepprop.sweep.config import from_mapping
    from deepprop.sweep.runner import load_for, plan, run_sweep
    from deepprop.sweep.store import Store

    g = GRID[ctx.tier]
    if dataset is None:
        dataset, dnote = ctx.mnist_like(fast=True)
    else:
        dnote = dataset
    cfg = from_mapping(dict(
        dataset=dataset, data_dir=ctx.data_dir, activation="tanh", sigma_b2=0.05, width=g["width"],
        depths=g["depths"], sigma_w2=g["sigma_w2"], keep_rates=list(keep_rates), optimizer=optimizer,
        lr=g["sgd_lr"] if optimizer == "sgd" else g["rmsprop_lr"], steps=steps, batch_size=g["batch_size"],
        seeds=g["seeds"], eval_train=g["eval"], eval_test=g["eval"], device=ctx.device,
    ))
    ds = load_for(cfg)
    store = ctx.work_dir / STORE
    run_sweep(cfg, store, progress=ctx.progress, dataset=ds)
    keys = {j.key for j in plan(cfg)}
    with Store(store) as st:
        df = st.frame()
    df = df[df["run_key"].isin(keys)].copy()
    fits, cells, threshold = fit_laws(df, n_classes=ds.n_classes)
    summary = law_fractions(cells)
    summary.update({"fraction_6xi_c": fits[0].fraction_correct, "fitted_multiple": fits[1].constants["a"],
                    "best_accuracy": float(cells["value"].max()), "threshold": threshold,
                    "cells": int(len(cells))})
    return SweepOutcome(cells, df, threshold, ds.n_classes, summary, grid_note(ctx, optimizer, steps, dnote))


def law_fractions(cells: pd.DataFrame) -> dict[str, float]:
    """Fraction of cells that L <= 6 xi_c, 12 xi_c and 12 xi_1 classify as the sweep labelled them."""
    L = cells["depth"].to_numpy(dtype=float)
    lab = cells["trainable"].to_numpy(dtype=bool)
    xi_c = np.nan_to_num(cells["xi_c"].to_numpy(dtype=float), nan=0.0, posinf=np.inf)
    xi_1 = np.nan_to_num(cells["xi_1"].to_numpy(dtype=float), nan=0.0, posinf=np.inf)
    return {"fraction_12xi_c": float(np.mean((L <= 12 * xi_c) == lab)),
            "fraction_12xi_1": float(np.mean((L <= 12 * xi_1) == lab))}


def heatmap(ctx: Context, outcome: SweepOutcome, suffix: str = "") -> str:
    """Accuracy heatmap with the n xi_c, 12 xi_c, 12 xi_1 curves; returns the figure path relative to OUT."""
    from deepprop.plots.sweep import plot_heatmap

    path, rel = ctx.figure_path(suffix)
    plot_heatmap(outcome.frame, path, n_classes=outcome.n_classes)
    return rel


def save_cells(ctx: Context, outcome: SweepOutcome, suffix: str = "") -> str:
    cols = ["keep_rate", "depth", "sigma_w2", "value", "n", "diverged", "xi_c", "xi_1", "trainable"]
    return ctx.save_csv(outcome.cells[[c for c in cols if c in outcome.cells.columns]]
                        .rename(columns={"value": "train_accuracy"}), suffix)


def spread(values: Sequence[float]) -> float:
    """max / min of the finite positive values (NaN with fewer than two)."""
    v = [x for x in values if x is not None and math.isfinite(x) and x > 0]
    return max(v) / min(v) if len(v) >= 2 else math.nan


def budgets(ctx: Context) -> list[int]:
    # quick: the paper's first two budgets and a shortened long run (1000 steps), to fit ~10 minutes on 2 cores
    return {"smoke": [5, 10, 20, 40], "quick": [45, 304, 1000], "paper": [45, 304, 2048, 13780]}[ctx.tier]


def summary_keys(summary: dict[str, Any], suffix: str) -> dict[str, Any]:
    return {f"{k}{suffix}": v for k, v in summary.items()}
