"""The new-user contract: every bad input, on every command and the Python API, is one line and exit 2.

Each CLI case runs ``deepprop.cli.main.main(argv)`` in-process and checks: exit code 2, nothing on stdout,
exactly one line on stderr that names the flag or file (``needle``), no traceback, no output file
created, and no store or input file modified (their bytes are hashed before and after). A few cases run
through a subprocess to prove that the installed entry point prints no traceback either. The Python API
cases check the exception class (ParameterError / DatasetError / StoreError, all DeeppropError) and that
the CLI prints the same message.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import deepprop
from deepprop import DatasetError, DeeppropError, ParameterError, StoreError
from deepprop.cli.main import main

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of --device cuda without CUDA")
NOT_ROOT = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                              reason="root may write into read-only directories")

POINT = ["point", "--activation", "tanh", "--sigma-w2", "1.5", "--sigma-b2", "0.05"]
PHASE = ["phase", "--sigma-w2", "1:4:3", "--sigma-b2", "0:0.1:2"]
SIM = ["simulate", "forward", "--sigma-w2", "1.5", "--sigma-b2", "0.05", "--width", "8", "--depth", "3"]
GRAD = ["simulate", "gradients", "--sigma-w2", "1.5", "--sigma-b2", "0.05", "--width", "8", "--depth", "6",
        "--dataset", "synthetic", "--batch-size", "8"]
JAC = ["simulate", "jacobian", "--sigma-w2", "1.5", "--sigma-b2", "0.05", "--width", "8", "--depth", "3"]
SMALL = ["--dataset", "synthetic", "--n-train", "32", "--n-test", "16", "--width", "4", "--depths", "2",
         "--sigma-w2", "1", "--steps", "2", "--batch-size", "8"]


def sweep(env, *extra: str) -> list[str]:
    return ["sweep", "run", "--store", str(env.new_store), *SMALL, *extra]


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def _idx_bytes(array: np.ndarray, magic_type: int = 0x08) -> bytes:
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(directory: Path, *, bad_magic: bool = False, short: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", 20), ("t10k", 10)):
        images = _idx_bytes(rng.integers(0, 255, (n, 4, 4)))
        labels = _idx_bytes(rng.integers(0, 10, n))
        if bad_magic and stem == "train":
            images = b"\x12\x34" + images[2:]
        if short and stem == "train":
            images = images[:-7]
        (directory / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
        (directory / f"{stem}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return directory


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """A genuine deepprop store of the SMALL sweep (trained once for the module)."""
    path = tmp_path_factory.mktemp("store") / "sweep.db"
    assert main(["sweep", "run", "--store", str(path), "--quiet", *SMALL]) == 0
    return path


def _build_files(tmp_path: Path, real_store: Path) -> SimpleNamespace:
    """Every file and folder the cases use, under ``tmp_path`` (built once, copied for each case)."""
    e = SimpleNamespace(tmp=tmp_path)
    e.store = tmp_path / "sweep.db"
    e.store.write_bytes(real_store.read_bytes())
    e.new_store = tmp_path / "new.db"
    e.not_sqlite = tmp_path / "notes.db"
    e.not_sqlite.write_text("these are my notes, not a database\n")
    e.truncated = tmp_path / "truncated.db"
    e.truncated.write_bytes(real_store.read_bytes()[:700])
    e.foreign = tmp_path / "foreign.db"
    import sqlite3

    with sqlite3.connect(e.foreign) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    conn.close()
    e.empty_db = tmp_path / "empty.db"
    e.empty_db.write_bytes(b"")
    e.toml_bad = tmp_path / "bad.toml"
    e.toml_bad.write_text("width = [1, 2\n")
    e.toml_unknown = tmp_path / "unknown.toml"
    e.toml_unknown.write_text('dataset = "synthetic"\nwidht = 8\n')
    e.toml_badvalue = tmp_path / "badvalue.toml"
    e.toml_badvalue.write_text('dataset = "synthetic"\nkeep_rate = 0\n')
    e.empty_dir = tmp_path / "empty"
    e.empty_dir.mkdir()
    e.a_file = tmp_path / "plain.txt"
    e.a_file.write_text("x")
    e.readonly = tmp_path / "readonly"
    e.readonly.mkdir()
    e.mnist_magic = _write_mnist(tmp_path / "mnist_magic", bad_magic=True)
    e.mnist_short = _write_mnist(tmp_path / "mnist_short", short=True)
    cifar = tmp_path / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    ok = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    (cifar / "data_batch_1").write_bytes(pickle.dumps(ok, protocol=2))
    (cifar / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    e.cifar = cifar.parent
    e.model_raises = tmp_path / "model_raises.py"
    e.model_raises.write_text("raise RuntimeError('broken model file')\n")
    e.model_ok = tmp_path / "model_ok.py"
    e.model_ok.write_text("from torch import nn\nclass Net(nn.Sequential):\n    def __init__(self):\n"
                          "        super().__init__(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))\n")
    _more_files(e, real_store)
    return e


@pytest.fixture(scope="module")
def template(tmp_path_factory, real_store) -> SimpleNamespace:
    return _build_files(tmp_path_factory.mktemp("template"), real_store)


@pytest.fixture
def env(tmp_path, template, monkeypatch, junk_server) -> SimpleNamespace:
    """Paths every case may use (a fresh copy of the template for each case); the network is off (downloads
    fail at once, as offline)."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test runs offline)")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    shutil.copytree(template.tmp, tmp_path, dirs_exist_ok=True)
    e = SimpleNamespace(**{k: tmp_path / v.relative_to(template.tmp) if isinstance(v, Path) else v
                           for k, v in vars(template).items()})
    e.tmp = tmp_path
    e.readonly.chmod(0o500)
    e.closed_port = _unused_port()
    e.junk_port = junk_server
    monkeypatch.chdir(tmp_path)
    yield e
    e.readonly.chmod(0o700)


MODELS = {
    "model_ctor_raises": "from torch import nn\nclass Net(nn.Module):\n    def __init__(self):\n"
                         "        raise ValueError('no GPU here')\n",
    "model_exit_import": "import sys\nsys.exit(0)\n",
    "model_exit_ctor": "import sys\nfrom torch import nn\nclass Net(nn.Module):\n    def __init__(self):\n"
                       "        sys.exit(3)\n",
    "model_meta": "import torch\nfrom torch import nn\nclass Net(nn.Sequential):\n    def __init__(self):\n"
                  "        with torch.device('meta'):\n"
                  "            super().__init__(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))\n",
    "model_nan": "import torch\nfrom torch import nn\nclass Net(nn.Sequential):\n    def __init__(self):\n"
                 "        super().__init__(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))\n"
                 "        with torch.no_grad():\n            self[0].weight.fill_(float('nan'))\n",
    "model_not_class": "Net = 42\n",
    "model_not_module": "class Net:\n    pass\n",
    "model_no_linear": "from torch import nn\nclass Net(nn.Sequential):\n    def __init__(self):\n"
                       "        super().__init__(nn.Tanh())\n",
}


def _more_files(e, real_store: Path) -> None:
    """Stores of other versions and damaged ones, checkpoints, models and folders for the cases below."""
    import sqlite3

    from deepprop.sweep.store import STORE_VERSION

    def variant(name: str, sql: str) -> Path:
        path = e.tmp / name
        path.write_bytes(real_store.read_bytes())
        conn = sqlite3.connect(path)
        conn.executescript(sql)
        conn.close()
        return path

    e.older = variant("older.db", f"PRAGMA user_version = {STORE_VERSION - 1};")
    e.newer = variant("newer.db", f"PRAGMA user_version = {STORE_VERSION + 1};")
    e.bad_meta = variant("badmeta.db", "UPDATE meta SET value = '{oops' WHERE key = 'config';")
    e.no_leases = variant("noleases.db", "DROP TABLE leases;")
    e.legacy = e.tmp / "legacy.db"
    with sqlite3.connect(e.legacy) as conn:
        conn.execute("CREATE TABLE runs (run_key TEXT PRIMARY KEY)")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.close()
    e.a_dir_db = e.tmp / "dir.db"
    e.a_dir_db.mkdir()
    e.ckpt_corrupt = e.tmp / "corrupt.json"
    e.ckpt_corrupt.write_text('{"deepprop_checkpoint": 1, "units": {')
    e.ckpt_foreign = e.tmp / "notes.json"
    e.ckpt_foreign.write_text('{"my": "notes"}')
    e.ckpt_dir = e.tmp / "ckpt.json"
    e.ckpt_dir.mkdir()
    e.foreign_out = e.tmp / "mine"
    e.foreign_out.mkdir()
    (e.foreign_out / "index.html").write_text("<p>my own page</p>")
    e.toml_binary = e.tmp / "binary.toml"
    e.toml_binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    e.toml_ok = e.tmp / "ok.toml"
    e.toml_ok.write_text('dataset = "synthetic"\nwidth = 4\ndepths = [2]\nsigma_w2 = [1.0]\nsteps = 2\n')
    for name, text in MODELS.items():
        path = e.tmp / f"{name}.py"
        path.write_text(text)
        setattr(e, name, path)


