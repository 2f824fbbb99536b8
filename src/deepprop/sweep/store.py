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

from deepprop.errors import ParameterError, StoreError
from deepprop.sweep.schema import COLUMNS, SQL_TYPES

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    {", ".join(f"{k} {SQL_TYPES[k]}" for k in COLUMNS)}
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class Store:
    """Results of one or more sweeps in an SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise ParameterError("store", f"no such store: {self.path}")
        if self.path.exists():
            _check_sqlite_file(self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # the CLI refuses a missing folder before this
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from exc
        try:
            fresh = not self._tables()  # a file with other tables is refused here; one with none is empty
            if fresh and not create:
                raise StoreError(f"{self.path}: empty file, not a deepprop results store")
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            if fresh:  # one transaction: a concurrent opener sees both tables or neither
                self.conn.executescript("BEGIN IMMEDIATE;\n" + _SCHEMA + "\nCOMMIT;")
            self.count()  # reads the table: a truncated or corrupt file fails here, before any write
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"{self.path}: not a readable deepprop results store ({exc})") from exc
        except StoreError:
            self.conn.close()
            raise

    def _tables(self) -> set[str]:
        rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        names = {r[0] for r in rows}
        if names and not {"runs", "meta"} <= names:
            raise StoreError(f"{self.path}: SQLite tables {sorted(names)} are not deepprop's (runs, meta): not a "
                             "deepprop results store; refusing to modify it")
        return names

    def check_config(self, config: Mapping[str, Any], fields: Iterable[str]) -> None:
        """Raise StoreError if the sweep last run on this store differs from ``config`` in ``fields``
        (settings shared by every network, e.g. dataset, activation, width): results of different sweeps
        are not mixed by accident. Grid axes may differ (a sweep is extended by running it with more cells)."""
        stored = self.get_meta("config")
        if not stored:
            return
        diff = [f"{k}: store {stored.get(k)!r}, now {config.get(k)!r}" for k in fields
                if stored.get(k) != config.get(k)]
        if diff:
            raise StoreError(f"{self.path} holds another sweep ({'; '.join(diff)}); use a new --store file")

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


SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_sqlite_file(path: Path) -> None:
    """An existing store path must be a file, empty or starting with the SQLite header (checked before connecting)."""
    if path.is_dir():
        raise ParameterError("store", f"{path} is a directory; give a file name")
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise StoreError(f"{path}: not an SQLite file (not a deepprop results store)")
    if head and path.stat().st_size < 512:
        raise StoreError(f"{path}: truncated SQLite file ({path.stat().st_size} bytes), not a usable store")
