r"""Fixed points of the variance and correlation maps.

q* is the limit of iterating Q from q0 (eq. 3). The solver takes Newton steps on G(q) = Q(q) - q,
falling back to a plain iteration step whenever Newton would leave (0, inf), and stops when
|G| <= 1e-14 max(q, 1). Where the iterates grow past 1e15 the map has no finite fixed point
("unbounded", e.g. relu with sigma_w^2 mu2 > 2). For homogeneous activations (relu, linear) without
bias and additive noise at sigma_w^2 mu2 V(1) = 1 every q is a fixed point and q* = q0.

c* is the STABLE fixed point of the correlation map at q*. K(q, c) = sum_k a_k^2 c^k has
non-negative coefficients, so the map is increasing and convex on [0, 1] and maps 0 to a value >= 0:
* without noise and chi_1 <= 1, c* = 1;
* otherwise (chaotic phase, or any noise, where c = 1 maps below 1) the unique root of
  F(c) = C(c) - c in [0, 1) is stable and Newton's method started at c = 0 converges to it
  monotonically from below (F is convex and decreasing there).
"""

from __future__ import annotations

import torch

from deepprop.maps import CorrelationMap, Setting, chi1, q_map, q_map_slope

Q_UNBOUNDED = 1e15
Q_ZERO = 1e-13


def q_star(s: Setting, q0: torch.Tensor | float = 1.0, max_iter: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve q* = Q(q*) starting from ``q0``.

    Returns
    -------
    q_star : tensor
        NaN where no finite fixed point is reached; values below 1e-13 are reported as 0.
    bounded : bool tensor
        False where the iterates diverge (phase "unbounded").
    """
    shape = s.shape
    q = torch.broadcast_to(torch.as_tensor(q0, dtype=torch.float64, device=s.sigma_w2.device), shape).clone()
    q = q.reshape(-1)
    flat = _flat(s)
    done = torch.zeros_like(q, dtype=torch.bool)
    diverged = torch.zeros_like(done)
    for _ in range(max_iter):
        active = ~(done | diverged)
        if not bool(active.any()):
            break
        sub = flat.select(active)
        qa = q[active]
        big_q = q_map(sub, qa)
        g = big_q - qa
        slope = q_map_slope(sub, qa)
        newton = qa - g / (slope - 1.0)
        ok = torch.isfinite(newton) & (newton >= 0) & (slope != 1.0)
        q_new = torch.where(ok, newton, big_q)
        conv = g.abs() <= 1e-14 * torch.clamp(qa, min=1.0)
        q_new = torch.where(conv, qa, q_new)
        q[active] = q_new
        idx = active.nonzero().squeeze(-1)
        done[idx[conv | (q_new.abs() < 1e-300)]] = True
        diverged[idx[~torch.isfinite(q_new) | (q_new > Q_UNBOUNDED)]] = True
    q = torch.where(diverged | ~done, torch.full_like(q, float("nan")), q)
    q = torch.where(q < Q_ZERO, torch.zeros_like(q), q)
    return q.reshape(shape), (~diverged & done).reshape(shape)


def _flat(s: Setting) -> Setting:
    return Setting(
        s.activation,
        s.kernel,
        s.sigma_w2.reshape(-1),
        s.sigma_b2.reshape(-1),
        s.mu2.reshape(-1),
        s.add_var.reshape(-1),
    )


def c_star(
    s: Setting, q_fixed: torch.Tensor, chi_1: torch.Tensor | None = None, max_iter: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stable fixed point c* of the correlation map at q = q_fixed, and the map's slope there (chi_c).

    NaN where q_fixed is NaN.
    """
    shape = s.shape
    flat = _flat(s)
    qf = q_fixed.reshape(-1)
    if chi_1 is None:
        chi_1 = chi1(flat, qf)
    chi_1 = chi_1.reshape(-1)
    finite = torch.isfinite(qf)
    ordered = finite & flat.noiseless & (chi_1 <= 1.0)
    c = torch.ones_like(qf)
    slope = chi_1.clone()
    need = finite & ~ordered
    if bool(need.any()):
        sub = flat.select(need)
        cmap = CorrelationMap(sub, qf[need])
        cs = torch.zeros_like(qf[need])
        active = torch.ones_like(cs, dtype=torch.bool)
        live = cmap  # the map restricted to the points still iterating
        for _ in range(max_iter):
            if not bool(active.any()):
                break
            ca = cs[active]
            f = live(ca) - ca
            der = live.slope(ca)
            c_new = torch.clamp(ca + f / (1.0 - der), max=1.0)
            bad = ~torch.isfinite(c_new) | (der >= 1.0)
            c_new = torch.where(bad, ca + 0.5 * (1.0 - ca), c_new)
            cs[active] = c_new
            moving = (c_new - ca).abs() > 1e-15 * torch.clamp(c_new.abs(), min=1.0)
            active[active.clone()] = moving
            live = live.restrict(moving)
        c[need] = cs
        slope[need] = cmap.slope(cs)
    c = torch.where(finite, c, torch.full_like(c, float("nan")))
    slope = torch.where(finite, slope, torch.full_like(slope, float("nan")))
    return c.reshape(shape), slope.reshape(shape)
