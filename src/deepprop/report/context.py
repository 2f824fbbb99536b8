"""What a claim function gets: its tier sizes, where to write, the device, and the data sets available."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepprop.atomic import write_atomically
from deepprop.errors import DeeppropError

LABELS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "digits": "digits (8x8)"}
_AVAILABLE: dict[tuple[str, str | None], bool] = {}


def dataset_available(name: str, data_dir: str | None) -> bool:
    """True when ``name`` can be loaded without the network (from ``data_dir``, the system copy or cache)."""
    key = (name, data_dir)
    if key not in _AVAILABLE:
        from deepprop.data import load_dataset

        try:
            load_dataset(name, data_dir, download=False, n_train=16, n_test=16)
            _AVAILABLE[key] = True
        except (DeeppropError, OSError, ValueError):
            _AVAILABLE[key] = False
    return _AVAILABLE[key]


@dataclass
class Context:
    """Per-claim run context. ``sizes`` are the claim's sizes at ``tier``."""

    tier: str
    out: Path
    device: str = "cpu"
    data_dir: str | None = None
    progress: bool = True
    claim_id: str = ""
    sizes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return self.claim_id.replace("/", "_")

    @property
    def work_dir(self) -> Path:
        """OUT/work: stores shared between claims (e.g. the trainability sweeps)."""
        p = self.out / "work"
        p.mkdir(parents=True, exist_ok=True)
        return p

    def figure_path(self, suffix: str = "") -> tuple[Path, str]:
        """(absolute path, path relative to OUT) of this claim's figure."""
        name = f"{self.slug}{'-' + suffix if suffix else ''}.png"
        (self.out / "figures").mkdir(parents=True, exist_ok=True)
        return self.out / "figures" / name, f"figures/{name}"

    def save_csv(self, table: pd.DataFrame | Mapping[str, Any], suffix: str = "") -> str:
        """Write the raw numbers behind a figure to OUT/data/<claim>[-suffix].csv; returns the relative path."""
        frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(
            {k: np.asarray(v).reshape(-1) for k, v in table.items()})
        name = f"{self.slug}{'-' + suffix if suffix else ''}.csv"
        path = self.out / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False))
        return f"data/{name}"

    def mnist_like(self, *, fast: bool = False) -> tuple[str, str]:
        """(dataset name, note) standing in for the papers' MNIST at this tier.

        paper tier: MNIST when present, else Fashion-MNIST, else digits; quick and full: Fashion-MNIST (digits
        when ``fast`` or when Fashion-MNIST is absent); smoke: digits. The note names any stand-in.
        """
        if self.tier == "paper":
            order = ["mnist", "fashion-mnist", "digits"]
        elif self.tier in ("quick", "full") and not fast:
            order = ["fashion-mnist", "digits"]
        else:
            order = ["digits"]
        for name in order:
            if name == "digits" or dataset_available(name, self.data_dir):
                break
        if name == "mnist":
            return name, "MNIST, as in the paper"
        why = "" if self.tier != "paper" else " (MNIST not found" + (
            f" in --data-dir {self.data_dir})" if self.data_dir else ")")
        return name, f"{LABELS[name]} stands in for MNIST{why}"

    def cifar_missing(self) -> str | None:
        """None when CIFAR-10 is available, else the reason it is not."""
        if dataset_available("cifar10", self.data_dir):
            return None
        if self.data_dir:
            return f"CIFAR-10 not found in --data-dir {self.data_dir}"
        return "CIFAR-10 not found (no --data-dir given; looked in /usr/share/datasets/cifar10 and the cache)"
