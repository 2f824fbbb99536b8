"""Labelled grids: MeanField results as xarray Datasets, exported to tidy CSV or NetCDF."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from numpy.typing import ArrayLike

from deepprop.activations import Activation, TensorFn
from deepprop.checkpoint import Checkpoint
from deepprop.errors import ParameterError
from deepprop.theory.meanfield import PARAMETERS, QUANTITIES, MeanField, mean_field
from deepprop.validation import as_float_array, check_memory

GRID_BYTES_PER_POINT = 400
"""Memory one grid point takes while a phase diagram is assembled and written (the Dataset, the tidy frame
and their copies). Measured: peak RSS of `phase_diagram_resumable` + CSV export grows by ~340 bytes per
point between 1e5 and 4e5 points (tanh, 500 sigma_b2 values); rounded up."""


def check_grid_memory(n_sigma_w2: int, n_other: int) -> None:
    """ParameterError (before anything is allocated) for a grid that would not fit in half the RAM."""
    check_memory("sigma_w2", n_sigma_w2 * n_other * GRID_BYTES_PER_POINT, f"a {n_sigma_w2} x {n_other} grid",
                 "split sigma_w2 into several runs (each `deepprop phase` / phase_diagram_resumable call computes "
                 "its grid in saved blocks, but the finished grid is held in memory)")


CSV_COLUMNS = ("q_star", "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad", "max_depth", "phase")


def to_dataset(mf: MeanField, coords: dict[str, np.ndarray], scalars: dict[str, float]) -> xr.Dataset:
    """Wrap a MeanField computed on the ``ij`` meshgrid of ``coords`` as an xarray Dataset."""
    dims = list(coords)
    data = {name: (dims, getattr(mf, name)) for name in QUANTITIES}
    data["phase"] = (dims, mf.phase.astype(str))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(
        activation=mf.activation,
        depth_multiple=mf.depth_multiple,
        critical_tol=mf.critical_tol,
        **{k: float(v) for k, v in scalars.items()},
    )
    for name, text in DESCRIPTIONS.items():
        if name in ds:
            ds[name].attrs["description"] = text
    return ds


DESCRIPTIONS = {
    "q_star": "fixed point of the variance map (eq. 3)",
    "c_star": "stable fixed point of the correlation map (eq. 4)",
    "chi1": "sigma_w2 * mu2 * E[phi'(sqrt(q*) z)^2] (eq. 5)",
    "chi_c": "slope of the correlation map at c* (eq. 8)",
    "xi_q": "depth scale of the variance, -1/log|dQ/dq| (eq. 7)",
    "xi_c": "depth scale of correlations, -1/log chi_c (eq. 9)",
    "xi_grad": "gradient depth scale, -1/log chi1, signed (eq. 16)",
    "max_depth": "depth_multiple * xi_c: predicted maximum trainable depth",
    "phase": "ordered | critical | chaotic | unbounded | unsolved",
}


def phase_diagram(
    activation: str | Activation | TensorFn,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    *,
    keep_rate: ArrayLike = 1.0,
    noise_mult: ArrayLike = 0.0,
    noise_add: ArrayLike = 0.0,
    depth_multiple: float = 6.0,
    critical_tol: float = 1e-3,
    device: str | torch.device | None = None,
    show_progress: bool = True,
):
    """The outer-product grid of 1-D coordinate arrays as a labelled ``xarray.Dataset``.

    Dimensions are sigma_w2 and sigma_b2, plus keep_rate / noise_mult / noise_add where those are
    given as arrays of more than one value. Variables are the fields of :class:`MeanField`.
    """
    coords = {}
    for name, value in zip(PARAMETERS, (sigma_w2, sigma_b2, keep_rate, noise_mult, noise_add), strict=True):
        v = np.atleast_1d(as_float_array(name, value, allow_empty=True))
        if v.ndim != 1:
            raise ParameterError(name, "must be a scalar or a 1-D array of values")
        if v.size == 0:
            raise ParameterError(name, "must not be empty")
        if name in ("sigma_w2", "sigma_b2") or v.size > 1:
            coords[name] = v
    dims = list(coords)
    sizes = [v.size for v in coords.values()]
    check_grid_memory(sizes[0], int(np.prod(sizes[1:])))
    mesh = np.meshgrid(*coords.values(), indexing="ij")
    grid = dict(zip(dims, mesh, strict=True))
    scalars = {
        name: float(np.asarray(value))
        for name, value in zip(PARAMETERS, (sigma_w2, sigma_b2, keep_rate, noise_mult, noise_add), strict=True)
        if name not in coords
    }
    mf = mean_field(
        activation,
        grid["sigma_w2"],
        grid["sigma_b2"],
        keep_rate=grid.get("keep_rate", scalars.get("keep_rate", 1.0)),
        noise_mult=grid.get("noise_mult", scalars.get("noise_mult", 0.0)),
        noise_add=grid.get("noise_add", scalars.get("noise_add", 0.0)),
        depth_multiple=depth_multiple,
        critical_tol=critical_tol,
        device=device,
        show_progress=show_progress,
    )
    return to_dataset(mf, coords, scalars)


def to_frame(ds: xr.Dataset):
    """Tidy pandas DataFrame: one row per grid point, coordinates first."""
    frame = ds[list(CSV_COLUMNS)].to_dataframe().reset_index()
    return frame


EXPORT_SUFFIXES = (".csv", ".nc")
"""File types :func:`export` writes: tidy CSV, or NetCDF4 (HDF5, through h5netcdf and h5py)."""


def check_export_path(path: str | Path) -> Path:
    """``path`` if :func:`export` can write it (suffix .csv/.nc, folder exists and is writable; for .nc
    the ``io`` extra installed), else a ParameterError / MissingExtraError before any computing."""
    from deepprop.paths import check_output_path

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
    from deepprop.paths import write_atomically

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


def phase_diagram_resumable(
    activation: str,
    sigma_w2: np.ndarray,
    sigma_b2: np.ndarray,
    *,
    work_dir: str | Path,
    block_points: int = 1 << 16,
    show_progress: bool = True,
    **kwargs,
) -> xr.Dataset:
    """:func:`phase_diagram` over (sigma_w2, sigma_b2), computed in blocks of rows that are saved as they
    finish (:class:`deepprop.checkpoint.Checkpoint`), so that a killed run loses at most one block.

    This is also how to compute a grid too large to hold in memory at once: the blocks are computed one
    after the other and only the final labelled Dataset holds every point. Blocks live in
    ``work_dir/.deepprop-phase-<hash of the inputs>/``; the same call again loads the finished ones and
    computes the rest; the folder is removed at the end. ``kwargs`` (scalar noise, depth_multiple,
    device, ...) go to ``phase_diagram``.
    """
    from tqdm import tqdm

    if block_points < 1:
        raise ParameterError("block_points", f"must be an integer >= 1 (got {block_points!r})")
    sigma_w2 = np.asarray(sigma_w2, dtype=np.float64)
    sigma_b2 = np.asarray(sigma_b2, dtype=np.float64)
    check_grid_memory(sigma_w2.size, sigma_b2.size)
    folder = block_folder(work_dir, activation, sigma_w2, sigma_b2, **kwargs)
    ckpt = Checkpoint(folder, {"activation": activation, **{k: repr(v) for k, v in sorted(kwargs.items())},
                               "folder": folder.name})
    rows = max(1, block_points // max(sigma_b2.size, 1))
    starts = range(0, sigma_w2.size, rows)
    names = list(QUANTITIES) + ["phase"]
    parts, attrs = [], None
    for i, start in enumerate(tqdm(starts, desc=f"phase grid ({activation})", unit="block", file=sys.stderr,
                                   disable=len(starts) == 1 or not show_progress)):
        block = sigma_w2[start : start + rows]
        key = f"block{i:06d}"
        if key in ckpt:
            saved = ckpt[key]
            data = {name: (("sigma_w2", "sigma_b2"), saved[name]) for name in names}
            parts.append(xr.Dataset(data, coords={"sigma_w2": block, "sigma_b2": sigma_b2}))
            continue
        ds = phase_diagram(activation, block, sigma_b2, show_progress=False, **kwargs)
        attrs = dict(ds.attrs)
        ckpt.save(key, {name: ds[name].values for name in names})
        parts.append(ds)
    out = xr.concat(parts, dim="sigma_w2")
    if attrs is None:  # every block came from disk: recompute the (cheap) attributes on one point
        attrs = dict(phase_diagram(activation, sigma_w2[:1], sigma_b2[:1], show_progress=False, **kwargs).attrs)
    out.attrs.update(attrs)
    for name, text in DESCRIPTIONS.items():
        out[name].attrs["description"] = text
    ckpt.remove()
    return out
