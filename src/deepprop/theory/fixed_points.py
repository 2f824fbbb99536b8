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

import math

import torch

from deepprop.theory.kernels import SERIES_MAX_ERROR
from deepprop.theory.maps import CorrelationMap, TensorPrior, chi1, q_map_and_slope, q_moments

Q_UNBOUNDED = 1e15
Q_ZERO = 1e-13
START_ORDER = 31  # Mehler terms of the cheap first solve for c*
ROOT_ROUNDOFF = 1e-15  # how far the orders > 63 may move c* before the full series is used
ILL_CONDITIONED = 1e-2  # 1 - chi_c below which c* takes the full series by quadrature (see c_star)


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
    q, bounded, _, _, _ = solve_q_star(s, q0, max_iter)
    return q, bounded


def solve_q_star(
    s: TensorPrior, q0: torch.Tensor | float = 1.0, max_iter: int = 400, start: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`q_star` plus dQ/dq and chi_1 at q* (NaN where unbounded), and ``unsolved``: True where the
    iteration neither converged nor diverged within ``max_iter`` steps (not bounded, but not shown unbounded).

    Both come from the quadrature pass that confirmed convergence (phi and phi' are evaluated once per
    Newton step for Q, dQ/dq and chi_1 together), so they cost no extra pass. ``start`` (flat, one value
    per point) replaces the tabulated :func:`warm_start` from q0 as the first quadrature iterate, for
    callers that computed warm starts over a larger batch at once.
    """
    if s.activation.homogeneous:
        q, bounded = _q_star_linear_map(s, q0)
        q_eval = torch.nan_to_num(q, nan=1.0)
        nan = torch.full_like(q, float("nan"))
        _, slope, chi = q_moments(s, q_eval)
        return (q, bounded, torch.where(bounded, slope, nan), torch.where(bounded, chi, nan),
                torch.zeros_like(bounded))
    shape = s.shape
    flat = s.flatten()
    q = torch.broadcast_to(torch.as_tensor(q0, dtype=torch.float64, device=s.sigma_w2.device), shape)
    q = q.reshape(-1).clone()
    q_start = q.clone()
    q = warm_start(flat, q) if start is None else start.reshape(-1).clone()
    status = torch.zeros_like(q, dtype=torch.int8)  # 0 running, 1 converged, 2 diverged
    slope_at = torch.full_like(q, float("nan"))
    chi_at = torch.full_like(q, float("nan"))
    work = _WorkingSet(flat, q.numel(), q.device)
    qa = q.clone()
    for _ in range(max_iter):
        big_q, slope, chi = q_moments(work.setting, qa)
        step, g = _newton_update(big_q, slope, qa)
        # Below 1e-25 the iterate has reached the fixed point q* = 0 (kernels floor q at 1e-30).
        conv = (g.abs() <= 1e-14 * qa) | (qa.abs() < 1e-25)
        q_new = torch.where(conv, qa, step)
        diverged = ~torch.isfinite(q_new) | (q_new > Q_UNBOUNDED)
        done = conv & work.running
        q[work.index] = q_new
        status[work.index[done]] = 1
        status[work.index[diverged & ~conv & work.running]] = 2
        slope_at[work.index[done]] = slope[done]
        chi_at[work.index[done]] = chi[done]
        running = ~(conv | diverged) & work.running
        if not bool(running.any()):
            break
        qa = work.keep(running, q_new)
    # Newton may land on an UNSTABLE fixed point (relu without bias above sigma_w^2 mu2 = 2 has q = 0),
    # which the layer-to-layer iteration never reaches. There, follow the plain iteration from q0.
    unstable = (status == 1) & (slope_at > 1.0 + 1e-9)
    if bool(unstable.any()):
        sub = flat.select(unstable)
        q_it, ok = _plain_iteration(sub, q_start[unstable].clone())
        q[unstable] = q_it
        status[unstable] = torch.where(ok, 1, 2).to(status.dtype)
        _, slope_at[unstable], chi_at[unstable] = q_moments(sub, torch.nan_to_num(q_it, nan=1.0))
    bounded = status == 1
    unsolved = status == 0
    nan = torch.full_like(q, float("nan"))
    q = torch.where(bounded, q, nan)
    q = torch.where(q < Q_ZERO, torch.zeros_like(q), q)
    slope_at = torch.where(bounded, slope_at, nan)
    chi_at = torch.where(bounded, chi_at, nan)
    return (q.reshape(shape), bounded.reshape(shape), slope_at.reshape(shape), chi_at.reshape(shape),
            unsolved.reshape(shape))


def _newton_update(big_q, slope, qa):
    """One safeguarded Newton step on G(q) = Q(q) - q; returns (step target, G)."""
    g = big_q - qa
    newton = qa - g / (slope - 1.0)
    ok = torch.isfinite(newton) & (newton >= 0) & (slope != 1.0)
    # Newton below 0 while G < 0 means the fixed point is 0 (reached through rounding): halve toward
    # it. Elsewhere a failed Newton step falls back to one plain iteration step.
    fallback = torch.where((newton < 0) & (g < 0), 0.5 * qa, big_q)
    return torch.where(ok, newton, fallback), g


class _VarianceTable:
    """V(q) and dV/d(log q) of one activation on q_j = 10^(-30 + j / per_decade) up to 1e15, for a
    surrogate V by cubic Hermite interpolation in log q. Decades are computed when first needed.

    Measured for tanh (relative error of the surrogate V): 4e-9 at 64 points a decade, ~1e-15 at 4096
    (h^4 scaling), so a start from the fine table usually meets the solver's |Q(q) - q| <= 1e-14 q on
    the first quadrature pass. Only start points come from the tables: every q* is confirmed by the
    quadrature rule itself.
    """

    LOG10_LO, LOG10_HI = -30, 15

    def __init__(self, kernel, dtype: torch.dtype, device: torch.device, per_decade: int):
        self.kernel, self.per = kernel, per_decade
        n = (self.LOG10_HI - self.LOG10_LO) * per_decade + 1
        self.lq = torch.linspace(self.LOG10_LO, self.LOG10_HI, n, dtype=dtype, device=device) * math.log(10.0)
        self.built = torch.zeros(self.LOG10_HI - self.LOG10_LO, dtype=torch.bool)
        self.h = float(self.lq[1] - self.lq[0])
        # One row per cell: log q and V, dV/dlog q at both ends (one gather per evaluation instead of six).
        self.cells = torch.full((n - 1, 6), float("nan"), dtype=dtype, device=device)
        self.cells[:, 0], self.cells[:, 1] = self.lq[:-1], self.lq[1:]

    def ensure(self, q: torch.Tensor) -> None:
        """Compute the decades that hold the values ``q`` (positive, finite)."""
        d = torch.floor(torch.log10(q[(q > 0) & torch.isfinite(q)])) - self.LOG10_LO
        d = d[(d >= 0) & (d < self.built.numel())].long().cpu()
        for dec in torch.unique(d).tolist():
            if not self.built[dec]:
                sl = slice(dec * self.per, (dec + 1) * self.per + 1)
                q_nodes = torch.exp(self.lq[sl])
                v, dv, _ = self.kernel.moments(q_nodes)
                m = dv * q_nodes
                a, b = sl.start, sl.stop  # nodes a .. b - 1: left ends of cells a .. b - 1, right ends of a - 1 ..
                left = slice(a, min(b, self.cells.shape[0]))
                n_left = left.stop - left.start
                self.cells[left, 2], self.cells[left, 4] = v[:n_left], m[:n_left]
                right = slice(max(a - 1, 0), b - 1)
                skip = 1 if a == 0 else 0
                self.cells[right, 3], self.cells[right, 5] = v[skip:], m[skip:]
                self.built[dec] = True

    def __call__(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(V, dV/dq, inside) at q; ``inside`` is False outside the computed decades."""
        last = self.lq.numel() - 1
        lq = torch.log(q)
        x = (lq - self.lq[0]) / self.h
        j = torch.nan_to_num(x, nan=0.0).clamp(0, last - 1).floor().long()
        # The position inside the cell from the cell's own end points: x itself carries the rounding of
        # |log q_0| ~ 69 (~1e-11 of a cell at 4096 a decade), which would cap the surrogate at ~1e-10.
        lo, hi, v0, v1, m0, m1 = self.cells[j].unbind(-1)
        h = hi - lo
        t = (lq - lo) / h
        m0, m1 = m0 * h, m1 * h
        t2, s = t * t, 1.0 - t
        v = v0 * (1 + 2 * t) * s * s + m0 * t * s * s + v1 * t2 * (3 - 2 * t) - m1 * t2 * s
        dv_dt = 6 * t * s * (v1 - v0) + m0 * s * (1 - 3 * t) + m1 * t * (3 * t - 2)
        inside = (x >= 0) & (x <= last) & torch.isfinite(v) & torch.isfinite(dv_dt)
        return v, dv_dt / (h * q), inside


_TABLES: dict = {}
COARSE_PER_DECADE, FINE_PER_DECADE = 64, 4096


def _tables(s: TensorPrior, q: torch.Tensor) -> tuple[_VarianceTable, _VarianceTable]:
    key = (s.activation, q.dtype, str(q.device))
    if key not in _TABLES:
        if len(_TABLES) > 16:
            _TABLES.clear()
        coarse = _VarianceTable(s.kernel, q.dtype, q.device, COARSE_PER_DECADE)
        coarse.ensure(torch.exp(coarse.lq[:-1]))
        _TABLES[key] = (coarse, _VarianceTable(s.kernel, q.dtype, q.device, FINE_PER_DECADE))
    return _TABLES[key]


def _table_newton(
    table: _VarianceTable, s: TensorPrior, q: torch.Tensor, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Newton's iteration of :func:`solve_q_star` on a table's surrogate V; returns (q, settled)."""
    out = q.clone()
    done = torch.zeros_like(q, dtype=torch.bool)
    index = torch.arange(q.numel(), device=q.device)
    qa = q.clone()
    gain = s.sigma_w2 * s.mu2
    offset = s.sigma_w2 * s.add_var + s.sigma_b2
    live = torch.ones_like(q, dtype=torch.bool)
    for _ in range(max_iter):
        v, dv, inside = table(torch.clamp(qa, min=1e-300))
        q_new, _ = _newton_update(gain * v + offset, gain * dv, qa)
        settled = live & (inside & ((q_new - qa).abs() <= tol * qa) | (qa < 1e-25))
        result = torch.where(qa < 1e-25, qa, q_new)
        out.index_put_((index,), torch.where(settled, result, out[index]))
        done.index_put_((index,), done[index] | settled)
        live = live & ~settled & inside & torch.isfinite(q_new) & (q_new <= Q_UNBOUNDED)
        n_live = int(live.sum())
        if n_live == 0:
            break
        qa = torch.where(live, q_new, qa)
        if n_live <= 0.5 * live.numel():  # gather the live points only when half have stopped
            index, qa, gain, offset, live = index[live], qa[live], gain[live], offset[live], live[live]
    return out, done


def warm_start(s: TensorPrior, q: torch.Tensor) -> torch.Tensor:
    """Newton's iteration of :func:`solve_q_star` on tabulated surrogates of V, from the same start:
    first on the coarse table (to ~1e-9), then polished on the fine one (to ~1e-15), so that the
    quadrature iteration usually confirms convergence on its first pass instead of taking ~5 steps.
    Points whose surrogate iterates leave the table or do not settle keep their original start.
    """
    if q.numel() < 64:  # the coarse table costs ~3000 kernel evaluations: not worth it for a few points
        return q
    coarse, fine = _tables(s, q)
    qc, ok = _table_newton(coarse, s, q, 30, 1e-10)
    if not bool(ok.any()):
        return q
    fine.ensure(qc[ok])
    sub = s.select(ok)
    qf, ok_fine = _table_newton(fine, sub, qc[ok], 6, 1e-13)
    qc[ok] = torch.where(ok_fine, qf, qc[ok])
    return torch.where(ok, qc, q)


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
        q_need = qf[need]
        # Orders <= FIRST_ORDER first (c_max = 0 skips the rest): they decide c* wherever it is not close to 1.
        cmap = CorrelationMap(sub, q_need, c_max=torch.zeros_like(q_need))
        start = torch.zeros_like(q_need)
        low = cmap.truncated(START_ORDER)
        if low is not None:
            # The cut series under-estimates the map on [0, 1], so its root is a valid start from below,
            # usually within 1e-8 of c*: the next Newton then needs ~2 passes instead of ~6.
            start, _ = _newton_from_below(low, start, max_iter)
        cs, chi_c = _newton_from_below(cmap, start, max_iter)

        def refine(mask: torch.Tensor, **how) -> torch.Tensor:
            """Newton again on a finer map at the points of ``mask``, from their root so far (a lower bound:
            every cut series under-estimates the map); returns where that map's own bound is still too big."""
            rough = torch.zeros_like(mask)
            if bool(mask.any()):
                finer = CorrelationMap(sub.select(mask), q_need[mask], **how)
                cs[mask], chi_c[mask] = _newton_from_below(finer, cs[mask], max_iter)
                rough[mask] = finer.error_bound(cs[mask]) > SERIES_MAX_ERROR
            return rough

        # The orders above FIRST_ORDER move the root by about bound / (1 - chi_c): they are added where that
        # exceeds round-off. Close to the critical line (1 - chi_c < ILL_CONDITIONED) the table's
        # interpolation error (1.5e-14 of K) would move c* by up to ~1e-9 as well: there the full series is
        # built by quadrature, as everywhere before the table existed. Where even the full series is not
        # accurate enough at c* (close to c = 1), direct quadrature polishes the root.
        gap = (1.0 - chi_c).clamp(min=0.0)
        ill = gap < ILL_CONDITIONED
        more = cmap.error_bound(cs) > ROOT_ROUNDOFF * gap
        rough = refine(more & ~ill) | refine(ill, tabulated=False)
        refine(rough, direct=True)
        c[need] = cs
        slope[need] = chi_c
    c = torch.where(finite, c, torch.full_like(c, float("nan")))
    slope = torch.where(finite, slope, torch.full_like(slope, float("nan")))
    return c.reshape(shape), slope.reshape(shape)


def _newton_from_below(cmap: CorrelationMap, c0: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Newton's method on F(c) = C(c) - c from points left of the root (monotone by convexity).

    Returns the root and the map's slope chi_c there. For a Mehler polynomial the slope of the last
    iterate (within 1e-14 of the root; the polynomial's curvature is bounded) is kept; other maps (closed
    forms with a square-root edge at c = 1, direct quadrature) are evaluated again at the root.
    """
    cs = c0.clone()
    slopes = torch.full_like(cs, float("nan"))
    live = [cmap]  # the map restricted to the working set

    def restrict(mask: torch.Tensor) -> None:
        live[0] = live[0].restrict(mask)

    work = _WorkingSet(cmap.setting, cs.numel(), cs.device, on_compact=restrict)
    ca = cs.clone()
    for _ in range(max_iter):
        val, der = live[0].value_and_slope(ca)
        f = val - ca
        c_new = torch.clamp(ca + f / (1.0 - der), max=1.0)
        bad = ~torch.isfinite(c_new) | (der >= 1.0)
        c_new = torch.where(bad, ca + 0.5 * (1.0 - ca), c_new)
        # Stop at a step of 1e-14 or once the residual is at round-off level (near criticality
        # 1 - chi_c is small and round-off in F limits the attainable step).
        moving = ((c_new - ca).abs() > 1e-14) & (f.abs() > 1e-15) & work.running
        c_new = torch.where(work.running, c_new, ca)
        cs[work.index] = c_new
        slopes[work.index] = torch.where(work.running, der, slopes[work.index])
        if not bool(moving.any()):
            break
        ca = work.keep(moving, c_new)
    if not getattr(cmap.pair, "polynomial", False):
        slopes = cmap.slope(cs)
    return cs, slopes
