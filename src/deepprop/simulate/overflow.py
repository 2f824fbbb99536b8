"""Where float32 leaves its range in deep noisy ReLU networks (Pretorius et al. 2018, follow-ups section 1).

A bias-free ReLU network with multiplicative noise of second moment mu2 (inverted dropout: mu2 = 1/rho) scales
the pre-activation variance by g = sigma_w2 mu2 / 2 per layer, q^l = q^1 g^(l-1). Computed in float32, the
variance of layer l, (1/N) sum_i (h_i^l)^2, leaves the float32 range:

* above criticality (g > 1), when the float32 **sum of squares** overflows to inf: N q^l >= K_max, i.e. at
  l = 1 + ln(K_max / (N q^1)) / ln g, somewhat earlier than the variance itself would (ln N / ln g layers);
* below it (g < 1), when the variance falls under the smallest normal float32 (subnormal or zero):
  q^l < K_min, at l = 1 + ln(K_min / q^1) / ln g.

The paper's closed form L* = ln K / ln(sigma_w2 mu2 / 2) is the same depth for q^1 = 1 without the sum's N.
:func:`float32_range_depths` runs such networks in ``dtype`` (float32 unless told otherwise) and reports, per
network, input and sigma_w2, the first layer whose variance is inf/NaN or below the smallest normal float32.
Weights are one standard normal draw per network scaled by sqrt(sigma_w2 / fan_in) (common random numbers
across the sweep); dropout masks are drawn per unit, input and sigma_w2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deepprop.errors import ParameterError

F32 = np.finfo(np.float32)
K_MAX = float(F32.max)
K_MIN = float(F32.tiny)  # smallest normal float32


@dataclass
class RangeDepths:
    """First layer (1-based) leaving the float32 range, shape (networks, inputs, sigma_w2); NaN: never within
    ``depth``. ``q1``: measured pre-activation variance of layer 1, same shape."""

    sigma_w2: np.ndarray
    keep_rate: float
    width: int
    depth: int
    dtype: str
    first: np.ndarray
    kind: np.ndarray  # "overflow" / "underflow" per sigma_w2 (by the sign of ln g)
    q1: np.ndarray

    def predicted(self, q1: np.ndarray | None = None) -> np.ndarray:
        """Predicted first layer per (network, input, sigma_w2) from the measured q^1 (module docstring)."""
        q1 = self.q1 if q1 is None else q1
        g = self.sigma_w2 / self.keep_rate / 2.0
        lng = np.log(g)
        over = lng > 0
        k = np.where(over, K_MAX / self.width, K_MIN)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 + np.log(k / q1) / lng

    def paper_l_star(self) -> np.ndarray:
        """The paper's L* = ln K / ln(sigma_w2 mu2 / 2) per sigma_w2 (K = K_max above criticality, K_min below)."""
        lng = np.log(self.sigma_w2 / self.keep_rate / 2.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(lng > 0, math.log(K_MAX), math.log(K_MIN)) / lng


def float32_range_depths(x: np.ndarray, sigma_w2: Sequence[float], *, keep_rate: float = 0.6, width: int = 1000,
                         depth: int = 1000, networks: int = 8, seed: int = 0, dtype: str = "float32",
                         device: str = "cpu") -> RangeDepths:
    """Run bias-free ReLU networks with inverted dropout ``keep_rate`` on inputs ``x`` (inputs, features) and
    record where each variance leaves the float32 range (module docstring). ``dtype`` float64 runs the same
    arithmetic in double precision and detects the double range (a control: it leaves it far deeper), while
    :meth:`RangeDepths.predicted` stays the float32 prediction."""
    if not 0 < keep_rate <= 1:
        raise ParameterError("keep_rate", f"must be in (0, 1] (got {keep_rate!r})")
    for name, v in (("width", width), ("depth", depth), ("networks", networks)):
        if int(v) < 1:
            raise ParameterError(name, f"must be >= 1 (got {v!r})")
    if dtype not in ("float32", "float64"):
        raise ParameterError("dtype", f"must be float32 or float64 (got {dtype!r})")
    dt = getattr(torch, dtype)
    dev = torch.device(device)
    sw = np.asarray(sigma_w2, dtype=np.float64)
    s, b = sw.size, x.shape[0]
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    xs = torch.as_tensor(np.asarray(x, dtype=np.float64).T, dtype=dt, device=dev)  # (d, B)
    scale = torch.as_tensor(np.repeat(np.sqrt(sw), b), dtype=dt, device=dev).view(1, 1, s * b)
    w1 = torch.randn((networks, width, xs.shape[0]), generator=gen, device=dev, dtype=dt) / math.sqrt(xs.shape[0])
    h = torch.matmul(w1, xs).repeat(1, 1, s) * scale  # (K, N, S*B)
    first = np.full((networks, s * b), np.nan)
    tiny = torch.tensor(float(np.finfo(dtype).tiny), dtype=dt, device=dev)  # the range of the dtype in use
    lng = np.repeat(np.log(sw / keep_rate / 2.0), b)
    over = torch.as_tensor(lng > 0, device=dev)
    q1 = None
    for layer in range(1, depth + 1):
        if layer > 1:
            y = torch.relu(h)
            if keep_rate < 1:
                keep = torch.rand(y.shape, generator=gen, device=dev, dtype=dt) < keep_rate
                y = y * keep / torch.tensor(keep_rate, dtype=dt, device=dev)
            w = torch.randn((networks, width, width), generator=gen, device=dev, dtype=dt) / math.sqrt(width)
            h = torch.bmm(w, y) * scale
        var = (h * h).sum(dim=1) / width  # the float32 sum of squares, then the mean
        if q1 is None:
            q1 = var.double().cpu().numpy()
        out = torch.where(over, ~torch.isfinite(var), torch.isfinite(var) & (var < tiny))
        hit = out.cpu().numpy() & np.isnan(first)
        first[hit] = layer
        if not np.isnan(first).any():
            break
    shape = (networks, s, b)
    first = first.reshape(shape).transpose(0, 2, 1)
    q1 = q1.reshape(shape).transpose(0, 2, 1)
    kinds = np.where(np.log(sw / keep_rate / 2.0) > 0, "overflow", "underflow")
    return RangeDepths(sw, float(keep_rate), int(width), int(depth), dtype, first, kinds, q1)
