"""Parameter checks shared by every layer: each returns the value or raises ParameterError with a message
naming the parameter and its allowed range.

Three families:

* scalars and arrays (:func:`check_positive_int`, :func:`check_positive`, :func:`as_float_array`, ...): a
  string is never a number, a bool is never a count, an empty array is never a grid;
* resources (:func:`array_bytes`, :func:`check_memory`): every command and public function that allocates
  in proportion to its arguments estimates the bytes first and refuses, naming the option, what does not
  fit in the memory available now;
* devices (:func:`check_device`, :func:`resolve_device`): ``cuda`` without CUDA is refused before any work;
* paths (:func:`user_path`, :func:`check_output_path`, :func:`check_output_dir`, :func:`check_input_file`),
  checked before any work starts, one rule for every option that names a place:

  - a FILE option (``phase --out grid.csv``, ``sweep run --store s.db``, ``--checkpoint grad.json``): its
    folder must already exist and accept new files; the path must not be a directory; its suffix must be
    one the writer knows (:func:`check_output_path`);
  - a DIRECTORY option (``figures --out figs/``, ``reproduce --out results/``): it is an existing writable
    directory, or it does not exist and its parent is an existing writable directory (then only the named
    directory itself is created, never its parents) (:func:`check_output_dir`).

  An empty path is never "the current directory". Every refusal names the option and the user's path
  (never a temporary file of ours). Writability is tested by creating and removing a file in the folder,
  which also catches what permission bits do not show (``/proc``, read-only mounts). Writing the file
  itself, atomically, is :mod:`deepprop.atomic`'s.

Every check of what a user gave (numbers, names, devices, paths) lives here.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepprop.errors import ParameterError

if TYPE_CHECKING:
    import torch

MAX_INT64 = 2**63 - 1
"""Largest value of any integer option (seeds, sizes, counts): what torch, numpy and SQLite all hold."""


def _is_text(value: Any) -> bool:
    return isinstance(value, (str, bytes, bytearray, np.str_, np.bytes_))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: Any) -> int | None:
    """``value`` as an int if it is a whole number (not a bool, not text, not 2.5), else None."""
    if isinstance(value, bool) or _is_text(value):
        return None
    try:
        as_int = int(value)
        return as_int if as_int == value else None
    except (TypeError, ValueError, OverflowError):
        return None


def check_int(name: str, value: Any, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    """``value`` as int, or ParameterError unless it is an integer (not a bool, not a string, not 2.5) in
    [minimum, maximum]; the default maximum 2**63 - 1 is what torch, numpy and SQLite integers hold."""
    as_int = _whole(value)
    if as_int is None or not minimum <= as_int <= maximum:
        allowed = f">= {minimum}" if maximum == MAX_INT64 else f"in [{minimum}, {maximum}]"
        if maximum == MAX_INT64 and as_int is not None and as_int > maximum:
            allowed += " and < 2**63"
        raise ParameterError(name, f"must be an integer {allowed} (got {_shown(value)})")
    return as_int


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise ParameterError unless it is an integer >= ``minimum`` (and < 2**63)."""
    return check_int(name, value, minimum)


def check_seed(name: str, value: Any) -> int:
    """A random seed: an integer in [0, 2**63 - 1] (what every generator deepprop uses accepts)."""
    return check_int(name, value, 0, MAX_INT64)


def check_number(name: str, value: Any) -> float:
    """``value`` as a float; ParameterError for strings, bools, None and other non-numbers."""
    if _is_text(value) or isinstance(value, bool) or value is None:
        raise ParameterError(name, f"must be a number (got {type(value).__name__} {_shown(value)})")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, f"must be a number (got {type(value).__name__} {_shown(value)})") from None


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as float, or raise unless it is finite and > 0."""
    v = check_number(name, value)
    if not math.isfinite(v) or v <= 0:
        raise ParameterError(name, f"must be finite and > 0 (got {value!r})")
    return v


def as_float_array(name: str, value: Any, *, allow_empty: bool = False) -> np.ndarray:
    """``value`` (a number, a sequence, a numpy array or a torch tensor, with or without grad) as float64.

    Refused with a ParameterError naming ``name``: strings (``"2.5"`` is not a number), bools, complex
    numbers, ragged or non-numeric sequences and (unless ``allow_empty``) empty arrays. Non-finite entries
    pass; the caller says which ranges it allows."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor: its values, never its graph
        value = value.detach().cpu().numpy()
    if _is_text(value) or isinstance(value, bool) or value is None:
        raise ParameterError(name, f"must be a number or an array of numbers (got {type(value).__name__} "
                                   f"{_shown(value)})")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ParameterError(name, f"must be a number or an array of numbers ({exc})") from None
    if arr.dtype.kind in "OUSV":
        if arr.dtype.kind == "O" and not any(_is_text(v) or isinstance(v, bool) for v in arr.ravel()):
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                arr = None
        else:
            arr = None
        if arr is None:
            raise ParameterError(name, f"must be a number or an array of numbers (got {_shown(value)})")
    if arr.dtype.kind == "b":
        raise ParameterError(name, f"must be a number, not a bool (got {_shown(value)})")
    if arr.dtype.kind == "c":
        raise ParameterError(name, f"must be a real number (got {_shown(value)})")
    if arr.size == 0 and not allow_empty:
        raise ParameterError(name, f"must not be empty (got an array of shape {arr.shape})")
    with np.errstate(over="ignore"):
        return arr.astype(np.float64)


