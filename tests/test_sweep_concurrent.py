"""Two `deepprop sweep run` processes on one store, SIGKILLed at random points: no row lost or duplicated.

Each network's result depends only on its run identity and every chunk is committed in one SQLite
transaction keyed by ``run_key`` (INSERT OR IGNORE), so two writers may train the same network but the
store keeps it once, and a kill loses at most the chunk in flight. The final store must equal an
uninterrupted single-process run (rtol 1e-9: the reference trains each depth as one batched chunk, the
killed runs one network per chunk, and batched float64 reductions may differ in the last bits).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepprop.sweep.config import from_mapping
from deepprop.sweep.runner import plan, run_sweep
from deepprop.sweep.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = dict(dataset="synthetic", n_train=200, n_test=50, width=16, depths="2,4", sigma_w2="0.8,1.6,2.4",
            seeds="0,1", steps=80, batch_size=16, lr=0.05, dtype="float64")
FLAGS = ["--dataset", "synthetic", "--n-train", "200", "--n-test", "50", "--width", "16", "--depths", "2,4",
         "--sigma-w2", "0.8,1.6,2.4", "--seed", "0,1", "--steps", "80", "--batch-size", "16", "--lr", "0.05",
         "--dtype", "float64", "--chunk-size", "1", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _start(store: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepprop", "sweep", "run", "--store", str(store), *FLAGS],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _counts(store: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(store, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_key) FROM runs").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return (0, 0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("ref") / "clean.db"
    run_sweep(from_mapping(GRID), store, progress=False)
    return store


def _assert_same_as(store: Path, reference: Path) -> None:
    total = from_mapping(GRID).n_networks
    assert _counts(store) == (total, total)  # none lost, none duplicated
    a = Store(store, create=False).frame().set_index("run_key").sort_index()
    b = Store(reference, create=False).frame().set_index("run_key").sort_index()
    assert list(a.index) == list(b.index) == sorted(j.key for j in plan(from_mapping(GRID)))
    for col in ("train_accuracy", "test_accuracy", "final_loss"):
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-9, equal_nan=True)
    assert (a["diverged"] == b["diverged"]).all()


def _kill_round(store: Path, rng: random.Random, last: int, *, deadline_s: float = 120.0) -> None:
    """Start two writers at once; SIGKILL each once at least a random number (0 .. last) of rows is committed."""
    total = from_mapping(GRID).n_networks
    procs = [_start(store), _start(store)]
    kill_at = [rng.randint(0, last), rng.randint(0, last)]
    end = time.time() + deadline_s
    try:
        while any(p.poll() is None for p in procs) and time.time() < end:
            rows = _counts(store)[0]
            for p, at in zip(procs, kill_at, strict=True):
                if p.poll() is None and rows >= at and at < total:
                    p.send_signal(signal.SIGKILL)
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    for p in procs:
        assert p.returncode in (0, -signal.SIGKILL), p.stderr.read()


def test_two_writers_one_killed_mid_run(tmp_path, reference):
    """Fast version: two writers start together; one is SIGKILLed once 3 rows are committed, the other
    finishes the sweep. The store then equals the uninterrupted run."""
    store = tmp_path / "shared.db"
    victim, survivor = _start(store), _start(store)
    end = time.time() + 120
    try:
        while _counts(store)[0] < 3 and time.time() < end:
            assert victim.poll() is None, "the sweep finished before it could be killed"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        assert survivor.wait(timeout=180) == 0, survivor.stderr.read()
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    _assert_same_as(store, reference)


@pytest.mark.slow
def test_ten_rounds_of_random_sigkills(tmp_path, reference):
    """Ten times, on a fresh store: two concurrent writers, each SIGKILLed after a random number of committed
    rows (0 .. total-1, drawn independently), then one run to finish. Every time the store must be the
    uninterrupted run's, whatever the kill points were."""
    rng = random.Random(20240601)
    total = from_mapping(GRID).n_networks
    for round_ in range(10):
        store = tmp_path / f"round{round_}.db"
        _kill_round(store, rng, total - 1)
        count, distinct = _counts(store)
        assert count == distinct  # never a duplicate, even mid-way
        finisher = _start(store)
        assert finisher.wait(timeout=300) == 0, finisher.stderr.read()
        _assert_same_as(store, reference)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_killed_runner_not_yet_reaped_holds_no_lease():
    # SIGKILLed but not waited for: the process is a zombie, os.kill(pid, 0) still succeeds, yet it holds nothing
    import socket

    from deepprop.sweep.store import owner_alive

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = f"{socket.gethostname()}:{p.pid}:0"
    try:
        assert owner_alive(owner) is True
        p.send_signal(signal.SIGKILL)
        deadline = time.time() + 10
        while owner_alive(owner) and time.time() < deadline:
            time.sleep(0.01)
        assert owner_alive(owner) is False
    finally:
        p.kill()
        p.wait()
    assert owner_alive(owner) is False
    assert owner_alive(f"another-host-{socket.gethostname()}:{p.pid}:0") is None
