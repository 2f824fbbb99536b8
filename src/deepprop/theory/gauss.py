r"""Gaussian expectations of activation functions, vectorised over arrays of variances.

Everything here integrates against the standard normal measure Dz = exp(-z^2/2)/sqrt(2 pi) dz.

* :func:`normal_rule` builds a composite Gauss-Legendre rule on [-L, L] split at breakpoints.
  Splitting at the activation's kinks (relu at 0, hard_tanh at +-1) makes non-smooth integrands
  converge as fast as smooth ones, and splitting at u = 0, +-2 resolves the sign-like transition of
  saturating activations at large variance. L = 10 loses mass P(|z| > 10) ~ 1.5e-23.
* :func:`expect` computes E[f(sqrt(q) z)] for arrays of q.
* :func:`expect_pair` computes E[f(u1) g(u2)] with u1 = sqrt(q) z1,
  u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2) by nested split rules (the inner breakpoints depend on z1).
* :class:`HermiteSeries` is the fast path for smooth activations: with the normalised Hermite
  coefficients a_k(q) = E[phi(sqrt(q) z) He_k(z)] / sqrt(k!), Mehler's formula gives
  E[phi(u1) phi(u2)] = sum_k a_k^2 c^k and d/dc E[phi(u1) phi(u2)] = sum_k k a_k^2 c^(k-1),
  so the correlation map is a polynomial in c once the coefficients are known. The truncation error
  is bounded by the known tail sum_{k>K} a_k^2 = E[phi^2] - sum_{k<=K} a_k^2, which callers check.
  :mod:`deepprop.theory.coefficients` tabulates those coefficients in log q for large batches.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from deepprop.activations import Activation

HALF_WIDTH = 10.0
FIRST_ORDER = 63  # HermiteSeries(c_max=...): orders computed everywhere before the tail decides
# HermiteSeries(c_max=...) drops the orders above FIRST_ORDER where they add at most this much (relative to
# E[phi^2]) at every |c| <= c_max: the level of the rule's own round-off in the tail (~3e-15 for tanh) and
# of the coefficient table's interpolation (1.5e-14). A lower bar buys nothing but work: at 1e-17 the
# round-off of the tail alone asked for every order wherever |c| > 0.91.
CUT_TOLERANCE = 1e-14
# Orders above FIRST_ORDER come in blocks ending at these orders (and at the series' last): over a depth-50
# tanh trajectory on a (sigma_w2, sigma_b2) grid, 27 % of the layer-points need orders above 63, 8.6 % above
# 95 and 0.9 % above 127, so the blocks after 63 are interpolated only where they matter.
BLOCK_ORDERS = (95,)
SOFT_BREAKS = (-6.0, -2.0, 0.0, 2.0, 6.0)  # 1-D rules
PAIR_SOFT_BREAKS = (-2.0, 0.0, 2.0)  # nested 2-D rules (cost grows with the square of the pieces)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@lru_cache(maxsize=32)
def _legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(m)


def activation_breaks(activation: Activation, soft: tuple[float, ...] = SOFT_BREAKS) -> tuple[float, ...]:
    """Breakpoints in activation space: the kinks of phi plus the scale points ``soft``."""
    return tuple(sorted(set(activation.kinks) | set(soft)))


GAUSSIAN_BREAKS = (-3.0, 0.0, 3.0)  # z-points where every rule is split, whatever the activation


def normal_rule(breaks: torch.Tensor, m: int, half_width: float = HALF_WIDTH) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite Gauss-Legendre rule for the standard normal measure on [-L, L].

    Pieces end at ``breaks`` and at z = -3, 0, 3, so that the Gaussian weight itself is resolved
    even where every activation breakpoint lies outside [-L, L].

    Parameters
    ----------
    breaks : tensor (..., B)
        Breakpoints in z (any order); clipped to [-L, L] (infinite ones are fine).
    m : int
        Nodes per piece.

    Returns
    -------
    z, w : tensors (..., (B + 1) m)
        Nodes and weights with sum(w * f(z)) ~= E[f(z)], z ~ N(0, 1).
    """
    x, wl = _legendre(m)
    x = torch.as_tensor(x, dtype=breaks.dtype, device=breaks.device)
    wl = torch.as_tensor(wl, dtype=breaks.dtype, device=breaks.device)
    lo = torch.full(breaks.shape[:-1] + (1,), -half_width, dtype=breaks.dtype, device=breaks.device)
    fixed = torch.tensor(GAUSSIAN_BREAKS, dtype=breaks.dtype, device=breaks.device).expand(breaks.shape[:-1] + (3,))
    inner, _ = torch.sort(torch.cat([breaks.clamp(-half_width, half_width), fixed], dim=-1), dim=-1)
    edges = torch.cat([lo, inner, -lo], dim=-1)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    half = 0.5 * (b - a)
    z = 0.5 * (a + b) + half * x
    w = half * wl * torch.exp(-0.5 * z * z) / _SQRT_2PI
    return z.flatten(-2), w.flatten(-2)