def check_broadcast(**arrays: Any) -> tuple[int, ...]:
    """The common shape of named arrays, or ParameterError naming the first pair that does not broadcast."""
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    try:
        return np.broadcast_shapes(*shapes.values())
    except ValueError:
        pass
    names = list(shapes)
    shape: tuple[int, ...] = ()
    for i, name in enumerate(names):
        try:
            shape = np.broadcast_shapes(shape, shapes[name])
        except ValueError:
            others = ", ".join(f"{n} {shapes[n]}" for n in names[:i] if shapes[n] != ())
            raise ParameterError(name, f"shape {shapes[name]} does not broadcast against {others} "
                                       "(numpy broadcasting: sizes must match or be 1)") from None
    return shape  # pragma: no cover - broadcast_shapes failed above, so some pair fails


_INTEGER = re.compile(r"[+-]?\d+")
MAX_RANGE_VALUES = 10_000_000
"""Largest count of a start:stop:count range (80 MB of float64)."""


def parse_values(text: str, *, integer: bool = False) -> np.ndarray:
    """Values from ``"start:stop:count"`` (inclusive, like numpy.linspace) or ``"a,b,c"``.

    A count below 1 gives an empty array (callers say "empty grid") and infinite ends give non-finite
    values (callers reject them); malformed text raises ValueError with the reason: an empty item
    (``"2,,3"``, ``"2,"``), a non-integer count, or, with ``integer``, a range or value that is not whole
    (``"2:5:3"`` would step by 1.5).
    """
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError("a range is START:STOP:NUM")
        try:
            start, stop = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError("START and STOP of a range must be numbers") from None
        try:
            count = int(parts[2])
        except ValueError:
            raise ValueError(f"NUM of a range must be a whole number (got {parts[2].strip()!r})") from None
        if count > MAX_RANGE_VALUES:  # refused before numpy allocates count floats
            raise ValueError(f"NUM = {count} is more than {MAX_RANGE_VALUES} values")
        with np.errstate(invalid="ignore"):  # infinite ends give non-finite values; callers reject those
            values = np.linspace(start, stop, max(count, 0))
    else:
        items = text.split(",")
        if any(not item.strip() for item in items) and text:
            raise ValueError("empty item in the list (write V1,V2,... with a number between each comma)")
        if integer and all(_INTEGER.fullmatch(v.strip()) for v in items if v.strip()):
            ints = [int(v) for v in items if v.strip()]  # exact: 2**62 + 1 is not rounded through a float
            big = [v for v in ints if abs(v) > MAX_INT64]
            if big:
                raise ValueError(f"{big[0]} does not fit in 64 bits (must be < 2**63)")
            return np.array(ints, dtype=np.int64)
        try:
            values = np.array([float(v) for v in items if v.strip()], dtype=np.float64)
        except ValueError:
            raise ValueError("items of a list must be numbers") from None
    if integer and values.size and np.all(np.isfinite(values)):
        frac = values[np.abs(values - np.round(values)) > 1e-9 * np.maximum(1.0, np.abs(values))]
        if frac.size:
            raise ValueError(f"must be whole numbers, but {text!r} gives {frac[0]:.6g} (for a range, choose NUM "
                             "so that (STOP - START) / (NUM - 1) is a whole number)")
        if np.any(np.abs(values) > 2.0**63):
            raise ValueError(f"{text!r} does not fit in 64 bits (must be < 2**63)")
        values = np.round(values)
    return values


