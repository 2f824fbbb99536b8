"""Names and labels of the mean-field quantities, and a MeanField as a labelled xarray Dataset.

Kept apart from :mod:`deepprop.theory.meanfield` (which computes) and :mod:`deepprop.theory.grid` (which
builds outer-product grids) so that both can label results without importing each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepprop.prior import PRIOR_FIELDS

QUANTITIES = ("q_star", "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad", "max_depth")
"""The numeric quantities of a MeanField, in the order of every table."""

PARAMETERS = PRIOR_FIELDS

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


def _axis_of(raw: np.ndarray, shape: tuple[int, ...]) -> int | None:
    """The one axis (of ``shape``) an argument given as an array runs along, or None (a scalar, or an array
    varying along several axes). Arrays align on the right, as in numpy broadcasting."""
    if raw.ndim == 0 or raw.ndim > len(shape):
        return None
    offset = len(shape) - raw.ndim
    runs = [offset + i for i, n in enumerate(raw.shape) if n > 1]
    if len(runs) == 1:
        return runs[0] if raw.shape[runs[0] - offset] == shape[runs[0]] else None
    if not runs and raw.ndim == 1:
        return offset  # a length-1 array labels the last axis
    return None


def labelled_dataset(mf: Any, dims: tuple[str, ...] | None = None):
    """``mf`` (a :class:`~deepprop.theory.meanfield.MeanField`) as an ``xarray.Dataset`` (see
    :meth:`MeanField.to_dataset`). ``dims`` names the axes; an argument of that name then labels its axis."""
    import xarray as xr

    shape = tuple(mf.shape)
    raw = mf.prior.keywords() if mf.prior is not None else {p: getattr(mf, p) for p in PARAMETERS}
    raw = {k: np.asarray(v, dtype=np.float64) for k, v in raw.items()}
    names: list[str | None] = list(dims) if dims is not None else [None] * len(shape)
    if len(names) != len(shape):
        raise ValueError(f"dims must name {len(shape)} axes (got {len(names)})")
    coords: dict[str, Any] = {}
    scalars: dict[str, float] = {}
    along: dict[str, int] = {}
    for name in PARAMETERS:
        value = raw[name]
        if value.ndim == 0:
            scalars[name] = float(value)
            continue
        axis = names.index(name) if name in names else _axis_of(value, shape)
        if axis is not None and names[axis] in (None, name) and value.size == shape[axis]:
            names[axis] = name
            coords[name] = value.reshape(-1)
        else:
            along[name] = axis if axis is not None and value.size == shape[axis] else -1
    names = [n if n is not None else f"dim_{i}" for i, n in enumerate(names)]
    for name, axis in along.items():  # arrays that label no axis of their own
        if axis >= 0:
            coords[name] = (names[axis], raw[name].reshape(-1))
        else:
            coords[name] = (names, np.broadcast_to(getattr(mf, name), shape))
    data = {name: (names, np.asarray(getattr(mf, name))) for name in QUANTITIES}
    data["phase"] = (names, np.asarray(mf.phase).astype(str))
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(activation=mf.activation, depth_multiple=mf.depth_multiple, critical_tol=mf.critical_tol,
                    **scalars)
    for name, text in DESCRIPTIONS.items():
        ds[name].attrs["description"] = text
    return ds
