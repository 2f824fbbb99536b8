r"""Fixed points of the variance and correlation maps.

q* is the limit of iterating Q from q0 (eq. 3). The solver takes Newton steps on G(q) = Q(q) - q,
falling back to a plain iteration step whenever Newton would leave (0, inf) (or halving toward 0 where
the fixed point is 0), and stops when |G| <= 1e-14 q. Where the iterates grow past 1e15 the map has no
finite fixed point ("unbounded", e.g. tanh never, gelu with large sigma_w^2). A fixed point that Newton
finds but that is unstable (|dQ/dq| > 1) is never reported: the plain iteration from q0 decides.
Homogeneous activations (relu, linear) have a linear Q and are solved in closed form; without bias and
additive noise at sigma_w^2 mu2 V(1) = 1 every q is a fixed point and q* = q0.

c* is the STABLE fixed point of the correlation map at q*. K(q, c) = sum_k a_k^2 c^k has
non-negative coefficients, so the map is increasing and convex on [0, 1] and maps 0 to a value >= 0:
* without noise and chi_1 <= 1, c* = 1;
* otherwise (chaotic phase, or any noise, where c = 1 maps below 1) the unique root of
  F(c) = C(c) - c in [0, 1) is stable and Newton's method started at c = 0 converges to it
  monotonically from below (F is convex and decreasing there).
"""

from __future__ import annotations

import torch

from deepprop.theory.kernels import SERIES_MAX_ERROR
from deepprop.theory.maps import CorrelationMap, TensorPrior, chi1, q_map_and_slope

Q_UNBOUNDED = 1e15
Q_ZERO = 1e-13


