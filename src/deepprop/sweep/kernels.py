"""Elementwise kernels of the batched trainer (:mod:`deepprop.sweep.trainer`).

* Activations applied in place, each with its backward computed from what the forward kept: tanh, sigmoid
  and relu from their output (one fused ATen pass: ``tanh_backward`` is grad * (1 - y^2), the op autograd
  itself calls), any other activation from its input with ``Activation.derivative``.
* Dropout masks from the counter-based hash of :mod:`deepprop.networks.random`, computed on the CPU in numpy
  uint32 arithmetic: the same bits as ``hash_uniform`` (its int64 torch arithmetic needs 3 passes per shift to
  emulate uint32 and no AVX2 instruction multiplies int64 lanes), in 11 passes over the layer instead of ~25,
  and the keep test made on the integer (no float uniforms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from deepprop.activations import ACTIVATIONS, Activation

# --- activations ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationKernel:
    """phi applied for training: ``forward_(h)`` returns y = phi(h) (in place on h where ``keeps_input`` is
    False); ``backward(dy, y, h, out)`` writes dL/dh = dy * phi'(h) into ``out`` (which may be dy)."""

    name: str
    forward_: Callable[[torch.Tensor], torch.Tensor]
    backward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]
    keeps_input: bool  # phi' needs h itself: the forward leaves h alone and returns a new tensor


def _identity(h: torch.Tensor) -> torch.Tensor:
    return h


def _copy_grad(dy: torch.Tensor, y: torch.Tensor, h: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    return dy if out is dy else out.copy_(dy)


_OUTPUT_BACKWARD: dict[str, tuple[Callable, Callable]] = {
    "tanh": (torch.tanh_, lambda dy, y, h, out: torch.ops.aten.tanh_backward.grad_input(dy, y, grad_input=out)),
    "sigmoid": (torch.sigmoid_,
                lambda dy, y, h, out: torch.ops.aten.sigmoid_backward.grad_input(dy, y, grad_input=out)),
    "relu": (torch.relu_,
             lambda dy, y, h, out: torch.ops.aten.threshold_backward.grad_input(dy, y, 0, grad_input=out)),
    "linear": (_identity, _copy_grad),
}


def activation_kernel(phi: Activation) -> ActivationKernel:
    """The training kernel of ``phi``: fused in-place ops for the built-ins that have them, else phi.fn and
    phi.derivative (the input is then kept for the backward)."""
    if phi.name in _OUTPUT_BACKWARD and ACTIVATIONS.get(phi.name) is phi:
        fwd, bwd = _OUTPUT_BACKWARD[phi.name]
        return ActivationKernel(phi.name, fwd, bwd, keeps_input=False)

    def backward(dy: torch.Tensor, y: torch.Tensor, h: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
        return torch.mul(dy, phi.derivative(h), out=out)

    return ActivationKernel(phi.name, phi.fn, backward, keeps_input=True)


# --- hashed dropout masks -------------------------------------------------------------------------------------

_GOLDEN = np.uint32(0x9E3779B9)
_MUL1 = np.uint32(0x7FEB352D)
_MUL2 = np.uint32(0x846CA68B)


def _mix32_(x: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """The avalanche hash of :func:`deepprop.networks.random._mix32`, in place on uint32 (wrapping products)."""
    for shift, mul in ((16, _MUL1), (15, _MUL2), (16, None)):
        np.right_shift(x, shift, out=tmp)
        np.bitwise_xor(x, tmp, out=x)
        if mul is not None:
            np.multiply(x, mul, out=x)
    return x


def counter_of(step: int, layer: int, stream: int) -> int:
    """The 32-bit counter of (step, layer, stream), as ``deepprop.networks.random.hash_uniform`` forms it."""
    return (step * 1_000_003 + layer * 7919 + stream * 104_729) & 0xFFFFFFFF


class HashedDropout:
    """Inverted-dropout factors Bernoulli(rho_k)/rho_k of networks with keys ``keys`` (CPU tensors out).

    Entry (k, i, j) at (step, layer) keeps its unit when ``hash_uniform(keys, step, layer, 0)[k, i, j] < rho_k``
    (the uniform's 24 bits m against rho in the training dtype: m < ceil(rho 2^24), i.e. hash < that x 256), and
    equals ``(u < rho).to(dtype) / rho`` bit for bit: the factor is 1 / rho rounded once, as that division does.
    """

    def __init__(self, keys: Sequence[int], keep_rate: torch.Tensor, dtype: torch.dtype, threads: int = 1):
        self.keys = np.array([int(k) & 0xFFFFFFFF for k in keys], dtype=np.uint32)
        rho = keep_rate.detach().to("cpu", torch.float64).reshape(-1).numpy()  # the dtype's value, widened
        # hash <= ceil(rho 2^24) 256 - 1 (at rho = 1: 2^32 - 1, every unit kept)
        self.last_kept = (np.ceil(rho * 2.0**24).astype(np.uint64) * 256 - 1).astype(np.uint32).reshape(-1, 1, 1)
        self.factor = (1.0 / keep_rate.detach().to("cpu", dtype)).reshape(-1, 1, 1).numpy()
        self.dtype = dtype
        # numpy's loops run on one core: networks are split into this many slices, one per thread
        k = len(self.keys)
        n = max(1, min(int(threads), k))
        self.slices = [slice(i * k // n, (i + 1) * k // n) for i in range(n)]
        self._work: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def _buffers(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if shape not in self._work:
            n = shape[0] * shape[1]
            offsets = (np.arange(n, dtype=np.uint64) * int(_GOLDEN) & 0xFFFFFFFF).astype(np.uint32)
            k = len(self.keys)
            self._work[shape] = (offsets.reshape(1, *shape), np.empty((k, *shape), np.uint32),
                                 np.empty((k, *shape), np.uint32), np.empty((k, *shape), np.bool_))
        return self._work[shape]

    def bases(self, step: int, layer: int, stream: int = 0) -> np.ndarray:
        """mix32(key ^ mix32(counter)) per network: the hash of entry 0."""
        c = np.array([counter_of(step, layer, stream)], dtype=np.uint32)
        c = _mix32_(c, np.empty_like(c))
        x = self.keys ^ c
        return _mix32_(x, np.empty_like(x))

    def hashes(self, step: int, layer: int, shape: tuple[int, int]) -> np.ndarray:
        """The 32-bit hashes (K, *shape) of stream 0 (a view of a reused buffer)."""
        offsets, x, tmp, _ = self._buffers(shape)
        np.add(offsets, self.bases(step, layer).reshape(-1, 1, 1), out=x)
        return _mix32_(x, tmp)

    def factors(self, step: int, layer: int, shape: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
        """The (K, *shape) dropout factors of (step, layer): 0 or 1 / rho_k (into ``out``, a CPU tensor)."""
        if out is None:
            out = torch.empty((len(self.keys), *shape), dtype=self.dtype)
        offsets, x, tmp, kept = self._buffers(shape)
        bases = self.bases(step, layer).reshape(-1, 1, 1)
        dest = out.numpy()

        def run(s: slice) -> None:
            np.add(offsets, bases[s], out=x[s])
            np.less_equal(_mix32_(x[s], tmp[s]), self.last_kept[s], out=kept[s])
            np.multiply(kept[s], self.factor[s], out=dest[s])  # numpy casts the bools in cache

        if len(self.slices) == 1:
            run(self.slices[0])
        else:
            list(_pool().map(run, self.slices))
        return out


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="deepprop-dropout")
    return _POOL
