"""Labelled grids: MeanField results as xarray Datasets, exported to tidy CSV or NetCDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from deepprop.errors import ParameterError
from deepprop.meanfield import QUANTITIES, MeanField

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
    "phase": "ordered | critical | chaotic | unbounded",
}


def to_frame(ds: xr.Dataset):
    """Tidy pandas DataFrame: one row per grid point, coordinates first."""
    frame = ds[list(CSV_COLUMNS)].to_dataframe().reset_index()
    return frame


def export(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a grid to ``.csv`` (tidy) or ``.nc`` (NetCDF4 via h5netcdf, else NetCDF3 via scipy)."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        to_frame(ds).to_csv(path, index=False, float_format="%.10g")
    elif suffix in (".nc", ".netcdf", ".nc4"):
        try:
            import h5netcdf  # noqa: F401

            ds.to_netcdf(path, engine="h5netcdf")
        except ImportError:
            out = ds.copy()
            out["phase"] = out["phase"].astype("S9")
            out.to_netcdf(path, engine="scipy")
    else:
        raise ParameterError("out", f"must end in .csv or .nc (got {path.name!r})")
    return path