def q_star(
    s: TensorPrior, q0: torch.Tensor | float = 1.0, max_iter: int = 400
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve q* = Q(q*) starting from ``q0``.

    Returns
    -------
    q_star : tensor
        NaN where no finite fixed point is reached; values below 1e-13 are reported as 0.
    bounded : bool tensor
        False where the iterates diverge (phase "unbounded").
    """
    if s.activation.homogeneous:
        return _q_star_linear_map(s, q0)
    shape = s.shape
    flat = s.flatten()
    q = torch.broadcast_to(torch.as_tensor(q0, dtype=torch.float64, device=s.sigma_w2.device), shape)
    q = q.reshape(-1).clone()
    status = torch.zeros_like(q, dtype=torch.int8)  # 0 running, 1 converged, 2 diverged
    work = _WorkingSet(flat, q.numel(), q.device)
    qa = q.clone()
    for _ in range(max_iter):
        big_q, slope = q_map_and_slope(work.setting, qa)
        g = big_q - qa
        newton = qa - g / (slope - 1.0)
        ok = torch.isfinite(newton) & (newton >= 0) & (slope != 1.0)
        # Below 1e-25 the iterate has reached the fixed point q* = 0 (kernels floor q at 1e-30).
        conv = (g.abs() <= 1e-14 * qa) | (qa.abs() < 1e-25)
        # Newton below 0 while G < 0 means the fixed point is 0 (reached through rounding): halve toward
        # it. Elsewhere a failed Newton step falls back to one plain iteration step.
        fallback = torch.where((newton < 0) & (g < 0), 0.5 * qa, big_q)
        q_new = torch.where(conv, qa, torch.where(ok, newton, fallback))
        diverged = ~torch.isfinite(q_new) | (q_new > Q_UNBOUNDED)
        q[work.index] = q_new
        status[work.index[conv]] = 1
        status[work.index[diverged & ~conv]] = 2
        running = ~(conv | diverged)
        if not bool(running.any()):
            break
        qa = work.keep(running, q_new)
    # Newton may land on an UNSTABLE fixed point (relu without bias above sigma_w^2 mu2 = 2 has q = 0),
    # which the layer-to-layer iteration never reaches. There, follow the plain iteration from q0.
    converged = status == 1
    if bool(converged.any()):
        _, slope = q_map_and_slope(flat, torch.where(converged, q, torch.ones_like(q)))
        unstable = converged & (slope > 1.0 + 1e-9)
        if bool(unstable.any()):
            q0_flat = torch.broadcast_to(torch.as_tensor(q0, dtype=q.dtype, device=q.device), shape).reshape(-1)
            q_it, ok = _plain_iteration(flat.select(unstable), q0_flat[unstable].clone())
            q[unstable] = q_it
            status[unstable] = torch.where(ok, 1, 2).to(status.dtype)
    bounded = status == 1
    q = torch.where(bounded, q, torch.full_like(q, float("nan")))
    q = torch.where(q < Q_ZERO, torch.zeros_like(q), q)
    return q.reshape(shape), bounded.reshape(shape)


def _q_star_linear_map(s: TensorPrior, q0: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Homogeneous phi (relu, linear): V(q) = q V(1), so Q(q) = a q + b is linear and
    q* = b / (1 - a) for a < 1; at a = 1 (to 1e-12) without offset every q is fixed and q* = q0;
    otherwise the iteration grows without bound."""
    one = torch.ones_like(s.sigma_w2)
    a = s.sigma_w2 * s.mu2 * s.kernel.second_moment(one)
    b = s.sigma_w2 * s.add_var + s.sigma_b2
    q0t = torch.broadcast_to(torch.as_tensor(q0, dtype=a.dtype, device=a.device), a.shape)
    marginal = ((a - 1.0).abs() <= 1e-12) & (b == 0)
    contracting = (a < 1.0) & ~marginal
    q = torch.where(contracting, b / torch.where(contracting, 1.0 - a, one), torch.full_like(a, float("nan")))
    q = torch.where(marginal, q0t, q)
    return q, contracting | marginal


def _plain_iteration(s: TensorPrior, q: torch.Tensor, max_iter: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    """q <- Q(q) until it settles (relative step 1e-13) or passes 1e15; returns (q, converged)."""
    ok = torch.zeros_like(q, dtype=torch.bool)
    for _ in range(max_iter):
        q_new, _ = q_map_and_slope(s, q)
        ok = (q_new - q).abs() <= 1e-13 * q_new.abs()
        q = q_new
        if bool((ok | ~torch.isfinite(q) | (q > Q_UNBOUNDED)).all()):
            break
    return q, ok & torch.isfinite(q)


class _WorkingSet:
    """The points still iterating. Compacted only when a quarter has finished, since gathering every
    iteration costs more than computing a few finished points again."""

    def __init__(self, setting: TensorPrior, n: int, device: torch.device, on_compact=None):
        self.setting = setting
        self.index = torch.arange(n, device=device)
        self.running = torch.ones(n, dtype=torch.bool, device=device)
        self.on_compact = on_compact

    def keep(self, running: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Mark which points still run; return the values to iterate on next."""
        self.running = running
        if int(running.sum()) <= 0.75 * running.numel():
            self.index = self.index[running]
            self.setting = self.setting.select(running)
            if self.on_compact is not None:
                self.on_compact(running)
            self.running = torch.ones(self.index.numel(), dtype=torch.bool, device=running.device)
            return values[running]
        return values


def c_star(
    s: TensorPrior, q_fixed: torch.Tensor, chi_1: torch.Tensor | None = None, max_iter: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stable fixed point c* of the correlation map at q = q_fixed, and the map's slope there (chi_c).

    NaN where q_fixed is NaN.
    """
    shape = s.shape
    flat = s.flatten()
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
        cs = _newton_from_below(cmap, torch.zeros_like(qf[need]), max_iter)
        chi_c = cmap.slope(cs)
        # Where the truncated Hermite series is not accurate enough at c* (close to c = 1), polish the
        # root with direct quadrature. The series under-estimates the map, so its root lies below the
        # true one and is a valid monotone starting point.
        redo = cmap.error_bound(cs) > SERIES_MAX_ERROR
        if bool(redo.any()):
            direct = CorrelationMap(sub.select(redo), qf[need][redo], direct=True)
            cs[redo] = _newton_from_below(direct, cs[redo], max_iter)
            chi_c[redo] = direct.slope(cs[redo])
        c[need] = cs
        slope[need] = chi_c
    c = torch.where(finite, c, torch.full_like(c, float("nan")))
    slope = torch.where(finite, slope, torch.full_like(slope, float("nan")))
    return c.reshape(shape), slope.reshape(shape)


def _newton_from_below(cmap: CorrelationMap, c0: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Newton's method on F(c) = C(c) - c from points left of the root (monotone by convexity)."""
    cs = c0.clone()
    live = [cmap]  # the map restricted to the working set

    def restrict(mask: torch.Tensor) -> None:
        live[0] = live[0].restrict(mask)

    work = _WorkingSet(cmap.setting, cs.numel(), cs.device, on_compact=restrict)
    ca = cs.clone()
    for _ in range(max_iter):
        f = live[0](ca) - ca
        der = live[0].slope(ca)
        c_new = torch.clamp(ca + f / (1.0 - der), max=1.0)
        bad = ~torch.isfinite(c_new) | (der >= 1.0)
        c_new = torch.where(bad, ca + 0.5 * (1.0 - ca), c_new)
        # Stop at a step of 1e-14 or once the residual is at round-off level (near criticality
        # 1 - chi_c is small and round-off in F limits the attainable step).
        moving = ((c_new - ca).abs() > 1e-14) & (f.abs() > 1e-15) & work.running
        c_new = torch.where(work.running, c_new, ca)
        cs[work.index] = c_new
        if not bool(moving.any()):
            break
        ca = work.keep(moving, c_new)
    return cs
