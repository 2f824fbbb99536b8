"""Counter-based random numbers: a network's noise depends only on its key and the (step, layer, stream,
entry) counter, never on which other networks share its batch or on the order of execution.

Used for dropout masks in training (:mod:`deepprop.sweep.ensemble`), where a run killed and resumed
must see the same masks.
"""

from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Integer avalanche hash of 32-bit values held in int64 (low 32 bits kept after each product)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def hash_uniform(
    keys: torch.Tensor, step: int, layer: int, stream: int, shape: tuple[int, int]
) -> torch.Tensor:
    """Uniform [0, 1) numbers of shape (K,) + shape from a counter-based hash; float32.

    Entry (k, i, j) depends only on (keys[k], step, layer, stream, i, j): a network's noise does not depend on
    which other networks share its ensemble.
    """
    device = keys.device
    counter = ((step * 1_000_003 + layer * 7919 + stream * 104_729) & MASK32) & MASK32
    base = _mix32(
        (keys.to(torch.int64) & MASK32) ^ _mix32(torch.tensor(counter, dtype=torch.int64, device=device))
    )
    idx = torch.arange(shape[0] * shape[1], dtype=torch.int64, device=device).view(1, *shape)
    h = _mix32((base.view(-1, 1, 1) + idx * 0x9E3779B9) & MASK32)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def hash_normal(
    keys: torch.Tensor, step: int, layer: int, stream: int, shape: tuple[int, int]
) -> torch.Tensor:
    """Standard normal numbers by Box-Muller from two :func:`hash_uniform` streams."""
    u1 = hash_uniform(keys, step, layer, 2 * stream, shape)
    u2 = hash_uniform(keys, step, layer, 2 * stream + 1, shape)
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2 * math.pi * u2)
