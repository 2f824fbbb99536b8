r"""The variance and correlation maps (eq. 3, 4; with noise, follow-ups section 1) and their slopes.

With multiplicative noise of second moment mu2 and additive noise of variance s_add^2 on each layer's
input (see :mod:`deepprop.prior`):

    q^{l+1}    = Q(q^l)  = sigma_w^2 (mu2 V(q^l) + s_add^2) + sigma_b^2                 (eq. 3, 11)
    q_ab^{l+1} =           sigma_w^2 K(q^l, c^l) + sigma_b^2                             (eq. 4, 12)
    c^{l+1}    = q_ab^{l+1} / q^{l+1}

for a pair of inputs with equal variances q^l (noise is independent between the two inputs, so it
drops out of the cross term). V and K are defined in :mod:`deepprop.theory.kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike

from deepprop.activations import Activation
from deepprop.prior import Network, NetworkPrior, as_prior
from deepprop.theory.kernels import Q_FLOOR, Kernel, QuadratureKernel, kernel_for


def default_device(device: str | torch.device | None) -> torch.device:
    """CPU unless asked; ``"cuda"`` (or ``"auto"`` with a GPU present) runs the maps on the GPU."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class TensorPrior:
    """A :class:`~deepprop.prior.NetworkPrior` as the maps use it: activation, its kernel, and
    sigma_w^2, sigma_b^2, mu2, s_add^2 as float64 tensors on one device.

    Tensor fields are float64 and share one broadcast shape (``shape``).
    """

    activation: Activation
    kernel: Kernel
    sigma_w2: torch.Tensor
    sigma_b2: torch.Tensor
    mu2: torch.Tensor
    add_var: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.sigma_w2.shape

    @property
    def noiseless(self) -> torch.Tensor:
        return (self.mu2 == 1.0) & (self.add_var == 0.0)

    @classmethod
    def build(
        cls,
        prior: Network,
        *loose: ArrayLike,
        device: str | torch.device | None = None,
        closed_form: bool = True,
        **noise: ArrayLike,
    ) -> TensorPrior:
        """From a :class:`~deepprop.prior.NetworkPrior` or the loose numbers that define one."""
        return cls.from_prior(as_prior(prior, *loose, **noise), device=device, closed_form=closed_form)

    @classmethod
    def from_prior(
        cls, prior: NetworkPrior, *, device: str | torch.device | None = None, closed_form: bool = True
    ) -> TensorPrior:
        """The prior's numbers as float64 tensors of one broadcast shape on ``device``."""
        arrays = np.broadcast_arrays(prior.sigma_w2, prior.sigma_b2, prior.mu2, prior.add_var)
        dev = default_device(device)
        # one fresh copy each (never the caller's memory), wrapped rather than copied again
        t = [torch.from_numpy(np.array(a, dtype=np.float64, order="C", copy=True)).to(dev) for a in arrays]
        act = prior.activation
        return cls(act, kernel_for(act, closed_form=closed_form), *t)

    def flatten(self) -> TensorPrior:
        """The same batch as 1-D tensors."""
        return self._map(lambda t: t.reshape(-1))

    def slice(self, start: int, stop: int) -> TensorPrior:
        """Points ``start:stop`` of a flat batch."""
        return self._map(lambda t: t[start:stop])

    def _map(self, fn) -> TensorPrior:
        return TensorPrior(
            self.activation, self.kernel, fn(self.sigma_w2), fn(self.sigma_b2), fn(self.mu2), fn(self.add_var)
        )

    def select(self, mask: torch.Tensor) -> TensorPrior:
        """The sub-batch where ``mask`` is True (flattened)."""
        return self._map(lambda t: t[mask])


def q_map(s: TensorPrior, q: torch.Tensor) -> torch.Tensor:
    """Q(q) = sigma_w^2 (mu2 V(q) + s_add^2) + sigma_b^2 (eq. 3 with noise)."""
    return s.sigma_w2 * (s.mu2 * s.kernel.second_moment(q) + s.add_var) + s.sigma_b2


