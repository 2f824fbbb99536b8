"""Datasets for trainability sweeps, as standardised, flattened numpy arrays.

``load_dataset(name, data_dir=None, ...)`` returns a :class:`Dataset` whose inputs are float32 of shape
(n, d), standardised per feature with the training mean and standard deviation,
x' = (x - mean_train) / std_train (features with std_train < 1e-6, e.g. the always-black border pixels
of MNIST, become 0), so that a typical input has squared norm ||x||^2 / d ~ 1 and the first layer's
pre-activation variance is q^1 ~ sigma_w2 + sigma_b2, as in the mean-field theory.

Names:

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 64 features, 10 classes); works offline.
  Split 80/20 into train/test with a fixed permutation.
* ``fashion-mnist`` and ``mnist``: the IDX files (``train-images-idx3-ubyte[.gz]`` ...), read from
  ``data_dir``, else from the system copy (``/usr/share/datasets/<name>``), else from the per-user cache,
  else downloaded there (MD5 of the published archives checked) when ``download`` is true.
* ``cifar10``: the python pickle batches (``cifar-10-batches-py/``), read with a restricted unpickler
  that builds only plain containers and numpy arrays and refuses every other object.
* ``synthetic``: Gaussian inputs labelled by a random linear teacher (argmax of x @ T); for tests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepprop.errors import DatasetError, ParameterError

DATASETS: tuple[str, ...] = ("digits", "fashion-mnist", "mnist", "cifar10", "synthetic")
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")
DOWNLOAD_TIMEOUT_S = 30.0
SYNTHETIC_CLASSES = 4
"""Classes of the ``synthetic`` set unless ``load_dataset(..., n_classes=...)`` says otherwise."""


def canonical_name(name: str) -> str:
    """``"Fashion_MNIST"`` -> ``"fashion-mnist"``; ParameterError naming the allowed sets otherwise."""
    key = str(name).strip().lower().replace("_", "-")
    key = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise ParameterError("dataset", f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return key


def classes_of(name: str) -> int:
    """Number of classes of data set ``name`` as :func:`load_dataset` loads it by default (chance = 1/n)."""
    return SYNTHETIC_CLASSES if canonical_name(name) == "synthetic" else 10



@dataclass(frozen=True)
class Dataset:
    """A classification data set: standardised float32 inputs (n, d) and int64 labels in [0, n_classes)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"n_classes={self.n_classes})"
        )


# --- published files and their checksums --------------------------------------------------------------

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# (base URLs tried in order, {archive name: MD5 of the published archive})
IDX_SOURCES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "mnist": (
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": (
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}

