"""A fair peer for the mean-field engine: how careful research code computes one tanh point.

Per point, with the 61-node Gauss-Hermite rule for the standard normal (2-D integrals by its outer
product, 3721 nodes):

* q*  : ``scipy.optimize.brentq`` on Q(q) - q = sigma_w^2 E[tanh(sqrt(q) z)^2] + sigma_b^2 - q, bracketed
        by [sigma_b^2, sigma_w^2 + sigma_b^2] (E[tanh^2] < 1); q* = 0 where Q(q) < q just above 0;
* chi1 = sigma_w^2 E[sech^4(sqrt(q*) z)], dQ/dq = sigma_w^2 E[z tanh sech^2] / sqrt(q*);
* c*  : 1 where chi1 <= 1, else ``brentq`` on C(c) - c over [0, 1 - 1e-12];
  chi_c = sigma_w^2 E[sech^2(u1) sech^2(u2)];
* xi_q = -1/log|dQ/dq|, xi_c = -1/log chi_c, xi_grad = -1/log chi1.

:func:`peer_point` is the simple per-point loop; :func:`peer_vectorised` computes the same numbers for
many points at once with numpy (a safeguarded Newton iteration replaces brentq; same rule, same roots).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

NODES = 61
_Z, _W = np.polynomial.hermite_e.hermegauss(NODES)
_W = _W / math.sqrt(2.0 * math.pi)
_W2 = np.outer(_W, _W)
QUANTITIES = ("q_star", "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad")


def _xi(rate: float) -> float:
    return math.inf if rate == 1.0 else -1.0 / math.log(rate)


def peer_point(sigma_w2: float, sigma_b2: float, xtol: float = 1e-15) -> dict[str, float]:
    """All quantities of one tanh point (see module docstring)."""
    z, w = _Z, _W

    def q_gap(q: float) -> float:
        t = np.tanh(math.sqrt(q) * z)
        return sigma_w2 * float(w @ (t * t)) + sigma_b2 - q

    lo, hi = max(sigma_b2, 1e-300), sigma_w2 + sigma_b2
    q = 0.0 if q_gap(lo) <= 0 else brentq(q_gap, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps)
    sq = math.sqrt(q)
    t = np.tanh(sq * z)
    sech2 = 1.0 - t * t
    chi1 = sigma_w2 * float(w @ (sech2 * sech2))
    slope_q = sigma_w2 * float(w @ (z * t * sech2)) / sq if q > 0 else sigma_w2
    if chi1 <= 1.0 or q == 0.0:
        c, chi_c = 1.0, chi1
    else:
        z1 = z[:, None]

        def pair(c: float, derivative: bool = False) -> float:
            u2 = sq * (c * z1 + math.sqrt(max(1.0 - c * c, 0.0)) * z[None, :])
            t2 = np.tanh(u2)
            if derivative:
                return float((_W2 * (sech2[:, None] * (1.0 - t2 * t2))).sum())
            return float((_W2 * (t[:, None] * t2)).sum())

        def c_gap(c: float) -> float:
            return (sigma_w2 * pair(c) + sigma_b2) / q - c

        top = 1.0 - 1e-12
        if c_gap(0.0) <= 0.0:  # no bias: c = 0 is the stable fixed point
            c = 0.0
        elif c_gap(top) >= 0.0:
            c = top
        else:
            c = brentq(c_gap, 0.0, top, xtol=xtol, rtol=4 * np.finfo(float).eps)
        chi_c = sigma_w2 * pair(c, derivative=True)
    return {"q_star": q, "c_star": c, "chi1": chi1, "chi_c": chi_c, "xi_q": _xi(abs(slope_q)),
            "xi_c": _xi(chi_c), "xi_grad": -1.0 / math.log(chi1) if chi1 != 1.0 else math.inf}


def peer_vectorised(sigma_w2: np.ndarray, sigma_b2: np.ndarray, chunk: int = 16) -> dict[str, np.ndarray]:
    """:func:`peer_point` for arrays of points at once (flat inputs of equal length), in numpy."""
    sw2 = np.asarray(sigma_w2, dtype=np.float64).reshape(-1)
    sb2 = np.asarray(sigma_b2, dtype=np.float64).reshape(-1)
    out = {k: np.empty(sw2.size) for k in QUANTITIES}
    for start in range(0, sw2.size, chunk):
        part = _vector_chunk(sw2[start:start + chunk], sb2[start:start + chunk])
        for k in QUANTITIES:
            out[k][start:start + chunk] = part[k]
    return out


def _moments(q: np.ndarray):
    sq = np.sqrt(q)[:, None]
    t = np.tanh(sq * _Z)
    s2 = 1.0 - t * t
    return t, s2, (t * t) @ _W, (s2 * s2) @ _W, ((_Z * t * s2) @ _W) / np.maximum(sq[:, 0], 1e-300)


def _vector_chunk(sw2: np.ndarray, sb2: np.ndarray) -> dict[str, np.ndarray]:
    # q*: Newton on G(q) = Q(q) - q from the top of the bracket, where G is concave and negative, so the
    # iterates decrease monotonically to the largest root; zero where that root is 0.
    q = sw2 + sb2
    live = np.arange(q.size)
    for _ in range(100):
        ql = q[live]
        _, _, v, _, dv = _moments(ql)
        step = (sw2[live] * v + sb2[live] - ql) / (sw2[live] * dv - 1.0)
        q_new = np.where(np.isfinite(step), np.maximum(ql - step, 0.0), ql)
        q_new = np.where(q_new < 1e-30, 0.0, q_new)
        q[live] = q_new
        live = live[np.abs(q_new - ql) > 1e-15 * np.maximum(ql, 1e-300)]
        if live.size == 0:
            break
    t, s2, _, d2, dv = _moments(q)
    chi1 = sw2 * d2
    slope_q = np.where(q > 0, sw2 * dv, sw2)
    c = np.ones_like(q)
    chi_c = chi1.copy()
    chaotic = (chi1 > 1.0) & (q > 0)
    if chaotic.any():
        c[chaotic], chi_c[chaotic] = _c_star(sw2[chaotic], sb2[chaotic], q[chaotic], t[chaotic], s2[chaotic])
    with np.errstate(divide="ignore"):
        return {"q_star": q, "c_star": c, "chi1": chi1, "chi_c": chi_c,
                "xi_q": np.where(np.abs(slope_q) == 1, np.inf, -1 / np.log(np.abs(slope_q))),
                "xi_c": np.where(chi_c == 1, np.inf, -1 / np.log(chi_c)),
                "xi_grad": np.where(chi1 == 1, np.inf, -1 / np.log(chi1))}


def _c_star(sw2, sb2, q, t1, s1):
    """Newton from c = 0 (monotone from below: the map is convex and increasing on [0, 1])."""
    sq = np.sqrt(q)[:, None, None]
    w1 = t1[:, :, None] * _W2
    d1 = s1[:, :, None] * _W2
    c = np.zeros_like(q)
    der = np.zeros_like(q)
    live = np.arange(q.size)
    for _ in range(100):
        cl = c[live]
        r = np.sqrt(np.maximum(1.0 - cl * cl, 0.0))[:, None, None]
        t2 = np.tanh(sq[live] * (cl[:, None, None] * _Z[None, :, None] + r * _Z[None, None, :]))
        val = (sw2[live] * np.einsum("pij,pij->p", w1[live], t2) + sb2[live]) / q[live]
        der[live] = sw2[live] * np.einsum("pij,pij->p", d1[live], 1.0 - t2 * t2)
        c_new = np.minimum(cl + (val - cl) / (1.0 - der[live]), 1.0 - 1e-12)
        c[live] = c_new
        live = live[np.abs(c_new - cl) > 1e-15]
        if live.size == 0:
            break
    return c, der
