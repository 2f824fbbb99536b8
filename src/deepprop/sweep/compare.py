"""Noise-aware critical initialisation vs He initialisation, trained side by side (follow-ups section 1).

ReLU networks without bias, trained with dropout (keep rate rho) at the noise-aware critical init
sigma_w^2 = 2 rho and at He's sigma_w^2 = 2, over a range of depths, with the sweep engine. The figure is
:func:`deepprop.plots.critical_init.draw_init_vs_he`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from deepprop.advice import critical_init
from deepprop.errors import ParameterError
from deepprop.sweep.config import SweepConfig, from_mapping
from deepprop.sweep.runner import load_for, plan, run_sweep
from deepprop.sweep.store import Store
from deepprop.theory.meanfield import mean_field, trajectory

HE_SIGMA_W2 = 2.0
"""He initialisation's sigma_w^2 for ReLU (critical without noise)."""

COMPARE_STORE = "init_vs_he.sqlite"


def compare_config(
    *,
    keep_rate: float = 0.8,
    depths: Sequence[int] = (2, 4, 6, 8, 10, 12, 16),
    steps: int = 200,
    width: int = 64,
    dataset: str = "digits",
    seeds: Sequence[int] = (0, 1, 2),
    lr: float = 0.05,
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[SweepConfig, float]:
    """The sweep of the comparison and the critical sigma_w^2 = 2 rho it uses beside He's sigma_w^2 = 2.

    ReLU, no bias (sigma_b^2 = 0), inverted dropout with keep rate rho on every layer's input after the
    first, plain SGD at a fixed learning rate.
    """
    advice = critical_init("relu", keep_rate=keep_rate)
    if math.isclose(advice.sigma_w2, HE_SIGMA_W2):
        raise ParameterError("keep_rate", f"must be < 1 so that the two inits differ (got {keep_rate})")
    cfg = from_mapping(
        dict(
            dataset=dataset,
            activation="relu",
            sigma_b2=0.0,
            keep_rates=[keep_rate],
            sigma_w2=[advice.sigma_w2, HE_SIGMA_W2],
            depths=list(depths),
            seeds=list(seeds),
            width=width,
            steps=steps,
            lr=lr,
            batch_size=batch_size,
            optimizer="sgd",
            device=device,
        )
    )
    return cfg, float(advice.sigma_w2)


def compare_inits(
    out_dir: str | Path, *, progress: bool = True, **kwargs: object
) -> tuple[pd.DataFrame, SweepConfig]:
    """Train the comparison with the sweep engine (resumable store ``out_dir/init_vs_he.sqlite``).

    Returns one row per (depth, init) with the mean and standard deviation over seeds of the final training
    accuracy (a diverged network counts as chance, 1/C), the number of diverged seeds, and the mean-field
    prediction for that setting: chi_1 = sigma_w^2 / (2 rho), the growth of q^l per layer (1 at the critical
    init, 1/rho for He), and the predicted trainable depth 6 xi_c.
    """
    cfg, crit_sw2 = compare_config(**kwargs)  # type: ignore[arg-type]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / COMPARE_STORE
    ds = load_for(cfg)
    run_sweep(cfg, store_path, progress=progress, dataset=ds)
    keys = {j.key for j in plan(cfg)}
    with Store(store_path) as store:
        df = store.frame()
    df = df[df["run_key"].isin(keys)].copy()
    chance = 1.0 / ds.n_classes
    df["acc"] = df["train_accuracy"].where(~df["diverged"], chance).fillna(chance)
    keep = cfg.keep_rates[0]
    rows = []
    for (depth, sw2), g in df.groupby(["depth", "sigma_w2"]):
        mf = mean_field("relu", float(sw2), 0.0, keep_rate=keep)
        rows.append(
            dict(
                depth=int(depth),
                init="critical" if math.isclose(sw2, crit_sw2) else "He",
                sigma_w2=float(sw2),
                keep_rate=keep,
                train_acc=float(g["acc"].mean()),
                train_acc_std=float(g["acc"].std(ddof=0)),
                test_acc=float(g["test_accuracy"].fillna(chance).mean()),
                n_seeds=len(g),
                n_diverged=int(g["diverged"].sum()),
                chi1=float(mf.chi1) if np.isfinite(mf.chi1) else float(sw2) / (2.0 * keep),
                q_growth=float(sw2) / (2.0 * keep),
                max_depth=float(mf.max_depth),
                phase=str(mf.phase),
            )
        )
    return pd.DataFrame(rows).sort_values(["init", "depth"], ignore_index=True), cfg


def q_curves(table: pd.DataFrame, cfg: SweepConfig) -> dict[str, np.ndarray]:
    """The mean-field q^l (q^0 = 1) of each init of the comparison, layers 0 .. the deepest depth (the
    figure's second panel)."""
    depth = int(max(cfg.depths))
    return {str(init): np.asarray(trajectory("relu", float(g["sigma_w2"].iloc[0]), 0.0, q0=1.0, c0=0.5,
                                             depth=depth, keep_rate=cfg.keep_rates[0])[0]).reshape(-1)
            for init, g in table.groupby("init")}
