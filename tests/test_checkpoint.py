"""The one resume primitive: units saved atomically, a killed writer leaves complete units only."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np

from deepprop.checkpoint import Checkpoint


def test_units_round_trip_and_signature_isolates(tmp_path):
    ck = Checkpoint(tmp_path / "c", {"a": 1})
    ck.save("x/1.5", {"mean": 0.25, "layers": [1, 2]})
    ck.save("grid", {"q": np.arange(6.0).reshape(2, 3)})
    again = Checkpoint(tmp_path / "c", {"a": 1})
    assert set(again.keys()) == {"x/1.5", "grid"}
    assert again["x/1.5"] == {"mean": 0.25, "layers": [1, 2]}
    np.testing.assert_array_equal(again["grid"]["q"], np.arange(6.0).reshape(2, 3))
    other = Checkpoint(tmp_path / "c", {"a": 2})  # another computation: sees nothing, then owns the folder
    assert "x/1.5" not in other and list(other.keys()) == []
    other.save("y", 1)
    assert list(Checkpoint(tmp_path / "c", {"a": 2}).keys()) == ["y"]
    assert list(Checkpoint(tmp_path / "c", {"a": 1}).keys()) == []
    other.discard("y")
    assert "y" not in Checkpoint(tmp_path / "c", {"a": 2})


def test_memory_checkpoint_without_folder():
    ck = Checkpoint(None, {})
    ck.save("k", [1])
    assert "k" in ck and ck["k"] == [1]


def test_sigkill_leaves_only_complete_units(tmp_path):
    # A writer saving large units in a loop is killed at an arbitrary moment; every unit left on disk
    # must load completely, and they must be a prefix 0..n-1 of what was being written.
    script = textwrap.dedent(f"""
        import numpy as np, sys
        from deepprop.checkpoint import Checkpoint
        ck = Checkpoint({str(tmp_path / 'k')!r}, {{'s': 1}})
        for i in range(10000):
            ck.save(str(i), {{'v': np.full(200_000, float(i))}})
            if i == 3:
                print('ready', flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ck = Checkpoint(tmp_path / "k", {"s": 1})
    keys = sorted(int(k) for k in ck.keys())
    assert keys == list(range(len(keys))) and len(keys) >= 4
    for k in keys:
        assert np.all(ck[str(k)]["v"] == float(k))