def check_fit_window(name: str, skip: Any, depth: int, min_points: int = 3) -> int:
    """A fit that leaves out ``skip`` layers at each end of 0..depth keeps depth + 1 - 2 skip layers: at
    least ``min_points``."""
    largest = max((depth + 1 - min_points) // 2, 0)
    skip = check_int(name, skip, 0)
    if skip > largest:
        raise ParameterError(name, f"leaves fewer than {min_points} of the {depth + 1} layers to fit (at most "
                                   f"{largest} at depth {depth}; got {skip})")
    return skip


# ---- resources ---------------------------------------------------------------------------------------


def array_bytes(*shapes: Iterable[int] | int, itemsize: int = 8) -> int:
    """Bytes of arrays of the given shapes (Python integers: a huge shape cannot overflow).

    The one memory-estimate function: callers list the arrays they are about to allocate (weights,
    activations, batches, grids, trajectories) and pass the sum to :func:`check_memory`."""
    total = 0
    for shape in shapes:
        dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
        total += math.prod(max(int(d), 0) for d in dims) * int(itemsize)
    return total


def physical_memory_bytes() -> int:
    """Physical memory of this machine (8 GiB where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


def _cgroup_free_bytes() -> int | None:
    """Memory left under this process's cgroup (v2) limit, or None without one."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit == "max":
            return None
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_memory_bytes(device: Any = None) -> int:
    """Memory an allocation can take now: free memory of a CUDA device, else the host's available memory
    (``MemAvailable``: free plus reclaimable caches, within any cgroup limit; physical RAM where unknown)."""
    if device is not None and str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        free = None
    if free is None:
        free = physical_memory_bytes()
    group = _cgroup_free_bytes()
    return free if group is None else min(free, group)


def format_bytes(n: int) -> str:
    """``3.2e+16 bytes (2.98e+07 GiB)``: the exact count and a size a person reads."""
    return f"{n:.3g} bytes ({n / 2**30:.3g} GiB)" if n >= 1e6 else f"{n} bytes ({n / 2**30:.3g} GiB)"


def check_memory(param: str, needed: int, what: str, hint: str = "", *, device: Any = None) -> None:
    """Refuse, before allocating, a job whose estimate (:func:`array_bytes`) exceeds the memory available
    now (:func:`available_memory_bytes`); the message names ``param`` and the bytes needed."""
    limit = available_memory_bytes(device)
    if needed > limit:
        where = "on the GPU" if device is not None and str(device).startswith("cuda") else "on this machine"
        raise ParameterError(param, f"{what} would need ~{format_bytes(needed)} of memory, more than the "
                                    f"{limit / 2**30:.3g} GiB available {where}" + (f"; {hint}" if hint else ""))


def check_memory_terms(terms: dict[str, int], what: str, *, device: Any = None, hint: str = "") -> None:
    """:func:`check_memory` for an allocation made of several arrays, each attributed to the option that
    sizes it (``{"width": ..., "depth": ...}``): a refusal names the option whose arrays weigh most."""
    total = sum(terms.values())
    param = max(terms, key=lambda k: terms[k])
    check_memory(param, total, what, hint, device=device)


# ---- devices -------------------------------------------------------------------------------------------


def check_device(device: Any, name: str = "device") -> Any:
    """``None``, ``"cpu"``, ``"cuda[:N]"`` or a torch.device; ParameterError for anything else, or for cuda
    where PyTorch sees no CUDA device (``"auto"`` is allowed and means cuda when there is one)."""
    if device is None:
        return None
    import torch

    if isinstance(device, str) and device == "auto":
        return device
    if not isinstance(device, (str, torch.device)):
        raise ParameterError(name, f"must be cpu or cuda[:N] (got {type(device).__name__} {_shown(device)})")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ParameterError(name, f"must be cpu or cuda[:N] (got {_shown(device)})") from None
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError(name, f"must be cpu or cuda[:N] (got {_shown(device)})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(name, f"{device} requested but no CUDA device is available (allowed here: cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(name, f"{device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def resolve_device(device: Any) -> torch.device:
    """The torch.device to run on: ``None`` -> cpu; ParameterError for a name that is not a device, anything
    but cpu / cuda[:N], or cuda on a machine without it (torch is imported here, when a device is asked for:
    the theory imports this module without needing torch)."""
    check_device(device)  # a device name (or torch.device): anything else is refused by name
    import torch

    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, TypeError):
        raise ParameterError("device", f"must be cpu or cuda[:N] (got {device!r})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", "cuda requested but no CUDA device is available (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise ParameterError("device", f"must be cpu or cuda[:N] (got {device!r})")
    return dev


# ---- paths ---------------------------------------------------------------------------------------------


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
