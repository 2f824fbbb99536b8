"""The engine's predictions for an ensemble's hyperparameters (the theory beside every measurement).

Imported lazily so that simulations run (with theory fields left empty) on a tree where the
mean-field engine has not landed yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepprop.simulate.networks import Ensemble


def _engine() -> Any | None:
    try:
        from deepprop import meanfield
    except ImportError:
        return None
    return meanfield


def available() -> bool:
    """True when ``deepprop.meanfield`` (mean_field, trajectory) can be imported."""
    return _engine() is not None


def _noise_kwargs(ens: Ensemble) -> dict[str, float]:
    nz = ens.noise
    return {"keep_rate": nz.keep_rate, "noise_mult": nz.noise_mult, "noise_add": nz.noise_add}


def point(ens: Ensemble, sigma_w2: float | np.ndarray | None = None) -> dict[str, np.ndarray] | None:
    """Engine fields (q_star, c_star, chi1, chi_c, xi_q, xi_c, xi_grad, phase) at the ensemble's point.

    ``sigma_w2`` defaults to the ensemble's own values (an array when it holds a sweep).
    """
    eng = _engine()
    if eng is None:
        return None
    sw = np.asarray(ens.sigma_w2 if sigma_w2 is None else sigma_w2, dtype=np.float64)
    mf = eng.mean_field(ens.activation, sw, ens.sigma_b2, **_noise_kwargs(ens))
    keys = ("q_star", "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad", "phase")
    return {k: np.asarray(getattr(mf, k)) for k in keys}


def trajectory(ens: Ensemble, q0: float, c0: float, depth: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The theory's q^l, c^l for l = 0..depth (eq. 3-4 with noise), each of shape (len(sigma_w2), depth + 1)."""
    eng = _engine()
    if eng is None:
        return None
    sw = np.asarray(ens.sigma_w2, dtype=np.float64)
    q, c = eng.trajectory(ens.activation, sw, ens.sigma_b2, q0=q0, c0=c0, depth=depth, **_noise_kwargs(ens))
    return np.asarray(q).reshape(len(sw), depth + 1), np.asarray(c).reshape(len(sw), depth + 1)