def q_map_and_slope(s: TensorPrior, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q(q) and dQ/dq in one pass over the quadrature nodes."""
    v, dv = s.kernel.second_moment_and_slope(q)
    return s.sigma_w2 * (s.mu2 * v + s.add_var) + s.sigma_b2, s.sigma_w2 * s.mu2 * dv


def q_moments(s: TensorPrior, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q(q), dQ/dq and chi_1(q) in one pass over the quadrature nodes."""
    v, dv, dd = s.kernel.moments(q)
    gain = s.sigma_w2 * s.mu2
    return s.sigma_w2 * (s.mu2 * v + s.add_var) + s.sigma_b2, gain * dv, gain * dd


def chi1(s: TensorPrior, q: torch.Tensor) -> torch.Tensor:
    """chi_1 = sigma_w^2 mu2 E[phi'(sqrt(q) z)^2] (eq. 5 with the noise factor of follow-ups section 1)."""
    return s.sigma_w2 * s.mu2 * s.kernel.derivative_moment(q)


def c_map(s: TensorPrior, q: torch.Tensor, c: torch.Tensor, q_next: torch.Tensor | None = None) -> torch.Tensor:
    """c^{l+1} = (sigma_w^2 K(q, c) + sigma_b^2) / Q(q), for a pair with variances q and correlation c.

    Dividing by Q(q) rather than by q keeps the map finite in the limit q -> 0.
    """
    q = torch.clamp(q, min=Q_FLOOR)
    if q_next is None:
        q_next = q_map(s, q)
    return (s.sigma_w2 * s.kernel.pair(q).value(c) + s.sigma_b2) / q_next


class CorrelationMap:
    """The correlation map at a fixed variance q (usually q*): value and slope in c, reusing the kernel."""

    def __init__(
        self, s: TensorPrior, q: torch.Tensor, *, direct: bool = False, c_max: torch.Tensor | None = None,
        tabulated: bool = True, _pair=None, _q_next=None,
    ):
        """``direct``: nested quadrature instead of Mehler's series; ``c_max``: the largest |c| the map will
        be evaluated at, per point (the series then skips the orders that cannot matter there);
        ``tabulated=False``: the series by quadrature at each q, not interpolated from the table."""
        self.setting = s
        q = torch.clamp(q, min=Q_FLOOR)
        self.q = q
        if _pair is None:
            _pair = s.kernel.pair(q, use_series=not direct, c_max=c_max, tabulated=tabulated)
        self.pair = _pair
        self.q_next = q_map(s, q) if _q_next is None else _q_next

    def restrict(self, mask: torch.Tensor) -> CorrelationMap:
        """The same map on the points where ``mask`` is True, reusing what was computed."""
        if bool(mask.all()):
            return self
        return CorrelationMap(
            self.setting.select(mask), self.q[mask], _pair=self.pair.restrict(mask), _q_next=self.q_next[mask]
        )

    def truncated(self, order: int) -> CorrelationMap | None:
        """The map with the kernel's Mehler series cut after ``order`` (a lower bound for c >= 0), or None
        where the kernel is not a series everywhere."""
        cut = getattr(self.pair, "truncated", None)
        pair = cut(order) if cut is not None else None
        if pair is None:
            return None
        return CorrelationMap(self.setting, self.q, _pair=pair, _q_next=self.q_next)

    def __call__(self, c: torch.Tensor) -> torch.Tensor:
        s = self.setting
        return (s.sigma_w2 * self.pair.value(c) + s.sigma_b2) / self.q_next

    def error_bound(self, c: torch.Tensor) -> torch.Tensor:
        """Bound on the truncation error of the map at c (0 for closed forms and direct quadrature)."""
        bound = getattr(self.pair, "error_bound", None)
        if bound is None:
            return torch.zeros_like(self.q)
        return self.setting.sigma_w2 * bound(c) / self.q_next

    def slope(self, c: torch.Tensor) -> torch.Tensor:
        """dc'/dc = sigma_w^2 E[phi'(u1) phi'(u2)] at the fixed point (eq. 8): chi_c."""
        return self.setting.sigma_w2 * self.pair.slope(c) / self.q_next

    def value_and_slope(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The map and its slope at c, sharing one pass over the kernel."""
        s = self.setting
        k, dk = self.pair.value_and_slope(c)
        return (s.sigma_w2 * k + s.sigma_b2) / self.q_next, s.sigma_w2 * dk / self.q_next


def iterate(s: TensorPrior, q0: torch.Tensor, c0: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterate eq. 3 and 4 (with noise) ``depth`` times from pre-activation variance q0 and correlation c0.

    Returns q, c of shape ``s.shape + (depth + 1,)`` with q[..., 0] = q0 and c[..., 0] = c0.
    """
    shape = s.shape
    flat = s.flatten()
    q0f = torch.broadcast_to(q0, shape).reshape(-1)
    c0f = torch.broadcast_to(c0, shape).reshape(-1)
    owner = torch.arange(q0f.numel(), device=q0f.device)
    q, c = iterate_pairs(flat, q0f, c0f, owner, depth)
    return q.reshape(shape + (depth + 1,)), c.reshape(shape + (depth + 1,))


def iterate_pairs(
    s: TensorPrior, q0: torch.Tensor, c0: torch.Tensor, owner: torch.Tensor, depth: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`iterate` for pairs of inputs that share rows: pair i starts from correlation ``c0[i]`` in the
    network and input variance of row ``owner[i]`` of the flat batch ``s``, ``q0``.

    q^l depends on the row only, so the variance recursion and the kernel (its Mehler series) are computed
    once per row and layer; each pair then costs one evaluation of the correlation map.
    Returns q of shape (rows, depth + 1) and c of shape (pairs, depth + 1).
    """
    q = q0.clone()
    c = c0.clone()
    qs = torch.empty(q.shape + (depth + 1,), dtype=q.dtype, device=q.device)
    cs = torch.empty(c.shape + (depth + 1,), dtype=c.dtype, device=c.device)
    qs[:, 0], cs[:, 0] = q, c
    one_row = q.numel() == 1
    shared = not (owner.numel() == q.numel() and _is_identity(owner))
    sw2 = s.sigma_w2[owner] if shared and not one_row else s.sigma_w2
    sb2 = s.sigma_b2[owner] if shared and not one_row else s.sigma_b2
    staged = isinstance(s.kernel, QuadratureKernel)
    # The series follows the rows from layer to layer: coefficients interpolated again only where q moved.
    tracker = s.kernel.tracker(torch.clamp(q, min=Q_FLOOR)) if staged else None
    for layer in range(1, depth + 1):
        qf = torch.clamp(q, min=Q_FLOOR)
        if staged:  # the series needs only the orders that matter at this layer's |c|
            c_abs = c.abs()
            c_max = c_abs if not shared else torch.zeros_like(q).scatter_reduce_(0, owner, c_abs, "amax")
            pair = tracker.pair(qf, c_max) if tracker is not None else s.kernel.pair(qf, c_max=c_max)
        else:
            pair = s.kernel.pair(qf)
        if getattr(pair, "polynomial", False):  # E[phi^2] from the series' own (finer) rule: no extra pass
            q_next = s.sigma_w2 * (s.mu2 * pair.series.second_moment + s.add_var) + s.sigma_b2
        else:
            q_next = q_map(s, qf)
        if shared:
            pair = pair.take(owner)
        c = (sw2 * pair.value(c) + sb2) / (q_next[owner] if shared and not one_row else q_next)
        q = q_next
        qs[:, layer], cs[:, layer] = q, c
    return qs, cs


def _is_identity(index: torch.Tensor) -> bool:
    return bool((index == torch.arange(index.numel(), device=index.device)).all())
