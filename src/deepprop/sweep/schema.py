"""The one row schema of a sweep: every trained network is one row, keyed by ``run_key``.

A row is the network's run identity (what determines its result: the sweep's shared settings plus its
grid cell) followed by its outcome. The config builds identities from these names
(:func:`deepprop.sweep.config.run_identity`), the runner fills the outcome
(:func:`result_row`), the store creates its table from :data:`SQL_TYPES`, and analysis exports
:data:`EXPORT_COLUMNS`: no other module spells a column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepprop.prior import NOISE_FIELDS, PRIOR_FIELDS, NetworkPrior

SHARED_NOISE = NOISE_FIELDS[1:]
"""The noise numbers every network of a sweep shares (the keep rate is a grid axis)."""

NETWORK_COLUMNS = ("activation", *PRIOR_FIELDS)
"""The columns that hold a row's network prior (:func:`row_prior`)."""

SHARED_IDENTITY = (
    "dataset", "n_train", "n_test", "activation", "sigma_b2", *SHARED_NOISE, "weights", "width",
    "optimizer", "steps", "batch_size", "dtype", "precision", "eval_train", "eval_test",
)
"""Identity fields copied from the sweep's configuration (the same for every network of a sweep)."""

CELL_IDENTITY = ("depth", "sigma_w2", "keep_rate", "seed", "lr")
"""Identity fields of one network: its grid cell, seed and (depth-dependent) learning rate."""

OUTCOME = ("train_accuracy", "test_accuracy", "final_loss", "diverged", "diverged_step", "device", "wall_s",
           "finished_at")
"""What training a network produced; accuracies and loss are NULL for a diverged network."""

SQL_TYPES: dict[str, str] = {
    "run_key": "TEXT PRIMARY KEY",
    **{name: "TEXT" for name in ("dataset", "activation", "weights", "optimizer", "dtype", "precision", "device")},
    **{name: "INTEGER" for name in ("n_train", "n_test", "width", "steps", "batch_size", "eval_train", "eval_test",
                                    "depth", "seed", "diverged", "diverged_step")},
    **{name: "REAL" for name in ("sigma_b2", *SHARED_NOISE, "sigma_w2", "keep_rate", "lr",
                                 "train_accuracy", "test_accuracy", "final_loss", "wall_s", "finished_at")},
}

COLUMNS = ("run_key", *SHARED_IDENTITY, *CELL_IDENTITY, *OUTCOME)
"""Every stored column, in table order."""

EXPORT_COLUMNS = (
    "depth", "sigma_w2", "sigma_b2", "keep_rate", "seed", "train_accuracy", "test_accuracy", "final_loss",
    "diverged", "diverged_step", "activation", "width", "weights", "optimizer", "lr", "steps", "batch_size",
    "dataset", *SHARED_NOISE, "run_key",
)
"""Columns of ``sweep export``, most useful first."""

assert set(SQL_TYPES) == set(COLUMNS), "every column has exactly one SQL type"


def result_row(run_key: str, identity: dict[str, Any], *, train_accuracy: float, test_accuracy: float,
               final_loss: float, diverged: bool, diverged_step: int | None, device: str, wall_s: float,
               **statistics: float) -> dict[str, Any]:
    """One stored row (plus ``statistics`` such as network_steps and flops, which the store ignores)."""
    return {
        "run_key": run_key, **identity,
        "train_accuracy": float(train_accuracy), "test_accuracy": float(test_accuracy),
        "final_loss": float(final_loss), "diverged": int(bool(diverged)),
        "diverged_step": int(diverged_step) if diverged else None, "device": device, "wall_s": float(wall_s),
        **statistics,
    }


def row_prior(row: Mapping[str, Any]) -> NetworkPrior:
    """The network prior of a row (or of rows: the numbers may be arrays, e.g. a column of sigma_w2)."""
    return NetworkPrior.build(row["activation"], **{name: row[name] for name in PRIOR_FIELDS})
