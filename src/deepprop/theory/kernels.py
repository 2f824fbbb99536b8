r"""The Gaussian integrals the maps need, one object per activation.

For z, z1, z2 independent standard normals, u1 = sqrt(q) z1 and
u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2) (the pair of pre-activations of eq. 4 with equal variances):

* ``second_moment(q)``        V(q)   = E[phi(sqrt(q) z)^2]
* ``second_moment_slope(q)``  V'(q)  = dV/dq = E[z phi(sqrt q z) phi'(sqrt q z)] / sqrt(q)
* ``derivative_moment(q)``    E[phi'(sqrt(q) z)^2]
* ``moments(q)``              (V, V', E[phi'^2]) in one pass over the quadrature nodes
* ``pair(q)``                 a :class:`PairKernel` with ``value(c)`` = K(q, c) = E[phi(u1) phi(u2)]
                              and ``slope(c)`` = dK/dc = q E[phi'(u1) phi'(u2)] (Price's theorem).

An activation that carries closed forms (:class:`deepprop.activations.ClosedForm`: relu's arc-cosine kernel
of degree 1, erf's arcsin kernel, linear) is evaluated by them; every other activation goes through
:mod:`deepprop.theory.gauss`. A variance q = 0 is evaluated as
the limit q -> 0+ (at q = 1e-30), so that a vanishing signal still has a well-defined slope.
"""

from __future__ import annotations

from typing import Protocol

import torch

from deepprop.activations import Activation
from deepprop.theory import coefficients, gauss

Q_FLOOR = 1e-30
MEHLER_MAX_Q = 16.0
SERIES_MAX_ERROR = 1e-13