CIFAR10_SOURCE = (
    ("https://www.cs.toronto.edu/~kriz/",),
    {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
)
CIFAR10_DIR = "cifar-10-batches-py"


def default_cache_dir() -> Path:
    """Per-user download directory: $DEEPPROP_DATA, else $XDG_CACHE_HOME/deepprop, else ~/.cache/deepprop."""
    if os.environ.get("DEEPPROP_DATA"):
        return Path(os.environ["DEEPPROP_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepprop"


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes (``md5`` or ``sha256``)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_verified(urls: tuple[str, ...], filename: str, md5: str, dest_dir: Path) -> Path:
    """Fetch ``filename`` from the first base URL that answers, check its MD5, return the local path.

    A file that fails the checksum is deleted and reported; no URL answering is reported as offline.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename
    if target.exists() and file_digest(target) == md5:
        return target
    errors = []
    for base in urls:
        url = base + filename
        part = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(part, "wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            part.unlink(missing_ok=True)
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        got = file_digest(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise DatasetError(f"checksum mismatch for {url}: MD5 {got}, expected {md5}; file discarded")
        part.replace(target)
        return target
    raise DatasetError(
        f"cannot download {filename} (offline?): {'; '.join(errors)}. "
        f"Put the file in {dest_dir}, or name a folder "
        "that holds the files (data_dir= in Python, --data-dir on the command line)."
    )


# --- IDX (MNIST-style) ------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw): magic 0x0000TTNN (type TT, NN dims), big-endian sizes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # unreadable, or a corrupt / truncated gzip stream
        raise DatasetError(f"{path}: cannot read IDX file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a forged header cannot overflow
    if len(raw) - offset != expected:
        raise DatasetError(f"{path}: IDX payload has {len(raw) - offset} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in ``directory``, or the spelling ``train-images.idx3-ubyte``."""
    alt = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_dir_candidates(name: str, data_dir: Path | None) -> list[Path]:
    if data_dir is not None:
        return [data_dir, data_dir / name]
    return [SYSTEM_DATA_ROOT / name, default_cache_dir() / name]


def _load_idx_dataset(name: str, data_dir: Path | None, download: bool) -> tuple[np.ndarray, ...]:
    candidates = _idx_dir_candidates(name, data_dir)
    for directory in candidates:
        paths = {k: _find_idx(directory, v) for k, v in IDX_FILES.items()}
        if all(paths.values()):
            break
    else:
        if not download:
            where = " or ".join(str(c) for c in candidates)
            raise ParameterError("data_dir", f"no {name} IDX files in {where} and download is off")
        directory = candidates[0] if data_dir is not None else default_cache_dir() / name
        urls, files = IDX_SOURCES[name]
        for filename, md5 in files.items():
            download_verified(urls, filename, md5, directory)
        paths = {k: _find_idx(directory, v) for k, v in IDX_FILES.items()}
    arrays = {k: read_idx(p) for k, p in paths.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DatasetError(f"{name}: {split} images and labels differ in length")
    return (
        arrays["train_images"].reshape(len(arrays["train_images"]), -1),
        arrays["train_labels"],
        arrays["test_images"].reshape(len(arrays["test_images"]), -1),
        arrays["test_labels"],
    )


# --- CIFAR-10 pickle batches --------------------------------------------------------------------------------

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that builds only plain containers, strings, numbers and numpy arrays.

    Any other global (a class or function the pickle asks for, e.g. ``os.system``) is refused with
    ``pickle.UnpicklingError`` before it is looked up, so a malicious file cannot run code.
    """

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused to load global {module}.{name}: not a plain container/array"
            )
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def safe_unpickle(data: bytes) -> object:
    """Unpickle ``data`` (Python 2 pickles included, strings as bytes) with :class:`RestrictedUnpickler`."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any failure to parse is a bad file
        raise DatasetError(f"unsafe or corrupt pickle: {type(exc).__name__}: {exc}") from exc


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = safe_unpickle(path.read_bytes())
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict batch, got {type(obj).__name__}")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise DatasetError(f"{path}: batch lacks 'data' or 'labels'")
    x = np.asarray(obj["data"], dtype=np.uint8)
    y = np.asarray(obj["labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"{path}: data {x.shape} and labels {y.shape} do not match")
    return x, y


def _load_cifar10(data_dir: Path | None, download: bool) -> tuple[np.ndarray, ...]:
    roots = (
        [data_dir]
        if data_dir is not None
        else [SYSTEM_DATA_ROOT / "cifar10", default_cache_dir() / "cifar10"]
    )
    for root in roots:
        for directory in (root, root / CIFAR10_DIR):
            if (directory / "test_batch").is_file():
                break
        else:
            continue
        break
    else:
        if not download:
            raise ParameterError("data_dir", f"no {CIFAR10_DIR} batches in {' or '.join(map(str, roots))}")
        root = roots[0] if data_dir is not None else default_cache_dir() / "cifar10"
        urls, files = CIFAR10_SOURCE
        ((archive_name, md5),) = files.items()
        archive = download_verified(urls, archive_name, md5, root)
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        directory = root / CIFAR10_DIR
    train = [
        _cifar_batch(directory / f"data_batch_{i}")
        for i in range(1, 6)
        if (directory / f"data_batch_{i}").is_file()
    ]
    if not train:
        raise DatasetError(f"{directory}: no data_batch_N files")
    x_test, y_test = _cifar_batch(directory / "test_batch")
    return np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]), x_test, y_test


# --- small built-in sets ------------------------------------------------------------------------------------


def _load_digits() -> tuple[np.ndarray, ...]:
    from deepprop.errors import require

    load_digits = require("sklearn.datasets", "digits", "the digits data set (scikit-learn's 8x8 digits)").load_digits

    bunch = load_digits()
    x, y = bunch.data, bunch.target
    perm = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def _synthetic(
    n_train: int, n_test: int, n_features: int, n_classes: int, seed: int
) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((n_features, n_classes))
    x = rng.standard_normal((n_train + n_test, n_features))
    y = np.argmax(x @ teacher, axis=1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


# --- public entry point -------------------------------------------------------------------------------------


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (x - mean) / std with the training statistics; constant features map to 0."""
    xtr = x_train.astype(np.float64)
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)
    std = np.where(std < 1e-6, np.inf, std)
    return ((xtr - mean) / std).astype(np.float32), ((x_test.astype(np.float64) - mean) / std).astype(
        np.float32
    )


def check_data_dir(data_dir: str | os.PathLike, *, download: bool = True) -> Path:
    """A ``data_dir`` given by the user: an existing directory, or (when files may be downloaded into it) a
    new one whose parent exists (only the named directory is created, when a download needs it).
    ParameterError('data_dir') otherwise: a file, a missing parent, an empty path."""
    from deepprop.validation import user_path

    d = user_path(data_dir, "data_dir")
    if d.is_dir():
        return d
    if d.exists():
        raise ParameterError("data_dir", f"{d} is not a directory")
    if not download:
        raise ParameterError("data_dir", f"not a directory: {d}")
    if not d.parent.is_dir():
        raise ParameterError("data_dir", f"{d} does not exist, nor does its parent directory {d.parent}")
    return d


def _check_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ParameterError(name, f"must be a positive integer or None (got {value!r})")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    download: bool = True,
    n_features: int = 32,
    n_classes: int = SYNTHETIC_CLASSES,
) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`), standardised and flattened.

    ``n_train`` / ``n_test`` keep a random subset (permutation drawn with ``seed``) of each split;
    statistics for standardisation come from the kept training subset. ``n_features`` and ``n_classes``
    apply to ``synthetic`` only (which has 1000 train / 500 test examples unless told otherwise).
    Missing MNIST/CIFAR files are downloaded into ``data_dir`` (or the cache) when ``download`` is true;
    offline, a :class:`DatasetError` says which files are missing and where to put them.
    """
    from deepprop.validation import check_int, check_seed

    key = canonical_name(name)
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    seed = check_seed("seed", seed)
    n_features = check_int("n_features", n_features, 1)
    n_classes = check_int("n_classes", n_classes, 2)
    directory = None if data_dir is None else check_data_dir(data_dir, download=download)
    n_cls: int
    if key == "digits":
        xtr, ytr, xte, yte = _load_digits()
        n_cls = 10
    elif key in IDX_SOURCES:
        xtr, ytr, xte, yte = _load_idx_dataset(key, directory, download)
        n_cls = 10
    elif key == "cifar10":
        xtr, ytr, xte, yte = _load_cifar10(directory, download)
        n_cls = 10
    else:
        if n_features < 1 or n_classes < 2:
            raise ParameterError("n_features", "synthetic data needs n_features >= 1 and n_classes >= 2")
        from deepprop.validation import array_bytes, check_memory

        rows = (n_train or 1000) + (n_test or 500)
        check_memory("n_train" if (n_train or 1000) >= (n_test or 500) else "n_test",
                     array_bytes((4, rows, n_features)), f"a synthetic data set of {rows} examples")
        xtr, ytr, xte, yte = _synthetic(n_train or 1000, n_test or 500, n_features, n_classes, seed)
        n_cls = n_classes
    rng = np.random.default_rng(seed)
    if n_train is not None and n_train < len(ytr):
        keep = np.sort(rng.permutation(len(ytr))[:n_train])
        xtr, ytr = xtr[keep], ytr[keep]
    if n_test is not None and n_test < len(yte):
        keep = np.sort(rng.permutation(len(yte))[:n_test])
        xte, yte = xte[keep], yte[keep]
    xtr = xtr.reshape(len(xtr), -1)
    xte = xte.reshape(len(xte), -1)
    x_train, x_test = standardise(xtr, xte)
    y_train = np.asarray(ytr, dtype=np.int64)
    y_test = np.asarray(yte, dtype=np.int64)
    if y_train.min() < 0 or max(y_train.max(), y_test.max()) >= n_cls:
        raise DatasetError(f"{key}: labels outside [0, {n_cls})")
    return Dataset(key, x_train, y_train, x_test, y_test, n_cls)
