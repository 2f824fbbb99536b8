"""The one resume primitive: finished units of a long computation, each saved atomically as it finishes.

A checkpoint belongs to one computation, named by its ``signature`` (the parameters that determine the
result). Two forms, chosen by the path:

* a folder (the default): each finished unit (a block of a phase grid, one claim of ``deepprop
  reproduce``) is one file written to a temporary name and renamed into place (``os.replace`` is atomic),
  so a process killed at any moment leaves every unit either complete or absent;
* a ``.json`` file (``simulate gradients --checkpoint grad.json``): every unit in one JSON document,
  rewritten atomically after each unit (units are small there).

Running the same computation again loads the finished units and computes the rest. Values are JSON-ready
Python objects, or (folders only) dicts of numpy arrays stored as ``.npz``. A checkpoint written for
another signature is replaced by the first new unit, never mixed in.

What is never done: creating the parents of a checkpoint named by the user, writing into (or deleting) a
folder or file that is not a deepprop checkpoint, or reading a corrupted unit as a result. A corrupted
single-file checkpoint (the user's file) raises :class:`CheckpointError` naming it. A folder is deepprop's own
cache of finished units: a unit there that cannot be read back (a crash of the disk, a hand edit) counts as
not finished, so it is computed again, with a :class:`CorruptedUnitWarning` naming the file; a folder whose
signature cannot be read raises :class:`CheckpointError`.

``deepprop sweep`` keeps its trained networks in an SQLite store (:mod:`deepprop.sweep.store`) that
follows the same contract (a row per finished unit, committed atomically, keyed by the unit's identity;
finished units are skipped on resume) and adds what a results table needs: concurrent writers and queries.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from deepprop.atomic import write_atomically
from deepprop.errors import CheckpointError, ParameterError

SIGNATURE_FILE = "signature.json"
FILE_MARKER = "deepprop_checkpoint"
"""Key of a single-file checkpoint's JSON document (its format version): a JSON file without it is not ours."""
FILE_FORMAT = 1


class CorruptedUnitWarning(UserWarning):
    """A saved unit could not be read back; it is discarded and computed again."""


def _canonical(signature: Any) -> Any:
    return json.loads(json.dumps(signature, sort_keys=True, default=str))


def _is_temporary(path: Path) -> bool:
    """An interrupted atomic write (``deepprop.atomic.atomic_write``: ``.NAME.XXXX.part.SUFFIX``)."""
    return path.name.startswith(".") and ".part" in path.name


