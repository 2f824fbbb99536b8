"""Output paths, checked before any work starts, and files written atomically.

A command that computes for minutes and then cannot write its result wastes the minutes; a file written
half-way by a killed or failing command looks like a result. :func:`check_output_path` refuses, up
front, a path whose folder does not exist or is not writable, or whose suffix is not one the writer
knows; :func:`atomic_write` writes through a temporary file in the same folder that replaces the target
only when complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from deepprop.errors import ParameterError


def check_output_path(path: str | os.PathLike, *, param: str = "out", suffixes: Sequence[str] = ()) -> Path:
    """``path`` as a Path if its folder exists and is writable and (when given) its suffix is allowed.

    Raises :class:`ParameterError` naming ``param`` otherwise; nothing is created.
    """
    p = Path(path).expanduser()
    if suffixes and p.suffix.lower() not in suffixes:
        raise ParameterError(param, f"must end in {' or '.join(suffixes)} (got {str(path)!r})")
    if p.is_dir():
        raise ParameterError(param, f"{p} is a directory; give a file name")
    check_output_dir(p.parent, param=param, create=False)
    return p


def check_output_dir(path: str | os.PathLike, *, param: str = "out", create: bool = True) -> Path:
    """A writable output folder: it exists, or (``create``) its parent exists and it is made now."""
    d = Path(path).expanduser()
    if not d.exists():
        if not create or not d.parent.is_dir():
            missing = d if not create else d.parent
            raise ParameterError(param, f"directory {missing} does not exist (create it first)")
        d.mkdir()
    if not d.is_dir():
        raise ParameterError(param, f"{d} is not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        raise ParameterError(param, f"directory {d} is not writable")
    return d


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
