"""The sweep store's format version and its leases.

* A store carries its format (``PRAGMA user_version``, ``application_id``, meta ``store_version``); an older,
  newer, foreign or corrupted file is refused in one line, and a refused command changes no byte of it and
  leaves no ``-wal`` / ``-shm`` file beside it.
* Runners share a store through per-chunk leases: a network leased by a live runner is not claimed by
  another; the lease of a runner that is gone (dead process on this host, or expired) is claimed again.
  Real processes: two ``deepprop sweep run`` on one store train every network exactly once between them,
  and a SIGKILLed runner's chunk is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepprop.cli.main import main
from deepprop.errors import StoreError
from deepprop.jsonout import loads_strict
from deepprop.sweep.config import from_mapping
from deepprop.sweep.runner import plan
from deepprop.sweep.store import APPLICATION_ID, STORE_VERSION, Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ["--dataset", "synthetic", "--n-train", "32", "--n-test", "16", "--width", "4", "--depths", "2,3",
         "--sigma-w2", "1,2", "--steps", "3", "--batch-size", "8", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("made") / "s.db"
    assert main(["sweep", "run", "--store", str(path), *SMALL]) == 0
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _side_files(p: Path) -> list[str]:
    return sorted(x.name for x in p.parent.iterdir() if x.name != p.name and x.name.startswith(p.name))


def _set_pragma(path: Path, **pragmas: int) -> None:
    conn = sqlite3.connect(path)
    for k, v in pragmas.items():
        conn.execute(f"PRAGMA {k} = {v}")
    conn.commit()
    conn.close()


def test_new_store_carries_its_format(made):
    conn = sqlite3.connect(made)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert json.loads(conn.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()[0]) == STORE_VERSION
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
        "runs", "meta", "leases"}
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert _side_files(made) == []  # the writer closed: no -wal / -shm left


def _legacy(path: Path) -> Path:
    """A store as the unversioned deepprop wrote it: runs + meta, user_version 0, no application id."""
    from deepprop.sweep.schema import COLUMNS, SQL_TYPES

    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE runs ({', '.join(f'{k} {SQL_TYPES[k]}' for k in COLUMNS)})")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('config', '{}')")
    conn.commit()
    conn.close()
    return path


def _variants(made: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    older = _copy(made, tmp / "older.db")
    _set_pragma(older, user_version=STORE_VERSION - 1)
    newer = _copy(made, tmp / "newer.db")
    _set_pragma(newer, user_version=STORE_VERSION + 1)
    foreign = tmp / "foreign.db"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE customers (name TEXT)")
    bad_meta = _copy(made, tmp / "badmeta.db")
    with sqlite3.connect(bad_meta) as c:
        c.execute("UPDATE meta SET value = '{not json' WHERE key = 'config'")
    c.close()
    no_leases = _copy(made, tmp / "noleases.db")
    with sqlite3.connect(no_leases) as c:
        c.execute("DROP TABLE leases")
    c.close()
    truncated = tmp / "truncated.db"
    truncated.write_bytes(made.read_bytes()[:5000])
    return {
        "older": (older, "older"), "legacy": (_legacy(tmp / "legacy.db"), "older"), "newer": (newer, "newer"),
        "foreign": (foreign, "not a deepprop results store"), "corrupt-meta": (bad_meta, "not JSON"),
        "missing-table": (no_leases, "corrupted"), "truncated": (truncated, "truncated"),
    }


@pytest.mark.parametrize("command", ["status", "fit", "export", "plot", "run"])
def test_refused_stores_are_not_touched(made, tmp_path, capsys, command):
    for name, (path, needle) in _variants(made, tmp_path).items():
        before = _digest(path)
        argv = {"status": ["sweep", "status", str(path)], "fit": ["sweep", "fit", str(path)],
                "export": ["sweep", "export", str(path), "--out", str(tmp_path / "x.csv")],
                "plot": ["sweep", "plot", str(path), "--out", str(tmp_path / "x.png")],
                "run": ["sweep", "run", "--store", str(path), *SMALL]}[command]
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and path.name in err[0], (name, err)
        assert _digest(path) == before, f"{name}: the refused store changed"
        assert _side_files(path) == [], f"{name}: {_side_files(path)} left beside the store"
        assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.png").exists()


def test_api_refuses_versions(made, tmp_path):
    variants = _variants(made, tmp_path)
    for path, needle in variants.values():
        with pytest.raises(StoreError, match=needle):
            Store(path, create=False)


def test_run_of_another_sweep_changes_nothing(made, tmp_path, capsys):
    store = _copy(made, tmp_path / "s.db")
    before = _digest(store)
    argv = ["sweep", "run", "--store", str(store), *SMALL, "--width", "8"]  # the last --width wins
    assert main(argv) == 2
    assert "another sweep" in capsys.readouterr().err
    assert _digest(store) == before and _side_files(store) == []


def test_run_that_fails_its_checks_creates_no_store(tmp_path, capsys):
    store = tmp_path / "new.db"
    assert main(["sweep", "run", "--store", str(store), *SMALL, "--batch-size", "1000000000"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert not store.exists() and list(tmp_path.iterdir()) == []


def test_status_reports_a_plan_only_once_training_starts(made, tmp_path, capsys):
    """A run refused after the store exists (here: the dataset cannot be loaded) leaves the plan as it was."""
    store = _copy(made, tmp_path / "s.db")
    with Store(store) as s:
        planned = s.get_meta("planned_keys")
    more = [*SMALL, "--depths", "2,3,4", "--data-dir", str(tmp_path / "no" / "where")]
    assert main(["sweep", "run", "--store", str(store), *more]) == 2
    capsys.readouterr()
    with Store(store) as s:
        assert s.get_meta("planned_keys") == planned


# ---- leases ----------------------------------------------------------------------------------------------


def test_claim_respects_live_leases_and_takes_over_dead_ones(made, tmp_path):
    store_path = _copy(made, tmp_path / "s.db")
    keys = ["k1", "k2", "k3"]
    with Store(store_path) as store:
        me = f"{os.uname().nodename}:{os.getpid()}:aa"
        assert store.claim(keys, "lease-a", me, 60) == keys
        assert store.claim(keys, "lease-b", me + "b", 60) == []  # held by a live process
        store.renew(["lease-a"], 60)
        assert store.active_leases() == {me: 3}
        store.release("lease-a")
        assert store.claim(keys[:1], "lease-b", me, 60) == ["k1"]
        # a runner on another host that stopped renewing: free once its lease time is over
        conn = store.conn
        with conn:
            conn.execute("INSERT OR REPLACE INTO leases VALUES ('k2', 'far', 'elsewhere:1:x', ?)", (time.time() + 60,))
            conn.execute("INSERT OR REPLACE INTO leases VALUES ('k3', 'gone', 'elsewhere:2:x', ?)", (time.time() - 1,))
        assert store.claim(["k2", "k3"], "lease-c", me, 60) == ["k3"]
        # a runner on this host whose process is gone: free at once
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
        with conn:
            conn.execute("INSERT OR REPLACE INTO leases VALUES ('k4', 'dead', ?, ?)",
                         (f"{os.uname().nodename}:{dead}:x", time.time() + 600))
        assert store.claim(["k4"], "lease-d", me, 60) == ["k4"]
        # a finished network is never claimed
        done = next(iter(store.done_keys()))
        assert store.claim([done], "lease-e", me, 60) == []


def _start(store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepprop", "sweep", "run", "--store", str(store), *extra],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


GRID = ["--dataset", "synthetic", "--n-train", "64", "--n-test", "16", "--width", "8", "--depths", "2,3",
        "--sigma-w2", "0.5,1,1.5,2", "--seed", "0,1", "--steps", "60", "--batch-size", "8", "--chunk-size", "1",
        "--quiet", "--json"]


def test_two_runners_share_the_work(tmp_path):
    """Two identical commands on one store: between them every network is trained exactly once."""
    store = tmp_path / "shared.db"
    runners = [_start(store, *GRID), _start(store, *GRID)]
    outs = []
    for p in runners:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(loads_strict(out))
    total = from_mapping({"dataset": "synthetic", "depths": "2,3", "sigma_w2": "0.5,1,1.5,2",
                          "seeds": "0,1"}).n_networks
    assert sum(o["trained"] for o in outs) == total  # none trained twice, none left out
    assert all(o["done"] == total for o in outs)
    with Store(store, create=False) as s:
        assert s.count() == total and s.active_leases() == {}
        assert s.conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


@pytest.mark.slow
def test_sigkilled_runners_lease_is_taken_over(tmp_path):
    """(The fast suite has the same takeover in test_sweep_concurrent.py: a victim killed mid-chunk.)"""
    store = tmp_path / "killed.db"
    slow = [*GRID, "--steps", "400"]
    victim = _start(store, *slow, "--chunk-size", "8")  # one lease held through a whole depth's training
    end = time.time() + 120
    try:
        while time.time() < end:  # wait until the victim holds a lease on a chunk
            if store.exists():
                try:
                    with sqlite3.connect(store, timeout=30) as c:
                        if c.execute("SELECT COUNT(*) FROM leases").fetchone()[0]:
                            break
                except sqlite3.OperationalError:
                    pass
            assert victim.poll() is None, victim.stderr.read()
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    with sqlite3.connect(store, timeout=30) as c:
        assert c.execute("SELECT COUNT(*) FROM leases").fetchone()[0] >= 1  # left behind by the kill
    c.close()
    t0 = time.time()
    survivor = _start(store, *slow, "--lease-seconds", "600")
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    # the victim's process is gone: its lease is free at once, not after the 600 s lease time
    assert time.time() - t0 < 200
    result = loads_strict(out)
    keys = {j.key for j in plan(from_mapping({"dataset": "synthetic", "n_train": 64, "n_test": 16, "width": 8,
                                              "depths": "2,3", "sigma_w2": "0.5,1,1.5,2", "seeds": "0,1",
                                              "steps": 400, "batch_size": 8, "chunk_size": 1}))}
    with Store(store, create=False) as s:
        assert s.done_keys() == keys and result["done"] == len(keys)
