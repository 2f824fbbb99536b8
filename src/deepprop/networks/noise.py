"""Layer-input noise drawn for a whole batch of networks at once, kind by kind (:mod:`deepprop.noise_models`).

Each layer's input y = phi(z) becomes y * eps_mult + eps_add, independently per network, unit and input:
eps_mult is the product of the multiplicative kinds' draws (dropout Bernoulli(rho)/rho, Gaussian
N(1, s_mult^2), ...), eps_add the sum of the additive kinds' (N(0, s_add^2)). The random numbers come from
the caller (a torch.Generator for simulations, a counter-based hash for training,
:mod:`deepprop.networks.random`), one stream per kind in the order of :attr:`deepprop.prior.Noise.kinds`:
the dropout uniforms (stream 0), the multiplicative normals (stream 1), the additive normals (stream 2),
then any extra kinds (streams 3, 4, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from deepprop.noise_models import NoiseKind, standard_kinds
from deepprop.prior import Noise

Draw = Callable[[int], torch.Tensor]
"""``draw(stream)`` -> a tensor of random numbers of the layer's shape."""


class LayerNoise:
    """The noise of a batch of networks: its kinds, with parameters as floats or as tensors broadcasting
    against a layer's input (one value per network).

    ``LayerNoise(keep_rate, noise_mult, noise_add, extra=())`` builds the standard kinds from their numbers;
    :meth:`of` takes a :class:`~deepprop.prior.Noise`. Which kinds are present is decided once, here, so
    that drawing a layer's noise never synchronises with a GPU.
    """

    def __init__(self, keep_rate: float | torch.Tensor = 1.0, noise_mult: float | torch.Tensor = 0.0,
                 noise_add: float | torch.Tensor = 0.0, extra: Sequence[NoiseKind] = ()):
        self.kinds: tuple[NoiseKind, ...] = standard_kinds(keep_rate, noise_mult, noise_add) + tuple(extra)
        self.present = tuple(kind.is_active() for kind in self.kinds)

    @classmethod
    def of(cls, noise: Noise) -> LayerNoise:
        """The layer noise of a (single-valued) prior noise."""
        noise = noise.single()
        extra = tuple(type(kind)(float(kind.value)) for kind in noise.extra)  # a kind is built from its value
        return cls(float(noise.keep_rate), float(noise.noise_mult), float(noise.noise_add), extra)

    @property
    def active(self) -> bool:
        return any(self.present)

    def factors(self, uniform: Draw, normal: Draw, dtype: torch.dtype
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(eps_mult, eps_add) for one layer in ``dtype``, None where that noise is off."""
        mult = add = None
        for stream, (kind, present) in enumerate(zip(self.kinds, self.present, strict=True)):
            if not present:
                continue
            eps = kind.draw(lambda s=stream: uniform(s), lambda s=stream: normal(s), dtype)
            if kind.multiplicative:
                mult = eps if mult is None else mult * eps
            else:
                add = eps if add is None else add + eps
        return mult, add

    def apply(self, y: torch.Tensor, uniform: Draw, normal: Draw) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y * eps_mult + eps_add and the multiplicative factor used (None without one)."""
        mult, add = self.factors(uniform, normal, y.dtype)
        if mult is not None:
            y = y * mult
        if add is not None:
            y = y + add
        return y, mult