class Checkpoint:
    """Units of one computation in ``path`` (a folder, or a ``.json`` file); a no-op store in memory when
    ``path`` is None. ``param`` names the option or argument that gave the path (in error messages)."""

    def __init__(self, path: str | os.PathLike[str] | None, signature: Any, *, param: str = "checkpoint"):
        from deepprop.validation import user_path

        self.path = None if path is None else user_path(path, param)
        self.param = param
        self.signature = _canonical(signature)
        self._memory: dict[str, Any] = {}
        self._units: dict[str, Any] = {}  # single-file form: the units on disk
        self._fresh = True  # not yet claimed for this signature
        self.single_file = self.path is not None and self.path.suffix.lower() == ".json"
        if self.path is None:
            return
        if self.single_file:
            self._open_file()
        else:
            self._open_folder()

    @property
    def folder(self) -> Path | None:
        """The folder of a folder checkpoint (None for the single-file form or in memory)."""
        return None if self.single_file else self.path

    # ---- opening -------------------------------------------------------------------------------------

    def _open_file(self) -> None:
        p = self.path
        assert p is not None
        if p.is_dir():
            raise ParameterError(self.param, f"{p} is a directory; give a file name such as checkpoint.json")
        if not p.exists():
            from deepprop.validation import check_output_path

            check_output_path(p, param=self.param)
            return
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{p}: not a readable deepprop checkpoint ({type(exc).__name__}: {exc}); "
                                  f"delete it to start over or choose another --{self.param}") from exc
        if not isinstance(doc, dict) or FILE_MARKER not in doc:
            raise CheckpointError(f"{p}: not a deepprop checkpoint file; refusing to overwrite it (choose "
                                  f"another --{self.param})")
        if doc.get(FILE_MARKER) != FILE_FORMAT or not isinstance(doc.get("units"), dict):
            raise CheckpointError(f"{p}: checkpoint format {doc.get(FILE_MARKER)!r} is not {FILE_FORMAT} (written "
                                  "by another deepprop version, or corrupted); delete it to start over")
        if doc.get("signature") == self.signature:
            self._units = doc["units"]
            self._fresh = False

    def _open_folder(self) -> None:
        p = self.path
        assert p is not None
        if p.exists() and not p.is_dir():
            raise ParameterError(self.param, f"{p} exists and is not a directory")
        if not p.is_dir():
            return
        sig = p / SIGNATURE_FILE
        if not sig.is_file():
            if any(not _is_temporary(f) for f in p.iterdir()):
                raise CheckpointError(f"{p}: holds files that are not a deepprop checkpoint; refusing to write "
                                      "into it")
            return
        try:
            stored = json.loads(sig.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{sig}: corrupted checkpoint signature ({type(exc).__name__}); delete {p} "
                                  "to start over") from exc
        self._fresh = stored != self.signature

    # ---- reading ---------------------------------------------------------------------------------

    def _unit_path(self, key: str, suffix: str) -> Path:
        assert self.path is not None
        return self.path / (urllib.parse.quote(str(key), safe="") + suffix)

    def _find(self, key: str) -> Path | None:
        if self.path is None or self._fresh or self.single_file:
            return None
        for suffix in (".json", ".npz"):
            path = self._unit_path(key, suffix)
            if path.is_file():
                return path
        return None

    def __contains__(self, key: str) -> bool:
        if key in self._memory:
            return True
        if self.single_file:
            return not self._fresh and key in self._units
        path = self._find(key)
        if path is None:
            return False
        try:  # read once here (kept in memory): a unit that cannot be read back is not finished
            self._memory[key] = _read_unit(path)
        except CheckpointError as exc:
            import warnings

            warnings.warn(f"{exc}; discarded, computing it again", CorruptedUnitWarning, stacklevel=2)
            path.unlink(missing_ok=True)
            return False
        return True

    def __getitem__(self, key: str) -> Any:
        if key in self._memory:
            return self._memory[key]
        if self.single_file:
            if self._fresh or key not in self._units:
                raise KeyError(key)
            return self._units[key]
        path = self._find(key)
        if path is None:
            raise KeyError(key)
        return _read_unit(path)

    def keys(self) -> Iterator[str]:
        """Keys of the finished units (saved for this signature, or in memory)."""
        seen = set(self._memory)
        yield from self._memory
        if self.path is None or self._fresh:
            return
        if self.single_file:
            yield from (k for k in self._units if k not in seen)
            return
        if not self.path.is_dir():
            return
        for path in sorted(self.path.iterdir()):
            if path.suffix in (".json", ".npz") and path.name != SIGNATURE_FILE and not _is_temporary(path):
                key = urllib.parse.unquote(path.stem)
                if key not in seen:
                    yield key

    def drop_unreadable(self) -> list[tuple[str, str]]:
        """Discard the saved units that cannot be read back; returns [(key, why)] (for a caller that
        recomputes them and says so)."""
        dropped = []
        for key in list(self.keys()):
            try:
                self[key]
            except CheckpointError as exc:
                dropped.append((key, str(exc)))
                self.discard(key)
        return dropped

    # ---- writing ---------------------------------------------------------------------------------

    def _claim(self) -> None:
        """Make the path this signature's: create the folder (its parent exists), or remove the units a
        previous computation saved there (only deepprop's own files)."""
        assert self.path is not None and not self.single_file
        if self.path.is_dir() and self._fresh:
            for f in self.path.iterdir():
                if f.is_file() and (f.suffix in (".json", ".npz") or _is_temporary(f)):
                    f.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)  # internal folders (OUT/claims/tier, a phase work dir)
        if self._fresh:
            _write_bytes(self.path / SIGNATURE_FILE, json.dumps(self.signature).encode())
            self._fresh = False

    def save(self, key: str, value: Any) -> None:
        """Record a finished unit: dicts of numpy arrays as .npz (folders), anything else as JSON."""
        self._memory[key] = value
        if self.path is None:
            return
        if self.single_file:
            if self._fresh:
                self._units, self._fresh = {}, False
            self._units[key] = json.loads(json.dumps(value))
            doc = {FILE_MARKER: FILE_FORMAT, "signature": self.signature, "units": self._units}
            _write_bytes(self.path, json.dumps(doc).encode())
            return
        self._claim()
        if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            write_atomically(self._unit_path(key, ".npz"), lambda tmp: np.savez(tmp, **value))
        else:
            _write_bytes(self._unit_path(key, ".json"), json.dumps({"key": key, "value": value}).encode())

    def discard(self, key: str) -> None:
        """Forget one unit (``--force`` recomputation, or an unreadable one)."""
        self._memory.pop(key, None)
        if self.path is None:
            return
        if self.single_file:
            if key in self._units and not self._fresh:
                del self._units[key]
                doc = {FILE_MARKER: FILE_FORMAT, "signature": self.signature, "units": self._units}
                _write_bytes(self.path, json.dumps(doc).encode())
            return
        path = self._find(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the checkpoint (once its units have been gathered into the final result): deepprop's
        own files only, then the folder if that leaves it empty."""
        self._memory.clear()
        if self.path is None:
            return
        if self.single_file:
            self.path.unlink(missing_ok=True)
            return
        if not self.path.is_dir() or not (self.path / SIGNATURE_FILE).is_file():
            return
        for f in self.path.iterdir():
            if f.is_file() and (f.suffix in (".json", ".npz") or _is_temporary(f)):
                f.unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass  # something else was put there meanwhile: left alone


def _read_unit(path: Path) -> Any:
    """One saved unit, or CheckpointError naming the file when it cannot be read back."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        doc = json.loads(path.read_text(encoding="utf-8"))
        return doc["value"]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted checkpoint unit ({type(exc).__name__}); delete it to "
                              "recompute") from exc


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` durably (fsync) and atomically: the file is complete or absent."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    write_atomically(path, write)