class PairKernel(Protocol):
    def value(self, c: torch.Tensor) -> torch.Tensor: ...

    def slope(self, c: torch.Tensor) -> torch.Tensor: ...

    def value_and_slope(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def restrict(self, mask: torch.Tensor) -> PairKernel: ...


class Kernel(Protocol):
    activation: Activation

    def second_moment(self, q: torch.Tensor) -> torch.Tensor: ...

    def second_moment_slope(self, q: torch.Tensor) -> torch.Tensor: ...

    def second_moment_and_slope(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def derivative_moment(self, q: torch.Tensor) -> torch.Tensor: ...

    def moments(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def pair(
        self, q: torch.Tensor, *, use_series: bool = True, c_max: torch.Tensor | None = None, tabulated: bool = True
    ) -> PairKernel: ...


def _floor(q: torch.Tensor) -> torch.Tensor:
    return torch.clamp(q, min=Q_FLOOR)


class _ClosedPair:
    def __init__(self, q: torch.Tensor, value, slope):
        self.q, self._value, self._slope = q, value, slope

    def value(self, c: torch.Tensor) -> torch.Tensor:
        return self._value(self.q, c)

    def slope(self, c: torch.Tensor) -> torch.Tensor:
        return self._slope(self.q, c)

    def value_and_slope(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.value(c), self.slope(c)

    def take(self, index: torch.Tensor) -> _ClosedPair:
        """The pair at points ``index`` (repeats allowed)."""
        return _ClosedPair(self.q[index], self._value, self._slope)

    def restrict(self, mask: torch.Tensor) -> _ClosedPair:
        return _ClosedPair(self.q[mask], self._value, self._slope)


class ClosedFormKernel:
    """An activation's own closed-form kernel (:class:`deepprop.activations.ClosedForm`): V and V' are cheap,
    so both come from their own formulas."""

    def __init__(self, activation: Activation):
        self.activation = activation
        self.form = activation.closed_form

    def second_moment(self, q):
        return self.form.second_moment(q)

    def second_moment_slope(self, q):
        return self.form.second_moment_slope(q)

    def derivative_moment(self, q):
        return self.form.derivative_moment(q)

    def second_moment_and_slope(self, q):
        return self.second_moment(q), self.second_moment_slope(q)

    def moments(self, q):
        return self.second_moment(q), self.second_moment_slope(q), self.derivative_moment(q)

    def pair(self, q, *, use_series: bool = True, c_max=None, tabulated: bool = True):
        return _ClosedPair(q, self.form.pair, self.form.pair_slope)


class _QuadraturePair:
    """K(q, c) by Mehler's series for smooth activations at q <= 16, by nested split quadrature elsewhere.

    The series drops sum_{k>K} a_k^2 c^k <= tail * c^(K+1) (c in [0, 1]); :meth:`error_bound` gives that
    bound so callers can re-polish points where it matters (near c = 1) with the direct rule.
    """

    def __init__(
        self, activation: Activation, q: torch.Tensor, *, use_series: bool = True, c_max=None, tabulated: bool = True,
        _parts=None,
    ):
        self.activation = activation
        self.q = q
        if _parts is not None:
            self.series_mask, self.series = _parts
            return
        self.series_mask = torch.zeros_like(q, dtype=torch.bool)
        self.series = None
        if use_series and not activation.kinks:
            self.series_mask = q <= MEHLER_MAX_Q
            if bool(self.series_mask.all()):  # the usual case: no masked copies
                cm = None if c_max is None else torch.broadcast_to(c_max, q.shape).reshape(-1)
                self.series = coefficients.hermite_series(activation, q.reshape(-1), c_max=cm, tabulated=tabulated)
            elif bool(self.series_mask.any()):
                cm = None if c_max is None else torch.broadcast_to(c_max, q.shape)[self.series_mask]
                self.series = coefficients.hermite_series(activation, q[self.series_mask], c_max=cm,
                                                          tabulated=tabulated)

    @property
    def polynomial(self) -> bool:
        """True when every point's map is its Mehler polynomial (smooth in c, with bounded curvature)."""
        return self.series is not None and bool(self.series_mask.all())

    def take(self, index: torch.Tensor) -> _QuadraturePair:
        """The pair at points ``index`` of a flat batch (repeats allowed), for value()."""
        series = None
        if self.polynomial:
            series = self.series.take(index)
            mask = torch.ones(index.numel(), dtype=torch.bool, device=index.device)
        else:
            mask = self.series_mask[index]
            if self.series is not None and bool(mask.any()):
                rank = torch.cumsum(self.series_mask.long(), 0) - 1  # position of each point in the series
                series = self.series.take(rank[index[mask]])
        return _QuadraturePair(self.activation, self.q[index], _parts=(mask, series))

    def truncated(self, order: int) -> _QuadraturePair | None:
        """The same pair with its Mehler series cut after ``order`` (None unless every point uses the series)."""
        if not self.polynomial:
            return None
        return _QuadraturePair(self.activation, self.q, _parts=(self.series_mask, self.series.truncated(order)))

    def error_bound(self, c: torch.Tensor) -> torch.Tensor:
        """Upper bound on the truncation error of ``value(c)`` (0 where the direct rule is used)."""
        out = torch.zeros_like(self.q)
        if self.series is not None:
            cc = torch.broadcast_to(c, self.q.shape)[self.series_mask].abs()
            out[self.series_mask] = self.series.tail * self.series.second_moment * cc ** (self.series.point_order + 1)
        return out

    def restrict(self, mask: torch.Tensor) -> _QuadraturePair:
        series = None
        if self.series is not None:
            keep = mask[self.series_mask]
            if bool(keep.any()):
                series = self.series.subset(keep)
        return _QuadraturePair(self.activation, self.q[mask], _parts=(self.series_mask[mask], series))

    def _combine(self, c: torch.Tensor, series_fn, direct_fn) -> torch.Tensor:
        c = torch.broadcast_to(c, self.q.shape)
        m = self.series_mask
        if self.series is not None and bool(m.all()):  # the series holds the points flattened
            return series_fn(self.series, c.reshape(-1)).reshape(self.q.shape)
        out = torch.empty_like(c)
        if self.series is not None and bool(m.any()):
            out[m] = series_fn(self.series, c[m])
        rest = ~m
        if bool(rest.any()):
            out[rest] = direct_fn(self.q[rest], c[rest])
        return out

    def value(self, c: torch.Tensor) -> torch.Tensor:
        fn = self.activation.fn
        return self._combine(
            c, lambda s, cc: s.value(cc), lambda q, cc: gauss.expect_pair(fn, fn, self.activation, q, cc)
        )

    def slope(self, c: torch.Tensor) -> torch.Tensor:
        d = self.activation.derivative
        return self._combine(
            c,
            lambda s, cc: s.slope(cc),
            lambda q, cc: q * gauss.expect_pair(d, d, self.activation, q, cc),
        )

    def value_and_slope(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(value(c), slope(c)); one pass over the Mehler series where it applies."""
        if self.series is not None and bool(self.series_mask.all()):
            k, dk = self.series.value_and_slope(torch.broadcast_to(c, self.q.shape).reshape(-1))
            return k.reshape(self.q.shape), dk.reshape(self.q.shape)
        return self.value(c), self.slope(c)


class _PairTrack:
    """``pair(q, c_max)`` for one set of points through the layers of a recursion: the Mehler series
    follows the points with a :class:`~deepprop.theory.coefficients.SeriesTrack` (coefficients interpolated again
    only where q changed) wherever the series applies, and is built afresh elsewhere."""

    def __init__(self, activation: Activation, track: coefficients.SeriesTrack):
        self.activation, self.track = activation, track

    def pair(self, q: torch.Tensor, c_max: torch.Tensor) -> _QuadraturePair:
        extremes = tuple(float(v) for v in torch.aminmax(q))
        if extremes[1] <= MEHLER_MAX_Q and self.track.table.covers(extremes):
            series = self.track.series(q, c_max, extremes)
            everywhere = torch.ones_like(q, dtype=torch.bool)
            return _QuadraturePair(self.activation, q, _parts=(everywhere, series))
        return _QuadraturePair(self.activation, q, c_max=c_max)


class QuadratureKernel:
    """Any activation: split Gauss-Legendre for 1-D integrals, Mehler or nested rules for pairs."""

    def __init__(self, activation: Activation):
        self.activation = activation
        # phi odd: every integrand below (phi^2, x phi phi', phi'^2) is even, so half the nodes do
        self.odd = gauss.is_odd(activation)

    def second_moment(self, q):
        fn = self.activation.fn
        return gauss.expect(lambda x: fn(x) ** 2, self.activation, _floor(q), even=self.odd)

    def second_moment_slope(self, q):
        fn, d = self.activation.fn, self.activation.derivative
        qf = _floor(q)
        return gauss.expect(lambda x: x * fn(x) * d(x), self.activation, qf, even=self.odd) / qf

    def second_moment_and_slope(self, q):
        act = self.activation
        qf = _floor(q)

        def both(x):
            p, d = act.value_and_derivative(x)
            return p * p, x * p * d

        v, s = gauss.expect(both, self.activation, qf, even=self.odd)
        return v, s / qf

    def derivative_moment(self, q):
        d = self.activation.derivative
        return gauss.expect(lambda x: d(x) ** 2, self.activation, _floor(q), even=self.odd)

    def moments(self, q):
        """V(q), V'(q) and E[phi'(sqrt(q) z)^2] from one evaluation of phi and phi' at the nodes."""
        act = self.activation
        qf = _floor(q)

        def three(x):
            p, d = act.value_and_derivative(x)
            pd = p * d
            return p * p, pd.mul_(x), d * d

        v, s, dd = gauss.expect(three, self.activation, qf, even=self.odd)
        return v, s / qf, dd

    def tracker(self, q: torch.Tensor) -> _PairTrack | None:
        """A pair maker for the points of ``q`` (1-D, their first variances) through the layers of a
        recursion, or None where there is no Mehler series to follow (kinks) or too few points."""
        if self.activation.kinks:
            return None
        track = coefficients.series_track(self.activation, q)
        return None if track is None else _PairTrack(self.activation, track)

    def pair(self, q, *, use_series: bool = True, c_max=None, tabulated: bool = True):
        """K(q, .) for each q; ``c_max`` (largest |c| to be evaluated per point) lets the Mehler series
        skip orders whose terms are below round-off there; ``tabulated=False`` builds the series by
        quadrature at every q instead of interpolating the coefficient table."""
        return _QuadraturePair(self.activation, _floor(q), use_series=use_series, c_max=c_max, tabulated=tabulated)


def kernel_for(activation: Activation, *, closed_form: bool = True) -> Kernel:
    """The kernel of ``activation``: its own closed form where it has one (unless ``closed_form=False``),
    quadrature otherwise."""
    if closed_form and activation.closed_form is not None:
        return ClosedFormKernel(activation)
    return QuadratureKernel(activation)
