"""The engine's predictions for an ensemble's prior (the theory beside every measurement)."""

from __future__ import annotations

import numpy as np

from deepprop.networks import Ensemble
from deepprop.theory import meanfield
from deepprop.theory.backprop import gradient_theory


def point(ens: Ensemble, sigma_w2: float | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Engine fields (q_star, c_star, chi1, chi_c, xi_q, xi_c, xi_grad, phase) at the ensemble's point.

    ``sigma_w2`` defaults to the ensemble's own values (an array when it holds a sweep).
    """
    prior = ens.prior if sigma_w2 is None else ens.prior.replace(sigma_w2=np.asarray(sigma_w2, dtype=np.float64))
    mf = meanfield.mean_field(prior)
    keys = ("q_star", "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad", "phase")
    return {k: np.asarray(getattr(mf, k)) for k in keys}


def trajectory(ens: Ensemble, q0: float, c0: float, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The theory's q^l, c^l for l = 0..depth (eq. 3-4 with noise), each of shape (len(sigma_w2), depth + 1)."""
    n = len(ens.sigma_w2)
    q, c = meanfield.trajectory(ens.prior, q0=q0, c0=c0, depth=depth)
    return np.asarray(q).reshape(n, depth + 1), np.asarray(c).reshape(n, depth + 1)


def critical_sigma_w2(ens: Ensemble) -> float:
    """The sigma_w2 with chi1 = 1 at the ensemble's sigma_b2 and noise (NaN where none)."""
    return float(np.asarray(meanfield.critical_sigma_w2(ens.prior)).reshape(-1)[0])


def gradient_point(ens: Ensemble) -> dict[str, np.ndarray]:
    """Per sigma_w2 of the ensemble: the engine's point fields plus the backprop theory (xi_cov of eq. 17,
    kappa and the finite-width typical scale xi_grad_typical) and a reason where xi_cov is undefined."""
    th = point(ens)
    n = len(ens.sigma_w2)
    bp = gradient_theory(ens.prior, width=ens.width, weights=ens.weights)
    out = {k: np.asarray(v).reshape(n) for k, v in th.items()}
    for k in ("xi_cov", "chi_c", "kappa", "xi_grad_typical"):
        out[k] = np.asarray(bp[k]).reshape(n)
    out["xi_cov_reason"] = np.array([None if np.isfinite(c) else
                                     "no finite fixed point q* (phase unbounded): chi_c is undefined"
                                     for c in out["chi_c"]], dtype=object)
    return out
