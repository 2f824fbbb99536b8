"""SQLite store of sweep results: one row per trained network, committed as soon as it is known.

Format. A store is an SQLite file with the tables ``runs`` (one row per network, keyed by ``run_key``, the
hash of the run identity), ``meta`` (the sweep's configuration and plan) and ``leases`` (which runner is
training which networks), marked as deepprop's by ``PRAGMA application_id`` and versioned by
``PRAGMA user_version`` (:data:`STORE_VERSION`; also the ``meta`` row ``store_version``). Both numbers sit in
the file's 100-byte header, so an older, newer or foreign file is refused by reading 100 bytes, before
SQLite opens it: a refused store is never modified and no ``-wal`` / ``-shm`` file is left beside it. A
store is created complete or not at all (built under a temporary name and linked into place).

Concurrency. WAL journal mode, so readers (``sweep status``) never block the writer and a killed writer
loses at most the transaction in flight. Inserting a result that is already there is a no-op, so
resuming never duplicates a row. Runners share the work through leases: before training a chunk, a
runner claims its networks in one write transaction (networks already done, or leased by a live runner,
are left out), renews its leases while it trains, and releases them in the transaction that stores the
results. A lease whose runner is gone (its process no longer exists on this host, or it stopped renewing
for the lease time) is free to be claimed again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from deepprop.errors import ParameterError, StoreError
from deepprop.sweep.schema import COLUMNS, SQL_TYPES
from deepprop.validation import check_output_path, user_path

STORE_VERSION = 1
"""Version of the store format written and read by this deepprop (0: the unversioned stores of earlier
releases, without leases)."""
APPLICATION_ID = 0x64707270  # "dprp": PRAGMA application_id of every deepprop store
TABLES = ("runs", "meta", "leases")

_SCHEMA = f"""
CREATE TABLE runs (
    {", ".join(f"{k} {SQL_TYPES[k]}" for k in COLUMNS)}
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE leases (run_key TEXT PRIMARY KEY, lease TEXT NOT NULL, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX leases_by_lease ON leases(lease);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {STORE_VERSION};
INSERT INTO meta(key, value) VALUES ('store_version', '{STORE_VERSION}');
"""

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
MAX_SQL_VARIABLES = 500  # keys per IN (...) query


def this_owner() -> str:
    """Who holds a lease: ``host:pid:random`` (the process is checked for life on the same host)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the runner ``owner`` still runs: True/False on this host, None (unknown) elsewhere."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return not _zombie(int(pid_text))


def _zombie(pid: int) -> bool:
    """True when ``pid`` has exited but its parent has not reaped it yet (Linux: state Z or X in
    /proc/PID/stat). Such a runner holds its leases no longer; elsewhere (no /proc) False."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # the state letter follows the command name, which is in parentheses and may itself hold ')'
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]
    return state in (b"Z", b"X")


class Store:
    """Results of one or more sweeps in an SQLite file.

    ``create=False`` opens an existing store only (the read commands); with ``create=True`` a missing file
    (or an empty one) becomes a new store. Refusals: :class:`ParameterError` ('store') for a path that
    cannot hold a store, :class:`StoreError` for a file that is not a usable store of this version."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = user_path(path, "store")
        if self.path.is_dir():
            raise ParameterError("store", f"{self.path} is a directory; give a file name")
        if holds_no_store(self.path):
            if not create:
                if self.path.exists():
                    raise StoreError(f"{self.path}: empty file, not a deepprop results store")
                raise ParameterError("store", f"no such store: {self.path}")
            create_store(check_output_path(self.path, param="store"))
        check_header(self.path)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=60.0)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from exc
        try:
            self.conn.execute("PRAGMA synchronous=NORMAL")
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not set(TABLES) <= tables:
                raise StoreError(f"{self.path}: deepprop store without its tables {sorted(set(TABLES) - tables)}: "
                                 "corrupted store")
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
            if not set(COLUMNS) <= columns:
                raise StoreError(f"{self.path}: its runs table lacks the columns {sorted(set(COLUMNS) - columns)}: "
                                 "corrupted store")
            self.count()  # reads the table: a corrupt file fails here, before any write
            self.get_meta("config")  # and a meta value that is not JSON
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"{self.path}: not a readable deepprop results store ({exc})") from exc
        except (StoreError, ParameterError):
            self.conn.close()
            raise

    def check_config(self, config: Mapping[str, Any], fields: Iterable[str]) -> None:
        """Raise StoreError if the sweep last run on this store differs from ``config`` in ``fields``
        (settings shared by every network, e.g. dataset, activation, width): results of different sweeps
        are not mixed by accident. Grid axes may differ (a sweep is extended by running it with more cells)."""
        stored = self.get_meta("config")
        if not stored:
            return
        if not isinstance(stored, dict):
            raise StoreError(f"{self.path}: meta 'config' is not a configuration (corrupted store)")
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
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.path}: meta {key!r} is not JSON ({type(exc).__name__}): corrupted store") \
                from exc

    def start_sweep(self, config: Mapping[str, Any], fields: Iterable[str], planned: Sequence[str], *,
                    prior: Mapping[str, Any] | None = None) -> None:
        """Check ``config`` against the store's sweep and record it, its planned keys and (meta ``prior``) the
        JSON record of its network, in one write transaction (two runners starting together see each
        other's config). Stores written before ``prior`` was recorded read as before."""
        meta = [("config", json.dumps(dict(config))), ("planned_keys", json.dumps(list(planned)))]
        if prior is not None:
            meta.append(("prior", json.dumps(dict(prior))))
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.check_config(config, fields)
            self.conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", meta)

    # ---- results ---------------------------------------------------------------------------------------

    def done_keys(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT run_key FROM runs")}

    def add_results(self, rows: Iterable[Mapping[str, Any]], *, release: str | None = None) -> int:
        """Insert finished runs in one transaction (committed on return); existing keys are skipped. With
        ``release``, the lease of that id is given up in the same transaction."""
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
            if release is not None:
                self.conn.execute("DELETE FROM leases WHERE lease = ?", (release,))
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

    # ---- leases ----------------------------------------------------------------------------------------

    def _held_by_others(self, keys: Sequence[str], lease: str, now: float) -> set[str]:
        held = set()
        for i in range(0, len(keys), MAX_SQL_VARIABLES):
            part = list(keys[i:i + MAX_SQL_VARIABLES])
            q = ",".join("?" * len(part))
            for key, owner, expires in self.conn.execute(
                    f"SELECT run_key, owner, expires_at FROM leases WHERE lease != ? AND run_key IN ({q})",
                    [lease, *part]):
                if expires > now and owner_alive(owner) is not False:
                    held.add(key)
        return held

    def _done_among(self, keys: Sequence[str]) -> set[str]:
        done = set()
        for i in range(0, len(keys), MAX_SQL_VARIABLES):
            part = list(keys[i:i + MAX_SQL_VARIABLES])
            q = ",".join("?" * len(part))
            done.update(r[0] for r in self.conn.execute(f"SELECT run_key FROM runs WHERE run_key IN ({q})", part))
        return done

    def claim(self, keys: Sequence[str], lease: str, owner: str, seconds: float) -> list[str]:
        """Lease the networks ``keys`` that are neither done nor leased by a live runner, in one write
        transaction; returns the keys now held under ``lease`` (valid for ``seconds`` unless renewed)."""
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            taken = self._done_among(keys) | self._held_by_others(keys, lease, now)
            free = [k for k in keys if k not in taken]
            self.conn.executemany(
                "INSERT OR REPLACE INTO leases(run_key, lease, owner, expires_at) VALUES (?, ?, ?, ?)",
                [(k, lease, owner, now + seconds) for k in free])
        return free

    def renew(self, leases: Iterable[str], seconds: float) -> None:
        """Push back the expiry of ``leases`` (a runner's heartbeat while it trains)."""
        renew_leases(self.conn, list(leases), seconds)

    def release(self, lease: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM leases WHERE lease = ?", (lease,))

    def active_leases(self) -> dict[str, int]:
        """{owner: networks leased} over the leases held by live runners now."""
        now = time.time()
        out: dict[str, int] = {}
        for owner, expires, n in self.conn.execute(
                "SELECT owner, MAX(expires_at), COUNT(*) FROM leases GROUP BY owner"):
            if expires > now and owner_alive(owner) is not False:
                out[owner] = int(n)
        return out


def renew_leases(conn: sqlite3.Connection, leases: Sequence[str], seconds: float) -> None:
    """Push back the expiry of ``leases`` to ``seconds`` from now, in one transaction on ``conn``."""
    with conn:
        for i in range(0, len(leases), MAX_SQL_VARIABLES):
            part = list(leases[i:i + MAX_SQL_VARIABLES])
            conn.execute(f"UPDATE leases SET expires_at = ? WHERE lease IN ({','.join('?' * len(part))})",
                         [time.time() + seconds, *part])


def _sql_value(v: Any) -> Any:
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:  # NaN -> NULL
        return None
    return v


def read_header(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(HEADER_BYTES)


def check_header(path: Path) -> None:
    """Refuse, from the 100-byte SQLite header alone (SQLite is not opened), a file that is not an SQLite
    database, is truncated, is not deepprop's, or is a deepprop store of another version."""
    head = read_header(path)
    if head[:len(SQLITE_MAGIC)] != SQLITE_MAGIC:
        raise StoreError(f"{path}: not an SQLite file (not a deepprop results store)")
    size = path.stat().st_size
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    if len(head) < HEADER_BYTES or page < 512 or size < page or size % page:
        raise StoreError(f"{path}: truncated SQLite file ({size} bytes), not a usable store")
    pages, valid_for, changes = (int.from_bytes(head[o:o + 4], "big") for o in (28, 92, 24))
    if valid_for == changes and pages and size < pages * page:
        raise StoreError(f"{path}: truncated SQLite file ({size} bytes, its header says {pages * page}), "
                         "not a usable store")
    version = int.from_bytes(head[60:64], "big", signed=True)
    app = int.from_bytes(head[68:72], "big")
    if app == APPLICATION_ID:
        if version == STORE_VERSION:
            return
        if version > STORE_VERSION:
            raise StoreError(f"{path}: store format {version} was written by a newer deepprop (this one reads "
                             f"format {STORE_VERSION}); upgrade deepprop to use it")
        raise StoreError(f"{path}: store format {version} is older than this deepprop's format "
                         f"{STORE_VERSION}; export it with the deepprop that wrote it, or run the sweep into a "
                         "new --store")
    tables = _tables_read_only(path)
    if tables is not None and {"runs", "meta"} <= tables and app == 0 and version == 0:
        raise StoreError(f"{path}: store format 0 (written by an older deepprop, without a format version) is "
                         f"older than this deepprop's format {STORE_VERSION}; export it with the deepprop that "
                         "wrote it, or run the sweep again into a new --store")
    shown = "" if tables is None else f" (tables {sorted(tables)})"
    raise StoreError(f"{path}: SQLite file of another application{shown}, not a deepprop results store; "
                     "refusing to modify it")


def _tables_read_only(path: Path) -> set[str] | None:
    """Table names of an SQLite file, read as immutable (no lock, no -wal/-shm, no write); None if unreadable."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
        try:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def holds_no_store(path: Path) -> bool:
    """``path`` is absent or an empty file: the place of a new store."""
    return not path.exists() or path.stat().st_size == 0


def create_store(path: Path) -> None:
    """Create a complete, versioned, empty store at ``path`` (absent or an empty file), a path checked once
    before (:func:`~deepprop.validation.check_output_path`: by :class:`Store`, or by
    :func:`~deepprop.sweep.runner.prepare_sweep` before a sweep's work starts): built under a temporary name
    in the same folder, then linked into place, so no reader ever sees a half-made store. When another
    runner creates it first, its store is kept."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".creating", dir=path.parent)
    except OSError as exc:  # the folder changed since it was checked
        raise ParameterError("store", f"cannot create {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp_name)
        try:
            conn.executescript("BEGIN;\n" + _SCHEMA + "\nCOMMIT;")
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        if path.exists():  # an empty file named by the user: replace it only while it is still empty
            if path.stat().st_size == 0:
                os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic, and fails if another runner created the store meanwhile
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    except OSError as exc:
        raise ParameterError("store", f"cannot create {path}: {exc.strerror or exc}") from exc
    finally:
        for leftover in (tmp, Path(tmp_name + "-journal"), Path(tmp_name + "-wal"), Path(tmp_name + "-shm")):
            leftover.unlink(missing_ok=True)
