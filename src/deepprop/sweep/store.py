"""SQLite store of sweep results: one row per trained network, committed as soon as it is known.

WAL journal mode, so readers (``sweep status``) never block the writer and a killed writer loses at most
the transaction in flight. ``run_key`` (hash of the run identity) is the primary key: inserting a result
that is already there is a no-op, so resuming never duplicates a row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from deepprop.errors import ParameterError

IDENTITY_COLUMNS = {
    "dataset": "TEXT",
    "n_train": "INTEGER",
    "n_test": "INTEGER",
    "activation": "TEXT",
    "sigma_b2": "REAL",
    "noise_mult": "REAL",
    "noise_add": "REAL",
    "weights": "TEXT",
    "width": "INTEGER",
    "optimizer": "TEXT",
    "steps": "INTEGER",
    "batch_size": "INTEGER",
    "dtype": "TEXT",
    "precision": "TEXT",
    "eval_train": "INTEGER",
    "eval_test": "INTEGER",
    "depth": "INTEGER",
    "sigma_w2": "REAL",
    "keep_rate": "REAL",
    "seed": "INTEGER",
    "lr": "REAL",
}
RESULT_COLUMNS = {
    "train_accuracy": "REAL",
    "test_accuracy": "REAL",
    "final_loss": "REAL",
    "diverged": "INTEGER",
    "diverged_step": "INTEGER",
    "device": "TEXT",
    "wall_s": "REAL",
    "finished_at": "REAL",
}
COLUMNS = ["run_key", *IDENTITY_COLUMNS, *RESULT_COLUMNS]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY,
    {", ".join(f"{k} {t}" for k, t in {**IDENTITY_COLUMNS, **RESULT_COLUMNS}.items())}
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class Store:
    """Results of one or more sweeps in an SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ParameterError("store", f"no such store: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=60.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- meta ----------------------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # ---- results ---------------------------------------------------------------------------------------

    def done_keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT run_key FROM runs")}

    def add_results(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert finished runs in one transaction (committed on return); existing keys are skipped."""
        now = time.time()
        values = []
        for row in rows:
            r = dict(row)
            r.setdefault("finished_at", now)
            values.append(tuple(_sql_value(r.get(c)) for c in COLUMNS))
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self.conn:
            cur = self.conn.executemany(
                f"INSERT OR IGNORE INTO runs ({', '.join(COLUMNS)}) VALUES ({placeholders})", values
            )
        return cur.rowcount

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def frame(self) -> pd.DataFrame:
        """All rows as a DataFrame (``diverged`` as bool), ordered by depth, sigma_w2, keep_rate, seed."""
        df = pd.read_sql_query(
            "SELECT * FROM runs ORDER BY depth, sigma_w2, keep_rate, seed, run_key", self.conn
        )
        df["diverged"] = df["diverged"].astype(bool)
        return df


def _sql_value(v: Any) -> Any:
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:  # NaN -> NULL
        return None
    return v
