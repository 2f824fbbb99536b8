"""Second moments of a step's output for a pair of inputs, and the Gaussian expectations behind them.

A :class:`Moments` holds, for the two inputs a and b of a profile, the per-element mean-field moments
of one step's output: ``qa = E[y_a^2]``, ``qb``, ``qab = E[y_a y_b]``, the means ``ma``, ``mb`` and
``t = E[(dy)^2]`` for a random input tangent dx ~ N(0, I) (the forward-mode Jacobian-vector product).
Expectations are over random weights (mean field); each array is constant along the step's feature
(channel) dimension, which is kept with size 1 so that it broadcasts over the real tensor.

Activations of zero-mean Gaussian inputs (pre-activations) use the engine's kernels
(:func:`deepprop.theory.kernels.kernel_for`): V(q) = E[phi^2], K(q, c) = E[phi(u1) phi(u2)] and
E[phi'^2] (eq. 3-5). Inputs that are not zero-mean Gaussian (an activation applied to a residual stream
that already carries ReLU outputs, or to raw data) are approximated by a Gaussian with the same mean and
variance, integrated here by Gauss-Hermite quadrature; the profile labels such steps "approximate".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from deepprop.activations import Activation
from deepprop.theory import gauss
from deepprop.theory.kernels import Q_FLOOR, kernel_for

EXACT, APPROXIMATE, NONE = "exact", "approximate", "none"
_RANK = {EXACT: 0, APPROXIMATE: 1, NONE: 2}


def worst(*labels: str) -> str:
    """The weakest of several theory labels (exact < approximate < none)."""
    return max(labels, key=_RANK.__getitem__)


@dataclass(frozen=True)
class Moments:
    """Mean-field moments of one step's output (see module docstring); float64 tensors that broadcast
    to the per-example shape of the output. ``gaussian``: the output is a zero-mean Gaussian field
    (a pre-activation), so that an activation applied to it is exact."""

    qa: torch.Tensor
    qb: torch.Tensor
    qab: torch.Tensor
    ma: torch.Tensor
    mb: torch.Tensor
    t: torch.Tensor
    gaussian: bool
    label: str
    source: str

    def but(self, **changes) -> Moments:
        return replace(self, **changes)

    @property
    def q(self) -> float:
        """Mean squared entry over the two inputs (the profile's q)."""
        return 0.5 * (float(self.qa.mean()) + float(self.qb.mean()))

    @property
    def c(self) -> float:
        """Correlation of the two inputs' representations: sum(y_a y_b) / sqrt(sum y_a^2 sum y_b^2)."""
        den = math.sqrt(float(self.qa.mean()) * float(self.qb.mean()))
        return float(self.qab.mean()) / den if den > 0 else math.nan

    @property
    def tangent(self) -> float:
        """Mean squared entry of the tangent."""
        return float(self.t.mean())


def broadcast(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.contiguous() for t in torch.broadcast_tensors(*tensors)]


def _unique_rows(*columns: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Distinct rows of the flattened columns (most maps repeat a few values) and the inverse index."""
    stacked = np.ascontiguousarray(torch.stack([c.reshape(-1) for c in columns], dim=1).numpy())
    rows = stacked.view(np.dtype((np.void, stacked.dtype.itemsize * stacked.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    uniq = torch.from_numpy(stacked[first])
    return [uniq[:, i] for i in range(uniq.shape[1])], torch.from_numpy(inverse.reshape(-1))


def mean_of_phi(act: Activation, q: torch.Tensor) -> torch.Tensor:
    """E[phi(sqrt(q) z)]: sqrt(q) E[phi(z)] for a positively homogeneous phi, else by the engine's quadrature."""
    if act.homogeneous:
        one = gauss.expect(act.fn, act, torch.ones(1, dtype=torch.float64))
        return torch.sqrt(q) * one[0]
    return gauss.expect(act.fn, act, q)


@lru_cache(maxsize=32)
def _kernel(activation: Activation):
    return kernel_for(activation)


def gaussian_activation(act: Activation, qa: torch.Tensor, qb: torch.Tensor, qab: torch.Tensor,
                        t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(E[phi(u_a)^2], E[phi(u_b)^2], E[phi(u_a) phi(u_b)], E[phi(u_a)], E[phi(u_b)], E[phi'(u_a)^2] t)
    for zero-mean Gaussian (u_a, u_b) with variances qa, qb and covariance qab, by the engine.

    The cross term is K(sqrt(qa qb), c): exact when qa = qb or when phi is positively homogeneous.
    """
    qa, qb, qab, t = broadcast(qa, qb, qab, t)
    shape = qa.shape
    (ua, ub, uab), inverse = _unique_rows(qa, qb, qab)
    kernel = _kernel(act)
    with torch.no_grad():
        ua_f, ub_f = ua.clamp(min=Q_FLOOR), ub.clamp(min=Q_FLOOR)
        va = kernel.second_moment(ua_f)
        vb = kernel.second_moment(ub_f)
        qg = torch.sqrt(ua_f * ub_f)
        c = (uab / qg).clamp(-1.0, 1.0)
        k = kernel.pair(qg).value(c)
        mean_a = mean_of_phi(act, ua_f)
        mean_b = mean_of_phi(act, ub_f)
        d = kernel.derivative_moment(ua_f)
    outs = [x[inverse].reshape(shape) for x in (va, vb, k, mean_a, mean_b, d)]
    return outs[0], outs[1], outs[2], outs[3], outs[4], outs[5] * t


def gaussian_pair_slope(act: Activation, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """E[phi'(u1) phi'(u2)] for zero-mean Gaussians of variance q and correlation c (Price: dK/dc / q)."""
    q, c = broadcast(q, c)
    (uq, uc), inverse = _unique_rows(q, c)
    uq = uq.clamp(min=Q_FLOOR)
    with torch.no_grad():
        s = _kernel(act).pair(uq).slope(uc.clamp(-1.0, 1.0)) / uq
    return s[inverse].reshape(q.shape)


def gaussian_pair_value(act: Activation, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """K(q, c) = E[phi(u1) phi(u2)] for zero-mean Gaussians of variance q and correlation c."""
    q, c = broadcast(q, c)
    (uq, uc), inverse = _unique_rows(q, c)
    with torch.no_grad():
        k = _kernel(act).pair(uq.clamp(min=Q_FLOOR)).value(uc.clamp(-1.0, 1.0))
    return k[inverse].reshape(q.shape)


# ------------------------------------------------------------------ shifted (non-zero-mean) Gaussian inputs

_GH_1D = 96
_GH_2D = 48


@lru_cache(maxsize=4)
def _hermite(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.as_tensor(z, dtype=torch.float64), torch.as_tensor(w / math.sqrt(2 * math.pi), dtype=torch.float64)


def shifted_moments(act: Activation, m: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(E[phi], E[phi^2], E[phi'^2]) of m + sqrt(v) z, z ~ N(0, 1), by Gauss-Hermite quadrature."""
    m, v = broadcast(m, v)
    (um, uv), inverse = _unique_rows(m, v)
    z, w = _hermite(_GH_1D)
    u = um[:, None] + torch.sqrt(uv.clamp(min=0.0))[:, None] * z
    phi, dphi = act.value_and_derivative(u)
    outs = [(w * f).sum(-1) for f in (phi, phi * phi, dphi * dphi)]
    return tuple(o[inverse].reshape(m.shape) for o in outs)


def shifted_pair(act: Activation, ma: torch.Tensor, va: torch.Tensor, mb: torch.Tensor, vb: torch.Tensor,
                 rho: torch.Tensor, derivative: bool = False) -> torch.Tensor:
    """E[f(u1) f(u2)] with u1 = ma + sqrt(va) z1, u2 = mb + sqrt(vb)(rho z1 + sqrt(1 - rho^2) z2), f = phi
    (or phi' when ``derivative``), by a tensor-product Gauss-Hermite rule."""
    ma, va, mb, vb, rho = broadcast(ma, va, mb, vb, rho)
    shape = ma.shape
    cols, inverse = _unique_rows(ma, va, mb, vb, rho)
    ma_u, va_u, mb_u, vb_u, rho_u = cols
    z, w = _hermite(_GH_2D)
    rho_u = rho_u.clamp(-1.0, 1.0)
    out = torch.empty_like(ma_u)
    chunk = 4096
    f = act.derivative if derivative else act.fn
    for start in range(0, ma_u.numel(), chunk):
        sl = slice(start, start + chunk)
        sa, sb = torch.sqrt(va_u[sl].clamp(min=0.0)), torch.sqrt(vb_u[sl].clamp(min=0.0))
        r = rho_u[sl]
        u1 = ma_u[sl, None] + sa[:, None] * z  # (P, n)
        inner = r[:, None, None] * z[None, :, None] + torch.sqrt(1 - r * r)[:, None, None] * z[None, None, :]
        u2 = mb_u[sl, None, None] + sb[:, None, None] * inner  # (P, n, n)
        f2 = (f(u2) * w[None, None, :]).sum(-1)  # (P, n)
        out[sl] = (f(u1) * f2 * w[None, :]).sum(-1)
    return out[inverse].reshape(shape)


def shifted_activation(act: Activation, s: Moments) -> tuple[torch.Tensor, ...]:
    """The outputs of :func:`gaussian_activation` for inputs that are not zero-mean Gaussian, treated as
    Gaussians with the same means and variances (an approximation)."""
    qa, qb, qab, ma, mb, t = broadcast(s.qa, s.qb, s.qab, s.ma, s.mb, s.t)
    va, vb = (qa - ma * ma).clamp(min=0.0), (qb - mb * mb).clamp(min=0.0)
    mean_a, second_a, deriv_a = shifted_moments(act, ma, va)
    mean_b, second_b, _ = shifted_moments(act, mb, vb)
    den = torch.sqrt(va * vb)
    rho = torch.where(den > 0, (qab - ma * mb) / torch.where(den > 0, den, torch.ones_like(den)),
                      torch.zeros_like(den))
    cross = shifted_pair(act, ma, va, mb, vb, rho)
    return second_a, second_b, cross, mean_a, mean_b, deriv_a * t