def _z_breaks(activation: Activation, sqrt_q: torch.Tensor) -> torch.Tensor:
    u = torch.as_tensor(activation_breaks(activation), dtype=sqrt_q.dtype, device=sqrt_q.device)
    # q = 0 gives +-inf (clipped to [-L, L] by normal_rule), and 0/0 for u = 0, which is a break at 0.
    return torch.nan_to_num(u / sqrt_q[..., None], nan=0.0, posinf=HALF_WIDTH, neginf=-HALF_WIDTH)


# Shared rules for smooth activations: (largest q, nodes per piece on [-10, -3, 0, 3, 10]). Measured
# relative error against adaptive quadrature for tanh, silu and their slopes: <= 1.2e-11 up to q = 6 with
# 24 nodes, <= 1.9e-11 up to q = 16 with 32; larger q gets rules split at the activation's scale points.
FIXED_RULE_TIERS = ((6.0, 24), (16.0, 32))


@lru_cache(maxsize=8)
def _fixed_rule(m: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return normal_rule(torch.zeros(0, dtype=dtype, device=device), m)


@lru_cache(maxsize=8)
def _fixed_half_rule(m: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The positive half of the shared rule (its nodes mirror exactly about 0) with doubled weights:
    the whole rule for an even integrand at half the evaluations."""
    z, w = _fixed_rule(m, dtype, device)
    pos = z > 0
    return z[pos].contiguous(), 2.0 * w[pos]


@lru_cache(maxsize=32)
def is_odd(activation: Activation) -> bool:
    """True when phi(-x) = -phi(x) exactly at 4001 points spread over |x| <= 1e3 and at tiny |x| (tanh, erf,
    sin): then phi^2, phi'^2 and x phi phi' are even, and even Hermite orders vanish."""
    x = torch.cat([torch.linspace(0.0, 40.0, 2001, dtype=torch.float64),
                   torch.logspace(-30, 3, 2000, dtype=torch.float64)])
    return not bool((activation.fn(x) + activation.fn(-x)).any())


def _apply(vals, w: torch.Tensor, shared: bool):
    reduce = (lambda v: v @ w) if shared else (lambda v: (w * v).sum(-1))
    return tuple(reduce(v) for v in vals) if isinstance(vals, tuple) else reduce(vals)


def expect(f, activation: Activation, q: torch.Tensor, m: int = 32, *, even: bool = False) -> torch.Tensor:
    """E[f(sqrt(q) z)] for every entry of ``q`` (f elementwise; breakpoints from ``activation``).

    ``f`` may return a tuple of tensors; then a tuple of expectations comes back (one pass).
    Smooth activations at q <= 16 use shared rules (see ``FIXED_RULE_TIERS``); kinks and larger q get
    a rule split at the breakpoints of each q. ``even=True`` promises f(-x) = f(x) (every output): the
    shared rules then evaluate f at their positive nodes only (same sum, half the work).
    """
    sq = torch.sqrt(q)
    if not activation.kinks:
        lower = 0.0
        for upper, nodes in FIXED_RULE_TIERS:
            tier = (q > lower) & (q <= upper) if lower > 0 else q <= upper
            if bool(tier.all()):
                z, w = (_fixed_half_rule if even else _fixed_rule)(nodes, q.dtype, str(q.device))
                return _apply(f(sq[..., None] * z), w, shared=True)
            if bool(tier.any()):
                return _split(f, activation, q, tier, m, even)
            lower = upper
    z, w = normal_rule(_z_breaks(activation, sq), m)
    return _apply(f(sq[..., None] * z), w, shared=False)


def _split(f, activation: Activation, q: torch.Tensor, part: torch.Tensor, m: int, even: bool):
    """expect() on ``part`` and on the rest separately, reassembled."""
    pieces = [expect(f, activation, q[sel], m, even=even) for sel in (part, ~part)]
    if not isinstance(pieces[0], tuple):
        pieces = [(p,) for p in pieces]
    outs = []
    for a, b in zip(*pieces, strict=True):
        out = torch.empty_like(q)
        out[part], out[~part] = a, b
        outs.append(out)
    return tuple(outs) if len(outs) > 1 else outs[0]


def expect_pair(
    f,
    g,
    activation: Activation,
    q: torch.Tensor,
    c: torch.Tensor,
    m: int = 20,
    chunk: int = 256,
) -> torch.Tensor:
    """E[f(u1) g(u2)], u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2), by nested split rules.

    ``q`` and ``c`` broadcast; work is chunked over points to bound memory.
    """
    q, c = torch.broadcast_tensors(q, c)
    shape = q.shape
    qf, cf = q.reshape(-1), c.reshape(-1)
    out = torch.empty_like(qf)
    u_breaks = torch.as_tensor(activation_breaks(activation, PAIR_SOFT_BREAKS), dtype=q.dtype, device=q.device)
    for start in range(0, qf.numel(), chunk):
        sl = slice(start, start + chunk)
        sq, cc = torch.sqrt(qf[sl]), cf[sl]
        ss = torch.sqrt(torch.clamp(1.0 - cc * cc, min=0.0))
        # Outer breakpoints: the activation's, plus where the inner integral switches across a kink
        # (c u1 = kink +- 2 sqrt(q) s): a boundary layer of width ~s that matters as |c| -> 1.
        kinks = torch.as_tensor(activation.kinks, dtype=q.dtype, device=q.device)
        if kinks.numel():
            sign = torch.tensor([-1.0, 1.0], dtype=q.dtype, device=q.device)
            layer = kinks[None, :, None] + 2.0 * (sq * ss)[:, None, None] * sign
            layer = (layer / cc[:, None, None]).reshape(len(sq), -1)
            layer = torch.where(torch.isfinite(layer), layer, torch.zeros_like(layer))
            outer = torch.cat([u_breaks.expand(len(sq), -1), layer], dim=-1) / sq[:, None]
        else:
            outer = u_breaks / sq[:, None]
        z1, w1 = normal_rule(outer, m)  # (P, n1)
        # Inner breakpoints: z2 where u2 crosses an activation breakpoint, for each outer node.
        num = u_breaks[None, None, :] / sq[:, None, None] - cc[:, None, None] * z1[..., None]
        zb = num / ss[:, None, None]
        zb = torch.where(torch.isnan(zb), torch.zeros_like(zb), zb)
        z2, w2 = normal_rule(zb, m)  # (P, n1, n2)
        u1 = sq[:, None] * z1
        u2 = sq[:, None, None] * (cc[:, None, None] * z1[..., None] + ss[:, None, None] * z2)
        inner = (w2 * g(u2)).sum(-1)
        out[sl] = (w1 * f(u1) * inner).sum(-1)
    return out.reshape(shape)


@lru_cache(maxsize=8)
def _hermite_table(m: int, order: int, dtype: torch.dtype, device: str) -> tuple[torch.Tensor, ...]:
    """The positive half of the shared rule (its nodes mirror exactly about 0), its weights, and the
    weighted normalised Hermite polynomials w He_k(z) / sqrt(k!) at those nodes for even and odd
    k <= order (the weights folded in, so coefficients are one product)."""
    z, w = normal_rule(torch.zeros(0, dtype=dtype, device=device), m)
    pos = z > 0
    z, w = z[pos].contiguous(), w[pos].contiguous()
    h = torch.empty(z.numel(), order + 1, dtype=dtype, device=device)
    h[:, 0] = 1.0
    if order >= 1:
        h[:, 1] = z
    for k in range(1, order):
        h[:, k + 1] = (z * h[:, k] - math.sqrt(k) * h[:, k - 1]) / math.sqrt(k + 1)
    h = h * w[:, None]
    return z, w, h[:, 0::2].contiguous(), h[:, 1::2].contiguous()


class HermiteSeries:
    """Normalised Hermite coefficients of phi(sqrt(q) z), for Mehler's formula.

    ``sq_coef`` (a_k^2) has shape q.shape + (order + 1,); ``tail`` is the relative truncation error of
    E[phi(u1) phi(u2)] at c = 1 (its largest value over c in [-1, 1]); ``second_moment`` is
    E[phi(sqrt(q) z)^2] by the same rule; ``point_order`` is the last order kept at each point (an int
    where it is ``order`` everywhere, a tensor where ``c_max`` cut some points at FIRST_ORDER).

    The rule is symmetric, so with phi_pm = phi(+-sqrt(q) z) on the positive nodes,
    a_k = sum_{z > 0} w He_k(z) (phi_+ + (-1)^k phi_-) / sqrt(k!): odd and even orders come from the
    odd and even parts of phi, each a product half the size of the full one, and
    E[phi^2] = sum_{z > 0} w ((phi_+ - phi_-)^2 + (phi_+ + phi_-)^2) / 2. Where the even part is exactly
    zero at every node (tanh, erf, sin: odd activations) the even product and the even powers of c in
    Mehler's sum are skipped. Only the polynomials value() and slope() evaluate are stored; ``sq_coef``
    is assembled when asked for.
    """

    def __init__(
        self, activation: Activation, q: torch.Tensor, order: int = 200, m: int = 48, c_max: torch.Tensor | None = None
    ):
        """With ``c_max`` (the largest |c| each point will be evaluated at), orders above FIRST_ORDER are
        computed only where the first ones leave a tail with tail * c_max^(FIRST_ORDER + 1) > CUT_TOLERANCE
        (relative to E[phi^2]); elsewhere the terms dropped are below that at every |c| <= c_max."""
        z, w, h_even, h_odd = _hermite_table(m, order, q.dtype, str(q.device))
        self.order = order
        self._k = torch.arange(order + 1, dtype=q.dtype, device=q.device)
        u = torch.sqrt(q)[..., None] * z
        plus = activation.fn(u)
        minus = activation.fn(-u)
        odd_part = plus - minus
        even_part = plus.add_(minus)
        self.odd = not bool(even_part.any())
        if c_max is not None and order > FIRST_ORDER and q.ndim == 1:
            self._staged(odd_part, even_part, h_even, h_odd, w, c_max)
            return
        odd_coef = odd_part @ h_odd
        second = odd_part.mul_(odd_part) @ w
        if self.odd:  # K = c sum_j a_{2j+1}^2 (c^2)^j, dK/dc = sum_j (2j+1) a_{2j+1}^2 (c^2)^j
            self._val = odd_coef.mul_(odd_coef)
            self._der_cache = None  # dK/dc coefficients: computed from _val when first asked for
        else:  # K = sum_k a_k^2 c^k, dK/dc = sum_k (k+1) a_{k+1}^2 c^k
            even_coef = even_part @ h_even
            second = second + even_part.mul_(even_part) @ w
            sq = torch.empty(q.shape + (order + 1,), dtype=q.dtype, device=q.device)
            sq[..., 1::2] = odd_coef * odd_coef
            sq[..., 0::2] = even_coef * even_coef
            self._val = sq
            self._der_cache = None
        self.second_moment = 0.5 * second
        self.tail = (self.second_moment - self._val.sum(-1)).abs() / torch.clamp(self.second_moment, min=1e-300)
        self.point_order = order

    def _staged(self, odd_part, even_part, h_even, h_odd, w, c_max) -> None:
        """Coefficients up to FIRST_ORDER everywhere, the rest only where c_max makes them matter."""
        n1 = (FIRST_ORDER + 1) // 2  # odd (and even) orders <= FIRST_ORDER
        parts = [(odd_part, h_odd)] + ([] if self.odd else [(even_part, h_even)])
        first = [p @ _head_tail(h, n1)[0] for p, h in parts]
        second = 0.5 * sum((p * p) @ w for p, _ in parts)
        head = sum((a * a).sum(-1) for a in first)
        tail1 = (second - head).abs() / torch.clamp(second, min=1e-300)
        need = tail1 * _int_power(c_max.abs(), FIRST_ORDER + 1) > CUT_TOLERANCE
        cols = [h.shape[1] for _, h in parts]
        full = bool(need.any())
        coefs = []
        for (p, h), a, n in zip(parts, first, cols, strict=True):
            if not full:
                coefs.append(a)
                continue
            c = torch.empty(p.shape[0], n, dtype=p.dtype, device=p.device)
            c[:, :n1] = a
            rest = _head_tail(h, n1)[1]
            if bool(need.all()):
                c[:, n1:] = p @ rest
            else:
                c[:, n1:] = 0.0
                c[need, n1:] = p[need] @ rest
            coefs.append(c)
        self.order = self.order if full else FIRST_ORDER
        self.point_order = torch.where(need, self.order, FIRST_ORDER) if full else FIRST_ORDER
        if self.odd:
            self._val = coefs[0].mul_(coefs[0])
            self._der_cache = None
        else:
            k = coefs[0].shape[-1] + coefs[1].shape[-1]
            sq = torch.empty(coefs[0].shape[0], k, dtype=w.dtype, device=w.device)
            sq[:, 1::2], sq[:, 0::2] = coefs[0] * coefs[0], coefs[1] * coefs[1]
            self._val = sq
            self._der_cache = None
        self.second_moment = second
        self.tail = (second - self._val.sum(-1)).abs() / torch.clamp(second, min=1e-300)

    @classmethod
    def _assemble(cls, table: Any, head: torch.Tensor, needs: list[torch.Tensor] | None,
                  parts: list[torch.Tensor | None], apart: bool = False) -> HermiteSeries:
        """A series from rows interpolated from ``table`` (a :class:`~deepprop.theory.coefficients.HermiteTable`,
        which imports this module): ``head`` (a_k^2 of the first orders, V, then the tails after each
        block's last order), ``needs`` (None: every point has every order; else one mask per block of higher
        orders, nested) and ``parts`` (each block's a_k^2 at every point, at the points of its mask, or None
        where no point needs it). ``apart``: keep the blocks apart even where every point has them (for a
        series evaluated once, by value())."""
        k, n = table.n_head, head.shape[0]
        coef, second = head[:, :k], head[:, k]
        tails = [head[:, k + 1 + i] for i in range(len(table.blocks) + 1)]
        out = object.__new__(cls)
        out.odd, out._k = table.odd, table.k
        out._der_cache, out._split = None, None
        out.second_moment = second
        last = sum(1 for part in parts if part is not None)  # blocks kept at some point
        out.order = table.block_orders[last]
        if needs is None or all(part is not None and part.shape[0] == n for part in parts):
            if apart and parts:
                index = torch.arange(n, device=head.device)
                out._split = [(part, index, table.block_cols[b]) for b, part in enumerate(parts)]
            elif parts:
                coef = torch.cat([coef, *parts], -1)
            out.point_order = out.order
            out._lazy_tail = ([tails[-1]], None, second)
        else:
            # Only the points that need them get higher orders, block by block: kept apart (value() adds
            # them at those points), not as a zero-filled matrix every evaluation would multiply through.
            out._split = [(part, needs[b].nonzero().squeeze(1), table.block_cols[b])
                          for b, part in enumerate(parts) if part is not None] or None
            out._lazy_tail = (tails, needs, second)
            out._lazy_point_order = (needs, table.block_orders)
        out._val = coef
        return out

    _tail_value = None
    _lazy_tail = None
    _point_order_value = None
    _lazy_point_order = None

    @property
    def tail(self) -> torch.Tensor:
        """Relative truncation error at |c| = 1 (see the class docstring)."""
        if self._tail_value is None and self._lazy_tail is not None:
            tails, needs, second = self._lazy_tail
            raw = tails[0] if needs is None else torch.stack(tails, -1).gather(1, _depth(needs)[:, None]).squeeze(1)
            self._tail_value, self._lazy_tail = raw.abs() / torch.clamp(second, min=1e-300), None
        return self._tail_value

    @tail.setter
    def tail(self, value: torch.Tensor) -> None:
        self._tail_value, self._lazy_tail = value, None

    @property
    def point_order(self):
        """The last order kept at each point (an int where it is the same everywhere)."""
        if self._point_order_value is None and self._lazy_point_order is not None:
            needs, orders = self._lazy_point_order
            depth = _depth(needs)
            self._point_order_value = torch.as_tensor(orders, device=depth.device)[depth]
            self._lazy_point_order = None
        return self._point_order_value

    @point_order.setter
    def point_order(self, value) -> None:
        self._point_order_value, self._lazy_point_order = value, None

    _split = None  # [(a_k^2 of a block of higher orders, the points that have it, its first column)]

    @property
    def _val(self) -> torch.Tensor:
        """a_k^2 (odd activations: odd k only) as one matrix; a split series is assembled on first use."""
        if self._split is not None:
            head = self._val_store
            n_cols = max(first + part.shape[1] for part, _, first in self._split)
            full = torch.zeros(head.shape[0], n_cols, dtype=head.dtype, device=head.device)
            full[:, :head.shape[1]] = head
            for part, index, first in self._split:
                full[index, first:first + part.shape[1]] = part
            self._val_store, self._split, self._der_cache = full, None, None
        return self._val_store

    @_val.setter
    def _val(self, value: torch.Tensor) -> None:
        self._val_store = value

    @property
    def sq_coef(self) -> torch.Tensor:
        """a_k^2 for k = 0 .. order."""
        if not self.odd:
            return self._val
        out = torch.zeros(self._val.shape[:-1] + (self.order + 1,), dtype=self._val.dtype, device=self._val.device)
        out[..., 1::2] = self._val
        return out

    @property
    def _der(self) -> torch.Tensor:
        """The coefficients of dK/dc (k a_k^2, shifted to the powers value_and_slope uses), from _val."""
        if self._der_cache is None:
            n = self._val.shape[-1]
            self._der_cache = self._val * self._k[1::2][:n] if self.odd else self._val[..., 1:] * self._k[1:n]
        return self._der_cache

    def _like(self, val: torch.Tensor, der: torch.Tensor | None, order: int | None = None) -> HermiteSeries:
        out = object.__new__(HermiteSeries)
        out.odd, out.order, out._k = self.odd, self.order if order is None else order, self._k
        out._val, out._der_cache = val, der
        out.point_order = out.order
        return out

    def _point_order_at(self, index: torch.Tensor):
        po = self.point_order
        return po[index] if isinstance(po, torch.Tensor) else po

    def subset(self, mask: torch.Tensor) -> HermiteSeries:
        """The series of the points where ``mask`` is True."""
        out = self._like(self._val[mask], None if self._der_cache is None else self._der_cache[mask])
        out.second_moment, out.tail = self.second_moment[mask], self.tail[mask]
        out.point_order = self._point_order_at(mask)
        return out

    def take(self, index: torch.Tensor) -> HermiteSeries:
        """The series of points ``index`` (repeats allowed; a single repeated point is broadcast, not copied),
        for evaluating value() and slope()."""
        if self._val.shape[0] == 1:
            n = index.numel()
            out = self._like(self._val.expand(n, -1), self._der.expand(n, -1))  # one row: der is cheap
            out.point_order = self._point_order_at(torch.zeros_like(index))
            return out
        out = self._like(self._val[index], None if self._der_cache is None else self._der_cache[index])
        out.point_order = self._point_order_at(index)
        return out

    def truncated(self, order: int) -> HermiteSeries:
        """The series cut after order ``order``: with a_k^2 >= 0 it under-estimates the map for c >= 0."""
        n_val, n_der = ((order + 1) // 2,) * 2 if self.odd else (order + 1, order)
        der = None if self._der_cache is None else self._der_cache[..., :n_der]
        out = self._like(self._val[..., :n_val], der, order)
        out.second_moment = self.second_moment
        out.tail = (self.second_moment - out._val.sum(-1)).abs() / torch.clamp(self.second_moment, min=1e-300)
        return out

    def _powers(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """x^j for j = 0 .. n - 1, shape x.shape + (n,)."""
        pw = torch.empty(x.shape + (n,), dtype=x.dtype, device=x.device)
        pw[..., 0] = 1.0
        pw[..., 1:] = x[..., None]
        return torch.cumprod(pw, dim=-1, out=pw)

    def value_and_slope(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E[phi(u1) phi(u2)] = sum_k a_k^2 c^k and its c-derivative sum_k k a_k^2 c^(k-1), sharing the powers."""
        if self.odd:
            pw = self._powers(c * c, self._val.shape[-1])
            return c * _rowdot(self._val, pw), _rowdot(self._der, pw)
        pw = self._powers(c, self._val.shape[-1])
        return _rowdot(self._val, pw), _rowdot(self._der, pw[..., :-1])

    def value(self, c: torch.Tensor) -> torch.Tensor:
        """E[phi(u1) phi(u2)] = sum_k a_k^2 c^k."""
        # A split series: the first orders everywhere, then each block of higher orders where it was kept.
        head = self._val_store if self._split is not None else self._val
        if self.odd:
            out = c * _rowdot(head, self._powers(c * c, head.shape[-1]))
        else:
            out = _rowdot(head, self._powers(c, head.shape[-1]))
        for part, index, first in self._split or ():
            cr = c[index]
            if self.odd:  # column first + j is order 2 (first + j) + 1: c (c^2)^first (c^2)^j
                x = cr * cr
                extra = cr * _int_power(x, first) * _rowdot(part, self._powers(x, part.shape[1]))
            else:  # column first + j is order first + j
                extra = _int_power(cr, first) * _rowdot(part, self._powers(cr, part.shape[1]))
            out.index_add_(0, index, extra)
        return out

    def slope(self, c: torch.Tensor) -> torch.Tensor:
        """d/dc E[phi(u1) phi(u2)] = sum_k k a_k^2 c^(k-1) (= q E[phi'(u1) phi'(u2)])."""
        return self.value_and_slope(c)[1]


_PRIMED = [False]


def prime_allocator() -> None:
    """Allocate and free one 32 MiB block, once per process, before chunked CPU work.

    glibc's malloc raises its mmap threshold to the size of the largest block it has unmapped (up to
    32 MiB) and trims the heap only beyond twice that. Without this, every chunk's few-MB temporaries
    are mapped, unmapped and faulted in again: ~900k page faults per 1e6 mean-field points, against ~80k
    after priming, at the same peak memory (measured 2026-12-02). Elsewhere it costs one allocation.
    """
    if not _PRIMED[0]:
        block = torch.empty((32 << 20) // 8 - 4096, dtype=torch.float64)
        del block
        _PRIMED[0] = True


_HEAD_TAIL: dict = {}


def _head_tail(h: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous copies of the first n columns of a Hermite table and of the rest (cached)."""
    key = (h.data_ptr(), n)
    if key not in _HEAD_TAIL:
        _HEAD_TAIL[key] = (h[:, :n].contiguous(), h[:, n:].contiguous(), h)  # h kept alive: the key stays valid
    return _HEAD_TAIL[key][:2]


def _depth(needs: list[torch.Tensor]) -> torch.Tensor:
    """How many blocks of higher orders each point keeps (the masks are nested)."""
    return sum(need.long() for need in needs)


def _int_power(x: torch.Tensor, n: int) -> torch.Tensor:
    """x^n for an integer n >= 1 by repeated squaring (a few multiplications; torch's pow is ~3x slower)."""
    out, base = None, x
    while True:
        if n & 1:
            out = base.clone() if out is None else out.mul_(base)
        n >>= 1
        if not n:
            return out
        base = base * base


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b, -1) in one kernel (no a * b temporary)."""
    return torch.linalg.vecdot(a, b)
