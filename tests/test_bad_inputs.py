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


@pytest.fixture
def env(tmp_path, real_store, monkeypatch) -> SimpleNamespace:
    """Paths every case may use; the network is off (downloads fail at once, as offline)."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test runs offline)")

    monkeypatch.setattr("urllib.request.urlopen", offline)
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
    e.readonly.chmod(0o500)
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
    e.closed_port = _unused_port()
    monkeypatch.chdir(tmp_path)
    yield e
    e.readonly.chmod(0o700)


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
    assert "Traceback" not in err
    assert _snapshot(env.tmp) == before, "a bad input created or modified a file"
    assert not (env.tmp / "pwned-by-pickle").exists()


def test_battery_size():
    """The contract asks for at least 60 bad-input cases over every command; the API cases come on top."""
    commands = {p.values[0](_AnyPath())[0] for p in PARAMS}
    assert len(PARAMS) >= 60
    assert commands == {"point", "critical", "phase", "figures", "advise", "diagnose", "sweep", "simulate"}


# --- the Python API: the same errors, as exceptions -----------------------------------------------------------


def _api_cases():
    from deepprop.advice import critical_init
    from deepprop.data import load_dataset, safe_unpickle
    from deepprop.grid_export import export
    from deepprop.sweep.config import from_mapping, load_toml
    from deepprop.sweep.store import Store
    from deepprop.theory.grid import phase_diagram

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
    ]


def _other_config(e):
    from deepprop.sweep.config import from_mapping
    from deepprop.sweep.schema import SHARED_IDENTITY
    from deepprop.sweep.store import Store

    with Store(e.store, create=False) as store:
        store.check_config(from_mapping({"dataset": "synthetic", "width": 99}).to_dict(), SHARED_IDENTITY)


@pytest.mark.parametrize("case", _api_cases(), ids=lambda c: c[0])
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
