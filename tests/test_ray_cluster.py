"""Ray as a distributed engine: a sweep sent to a separately started cluster survives a killed worker.

The cluster is started with ``ray start --head`` in its own process session (not ``ray.init()`` in the
test process), the sweep runs through ``deepprop sweep run --executor ray --ray-address HOST:PORT``, one
worker process is SIGKILLed while it trains, and the store must hold every network exactly once with the
results of a local run with the same seeds. Only the processes of this cluster are stopped at the end
(by process group and by their session directory), never other Ray instances on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from deepprop.sweep.config import from_mapping
from deepprop.sweep.runner import plan, run_sweep
from deepprop.sweep.store import Store

pytest.importorskip("ray", reason="ray is not installed (pip install 'deepprop[ray]')")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = dict(dataset="synthetic", n_train=300, n_test=50, width=32, depths="3,6", sigma_w2="0.8,1.6,2.4",
            seeds="0,1", steps=300, batch_size=16, lr=0.05, dtype="float64", chunk_size=1)
FLAGS = ["--dataset", "synthetic", "--n-train", "300", "--n-test", "50", "--width", "32", "--depths", "3,6",
         "--sigma-w2", "0.8,1.6,2.4", "--seed", "0,1", "--steps", "300", "--batch-size", "16", "--lr", "0.05",
         "--dtype", "float64", "--chunk-size", "1", "--quiet"]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cluster_pids(session: int, temp_dir: str) -> list[int]:
    """Processes of this cluster: in the head's session, or naming its private temp directory."""
    out = []
    for pid in _pids():
        try:
            if os.getsid(pid) == session or temp_dir in _cmdline(pid):
                out.append(pid)
        except OSError:
            continue
    return out


def _task_workers(session: int, temp_dir: str) -> list[int]:
    return [pid for pid in _cluster_pids(session, temp_dir) if _cmdline(pid).startswith("ray::_ray_task")]


def _counts(store: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(store, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_key) FROM runs").fetchone()
    except sqlite3.OperationalError:
        return (0, 0)


def _stop(head: subprocess.Popen, temp_dir: str) -> None:
    session = head.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _cluster_pids(session, temp_dir):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.time() + 15
        while _cluster_pids(session, temp_dir) and time.time() < deadline:
            time.sleep(0.3)
    head.wait(timeout=30)


@pytest.mark.slow
def test_sweep_on_a_separate_ray_cluster_survives_a_killed_worker(tmp_path):
    ray_bin = Path(sys.executable).with_name("ray")
    assert ray_bin.exists(), "the ray command comes with the ray extra"
    temp_dir = tempfile.mkdtemp(prefix="dpray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp_dir}", "--block"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    store = tmp_path / "ray.db"
    killed: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # the head accepts connections once its GCS is up
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                time.sleep(0.5)
        driver = subprocess.Popen(
            [sys.executable, "-m", "deepprop", "sweep", "run", "--store", str(store), *FLAGS, "--executor", "ray",
             "--ray-address", f"127.0.0.1:{port}"],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.time() + 240
        total = from_mapping(GRID).n_networks
        while driver.poll() is None and time.time() < deadline:
            workers = _task_workers(head.pid, temp_dir)
            if workers and not killed and _counts(store)[0] < total - 2:
                os.kill(workers[0], signal.SIGKILL)  # a worker dies mid-task: Ray retries the chunk
                killed.append(workers[0])
            time.sleep(0.1)
        out, err = driver.communicate(timeout=60)
        assert driver.returncode == 0, err[-2000:]
    finally:
        if "driver" in locals() and driver.poll() is None:
            driver.kill()
        _stop(head, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert killed, "no worker was caught running a task"
    assert not _cluster_pids(head.pid, temp_dir), "cluster processes left behind"

    cfg = from_mapping(GRID)
    assert _counts(store) == (total, total)  # every network exactly once
    local = tmp_path / "local.db"
    run_sweep(cfg, local, progress=False)
    a = Store(store, create=False).frame().set_index("run_key").sort_index()
    b = Store(local, create=False).frame().set_index("run_key").sort_index()
    assert list(a.index) == list(b.index) == sorted(j.key for j in plan(cfg))
    for col in ("train_accuracy", "test_accuracy", "final_loss"):
        # same chunking (one network per chunk), same seeds: equal up to thread-count rounding
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-9, equal_nan=True)
    assert (a["diverged"] == b["diverged"]).all()