@pytest.fixture(scope="module")
def junk_server():
    """A TCP port that answers like an SSH server, not like Ray (for --ray-address)."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    srv.close()


# (id, argv from env, needle expected in the one error line)
CASES = [
    # --- point: numbers ---------------------------------------------------------------------------------
    ("point-negative-sw2", lambda e: ["point", "--sigma-w2", "-1", "--sigma-b2", "0"], "--sigma-w2"),
    ("point-nan-sw2", lambda e: ["point", "--sigma-w2", "nan", "--sigma-b2", "0"], "--sigma-w2"),
    ("point-inf-sw2", lambda e: ["point", "--sigma-w2", "inf", "--sigma-b2", "0"], "--sigma-w2"),
    ("point-huge-sw2", lambda e: ["point", "--sigma-w2", "1e400", "--sigma-b2", "0"], "--sigma-w2"),
    ("point-text-sw2", lambda e: ["point", "--sigma-w2", "abc", "--sigma-b2", "0"], "--sigma-w2"),
    ("point-negative-sb2", lambda e: ["point", "--sigma-w2", "1", "--sigma-b2", "-0.1"], "--sigma-b2"),
    ("point-keep-rate-0", lambda e: [*POINT, "--keep-rate", "0"], "--keep-rate"),
    ("point-keep-rate-above-1", lambda e: [*POINT, "--keep-rate", "1.5"], "--keep-rate"),
    ("point-unknown-activation", lambda e: ["point", "--activation", "tanhh", "--sigma-w2", "1", "--sigma-b2", "0"],
     "--activation"),
    ("point-negative-noise-mult", lambda e: [*POINT, "--noise-mult", "-1"], "--noise-mult"),
    ("point-nan-noise-add", lambda e: [*POINT, "--noise-add", "nan"], "--noise-add"),
    ("point-zero-depth-multiple", lambda e: [*POINT, "--depth-multiple", "0"], "--depth-multiple"),
    ("point-zero-q0", lambda e: [*POINT, "--q0", "0"], "--q0"),
    ("point-missing-sb2", lambda e: ["point", "--sigma-w2", "1"], "--sigma-b2"),
    # --- critical ---------------------------------------------------------------------------------------
    ("critical-no-sb2", lambda e: ["critical"], "--sigma-b2"),
    ("critical-negative-sb2", lambda e: ["critical", "--sigma-b2", "-1"], "--sigma-b2"),
    ("critical-unknown-activation", lambda e: ["critical", "--activation", "nope", "--sigma-b2", "0.05"],
     "--activation"),
    ("critical-keep-rate-2", lambda e: ["critical", "--sigma-b2", "0.05", "--keep-rate", "2"], "--keep-rate"),
    # --- phase: ranges, outputs, memory, device -----------------------------------------------------------
    ("phase-malformed-range", lambda e: ["phase", "--sigma-w2", "1:4", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("phase-empty-range", lambda e: ["phase", "--sigma-w2", "1:4:0", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("phase-empty-text", lambda e: ["phase", "--sigma-w2", "", "--sigma-b2", "0", "--out", "g.csv"], "--sigma-w2"),
    ("phase-text-count", lambda e: ["phase", "--sigma-w2", "1:4:abc", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("phase-inf-range", lambda e: ["phase", "--sigma-w2", "1:inf:3", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("phase-negative-sb2", lambda e: ["phase", "--sigma-w2", "1:4:3", "--sigma-b2", "-1:0.3:3", "--out", "g.csv"],
     "--sigma-b2"),
    ("phase-bad-suffix", lambda e: [*PHASE, "--out", "g.txt"], "--out"),
    ("phase-missing-dir", lambda e: [*PHASE, "--out", str(e.tmp / "no" / "such" / "g.csv")], "does not exist"),
    ("phase-out-under-a-file", lambda e: [*PHASE, "--out", str(e.a_file / "g.csv")], "--out"),
    ("phase-out-is-dir", lambda e: [*PHASE, "--out", str(e.empty_dir)], "--out"),
    pytest.param("phase-readonly-dir", lambda e: [*PHASE, "--out", str(e.readonly / "g.csv")], "not writable",
                 marks=NOT_ROOT),
    ("phase-huge-count", lambda e: ["phase", "--sigma-w2", "1:4:100000000000", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("phase-grid-beyond-memory",
     lambda e: ["phase", "--sigma-w2", "1:4:9000000", "--sigma-b2", "0:1:9000000", "--out", "g.csv"], "GiB"),
    ("phase-zero-block-points", lambda e: [*PHASE, "--out", "g.csv", "--block-points", "0"], "--block-points"),
    pytest.param("phase-cuda-without-cuda", lambda e: [*PHASE, "--out", "g.csv", "--device", "cuda"], "--device",
                 marks=NO_CUDA),
    # --- figures ----------------------------------------------------------------------------------------
    ("figures-missing-parent", lambda e: ["figures", "--out", str(e.tmp / "a" / "b" / "figs"), "--quick"],
     "does not exist"),
    ("figures-out-is-file", lambda e: ["figures", "--out", str(e.a_file), "--quick"], "--out"),
    pytest.param("figures-cuda-without-cuda", lambda e: ["figures", "--out", "f", "--simulation", "--device", "cuda"],
                 "--device", marks=NO_CUDA),
    # --- advise / diagnose ------------------------------------------------------------------------------
    ("advise-unknown-activation", lambda e: ["advise", "--activation", "nope"], "--activation"),
    ("advise-keep-rate-0", lambda e: ["advise", "--activation", "relu", "--keep-rate", "0"], "--keep-rate"),
    ("advise-keep-rate-above-1", lambda e: ["advise", "--activation", "relu", "--keep-rate", "1.5"], "--keep-rate"),
    ("advise-negative-sb2", lambda e: ["advise", "--activation", "tanh", "--sigma-b2", "-1"], "--sigma-b2"),
    ("advise-nan-sb2", lambda e: ["advise", "--activation", "tanh", "--sigma-b2", "nan"], "--sigma-b2"),
    ("advise-zero-depth", lambda e: ["advise", "--activation", "tanh", "--depth", "0"], "--depth"),
    ("advise-text-depth", lambda e: ["advise", "--activation", "tanh", "--depth", "ten"], "--depth"),
    ("advise-negative-noise", lambda e: ["advise", "--activation", "tanh", "--noise-mult", "-1"], "--noise-mult"),
    ("diagnose-missing-file", lambda e: ["diagnose", str(e.tmp / "missing.py") + ":Net"], "model"),
    ("diagnose-no-class-part", lambda e: ["diagnose", "nocolon"], "model"),
    ("diagnose-unknown-class", lambda e: ["diagnose", f"{e.model_ok}:Nope"], "model"),
    ("diagnose-file-raises", lambda e: ["diagnose", f"{e.model_raises}:Net"], "broken model file"),
    ("diagnose-keep-rate-0", lambda e: ["diagnose", f"{e.model_ok}:Net", "--keep-rate", "0"], "--keep-rate"),
    # --- sweep run: flags ---------------------------------------------------------------------------------
    ("sweep-zero-depth", lambda e: sweep(e, "--depths", "0"), "--depths"),
    ("sweep-empty-depths", lambda e: sweep(e, "--depths", "10:1:0"), "--depths"),
    ("sweep-huge-depths", lambda e: sweep(e, "--depths", "1:100:100000000000"), "--depths"),
    ("sweep-beyond-memory", lambda e: sweep(e, "--depths", "1:1000:1000", "--sigma-w2", "1:4:2000", "--seed",
                                             "0:1999:2000"), "GiB"),
    ("sweep-negative-sw2", lambda e: sweep(e, "--sigma-w2", "-1"), "--sigma-w2"),
    ("sweep-nan-sw2", lambda e: sweep(e, "--sigma-w2", "nan"), "--sigma-w2"),
    ("sweep-keep-rate-0", lambda e: sweep(e, "--keep-rate", "0"), "--keep-rate"),
    ("sweep-keep-rate-above-1", lambda e: sweep(e, "--keep-rate", "1.5"), "--keep-rate"),
    ("sweep-zero-width", lambda e: sweep(e, "--width", "0"), "--width"),
    ("sweep-text-width", lambda e: sweep(e, "--width", "abc"), "--width"),
    ("sweep-negative-steps", lambda e: sweep(e, "--steps", "-5"), "--steps"),
    ("sweep-negative-lr", lambda e: sweep(e, "--lr", "-1"), "--lr"),
    ("sweep-text-lr", lambda e: sweep(e, "--lr", "fast"), "--lr"),
    ("sweep-inf-sb2", lambda e: sweep(e, "--sigma-b2", "inf"), "--sigma-b2"),
    ("sweep-unknown-activation", lambda e: sweep(e, "--activation", "nope"), "--activation"),
    ("sweep-unknown-dataset", lambda e: sweep(e, "--dataset", "imagenet"), "--dataset"),
    ("sweep-unknown-optimizer", lambda e: sweep(e, "--optimizer", "adam"), "--optimizer"),
    ("sweep-unknown-executor", lambda e: sweep(e, "--executor", "dask"), "--executor"),
    ("sweep-negative-seed", lambda e: sweep(e, "--seed", "-1"), "--seed"),
    ("sweep-zero-n-train", lambda e: sweep(e, "--n-train", "0"), "--n-train"),
    ("sweep-zero-chunk", lambda e: sweep(e, "--chunk-size", "0"), "--chunk-size"),
    ("sweep-full-without-preset", lambda e: sweep(e, "--full"), "--full"),
    ("sweep-unknown-preset", lambda e: sweep(e, "--preset", "fig9"), "--preset"),
    pytest.param("sweep-cuda-without-cuda", lambda e: sweep(e, "--device", "cuda"), "--device", marks=NO_CUDA),
    # --- sweep run: files ---------------------------------------------------------------------------------
    ("sweep-malformed-toml", lambda e: ["sweep", "run", str(e.toml_bad), "--store", str(e.new_store)], "bad.toml"),
    ("sweep-unknown-toml-key", lambda e: ["sweep", "run", str(e.toml_unknown), "--store", str(e.new_store)],
     "widht"),
    ("sweep-bad-toml-value", lambda e: ["sweep", "run", str(e.toml_badvalue), "--store", str(e.new_store)],
     "badvalue.toml"),
    ("sweep-missing-toml", lambda e: ["sweep", "run", str(e.tmp / "nope.toml"), "--store", str(e.new_store)],
     "config"),
    ("sweep-store-missing-dir", lambda e: ["sweep", "run", "--store", str(e.tmp / "no" / "s.db"), *SMALL],
     "does not exist"),
    ("sweep-store-not-sqlite", lambda e: ["sweep", "run", "--store", str(e.not_sqlite), *SMALL], "notes.db"),
    ("sweep-store-foreign-sqlite", lambda e: ["sweep", "run", "--store", str(e.foreign), *SMALL], "foreign.db"),
    ("sweep-store-other-config", lambda e: ["sweep", "run", "--store", str(e.store), *SMALL[:-8], "--width", "8",
                                            *SMALL[-6:]], "another sweep"),
    ("sweep-mnist-offline-empty", lambda e: sweep(e, "--dataset", "mnist", "--data-dir", str(e.empty_dir)),
     "offline"),
    ("sweep-idx-bad-magic", lambda e: sweep(e, "--dataset", "mnist", "--data-dir", str(e.mnist_magic)),
     "magic"),
    ("sweep-idx-bad-length", lambda e: sweep(e, "--dataset", "mnist", "--data-dir", str(e.mnist_short)),
     "header says"),
    ("sweep-cifar-pickle-runs-code", lambda e: sweep(e, "--dataset", "cifar10", "--data-dir", str(e.cifar)),
     "refused to load global"),
    ("sweep-ray-unreachable", lambda e: sweep(e, "--executor", "ray", "--ray-address", f"127.0.0.1:{e.closed_port}"),
     "--ray-address"),
    ("sweep-ray-malformed-address", lambda e: sweep(e, "--executor", "ray", "--ray-address", "nowhere"),
     "--ray-address"),
    # --- sweep status / fit / plot / export -------------------------------------------------------------
    ("status-missing-store", lambda e: ["sweep", "status", str(e.tmp / "nope.db")], "no such store"),
    ("status-not-sqlite", lambda e: ["sweep", "status", str(e.not_sqlite)], "notes.db"),
    ("status-truncated", lambda e: ["sweep", "status", str(e.truncated)], "truncated.db"),
    ("status-foreign-sqlite", lambda e: ["sweep", "status", str(e.foreign)], "foreign.db"),
    ("status-empty-file", lambda e: ["sweep", "status", str(e.empty_db)], "empty.db"),
    ("status-json-not-sqlite", lambda e: ["sweep", "status", str(e.not_sqlite), "--json"], "notes.db"),
    ("fit-not-sqlite", lambda e: ["sweep", "fit", str(e.not_sqlite)], "notes.db"),
    ("fit-nan-threshold", lambda e: ["sweep", "fit", str(e.store), "--threshold", "nan"], "--threshold"),
    ("fit-threshold-above-1", lambda e: ["sweep", "fit", str(e.store), "--threshold", "2"], "--threshold"),
    ("plot-missing-dir", lambda e: ["sweep", "plot", str(e.store), "--out", str(e.tmp / "no" / "h.png")],
     "does not exist"),
    ("export-bad-suffix", lambda e: ["sweep", "export", str(e.store), "--out", "rows.txt"], "--out"),
    ("export-missing-dir", lambda e: ["sweep", "export", str(e.store), "--out", str(e.tmp / "no" / "r.csv")],
     "does not exist"),
    # --- simulate ---------------------------------------------------------------------------------------
    ("simulate-zero-width", lambda e: [*SIM, "--width", "0"], "--width"),
    ("simulate-zero-depth", lambda e: [*SIM, "--depth", "0"], "--depth"),
    ("simulate-keep-rate-0", lambda e: [*SIM, "--keep-rate", "0"], "--keep-rate"),
    ("simulate-negative-sw2", lambda e: ["simulate", "forward", "--sigma-w2", "-1", "--sigma-b2", "0.05"],
     "--sigma-w2"),
    ("simulate-unknown-activation", lambda e: [*SIM, "--activation", "nope"], "--activation"),
    ("simulate-gradients-mnist-offline",
     lambda e: ["simulate", "gradients", "--sigma-w2", "1.5", "--sigma-b2", "0.05", "--dataset", "mnist",
                "--data-dir", str(e.empty_dir), "--depth", "3", "--width", "8"], "offline"),
    pytest.param("simulate-cuda-without-cuda", lambda e: [*SIM, "--device", "cuda"], "--device", marks=NO_CUDA),
    # ===== issue 17: everything a new user found, plus its neighbours ===========================================
    # --- parsing: ranges, lists, integer grids, fit windows, conflicts ---------------------------------------
    ("sweep-depths-fractional-range", lambda e: sweep(e, "--depths", "2:5:3"), "--depths"),
    ("sweep-sw2-empty-item", lambda e: sweep(e, "--sigma-w2", "2,,3"), "--sigma-w2"),
    ("sweep-sw2-trailing-comma", lambda e: sweep(e, "--sigma-w2", "2,"), "--sigma-w2"),
    ("sweep-keep-rate-empty-item", lambda e: sweep(e, "--keep-rate", "0.9,,0.8"), "--keep-rate"),
    ("sweep-seed-fraction", lambda e: sweep(e, "--seed", "1.5"), "--seed"),
    ("sweep-seed-fractional-range", lambda e: sweep(e, "--seed", "0:3:3"), "--seed"),
    ("sweep-depths-empty-text", lambda e: sweep(e, "--depths", ""), "--depths"),
    ("sweep-depths-text-count", lambda e: sweep(e, "--depths", "2:10:many"), "--depths"),
    ("phase-sw2-empty-item", lambda e: ["phase", "--sigma-w2", "2,,3", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("phase-sb2-trailing-comma", lambda e: ["phase", "--sigma-w2", "2", "--sigma-b2", "0,", "--out", "g.csv"],
     "--sigma-b2"),
    ("phase-fractional-count", lambda e: ["phase", "--sigma-w2", "1:4:2.5", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("phase-leading-comma", lambda e: ["phase", "--sigma-w2", ",2", "--sigma-b2", "0", "--out", "g.csv"],
     "--sigma-w2"),
    ("gradients-negative-fit-skip", lambda e: [*GRAD, "--fit-skip", "-1"], "--fit-skip"),
    ("gradients-fit-skip-beyond-depth", lambda e: [*GRAD, "--fit-skip", "5"], "--fit-skip"),
    ("gradients-fit-skip-huge", lambda e: [*GRAD, "--fit-skip", "100000"], "--fit-skip"),
    ("sweep-config-and-preset", lambda e: ["sweep", "run", str(e.toml_ok), "--preset", "fig5a", "--store",
                                           str(e.new_store)], "--preset"),
    ("point-activation-names-command", lambda e: ["point", "--activation", "tanhh", "--sigma-w2", "1", "--sigma-b2",
                                                  "0"], "deepprop point: error: argument --activation"),
    ("simulate-activation-names-command", lambda e: [*SIM, "--activation", "nope"],
     "deepprop simulate forward: error: argument --activation"),
    ("sweep-error-names-command", lambda e: sweep(e, "--width", "0"), "deepprop sweep run: error:"),
    # --- resources: checked before anything is allocated or written ------------------------------------------
    ("sweep-batch-beyond-memory", lambda e: sweep(e, "--batch-size", "100000000"), "--batch-size"),
    ("sweep-width-beyond-memory", lambda e: sweep(e, "--width", "10000000"), "--width"),
    ("sweep-n-train-beyond-memory", lambda e: sweep(e, "--n-train", "100000000000"), "--n-train"),
    ("forward-width-beyond-memory", lambda e: [*SIM, "--width", "10000000"], "--width"),
    ("forward-depth-beyond-memory", lambda e: [*SIM, "--depth", "1000000000000"], "--depth"),
    ("forward-networks-beyond-memory", lambda e: [*SIM, "--width", "3000", "--networks", "100000"], "--width"),
    ("gradients-width-beyond-memory", lambda e: [*GRAD, "--width", "1000000"], "--width"),
    ("gradients-batch-beyond-memory", lambda e: [*GRAD, "--width", "1000", "--batch-size", "1000000000"],
     "--batch-size"),
    ("jacobian-width-beyond-memory", lambda e: [*JAC, "--width", "1000000"], "--width"),
    ("sweep-seed-beyond-64-bits", lambda e: sweep(e, "--seed", "99999999999999999999999"), "--seed"),
    ("sweep-seed-list-beyond-64-bits", lambda e: sweep(e, "--seed", "0,9223372036854775808"), "--seed"),
    ("forward-seed-beyond-64-bits", lambda e: [*SIM, "--seed", "99999999999999999999999"], "--seed"),
    ("forward-negative-seed", lambda e: [*SIM, "--seed", "-1"], "--seed"),
    ("gradients-seed-beyond-64-bits", lambda e: [*GRAD, "--seed", "18446744073709551616"], "--seed"),
    ("sweep-steps-beyond-64-bits", lambda e: sweep(e, "--steps", "99999999999999999999"), "--steps"),
    ("sweep-chunk-beyond-64-bits", lambda e: sweep(e, "--chunk-size", "99999999999999999999"), "--chunk-size"),
    ("phase-block-points-too-large", lambda e: [*PHASE, "--out", "g.csv", "--block-points", "99999999999"],
     "--block-points"),
    ("advise-depth-beyond-64-bits", lambda e: ["advise", "--activation", "tanh", "--depth", "1" + "0" * 25],
     "--depth"),
    ("forward-zero-networks", lambda e: [*SIM, "--networks", "0"], "--networks"),
    ("forward-zero-pairs", lambda e: [*SIM, "--pairs", "0"], "--pairs"),
    ("gradients-batch-of-one", lambda e: [*GRAD, "--batch-size", "1"], "--batch-size"),
    ("gradients-zero-chunk", lambda e: [*GRAD, "--chunk", "0"], "--chunk"),
    ("sweep-zero-batch", lambda e: sweep(e, "--batch-size", "0"), "--batch-size"),
    ("sweep-zero-eval-train", lambda e: sweep(e, "--eval-train", "0"), "--eval-train"),
    ("sweep-zero-n-test", lambda e: sweep(e, "--n-test", "0"), "--n-test"),
    ("sweep-zero-lease", lambda e: sweep(e, "--lease-seconds", "0"), "--lease-seconds"),
    # --- stores: versions, damage, paths ----------------------------------------------------------------------
    ("status-older-store", lambda e: ["sweep", "status", str(e.older)], "older"),
    ("status-newer-store", lambda e: ["sweep", "status", str(e.newer)], "newer"),
    ("status-legacy-store", lambda e: ["sweep", "status", str(e.legacy)], "older"),
    ("status-corrupt-meta", lambda e: ["sweep", "status", str(e.bad_meta)], "badmeta.db"),
    ("status-missing-table", lambda e: ["sweep", "status", str(e.no_leases)], "noleases.db"),
    ("status-directory", lambda e: ["sweep", "status", str(e.a_dir_db)], "store"),
    ("status-empty-path", lambda e: ["sweep", "status", ""], "store"),
    ("fit-corrupt-meta", lambda e: ["sweep", "fit", str(e.bad_meta)], "not JSON"),
    ("fit-older-store", lambda e: ["sweep", "fit", str(e.older)], "older"),
    ("plot-newer-store", lambda e: ["sweep", "plot", str(e.newer), "--out", "h.png"], "newer"),
    ("export-corrupt-meta", lambda e: ["sweep", "export", str(e.bad_meta), "--out", "r.csv"], "badmeta.db"),
    ("export-legacy-store", lambda e: ["sweep", "export", str(e.legacy), "--out", "r.csv"], "older"),
    ("run-corrupt-meta", lambda e: ["sweep", "run", "--store", str(e.bad_meta), *SMALL], "not JSON"),
    ("run-older-store", lambda e: ["sweep", "run", "--store", str(e.older), *SMALL], "older"),
    ("run-newer-store", lambda e: ["sweep", "run", "--store", str(e.newer), *SMALL], "newer"),
    ("run-store-is-directory", lambda e: ["sweep", "run", "--store", str(e.a_dir_db), *SMALL], "--store"),
    ("run-empty-store-path", lambda e: ["sweep", "run", "--store", "", *SMALL], "--store"),
    ("run-binary-toml", lambda e: ["sweep", "run", str(e.toml_binary), "--store", str(e.new_store)], "binary.toml"),
    ("run-config-is-directory", lambda e: ["sweep", "run", str(e.empty_dir), "--store", str(e.new_store)],
     "config"),
    ("run-depths-beyond-memory-on-store", lambda e: ["sweep", "run", "--store", str(e.store), *SMALL, "--depths",
                                                      "1:100000:100000", "--sigma-w2", "1:4:1000", "--seed",
                                                      "0:99:100"], "--depths"),
    # --- output paths: one rule, the user's path and option in every message ---------------------------------
    ("gradients-checkpoint-missing-dir", lambda e: [*GRAD, "--checkpoint", str(e.tmp / "nowhere" / "x.json")],
     "--checkpoint"),
    ("gradients-checkpoint-root-missing-dir", lambda e: [*GRAD, "--checkpoint", "/nonexistent-dp/x.json"],
     "--checkpoint"),
    ("gradients-checkpoint-is-directory", lambda e: [*GRAD, "--checkpoint", str(e.ckpt_dir)], "--checkpoint"),
    ("gradients-checkpoint-corrupt", lambda e: [*GRAD, "--checkpoint", str(e.ckpt_corrupt)], "corrupt.json"),
    ("gradients-checkpoint-not-ours", lambda e: [*GRAD, "--checkpoint", str(e.ckpt_foreign)], "notes.json"),
    ("gradients-checkpoint-suffix", lambda e: [*GRAD, "--checkpoint", "grad.txt"], "--checkpoint"),
    ("gradients-checkpoint-empty", lambda e: [*GRAD, "--checkpoint", ""], "--checkpoint"),
    ("reproduce-empty-out", lambda e: ["reproduce", "--tier", "smoke", "--only", "001-fig1", "--out", ""], "--out"),
    ("reproduce-foreign-out", lambda e: ["reproduce", "--tier", "smoke", "--only", "001-fig1", "--out",
                                         str(e.foreign_out)], "--force"),
    ("reproduce-out-is-file", lambda e: ["reproduce", "--tier", "smoke", "--out", str(e.a_file)], "--out"),
    ("reproduce-out-missing-parent", lambda e: ["reproduce", "--tier", "smoke", "--out", str(e.tmp / "a" / "b")],
     "does not exist"),
    ("reproduce-bad-tier", lambda e: ["reproduce", "--tier", "huge", "--out", str(e.tmp / "r")], "--tier"),
    ("reproduce-unknown-claim", lambda e: ["reproduce", "--only", "999-nope", "--out", str(e.tmp / "r")], "--only"),
    ("reproduce-bad-device", lambda e: ["reproduce", "--device", "tpu", "--out", str(e.tmp / "r")], "--device"),
    ("reproduce-data-dir-is-file", lambda e: ["reproduce", "--data-dir", str(e.a_file), "--out", str(e.tmp / "r")],
     "--data-dir"),
    ("phase-out-in-proc", lambda e: [*PHASE, "--out", "/proc/g.csv"], "--out"),
    ("phase-empty-out", lambda e: [*PHASE, "--out", ""], "--out"),
    ("figures-empty-out", lambda e: ["figures", "--out", "", "--quick"], "--out"),
    ("plot-empty-out", lambda e: ["sweep", "plot", str(e.store), "--out", ""], "--out"),
    ("plot-bad-suffix", lambda e: ["sweep", "plot", str(e.store), "--out", "h.txt"], "--out"),
    ("plot-out-is-dir", lambda e: ["sweep", "plot", str(e.store), "--out", str(e.empty_dir)], "--out"),
    ("export-out-is-dir", lambda e: ["sweep", "export", str(e.store), "--out", str(e.ckpt_dir)], "--out"),
    ("sweep-data-dir-is-file", lambda e: sweep(e, "--dataset", "mnist", "--data-dir", str(e.a_file)), "--data-dir"),
    ("sweep-data-dir-etc-passwd", lambda e: sweep(e, "--dataset", "mnist", "--data-dir", "/etc/passwd"),
     "not a directory"),
    ("sweep-data-dir-empty", lambda e: sweep(e, "--data-dir", ""), "--data-dir"),
    ("sweep-data-dir-missing-parent", lambda e: sweep(e, "--data-dir", str(e.tmp / "x" / "y")), "--data-dir"),
    ("gradients-data-dir-is-file", lambda e: [*GRAD, "--dataset", "mnist", "--data-dir", str(e.a_file)],
     "--data-dir"),
    # --- models: a model file that fails to build is the model's error ------------------------------------------
    ("diagnose-ctor-raises", lambda e: ["diagnose", f"{e.model_ctor_raises}:Net"], "no GPU here"),
    ("diagnose-exit-on-import", lambda e: ["diagnose", f"{e.model_exit_import}:Net"], "sys.exit"),
    ("diagnose-exit-in-ctor", lambda e: ["diagnose", f"{e.model_exit_ctor}:Net"], "sys.exit(3)"),
    ("diagnose-meta-device", lambda e: ["diagnose", f"{e.model_meta}:Net"], "meta"),
    ("diagnose-nan-weights", lambda e: ["diagnose", f"{e.model_nan}:Net"], "non-finite"),
    ("diagnose-not-a-class", lambda e: ["diagnose", f"{e.model_not_class}:Net"], "model"),
    ("diagnose-not-a-module", lambda e: ["diagnose", f"{e.model_not_module}:Net"], "nn.Module"),
    ("diagnose-no-linear", lambda e: ["diagnose", f"{e.model_no_linear}:Net"], "model"),
    ("diagnose-unknown-activation", lambda e: ["diagnose", f"{e.model_ok}:Net", "--activation", "nope"],
     "--activation"),
    ("diagnose-negative-noise", lambda e: ["diagnose", f"{e.model_ok}:Net", "--noise-add", "-1"], "--noise-add"),
    # --- profile ---------------------------------------------------------------------------------------------
    ("profile-no-input-shape", lambda e: ["profile", f"{e.model_ok}:Net"], "--input-shape"),
    ("profile-input-shape-zero", lambda e: ["profile", f"{e.model_ok}:Net", "--input-shape", "0"], "--input-shape"),
    ("profile-input-shape-wrong", lambda e: ["profile", f"{e.model_ok}:Net", "--input-shape", "5"], "does not run"),
    ("profile-plot-suffix", lambda e: ["profile", f"{e.model_ok}:Net", "--input-shape", "4", "--plot",
                                       str(e.tmp / "p.txt")], "--plot"),
    ("profile-csv-no-folder", lambda e: ["profile", f"{e.model_ok}:Net", "--input-shape", "4", "--csv",
                                         str(e.tmp / "missing" / "p.csv")], "--csv"),
    ("profile-seed-negative", lambda e: ["profile", f"{e.model_ok}:Net", "--input-shape", "4", "--seed", "-1"],
     "--seed"),
    ("profile-inits-zero", lambda e: ["profile", f"{e.model_ok}:Net", "--input-shape", "4", "--inits", "0"],
     "--inits"),
    ("profile-ctor-raises", lambda e: ["profile", f"{e.model_ctor_raises}:Net", "--input-shape", "4"], "no GPU here"),
    ("profile-file-raises", lambda e: ["profile", f"{e.model_raises}:Net", "--input-shape", "4"], "broken model file"),
    # --- Ray: one line within seconds --------------------------------------------------------------------------
    ("ray-not-a-ray-server", lambda e: sweep(e, "--executor", "ray", "--ray-address", f"127.0.0.1:{e.junk_port}"),
     "--ray-address"),
    ("ray-auto-without-cluster", lambda e: sweep(e, "--executor", "ray", "--ray-address", "auto"), "--ray-address"),
    ("ray-empty-address", lambda e: sweep(e, "--executor", "ray", "--ray-address", ""), "--ray-address"),
    ("ray-port-out-of-range", lambda e: sweep(e, "--executor", "ray", "--ray-address", "127.0.0.1:99999"),
     "--ray-address"),
    ("ray-unknown-host", lambda e: sweep(e, "--executor", "ray", "--ray-address", "no-such-host.invalid:6379"),
     "--ray-address"),
    # --- numbers on every command --------------------------------------------------------------------------------
    ("forward-c0-above-1", lambda e: [*SIM, "--c0", "2"], "--c0"),
    ("forward-zero-q0", lambda e: [*SIM, "--q0", "0"], "--q0"),
    ("forward-zero-sw2", lambda e: ["simulate", "forward", "--sigma-w2", "0", "--sigma-b2", "0.05"], "--sigma-w2"),
    ("forward-negative-noise-mult", lambda e: [*SIM, "--noise-mult", "-1"], "--noise-mult"),
    ("forward-nan-sb2", lambda e: ["simulate", "forward", "--sigma-w2", "1", "--sigma-b2", "nan"], "--sigma-b2"),
    ("forward-bad-dtype", lambda e: [*SIM, "--dtype", "float16"], "--dtype"),
    ("forward-bad-weights", lambda e: [*SIM, "--weights", "uniform"], "--weights"),
    ("forward-bad-device", lambda e: [*SIM, "--device", "tpu"], "--device"),
    ("forward-text-width", lambda e: [*SIM, "--width", "eight"], "--width"),
    ("jacobian-zero-signal-var", lambda e: [*JAC, "--signal-var", "0"], "--signal-var"),
    ("jacobian-negative-input-q", lambda e: [*JAC, "--input-q", "-1"], "--input-q"),
    ("gradients-unknown-dataset", lambda e: [*GRAD, "--dataset", "imagenet"], "--dataset"),
    ("gradients-bad-backprop", lambda e: [*GRAD, "--backprop", "both"], "--backprop"),
    ("point-nan-depth-multiple", lambda e: [*POINT, "--depth-multiple", "nan"], "--depth-multiple"),
    ("point-negative-q0", lambda e: [*POINT, "--q0", "-1"], "--q0"),
    ("critical-negative-noise-add", lambda e: ["critical", "--sigma-b2", "0.05", "--noise-add", "-1"],
     "--noise-add"),
    ("critical-maximize-negative-sb2", lambda e: ["critical", "--maximize-depth", "--sigma-b2", "-1"], "--sigma-b2"),
    ("phase-unknown-activation", lambda e: [*PHASE, "--out", "g.csv", "--activation", "nope"], "--activation"),
    ("phase-keep-rate-0", lambda e: [*PHASE, "--out", "g.csv", "--keep-rate", "0"], "--keep-rate"),
    ("phase-bad-device", lambda e: [*PHASE, "--out", "g.csv", "--device", "tpu"], "--device"),
    ("phase-zero-depth-multiple", lambda e: [*PHASE, "--out", "g.csv", "--depth-multiple", "0"],
     "--depth-multiple"),
    ("figures-bad-device", lambda e: ["figures", "--out", "f", "--device", "tpu"], "--device"),
    ("advise-inf-sb2", lambda e: ["advise", "--activation", "tanh", "--sigma-b2", "inf"], "--sigma-b2"),
    ("advise-missing-activation", lambda e: ["advise"], "--activation"),
    ("sweep-bad-dtype", lambda e: sweep(e, "--dtype", "float16"), "--dtype"),
    ("sweep-bad-precision", lambda e: sweep(e, "--precision", "fp8"), "--precision"),
    ("sweep-bad-weights", lambda e: sweep(e, "--weights", "uniform"), "--weights"),
    ("sweep-negative-noise-mult", lambda e: sweep(e, "--noise-mult", "-1"), "--noise-mult"),
    ("sweep-nan-noise-add", lambda e: sweep(e, "--noise-add", "nan"), "--noise-add"),
    ("sweep-bad-device", lambda e: sweep(e, "--device", "tpu"), "--device"),
    ("fit-unknown-metric", lambda e: ["sweep", "fit", str(e.store), "--metric", "loss"], "--metric"),
    ("fit-negative-threshold", lambda e: ["sweep", "fit", str(e.store), "--threshold", "-0.1"], "--threshold"),
    ("plot-unknown-metric", lambda e: ["sweep", "plot", str(e.store), "--out", "h.png", "--metric", "loss"],
     "--metric"),
]


def _digest(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def _snapshot(root: Path) -> dict[str, str]:
    files = [p for p in root.rglob("*") if p.is_file() and "readonly" not in p.parts]
    return _digest(files)


def _param(c):
    if hasattr(c, "marks"):  # already a pytest.param (with skip marks)
        return pytest.param(*c.values[1:], id=c.values[0], marks=c.marks)
    return pytest.param(c[1], c[2], id=c[0])


PARAMS = [_param(c) for c in CASES]


class _AnyPath:
    """Stands in for the env fixture when only the command name of a case is wanted."""

    closed_port = 1

    def __getattr__(self, name: str) -> Path:
        return Path(name)


@pytest.mark.parametrize("build, needle", PARAMS)
def test_cli_bad_input_is_one_line_exit_2(env, capsys, build, needle):
    argv = build(env)
    before = _snapshot(env.tmp)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert lines[0].startswith(f"deepprop {argv[0]}"), lines[0]  # the command that ran, never bare "deepprop:"
    assert ".deepprop-" not in lines[0] and ".part" not in lines[0], lines[0]  # never one of our temporary files
    assert "Traceback" not in err
    assert _snapshot(env.tmp) == before, "a bad input created or modified a file"
    assert not (env.tmp / "pwned-by-pickle").exists()


def test_battery_size():
    """At least 120 bad-input cases over every command (and 40 API cases, below)."""
    commands = {p.values[0](_AnyPath())[0] for p in PARAMS}
    assert len(PARAMS) >= 120
    assert commands == {"point", "critical", "phase", "figures", "advise", "diagnose", "sweep", "simulate",
                        "reproduce", "profile"}
    assert len(_api_cases()) >= 40


# --- the Python API: the same errors, as exceptions -----------------------------------------------------------


def _api_cases():
    from deepprop.advice import critical_init
    from deepprop.checkpoint import Checkpoint
    from deepprop.data import load_dataset, safe_unpickle
    from deepprop.errors import CheckpointError
    from deepprop.grid_export import export
    from deepprop.sweep.config import from_mapping, load_toml
    from deepprop.sweep.ray_cluster import connect_ray
    from deepprop.sweep.store import Store
    from deepprop.theory.grid import phase_diagram
    from deepprop.validation import check_output_path

    return [
        ("mean_field-negative", lambda e: deepprop.mean_field("tanh", -1.0, 0.05), ParameterError, "sigma_w2"),
        ("mean_field-nan", lambda e: deepprop.mean_field("tanh", math.nan, 0.05), ParameterError, "sigma_w2"),
        ("mean_field-inf-sb2", lambda e: deepprop.mean_field("tanh", 1.0, math.inf), ParameterError, "sigma_b2"),
        ("mean_field-activation", lambda e: deepprop.mean_field("nope", 1.0, 0.0), ParameterError, "activation"),
        ("mean_field-keep-rate-0", lambda e: deepprop.mean_field("tanh", 1.0, 0.0, keep_rate=0.0), ParameterError,
         "keep_rate"),
        ("prior-keep-rate-above-1", lambda e: deepprop.NetworkPrior.build("tanh", sigma_w2=1.0, sigma_b2=0.0,
                                                                           keep_rate=1.5), ParameterError, "keep_rate"),
        ("critical_init-keep-rate", lambda e: critical_init("relu", keep_rate=1.5), ParameterError, "keep_rate"),
        ("critical_init-depth-0", lambda e: critical_init("tanh", depth=0), ParameterError, "depth"),
        ("critical_sigma_w2-negative", lambda e: deepprop.critical_sigma_w2("tanh", -1.0), ParameterError, "sigma_b2"),
        ("trajectory-depth-0", lambda e: deepprop.trajectory("tanh", 1.0, 0.05, q0=1.0, c0=0.5, depth=0),
         ParameterError, "depth"),
        ("phase_diagram-empty", lambda e: phase_diagram("tanh", [], [0.05]), ParameterError, "sigma_w2"),
        ("phase_diagram-beyond-memory",  # refused before the meshgrid is allocated, with a pointer to blocks
         lambda e: phase_diagram("tanh", np.linspace(1, 4, 3_000_000), np.linspace(0, 1, 3_000_000)),
         ParameterError, "sigma_w2"),
        ("export-suffix", lambda e: export(phase_diagram("tanh", [1.0], [0.05], show_progress=False),
                                           e.tmp / "g.txt"), ParameterError, "out"),
        ("export-missing-dir", lambda e: export(phase_diagram("tanh", [1.0], [0.05], show_progress=False),
                                                e.tmp / "no" / "g.csv"), ParameterError, "does not exist"),
        ("load_dataset-name", lambda e: load_dataset("imagenet"), ParameterError, "dataset"),
        ("load_dataset-offline", lambda e: load_dataset("mnist", e.empty_dir), DatasetError, "offline"),
        ("load_dataset-bad-magic", lambda e: load_dataset("mnist", e.mnist_magic), DatasetError, "magic"),
        ("load_dataset-bad-length", lambda e: load_dataset("mnist", e.mnist_short), DatasetError, "header says"),
        ("load_dataset-evil-pickle", lambda e: load_dataset("cifar10", e.cifar, download=False), DatasetError,
         "refused to load global"),
        ("safe_unpickle-garbage", lambda e: safe_unpickle(b"\x80\x02garbage"), DatasetError, "corrupt pickle"),
        ("store-not-sqlite", lambda e: Store(e.not_sqlite, create=False), StoreError, "notes.db"),
        ("store-truncated", lambda e: Store(e.truncated, create=False), StoreError, "truncated.db"),
        ("store-foreign", lambda e: Store(e.foreign), StoreError, "foreign.db"),
        ("store-other-config", lambda e: _other_config(e), StoreError, "another sweep"),
        ("config-unknown-key", lambda e: from_mapping({"widht": 8}), ParameterError, "widht"),
        ("config-keep-rate", lambda e: from_mapping({"keep_rate": 0}), ParameterError, "keep_rates"),
        ("config-huge-range", lambda e: from_mapping({"depths": "1:10:100000000000"}), ParameterError, "depths"),
        ("toml-malformed", lambda e: load_toml(e.toml_bad), ParameterError, "invalid TOML"),
        # ===== issue 17 ======================================================================================
        ("mean_field-empty", lambda e: deepprop.mean_field("tanh", [], 0.05), ParameterError, "sigma_w2"),
        ("mean_field-string-sw2", lambda e: deepprop.mean_field("tanh", "2.5", 0.05), ParameterError, "sigma_w2"),
        ("mean_field-string-sb2", lambda e: deepprop.mean_field("tanh", 2.5, "0.05"), ParameterError, "sigma_b2"),
        ("mean_field-bool", lambda e: deepprop.mean_field("tanh", True, 0.05), ParameterError, "sigma_w2"),
        ("mean_field-complex", lambda e: deepprop.mean_field("tanh", 1 + 2j, 0.05), ParameterError, "sigma_w2"),
        ("mean_field-mismatch", lambda e: deepprop.mean_field("tanh", np.ones(3), np.ones(2)), ParameterError,
         "broadcast"),
        ("mean_field-ragged", lambda e: deepprop.mean_field("tanh", [[1.0, 2.0], [1.0]], 0.05), ParameterError,
         "sigma_w2"),
        ("mean_field-string-keep-rate", lambda e: deepprop.mean_field("tanh", 1.0, 0.05, keep_rate="0.9"),
         ParameterError, "keep_rate"),
        ("mean_field-string-q0", lambda e: deepprop.mean_field("tanh", 1.0, 0.05, q0="1"), ParameterError, "q0"),
        ("mean_field-critical-tol", lambda e: deepprop.mean_field("tanh", 1.0, 0.05, critical_tol=2.0),
         ParameterError, "critical_tol"),
        ("mean_field-chunk-size", lambda e: deepprop.mean_field("tanh", 1.0, 0.05, chunk_size=0), ParameterError,
         "chunk_size"),
        ("mean_field-device-name", lambda e: deepprop.mean_field("tanh", 1.0, 0.05, device="tpu"), ParameterError,
         "device"),
        pytest.param("mean_field-cuda-without-cuda",
                     lambda e: deepprop.mean_field("tanh", 1.0, 0.05, device="cuda"), ParameterError, "device",
                     marks=NO_CUDA),
        ("mean_field-step-activation", lambda e: deepprop.mean_field(lambda x: (x > 0).double(), 1.0, 0.05),
         ParameterError, "activation"),
        ("mean_field-math-activation", lambda e: deepprop.mean_field(math.tanh, 1.0, 0.05), ParameterError,
         "activation"),
        ("mean_field-activation-type", lambda e: deepprop.mean_field(3, 1.0, 0.05), ParameterError, "activation"),
        ("mean_field-beyond-memory", lambda e: deepprop.mean_field("tanh", np.ones((100_000, 1)), np.ones(100_000)),
         ParameterError, "sigma_w2"),
        ("mean_field-prior-and-numbers", lambda e: deepprop.mean_field(deepprop.NetworkPrior.build("tanh", 1.0),
                                                                       1.0), ParameterError, "prior"),
        ("prior-text-sw2", lambda e: deepprop.NetworkPrior.build("tanh", "abc", 0.05), ParameterError, "sigma_w2"),
        ("prior-mismatch", lambda e: deepprop.NetworkPrior.build("tanh", [1.0, 2.0], [0.0, 0.1, 0.2]),
         ParameterError, "broadcast"),
        ("trajectory-beyond-memory", lambda e: deepprop.trajectory("tanh", 1.5, 0.05, q0=1.0, c0=0.5, depth=10**12),
         ParameterError, "depth"),
        ("trajectory-string-depth", lambda e: deepprop.trajectory("tanh", 1.5, 0.05, q0=1.0, c0=0.5, depth="10"),
         ParameterError, "depth"),
        ("trajectory-float-depth", lambda e: deepprop.trajectory("tanh", 1.5, 0.05, q0=1.0, c0=0.5, depth=2.5),
         ParameterError, "depth"),
        ("trajectory-empty-c0", lambda e: deepprop.trajectory("tanh", 1.5, 0.05, q0=1.0, c0=[], depth=3),
         ParameterError, "c0"),
        ("trajectory-string-q0", lambda e: deepprop.trajectory("tanh", 1.5, 0.05, q0="1", c0=0.5, depth=3),
         ParameterError, "q0"),
        ("trajectory-mismatch", lambda e: deepprop.trajectory("tanh", np.ones(3), 0.05, q0=np.ones(2), c0=0.5,
                                                              depth=3), ParameterError, "broadcast"),
        ("trajectory-device", lambda e: deepprop.trajectory("tanh", 1.5, 0.05, q0=1.0, c0=0.5, depth=3,
                                                            device="gpu0"), ParameterError, "device"),
        ("critical_sigma_w2-string", lambda e: deepprop.critical_sigma_w2("tanh", "0.05"), ParameterError,
         "sigma_b2"),
        ("critical_sigma_w2-device", lambda e: deepprop.critical_sigma_w2("tanh", 0.05, device="tpu"),
         ParameterError, "device"),
        ("measured-depth-0", lambda e: deepprop.measured_depth_scales("tanh", 1.5, 0.05, depth=0), ParameterError,
         "depth"),
        ("phase_diagram-text", lambda e: phase_diagram("tanh", [1.0], ["a"]), ParameterError, "sigma_b2"),
        ("simulate_forward-seed", lambda e: _forward(seed=2**70), ParameterError, "seed"),
        ("simulate_forward-width", lambda e: _forward(width=10**7), ParameterError, "width"),
        ("simulate_forward-string-width", lambda e: _forward(width="8"), ParameterError, "width"),
        ("simulate_gradients-fit-skip", lambda e: _gradients(fit_skip=-1), ParameterError, "fit_skip"),
        ("simulate_gradients-fit-window", lambda e: _gradients(fit_skip=4), ParameterError, "fit_skip"),
        ("load_dataset-data-dir-file", lambda e: load_dataset("mnist", "/etc/passwd"), ParameterError, "data_dir"),
        ("load_dataset-bool-count", lambda e: load_dataset("synthetic", n_train=True), ParameterError, "n_train"),
        ("store-older", lambda e: Store(e.older, create=False), StoreError, "older"),
        ("store-newer", lambda e: Store(e.newer), StoreError, "newer"),
        ("store-legacy", lambda e: Store(e.legacy), StoreError, "older"),
        ("store-corrupt-meta", lambda e: Store(e.bad_meta), StoreError, "not JSON"),
        ("store-directory", lambda e: Store(e.a_dir_db), ParameterError, "store"),
        ("store-missing-folder", lambda e: Store(e.tmp / "no" / "s.db"), ParameterError, "does not exist"),
        ("run_sweep-missing-folder", lambda e: _run_sweep(e.tmp / "no" / "s.db"), ParameterError, "store"),
        ("checkpoint-corrupt", lambda e: Checkpoint(e.ckpt_corrupt, {}), CheckpointError, "corrupt.json"),
        ("checkpoint-not-ours", lambda e: Checkpoint(e.ckpt_foreign, {}), CheckpointError, "notes.json"),
        ("checkpoint-foreign-folder", lambda e: Checkpoint(e.foreign_out, {}), CheckpointError, "mine"),
        ("checkpoint-missing-folder", lambda e: Checkpoint(e.tmp / "no" / "x.json", {}), ParameterError,
         "does not exist"),
        ("output-path-empty", lambda e: check_output_path(""), ParameterError, "out"),
        ("config-seed-64-bits", lambda e: from_mapping({"seeds": 2**70}), ParameterError, "seeds"),
        ("config-fractional-depths", lambda e: from_mapping({"depths": "2:5:3"}), ParameterError, "depths"),
        ("config-empty-item", lambda e: from_mapping({"sigma_w2": "2,,3"}), ParameterError, "sigma_w2"),
        ("toml-binary", lambda e: load_toml(e.toml_binary), ParameterError, "binary.toml"),
        ("critical_init-string-keep", lambda e: critical_init("tanh", keep_rate="0.9"), ParameterError, "keep_rate"),
        ("connect_ray-closed", lambda e: connect_ray(f"127.0.0.1:{e.closed_port}"), ParameterError, "ray_address"),
        ("connect_ray-junk", lambda e: connect_ray(f"127.0.0.1:{e.junk_port}"), ParameterError, "ray_address"),
        ("connect_ray-empty", lambda e: connect_ray(""), ParameterError, "ray_address"),
        ("simulate_gradients-string-seed", lambda e: _gradients(seed="7"), ParameterError, "seed"),
        ("simulate_forward-string-c0", lambda e: _forward(c0="0.5"), ParameterError, "c0"),
        ("simulate_forward-dtype-list", lambda e: _forward(dtype=["float32"]), ParameterError, "dtype"),
        ("simulate_forward-device-array", lambda e: _forward(device=np.ones(2)), ParameterError, "device"),
        ("simulate_jacobian-string-sw2", lambda e: __import__("deepprop.simulate.jacobian", fromlist=["x"])
         .jacobian_spectrum("tanh", "1.5", 0.05, width=8, depth=3), ParameterError, "sigma_w2"),
        ("ensemble-weights-array", lambda e: __import__("deepprop.networks", fromlist=["x"]).Ensemble.build(
            "tanh", 1.5, 0.05, 8, weights=np.ones(2)), ParameterError, "weights"),
        ("critical_init-array-keep", lambda e: critical_init("relu", keep_rate=[0.8, 0.9]), ParameterError,
         "keep_rate"),
        ("critical_init-string-depth-multiple", lambda e: critical_init("tanh", depth_multiple="6"), ParameterError,
         "depth_multiple"),
        ("load_dataset-string-seed", lambda e: load_dataset("synthetic", seed="1"), ParameterError, "seed"),
        ("load_dataset-classes", lambda e: load_dataset("synthetic", n_classes=1), ParameterError, "n_classes"),
        ("checkpoint-path-type", lambda e: Checkpoint(["x.json"], {}), ParameterError, "checkpoint"),
    ]


def _forward(**kw):
    from deepprop.simulate.forward import simulate_forward

    return simulate_forward("tanh", 1.5, 0.05, **{"width": 8, "depth": 3, "networks": 2, **kw})


def _gradients(**kw):
    from deepprop.simulate.gradients import simulate_gradients

    return simulate_gradients("tanh", 1.5, 0.05, **{"width": 8, "depth": 6, "networks": 2, "dataset": "synthetic",
                                                    "batch_size": 8, **kw})


def _run_sweep(store):
    from deepprop.sweep.config import from_mapping
    from deepprop.sweep.runner import run_sweep

    return run_sweep(from_mapping({"dataset": "synthetic", "n_train": 32, "n_test": 16, "width": 4, "depths": [2],
                                   "sigma_w2": [1.0], "steps": 2, "batch_size": 8}), store, progress=False)


def _other_config(e):
    from deepprop.sweep.config import from_mapping
    from deepprop.sweep.schema import SHARED_IDENTITY
    from deepprop.sweep.store import Store

    with Store(e.store, create=False) as store:
        store.check_config(from_mapping({"dataset": "synthetic", "width": 99}).to_dict(), SHARED_IDENTITY)


def _api_param(c):
    if hasattr(c, "marks"):
        return pytest.param(c.values, id=c.values[0], marks=c.marks)
    return pytest.param(c, id=c[0])


@pytest.mark.parametrize("case", [_api_param(c) for c in _api_cases()])
def test_api_bad_input_raises_deepprop_error(env, case):
    _, call, cls, needle = case
    before = _snapshot(env.tmp)
    with pytest.raises(cls) as info:
        call(env)
    assert isinstance(info.value, DeeppropError)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)
    assert _snapshot(env.tmp) == before
    assert not (env.tmp / "pwned-by-pickle").exists()


@pytest.mark.parametrize(
    "call, argv",
    [
        (lambda e: deepprop.mean_field("tanh", 1.0, 0.0, keep_rate=1.5), lambda e: [*POINT[:-2], "--sigma-b2", "0",
                                                                                    "--keep-rate", "1.5"]),
        (lambda e: __import__("deepprop.data", fromlist=["x"]).load_dataset("mnist", e.mnist_magic),
         lambda e: sweep(e, "--dataset", "mnist", "--data-dir", str(e.mnist_magic))),
        (lambda e: __import__("deepprop.sweep.store", fromlist=["x"]).Store(e.not_sqlite, create=False),
         lambda e: ["sweep", "status", str(e.not_sqlite)]),
    ],
    ids=["parameter", "dataset", "store"],
)
def test_cli_prints_the_api_message(env, capsys, call, argv):
    """Library and command line say the same thing: the exception's text is the CLI line's tail."""
    with pytest.raises(DeeppropError) as info:
        call(env)
    exc = info.value
    detail = exc.detail if isinstance(exc, ParameterError) else str(exc)
    assert main(argv(env)) == 2
    assert capsys.readouterr().err.strip().endswith(detail)


def test_missing_extra_is_one_line_naming_it(env, capsys, monkeypatch):
    """Without ray (or scikit-learn) installed, the command names the extra to install."""
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(sweep(env, "--executor", "ray")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'deepprop[ray]'" in err
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["sweep", "run", "--store", str(env.new_store), "--dataset", "digits", "--depths", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'deepprop[digits]'" in err
    assert not env.new_store.exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["sweep", "status", "NOTES"], "notes.db"),
        (["phase", "--sigma-w2", "1:2:2", "--sigma-b2", "0", "--out", "MISSING/g.csv"], "does not exist"),
        (["sweep", "run", "--store", "s.db", *SMALL, "--executor", "ray", "--ray-address", "127.0.0.1:PORT"],
         "--ray-address"),
    ],
    ids=["status-not-sqlite", "phase-missing-dir", "ray-unreachable"],  # `point`: see test_engine_cli
)
def test_installed_command_prints_no_traceback(env, argv, needle):
    argv = [a.replace("NOTES", str(env.not_sqlite)).replace("MISSING", str(env.tmp / "missing"))
            .replace("PORT", str(env.closed_port)) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "deepprop", *argv], capture_output=True, text=True, check=False,
                          cwd=env.tmp, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_core_commands_need_no_extra(tmp_path):
    """With every optional extra unimportable, the theory commands and a synthetic sweep still work."""
    blocked = ("matplotlib", "sklearn", "ray", "h5py", "h5netcdf", "pyarrow")
    code = (
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "from deepprop.cli.main import main\n"
        "rc = main(['point', '--sigma-w2', '1.5', '--sigma-b2', '0.05', '--json'])\n"
        "rc |= main(['phase', '--sigma-w2', '1:2:3', '--sigma-b2', '0', '--out', 'g.csv', '--quiet'])\n"
        f"rc |= main(['sweep', 'run', '--store', 's.db', *{SMALL!r}, '--quiet'])\n"
        "assert not any(sys.modules.get(m) for m in " + repr(blocked) + ")\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "g.csv").is_file() and (tmp_path / "s.db").is_file()


@pytest.mark.parametrize("address", ["127.0.0.1:CLOSED", "127.0.0.1:JUNK", "auto", "no-such-host.invalid:6379"])
def test_unreachable_ray_is_one_line_within_seconds(env, capfd, address):
    """An address with no Ray head behind it is refused in one line well within 10 s (imports aside), and
    nothing of Ray's own logging reaches the terminal (file descriptors 1 and 2 checked, not just sys.*)."""
    import time

    address = address.replace("CLOSED", str(env.closed_port)).replace("JUNK", str(env.junk_port))
    t0 = time.perf_counter()
    assert main(sweep(env, "--executor", "ray", "--ray-address", address)) == 2
    assert time.perf_counter() - t0 < 10
    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1 and "--ray-address" in err and "Traceback" not in err
    assert not env.new_store.exists()
