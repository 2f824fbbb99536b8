"""Datasets: IDX parsing, verified download, offline errors, restricted CIFAR unpickler, standardisation."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from deepprop import data
from deepprop.data import DatasetError, load_dataset, read_idx, safe_unpickle
from deepprop.errors import ParameterError


def _idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write_idx_set(directory: Path, n_train=50, n_test=20, gz=True, rng=None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 5)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 5)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        raw = _idx_bytes(arr)
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_gz_or_raw(tmp_path, gz):
    arrays = _write_idx_set(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    got = read_idx(tmp_path / ("train-images-idx3-ubyte" + suffix))
    np.testing.assert_array_equal(got, arrays["train-images-idx3-ubyte"])
    ds = load_dataset("mnist", tmp_path, download=False)
    assert ds.x_train.shape == (50, 20) and ds.x_test.shape == (20, 20) and ds.n_classes == 10
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    # standardised with the training statistics: mean 0, std 1 per feature (float64 reference)
    x = arrays["train-images-idx3-ubyte"].reshape(50, -1).astype(np.float64)
    ref = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(ds.x_train, ref, rtol=1e-5, atol=1e-5)
    xt = arrays["t10k-images-idx3-ubyte"].reshape(20, -1)
    np.testing.assert_allclose(ds.x_test, (xt - x.mean(0)) / x.std(0), rtol=1e-5, atol=1e-5)


def test_truncated_idx_is_an_error(tmp_path):
    (tmp_path / "bad.idx").write_bytes(_idx_bytes(np.zeros((3, 2)))[:-1])
    with pytest.raises(DatasetError, match="payload"):
        read_idx(tmp_path / "bad.idx")


def test_download_checks_md5(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    arrays = _write_idx_set(src)
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", ((src.as_uri() + "/",), files))
    ds = load_dataset("mnist", tmp_path / "dl")
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert sorted(os.listdir(tmp_path / "dl")) == sorted(files)
    bad = dict(files, **{"train-images-idx3-ubyte.gz": "0" * 32})
    monkeypatch.setitem(data.IDX_SOURCES, "mnist", ((src.as_uri() + "/",), bad))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("mnist", tmp_path / "dl2")
    assert not (tmp_path / "dl2" / "train-images-idx3-ubyte.gz").exists()


def test_offline_download_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(
        data.IDX_SOURCES, "mnist", (("http://127.0.0.1:9/",), {"train-images-idx3-ubyte.gz": "0"})
    )
    with pytest.raises(DatasetError, match=r"cannot download .*offline.*--data-dir"):
        load_dataset("mnist", tmp_path / "empty")
    with pytest.raises(ParameterError) as err:
        load_dataset("mnist", tmp_path / "empty", download=False)
    assert err.value.param == "data_dir"


def _cifar_dir(root: Path) -> tuple[np.ndarray, np.ndarray]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        x = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, 6).tolist()
        (d / name).write_bytes(pickle.dumps({b"batch_label": b"x", b"data": x, b"labels": y}, protocol=2))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:2]), np.array(ys[0] + ys[1])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-pickle",))


def test_cifar_batches_and_malicious_pickle_refused(tmp_path, monkeypatch):
    x, y = _cifar_dir(tmp_path)
    ds = load_dataset("cifar10", tmp_path, download=False)
    assert ds.x_train.shape == (12, 3072)
    np.testing.assert_array_equal(ds.y_train, y)
    xf = x.astype(np.float64)
    np.testing.assert_allclose(ds.x_train, (xf - xf.mean(0)) / xf.std(0), rtol=1e-5, atol=1e-5)
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2)
    with pytest.raises(DatasetError, match="refused to load global"):
        safe_unpickle(evil)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(evil)
    with pytest.raises(DatasetError, match="posix.system|nt.system"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not (tmp_path / "pwned-by-pickle").exists()


def test_digits_offline_and_subsets():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1438, 64) and ds.x_test.shape == (359, 64) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and set(np.unique(ds.y_train)) == set(range(10))
    live = ds.x_train.std(0) > 0
    np.testing.assert_allclose(ds.x_train[:, live].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train[:, live].std(0), 1, atol=1e-4)
    small = load_dataset("digits", n_train=100, n_test=30, seed=3)
    assert small.x_train.shape == (100, 64) and small.x_test.shape == (30, 64)
    with pytest.raises(ParameterError) as err:
        load_dataset("imagenet")
    assert err.value.param == "dataset"


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="system Fashion-MNIST not installed"
)
def test_fashion_mnist_autodetected():
    ds = load_dataset("fashion-mnist", n_train=2000, n_test=500)
    assert ds.x_train.shape == (2000, 784) and ds.x_test.shape == (500, 784) and ds.n_classes == 10
    assert np.bincount(ds.y_train, minlength=10).min() > 100  # 10 balanced classes
