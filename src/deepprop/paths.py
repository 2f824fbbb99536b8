"""Paths the user names, checked before any work starts, and files written atomically.

One rule for every option that names a place to write:

* a FILE option (``phase --out grid.csv``, ``sweep run --store s.db``, ``--checkpoint grad.json``): its
  folder must already exist and accept new files; the path must not be a directory; its suffix must be
  one the writer knows. :func:`check_output_path`.
* a DIRECTORY option (``figures --out figs/``, ``reproduce --out results/``): it is an existing writable
  directory, or it does not exist and its parent is an existing writable directory (then only the named
  directory itself is created, never its parents). :func:`check_output_dir`.

An empty path is never "the current directory". Every refusal is a :class:`ParameterError` naming the
option and the user's path (never a temporary file of ours). Writability is tested by creating and
removing a file in the folder, which also catches what permission bits do not show (``/proc``, read-only
mounts). :func:`atomic_write` writes through a temporary file in the same folder that replaces the target
only when complete, so a killed or failing command never leaves a half-written result.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from deepprop.errors import ParameterError


def user_path(path: str | os.PathLike, param: str) -> Path:
    """``path`` as a Path (``~`` expanded); ParameterError for an empty string or a non-path."""
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError(param, f"must be a path (got {type(path).__name__})")
    if str(path).strip() == "":
        raise ParameterError(param, "must not be empty (name a file or directory)")
    if "\x00" in str(path):
        raise ParameterError(param, "must not contain a NUL character")
    return Path(path).expanduser()


def _check_writable_dir(d: Path, param: str, shown: str) -> None:
    """``d`` accepts new files: really tried (a temporary file created and removed at once)."""
    if not os.access(d, os.W_OK | os.X_OK):
        raise ParameterError(param, f"directory {d} is not writable (for {shown})")
    try:
        fd, probe = tempfile.mkstemp(prefix=".deepprop-probe-", dir=d)
    except OSError as exc:
        raise ParameterError(param, f"cannot write in directory {d} (for {shown}): "
                                    f"{exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def check_output_path(path: str | os.PathLike, *, param: str = "out", suffixes: Sequence[str] = ()) -> Path:
    """A FILE option: ``path`` as a Path if its folder exists and accepts files, it is not a directory and
    (when ``suffixes`` are given) its suffix is allowed. ParameterError naming ``param`` otherwise; nothing
    is left behind."""
    p = user_path(path, param)
    if suffixes and p.suffix.lower() not in suffixes:
        raise ParameterError(param, f"must end in {' or '.join(suffixes)} (got {str(path)!r})")
    if p.is_dir():
        raise ParameterError(param, f"{p} is a directory; give a file name")
    parent = p.parent
    if not parent.exists():
        raise ParameterError(param, f"directory {parent} does not exist (create it first; {p} is a file name)")
    if not parent.is_dir():
        raise ParameterError(param, f"{parent} is not a directory (cannot hold {p.name})")
    if p.exists() and not p.is_file():
        raise ParameterError(param, f"{p} is not a regular file")
    _check_writable_dir(parent, param, str(p))
    return p


def check_output_dir(path: str | os.PathLike, *, param: str = "out", create: bool = True) -> Path:
    """A DIRECTORY option: an existing writable directory, or a new one whose parent exists (made now when
    ``create``; never its parents)."""
    d = user_path(path, param)
    if d.exists():
        if not d.is_dir():
            raise ParameterError(param, f"{d} exists and is not a directory")
        _check_writable_dir(d, param, str(d))
        return d
    parent = d.parent
    if not parent.exists():
        raise ParameterError(param, f"directory {parent} does not exist (create it first; only {d.name} itself "
                                    "is created)")
    if not parent.is_dir():
        raise ParameterError(param, f"{parent} is not a directory (cannot hold {d.name})")
    _check_writable_dir(parent, param, str(d))
    if create:
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                raise ParameterError(param, f"{d} exists and is not a directory") from None
        except OSError as exc:
            raise ParameterError(param, f"cannot create directory {d}: {exc.strerror or exc}") from None
    return d


def check_input_file(path: str | os.PathLike, *, param: str, what: str = "file") -> Path:
    """A file to read: it exists, is a regular file and can be opened."""
    p = user_path(path, param)
    if not p.exists():
        raise ParameterError(param, f"no such {what}: {p}")
    if p.is_dir():
        raise ParameterError(param, f"{p} is a directory, not a {what}")
    if not os.access(p, os.R_OK):
        raise ParameterError(param, f"{p} is not readable")
    return p


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomically(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp)`` and move ``tmp`` onto ``path`` only if it returns without error."""
    with atomic_write(path) as tmp:
        writer(tmp)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
