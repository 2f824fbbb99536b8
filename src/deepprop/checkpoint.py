"""The one resume primitive: finished units of a long computation, each saved atomically as it finishes.

A checkpoint is a folder that belongs to one computation, named by its ``signature`` (the parameters
that determine the result). Each finished unit (a block of a phase grid, one sigma_w2 of a gradient
sweep, one claim of ``deepprop reproduce``) is one file written to a temporary name and renamed into
place (``os.replace`` is atomic), so a process killed at any moment leaves every unit either complete
or absent; running the same computation again loads the finished units and computes the rest.

Values are JSON-ready Python objects, or dicts of numpy arrays (stored as ``.npz``). A folder written
for another signature is emptied before the first new unit is saved, never mixed in.

``deepprop sweep`` keeps its trained networks in an SQLite store (:mod:`deepprop.sweep.store`) that
follows the same contract (a row per finished unit, committed atomically, keyed by the unit's identity;
finished units are skipped on resume) and adds what a results table needs: concurrent writers and queries.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepprop.paths import write_atomically

SIGNATURE_FILE = "signature.json"


def _canonical(signature: Any) -> Any:
    return json.loads(json.dumps(signature, sort_keys=True, default=str))


class Checkpoint:
    """Units of one computation in ``folder``; a no-op store in memory when ``folder`` is None."""

    def __init__(self, folder: str | os.PathLike[str] | None, signature: Any):
        self.folder = None if folder is None else Path(folder)
        self.signature = _canonical(signature)
        self._memory: dict[str, Any] = {}
        self._fresh = True  # folder not yet claimed for this signature
        if self.folder is not None and self.folder.is_dir():
            sig = self.folder / SIGNATURE_FILE
            try:
                self._fresh = json.loads(sig.read_text()) != self.signature
            except (OSError, json.JSONDecodeError):
                self._fresh = True

    # ---- reading ---------------------------------------------------------------------------------

    def _path(self, key: str, suffix: str) -> Path:
        assert self.folder is not None
        return self.folder / (urllib.parse.quote(str(key), safe="") + suffix)

    def _find(self, key: str) -> Path | None:
        if self.folder is None or self._fresh:
            return None
        for suffix in (".json", ".npz"):
            path = self._path(key, suffix)
            if path.is_file():
                return path
        return None

    def __contains__(self, key: str) -> bool:
        return key in self._memory or self._find(key) is not None

    def __getitem__(self, key: str) -> Any:
        if key in self._memory:
            return self._memory[key]
        path = self._find(key)
        if path is None:
            raise KeyError(key)
        if path.suffix == ".npz":
            with np.load(path) as data:
                return {name: data[name] for name in data.files}
        return json.loads(path.read_text())["value"]

    def keys(self) -> Iterator[str]:
        """Keys of the finished units (saved in this folder for this signature, or in memory)."""
        seen = set(self._memory)
        yield from self._memory
        if self.folder is None or self._fresh or not self.folder.is_dir():
            return
        for path in sorted(self.folder.iterdir()):
            # temporary files of an interrupted write start with "." (deepprop.paths.atomic_write)
            if path.suffix in (".json", ".npz") and path.name != SIGNATURE_FILE and not path.name.startswith("."):
                key = urllib.parse.unquote(path.stem)
                if key not in seen:
                    yield key

    # ---- writing ---------------------------------------------------------------------------------

    def _claim(self) -> None:
        """Make the folder this signature's: create it, or empty it if another computation wrote it."""
        assert self.folder is not None
        if self.folder.is_dir() and self._fresh:
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._fresh:
            _write_bytes(self.folder / SIGNATURE_FILE, json.dumps(self.signature).encode())
            self._fresh = False

    def save(self, key: str, value: Any) -> None:
        """Record a finished unit: dicts of numpy arrays as .npz, anything else as JSON."""
        self._memory[key] = value
        if self.folder is None:
            return
        self._claim()
        if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            write_atomically(self._path(key, ".npz"), lambda tmp: np.savez(tmp, **value))
        else:
            _write_bytes(self._path(key, ".json"), json.dumps({"key": key, "value": value}).encode())

    def discard(self, key: str) -> None:
        """Forget one unit (``--force`` recomputation)."""
        self._memory.pop(key, None)
        path = self._find(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the folder (once its units have been gathered into the final result)."""
        self._memory.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` durably (fsync) and atomically: the file is complete or absent."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    write_atomically(path, write)
