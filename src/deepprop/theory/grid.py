"""Labelled grids: the outer product of 1-D parameter axes as an xarray Dataset (``phase_diagram``).

Pure computation: writing a grid to CSV / NetCDF and computing it in saved, resumable blocks live a room
above, in :mod:`deepprop.grid_export`.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

from deepprop.errors import ParameterError
from deepprop.prior import Network, NetworkPrior, as_prior
from deepprop.results import Progress
from deepprop.theory.labels import DESCRIPTIONS, PARAMETERS, QUANTITIES
from deepprop.theory.meanfield import mean_field
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


def grid_axes(prior: Network, sigma_w2: ArrayLike | None, sigma_b2: ArrayLike | None,
              axes: dict[str, ArrayLike]) -> tuple[NetworkPrior, dict[str, np.ndarray], dict[str, float]]:
    """The base prior of a grid and its arguments split into 1-D axes and scalars (see :func:`phase_diagram`)."""
    if isinstance(prior, NetworkPrior):
        base = prior
    else:
        if sigma_w2 is None or sigma_b2 is None:
            raise ParameterError("sigma_w2" if sigma_w2 is None else "sigma_b2",
                                 "is required (or pass a NetworkPrior)")
        base = as_prior(prior, 1.0, 0.0, extra_noise=axes.pop("extra_noise", ()))
    unknown = set(axes) - set(PARAMETERS)
    if unknown:
        raise TypeError(f"phase_diagram() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    given = {"sigma_w2": sigma_w2, "sigma_b2": sigma_b2, **axes}
    values = {**base.keywords(), **{k: v for k, v in given.items() if v is not None}}
    coords: dict[str, np.ndarray] = {}
    scalars: dict[str, float] = {}
    for name in PARAMETERS:
        v = as_float_array(name, values[name], allow_empty=True)
        if v.ndim == 0:
            scalars[name] = float(v)
        elif v.ndim == 1 and v.size:
            coords[name] = v
        else:
            raise ParameterError(name, "must be a scalar or a 1-D array of values" if v.ndim != 1 else
                                 "must not be empty")
    return base, coords, scalars


def phase_diagram(
    prior: Network,
    sigma_w2: ArrayLike | None = None,
    sigma_b2: ArrayLike | None = None,
    *,
    depth_multiple: float = 6.0,
    critical_tol: float = 1e-3,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    show_progress: bool = False,
    **axes: ArrayLike,
):
    """The outer-product grid of the given parameter axes as a labelled ``xarray.Dataset``.

    ``phase_diagram("tanh", sw2_values, sb2_values, keep_rate=...)``, or ``phase_diagram(prior, ...)`` where
    the prior gives the activation, the noise and every number not given here. Every numeric argument is
    treated the same: a 1-D array is a dimension (in the order of ``PRIOR_FIELDS``), a scalar an attribute.
    Variables are the quantities of :class:`MeanField`.
    ``progress(done, total)`` is called after each computed block (``show_progress`` does nothing).
    """
    base, coords, scalars = grid_axes(prior, sigma_w2, sigma_b2, dict(axes))
    sizes = [v.size for v in coords.values()] or [1]
    check_grid_memory(sizes[0], int(np.prod(sizes[1:])))
    dims = tuple(coords)
    shaped = {name: v.reshape([-1 if i == k else 1 for i in range(len(dims))]) for k, (name, v) in
              enumerate(coords.items())}
    mesh = dict(zip(dims, np.meshgrid(*coords.values(), indexing="ij"), strict=True)) if dims else {}
    grid = base.replace(**scalars, **mesh)
    mf = mean_field(grid, depth_multiple=depth_multiple, critical_tol=critical_tol, device=device,
                    progress=progress)
    mf.prior = base.replace(**scalars, **shaped)  # the axes as given, for the labels
    return mf.to_dataset(dims)


__all__ = ["DESCRIPTIONS", "GRID_BYTES_PER_POINT", "QUANTITIES", "check_grid_memory", "phase_diagram"]
