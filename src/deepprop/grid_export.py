"""Phase grids on disk: computed in saved blocks (resumable), written as tidy CSV or NetCDF4.

The numerical core (:func:`deepprop.theory.grid.phase_diagram`) computes a labelled grid in memory; this
room adds what touches files: :func:`phase_diagram_resumable` keeps each finished block of rows in a
:class:`~deepprop.checkpoint.Checkpoint`, and :func:`export` writes the grid atomically. Progress reaches
the caller through a ``progress(done, total)`` callback (one call per block); nothing is printed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from deepprop.checkpoint import Checkpoint
from deepprop.errors import ParameterError
from deepprop.prior import Network, NetworkPrior
from deepprop.results import Progress, report_progress
from deepprop.theory.grid import check_grid_memory, grid_axes, phase_diagram
from deepprop.theory.labels import DESCRIPTIONS, QUANTITIES

CSV_COLUMNS = (*QUANTITIES, "phase")

EXPORT_SUFFIXES = (".csv", ".nc")
"""File types :func:`export` writes: tidy CSV, or NetCDF4 (HDF5, through h5netcdf and h5py)."""


def to_frame(ds: xr.Dataset):
    """Tidy pandas DataFrame: one row per grid point, coordinates first."""
    return ds[list(CSV_COLUMNS)].to_dataframe().reset_index()


def check_export_path(path: str | Path) -> Path:
    """``path`` if :func:`export` can write it (suffix .csv/.nc, folder exists and is writable; for .nc
    the ``io`` extra installed), else a ParameterError / MissingExtraError before any computing."""
    from deepprop.validation import check_output_path

    out = check_output_path(path, param="out", suffixes=EXPORT_SUFFIXES)
    if out.suffix.lower() == ".nc":
        _netcdf4_engine()
    return out


def _netcdf4_engine() -> str:
    from deepprop.errors import require

    require("h5netcdf", "io", "writing NetCDF4 (.nc)")
    require("h5py", "io", "writing NetCDF4 (.nc)")
    return "h5netcdf"


def export(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a grid to ``.csv`` (tidy, one row per point) or ``.nc`` (NetCDF4/HDF5 via h5netcdf; the
    ``phase`` labels are variable-length strings). The file appears only when complete (written beside it
    and renamed); a bad suffix, a missing or unwritable folder or a missing ``io`` extra raise first."""
    from deepprop.atomic import write_atomically

    path = check_export_path(path)
    if path.suffix.lower() == ".csv":
        frame = to_frame(ds)
        return write_atomically(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.10g"))
    engine = _netcdf4_engine()
    out = ds.copy()
    out["phase"] = out["phase"].astype(object)  # variable-length str in HDF5, read back as str
    return write_atomically(path, lambda tmp: out.to_netcdf(tmp, engine=engine, format="NETCDF4"))


def block_folder(work_dir: str | Path, activation: str, sigma_w2: np.ndarray, sigma_b2: np.ndarray, **kwargs) -> Path:
    """Where :func:`phase_diagram_resumable` keeps the finished blocks of this exact computation."""
    identity = json.dumps({"activation": activation, **{k: repr(v) for k, v in sorted(kwargs.items())}})
    grid = np.asarray(sigma_w2, dtype=np.float64).tobytes() + b"|" + np.asarray(sigma_b2, dtype=np.float64).tobytes()
    return Path(work_dir) / f".deepprop-phase-{hashlib.sha256(identity.encode() + grid).hexdigest()[:16]}"


def _noise_identity(prior: Network) -> dict:
    """A prior's noise numbers by name (floats where single): a grid's identity names its noise whether it
    came as a NetworkPrior or as keywords (the same numbers give the same folder)."""
    if not isinstance(prior, NetworkPrior):
        return {}
    return {k: float(v) if np.ndim(v) == 0 else v for k, v in prior.noise.numbers().items()}


def phase_diagram_resumable(
    prior: Network,
    sigma_w2: ArrayLike | None = None,
    sigma_b2: ArrayLike | None = None,
    *,
    work_dir: str | Path,
    block_points: int = 1 << 16,
    progress: Progress | None = None,
    **kwargs,
) -> xr.Dataset:
    """:func:`~deepprop.theory.grid.phase_diagram` over (sigma_w2, sigma_b2), computed in blocks of rows that
    are saved as they finish (:class:`deepprop.checkpoint.Checkpoint`), so that a killed run loses at most
    one block.

    This is also how to compute a grid too large to hold in memory at once: the blocks are computed one
    after the other and only the final labelled Dataset holds every point. Blocks live in
    ``work_dir/.deepprop-phase-<hash of the inputs>/``; the same call again loads the finished ones and
    computes the rest; the folder is removed at the end. ``kwargs`` (scalar noise, depth_multiple,
    device, ...) go to ``phase_diagram``; ``progress(done, total)`` is called after each block.
    """
    if block_points < 1:
        raise ParameterError("block_points", f"must be an integer >= 1 (got {block_points!r})")
    given = {**_noise_identity(prior), **kwargs}  # the computation's identity, as the caller named it
    settings = {k: kwargs.pop(k) for k in ("depth_multiple", "critical_tol", "device") if k in kwargs}
    base, coords, scalars = grid_axes(prior, sigma_w2, sigma_b2, kwargs)
    noise = {k: v for k, v in scalars.items() if k not in ("sigma_w2", "sigma_b2")}
    if set(coords) - {"sigma_w2", "sigma_b2"}:
        raise ParameterError(next(iter(set(coords) - {"sigma_w2", "sigma_b2"})),
                             "must be a single value here (the resumable grid runs over sigma_w2 x sigma_b2)")
    sigma_w2, sigma_b2 = (coords[k] if k in coords else np.atleast_1d(scalars[k]) for k in ("sigma_w2", "sigma_b2"))
    check_grid_memory(sigma_w2.size, sigma_b2.size)
    activation = base.activation.name
    folder = block_folder(work_dir, activation, sigma_w2, sigma_b2, **given)
    ckpt = Checkpoint(folder, {"activation": activation, **{k: repr(v) for k, v in sorted(given.items())},
                               "folder": folder.name})
    base = base.replace(**noise)
    rows = max(1, block_points // max(sigma_b2.size, 1))
    starts = range(0, sigma_w2.size, rows)
    names = list(QUANTITIES) + ["phase"]
    parts, attrs = [], None
    for i, start in enumerate(starts):
        block = sigma_w2[start : start + rows]
        key = f"block{i:06d}"
        if key in ckpt:
            saved = ckpt[key]
            data = {name: (("sigma_w2", "sigma_b2"), saved[name]) for name in names}
            parts.append(xr.Dataset(data, coords={"sigma_w2": block, "sigma_b2": sigma_b2}))
        else:
            ds = phase_diagram(base, block, sigma_b2, **settings)
            attrs = dict(ds.attrs)
            ckpt.save(key, {name: ds[name].values for name in names})
            parts.append(ds)
        report_progress(progress, i + 1, len(starts))
    out = xr.concat(parts, dim="sigma_w2")
    if attrs is None:  # every block came from disk: recompute the (cheap) attributes on one point
        attrs = dict(phase_diagram(base, sigma_w2[:1], sigma_b2[:1], **settings).attrs)
    out.attrs.update(attrs)
    for name, text in DESCRIPTIONS.items():
        out[name].attrs["description"] = text
    ckpt.remove()
    return out
