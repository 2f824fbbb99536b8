"""Kill-and-resume: a sweep SIGKILLed part-way and run again equals an uninterrupted run, no duplicates."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from deepprop.sweep.config import from_mapping
from deepprop.sweep.runner import plan, run_sweep
from deepprop.sweep.store import Store

GRID = dict(
    dataset="synthetic",
    n_train=300,
    n_test=100,
    width=24,
    depths="2,5,8",
    sigma_w2="0.8,1.6,2.4,3.2",
    seeds="0,1",
    steps=150,
    batch_size=16,
    lr=0.05,
    dtype="float64",
    chunk_size=1,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rows(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_key) FROM runs").fetchone()


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    killed = tmp_path / "killed.db"
    script = textwrap.dedent(f"""
        import torch
        torch.set_num_threads(1)
        from deepprop.sweep.config import from_mapping
        from deepprop.sweep.runner import run_sweep
        run_sweep(from_mapping({GRID!r}), {str(killed)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    cfg = from_mapping(GRID)
    total = cfg.n_networks
    deadline = time.time() + 90
    n_before = 0
    try:
        while time.time() < deadline:
            if killed.exists():
                try:
                    n_before = _rows(killed)[0]
                except sqlite3.OperationalError:
                    n_before = 0
                if n_before >= 3:
                    break
            assert proc.poll() is None, "sweep finished before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    n_killed = _rows(killed)[0]
    assert 3 <= n_killed < total  # killed part-way: some, not all, results were committed

    resumed = run_sweep(cfg, killed, progress=False)
    assert resumed.already_done == n_killed and resumed.trained == total - n_killed
    assert _rows(killed) == (total, total)
    again = run_sweep(cfg, killed, progress=False)  # a third run has nothing left to do
    assert again.trained == 0 and _rows(killed) == (total, total)

    # the uninterrupted reference trains each depth as ONE chunk: results must not depend on chunking
    clean = tmp_path / "clean.db"
    run_sweep(cfg.replace(chunk_size=None), clean, progress=False)
    a = Store(killed).frame().set_index("run_key").sort_index()
    b = Store(clean).frame().set_index("run_key").sort_index()
    assert list(a.index) == list(b.index) == sorted(j.key for j in plan(cfg))
    for col in ("train_accuracy", "test_accuracy", "final_loss"):
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-9, equal_nan=True)
    assert (a["diverged"] == b["diverged"]).all()
    # and the runs actually learned something (4 classes: chance 0.25)
    assert a["train_accuracy"].max() > 0.6
