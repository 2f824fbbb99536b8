"""Elementwise kernels of the batched trainer (:mod:`deepprop.sweep.trainer`).

* Activations applied in place, each with its backward computed from what the forward kept: tanh, sigmoid
  and relu from their output (one fused ATen pass: ``tanh_backward`` is grad * (1 - y^2), the op autograd
  itself calls), any other activation from its input with ``Activation.derivative``.
* Dropout masks from the counter-based hash of :mod:`deepprop.networks.random`, computed on the CPU in numpy
  uint32 arithmetic: the same bits as ``hash_uniform`` (its int64 torch arithmetic needs 3 passes per shift to
  emulate uint32 and no AVX2 instruction multiplies int64 lanes), in 11 passes over the layer instead of ~25,
  and the keep test made on the integer (no float uniforms). A step's masks are drawn for all layers at
  once, on as many threads as torch uses (numpy releases the GIL in its loops).
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

    def __init__(self, keys: Sequence[int], keep_rate: torch.Tensor, dtype: torch.dtype):
        self.keys = np.array([int(k) & 0xFFFFFFFF for k in keys], dtype=np.uint32)
        rho = keep_rate.detach().to("cpu", torch.float64).reshape(-1).numpy()  # the dtype's value, widened
        # hash <= ceil(rho 2^24) 256 - 1 (at rho = 1: 2^32 - 1, every unit kept)
        self.last_kept = (np.ceil(rho * 2.0**24).astype(np.uint64) * 256 - 1).astype(np.uint32).reshape(-1, 1, 1)
        self.factor = (1.0 / keep_rate.detach().to("cpu", dtype)).reshape(-1, 1, 1).numpy()
        self.dtype = dtype
        self._work: dict[tuple, tuple[np.ndarray, ...]] = {}

    def _buffers(self, shape: tuple[int, int], worker: int = 0) -> tuple[np.ndarray, ...]:
        """(offsets i x golden ratio, hash, scratch, kept) for ``shape``, the last three per worker thread."""
        if (shape, worker) not in self._work:
            n = shape[0] * shape[1]
            offsets = (np.arange(n, dtype=np.uint64) * int(_GOLDEN) & 0xFFFFFFFF).astype(np.uint32)
            k = len(self.keys)
            self._work[(shape, worker)] = (offsets.reshape(1, *shape), np.empty((k, *shape), np.uint32),
                                           np.empty((k, *shape), np.uint32), np.empty((k, *shape), np.bool_))
        return self._work[(shape, worker)]

    def bases(self, step: int, layer: int, stream: int = 0) -> np.ndarray:
        """mix32(key ^ mix32(counter)) per network; entry i's hash is mix32(this + i x golden ratio)."""
        c = np.array([counter_of(step, layer, stream)], dtype=np.uint32)
        c = _mix32_(c, np.empty_like(c))
        x = self.keys ^ c
        return _mix32_(x, np.empty_like(x))

    def hashes(self, step: int, layer: int, shape: tuple[int, int], worker: int = 0) -> np.ndarray:
        """The 32-bit hashes (K, *shape) of stream 0 (a view of a reused buffer)."""
        offsets, x, tmp, _ = self._buffers(shape, worker)
        np.add(offsets, self.bases(step, layer).reshape(-1, 1, 1), out=x)
        return _mix32_(x, tmp)

    def factors(self, step: int, layer: int, shape: tuple[int, int], out: torch.Tensor | None = None,
                worker: int = 0) -> torch.Tensor:
        """The (K, *shape) dropout factors of (step, layer): 0 or 1 / rho_k (into ``out``, a CPU tensor)."""
        if out is None:
            out = torch.empty((len(self.keys), *shape), dtype=self.dtype)
        kept = self._buffers(shape, worker)[3]
        np.less_equal(self.hashes(step, layer, shape, worker), self.last_kept, out=kept)
        np.multiply(kept, self.factor, out=out.numpy())  # numpy casts the bools in cache, torch in a pass
        return out

    def fill(self, step: int, outs: dict[int, torch.Tensor], threads: int = 1) -> None:
        """The factors of every layer of ``outs`` (layer -> (K, B, N) CPU tensor) at ``step``, on ``threads``
        threads (layers dealt out in turn). A whole step's masks at once keep both cores busy for long
        enough to pay: split a single layer's mask over two threads and the second one mostly waits for
        the core that torch's idle OpenMP worker spins on."""
        layers = sorted(outs)
        n = max(1, min(int(threads), len(layers)))

        def work(worker: int) -> None:
            for layer in layers[worker::n]:
                out = outs[layer]
                self.factors(step, layer, (out.shape[1], out.shape[2]), out=out, worker=worker)

        if n == 1:
            work(0)
        else:
            list(_pool(n).map(work, range(n)))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deepprop-masks")
    return _POOLS[threads]
