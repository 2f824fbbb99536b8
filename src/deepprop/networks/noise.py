"""Layer-input noise of follow-ups section 1, drawn for a whole batch of networks at once.

Each layer's input y = phi(z) becomes y * eps_mult + eps_add, independently per network, unit and input:

    eps_mult = Bernoulli(rho) / rho * N(1, s_mult^2),    eps_add ~ N(0, s_add^2),

so E[eps_mult] = 1 and E[eps_mult^2] = mu2 = (1 + s_mult^2) / rho (``deepprop.prior.Noise``). rho is
the KEEP rate. The random numbers come from the caller (a torch.Generator for simulations, a
counter-based hash for training, :mod:`deepprop.networks.random`), always in the same order: the
dropout uniforms (stream 0), the multiplicative normals (stream 1), the additive normals (stream 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Draw = Callable[[int], torch.Tensor]
"""``draw(stream)`` -> a tensor of random numbers of the layer's shape."""


def _any(x: float | torch.Tensor, test: Callable) -> bool:
    return bool(torch.any(test(x))) if isinstance(x, torch.Tensor) else bool(test(x))


class LayerNoise:
    """Noise parameters of a batch of networks (floats, or tensors broadcasting against a layer's input).

    Which kinds of noise are present is decided once, here, so that drawing a layer's noise never
    synchronises with a GPU.
    """

    def __init__(self, keep_rate: float | torch.Tensor, noise_mult: float | torch.Tensor,
                 noise_add: float | torch.Tensor):
        self.keep_rate, self.noise_mult, self.noise_add = keep_rate, noise_mult, noise_add
        self.dropout = _any(keep_rate, lambda r: r < 1.0)
        self.gauss_mult = _any(noise_mult, lambda s: s > 0.0)
        self.gauss_add = _any(noise_add, lambda s: s > 0.0)

    @property
    def active(self) -> bool:
        return self.dropout or self.gauss_mult or self.gauss_add

    def factors(self, uniform: Draw, normal: Draw, dtype: torch.dtype
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(eps_mult, eps_add) for one layer in ``dtype``, None where that noise is off."""
        mult = add = None
        if self.dropout:
            mult = (uniform(0) < self.keep_rate).to(dtype) / self.keep_rate
        if self.gauss_mult:
            m = 1.0 + self.noise_mult * normal(1)
            mult = m if mult is None else mult * m
        if self.gauss_add:
            add = self.noise_add * normal(2)
        return mult, add

    def apply(self, y: torch.Tensor, uniform: Draw, normal: Draw) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y * eps_mult + eps_add and the multiplicative factor used (None without one)."""
        mult, add = self.factors(uniform, normal, y.dtype)
        if mult is not None:
            y = y * mult
        if add is not None:
            y = y + add
        return y, mult
