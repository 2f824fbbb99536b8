"""One training step of K networks at once, by hand-written backpropagation on preallocated buffers.

The network is a chain of batched matmuls and elementwise maps (:mod:`deepprop.sweep.ensemble` writes it
out). Per layer l (input a^{l-1}, weights W^l, bias b^l, dh^l = dL/dh^l):

    forward     h^l = b^l + a^{l-1} W^l            (torch.baddbmm into a kept buffer)
                y^l = phi(h^l)                     (in place),  a^l = y^l * eps^{l+1} + add^{l+1}
    backward    da^{l-1} = dh^l (W^l)^T            (before W^l changes)
                dh^{l-1} = (da^{l-1} * eps^l) * phi'(h^{l-1})
    SGD         W^l += (a^{l-1})^T (-lr_k dh^l)    (one baddbmm_ writes the update into W: the backward
                b^l += sum_batch (-lr_k dh^l)       carries -lr_k from the logits on, so no gradient is stored)
    RMSProp     g = (a^{l-1})^T dh^l,  v = alpha v + (1 - alpha) g^2,  W -= lr_k g / (sqrt(v) + eps)

with dh^{L+1} = (softmax(logits) - onehot) / B for the mean cross-entropy of each network, zero for a network
that has diverged (its update is then zero: its parameters stay as they were, unless its own activations
are no longer finite). Autograd would keep the same tensors but add a graph, a summed loss, per-parameter
gradients, a masked copy of each and the optimizer's temporaries; here every buffer is allocated once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from deepprop.sweep.kernels import ActivationKernel


class LayerNoiseSource(Protocol):
    """What the trainer needs of the noise: ``active``, ``apply(y, step, layer, out, factor_out)`` -> (noisy y,
    factor), and ``fill_factors(step, buffers)``, which may draw a whole step's factors at once (-> True)."""

    active: bool

    def fill_factors(self, step: int, buffers: Sequence[torch.Tensor | None]) -> bool: ...

    def apply(self, y: torch.Tensor, step: int, layer: int, out: torch.Tensor | None = None,
              factor_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class EnsembleTrainer:
    """Parameters, optimizer state and activation buffers of K networks of one depth.

    ``weights[l]``: (K, fan_in, fan_out), ``biases[l]``: (K, 1, fan_out), the readout last; they are copied.
    ``lr``: (K,) learning rates. ``low_precision``: run the matmuls in bfloat16 (fp32 parameters and
    elementwise maps), the ``bf16`` precision setting on CUDA.
    """

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], *,
                 kernel: ActivationKernel, noise: LayerNoiseSource | None, optimizer: str, lr: torch.Tensor,
                 batch_size: int, rmsprop_alpha: float = 0.99, rmsprop_eps: float = 1e-8,
                 low_precision: bool = False):
        self.w = [w.detach().clone().contiguous() for w in weights]
        self.b = [b.detach().clone().contiguous() for b in biases]
        self.kernel, self.optimizer = kernel, optimizer
        self.noise = noise if noise is not None and noise.active else None
        self.alpha, self.eps = rmsprop_alpha, rmsprop_eps
        self.low_precision = low_precision
        w0 = self.w[0]
        k, self.batch = w0.shape[0], batch_size
        self.n_layers = len(self.w)
        lr = lr.to(device=w0.device, dtype=w0.dtype).view(-1, 1, 1)
        # the loss gradient's factor: 1/B for the batch mean, -lr_k for SGD's update written by the backward
        self.lr = lr
        self.scale = (-lr if optimizer == "sgd" else torch.ones_like(lr)) / batch_size

        def act(n: int) -> torch.Tensor:
            return torch.empty(k, batch_size, n, dtype=w0.dtype, device=w0.device)

        widths = [w.shape[2] for w in self.w]
        self.h = [act(n) for n in widths]  # pre-activations (the last: logits); phi is applied in place
        noisy = self.noise is not None
        self.noisy_in = [None] + [act(n) if noisy else None for n in widths[:-1]]
        self.factor_buf = [None] + [act(n) if noisy else None for n in widths[:-1]]
        hidden = widths[0]
        self.grad_buf = (act(hidden), act(hidden))
        # filled by forward_loss, read by backward_update
        self.inputs: list[torch.Tensor | None] = [None] * self.n_layers
        self.outputs: list[torch.Tensor | None] = [None] * self.n_layers  # phi(h^l) of the hidden layers
        self.factors: list[torch.Tensor | None] = [None] * self.n_layers
        self.log_probs: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        if optimizer == "rmsprop":
            self.grad_w = [torch.empty_like(w) for w in self.w]
            self.grad_b = [torch.empty_like(b) for b in self.b]
            self.sq_w = [torch.zeros_like(w) for w in self.w]
            self.sq_b = [torch.zeros_like(b) for b in self.b]
            self._denominator = {p.shape: torch.empty_like(p) for p in (*self.w, *self.b)}
        rates = set(lr.view(-1).tolist())
        self.common_lr = rates.pop() if len(rates) == 1 else None
        self._fused_ok = hasattr(torch, "_fused_adam_")
        # Adam's bias corrections 1 - beta^t are exactly 1 at this step count (beta^t underflows to 0)
        self._no_bias_correction = torch.tensor(1e30, dtype=torch.float32, device=w0.device)

    # --- matmuls ------------------------------------------------------------------------------------------

    def _baddbmm(self, bias: torch.Tensor, a: torch.Tensor, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.low_precision:
            return out.copy_(torch.baddbmm(bias.bfloat16(), a.bfloat16(), w.bfloat16()))
        return torch.baddbmm(bias, a, w, out=out)

    def _bmm(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.low_precision:
            return out.copy_(torch.bmm(a.bfloat16(), b.bfloat16()))
        return torch.bmm(a, b, out=out)

    def _add_product_(self, p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
        if self.low_precision:
            p.add_(torch.bmm(a.bfloat16(), b.bfloat16()).to(p.dtype))
        else:
            p.baddbmm_(a, b)

    # --- one step -----------------------------------------------------------------------------------------

    def forward_loss(self, step: int, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (K,) of each network on its mini-batch x (K, B, d), labels (K, B), with the
        step's noise; keeps what :meth:`backward_update` needs."""
        a = x
        filled = self.noise is not None and self.noise.fill_factors(step, self.factor_buf)
        for layer in range(self.n_layers):
            if layer > 0:
                y = self.kernel.forward_(self.h[layer - 1])
                self.outputs[layer - 1] = y
                if filled:
                    a = self._apply_factor(y, layer)
                elif self.noise is not None:
                    a, self.factors[layer] = self.noise.apply(y, step, layer, out=self.noisy_in[layer],
                                                              factor_out=self.factor_buf[layer])
                else:
                    a = y
            self.inputs[layer] = a
            self._baddbmm(self.b[layer], a, self.w[layer], out=self.h[layer])
        return self._loss(labels)

    def backward_update(self, alive: torch.Tensor) -> None:
        """Backpropagate the last :meth:`forward_loss` and update the networks flagged in ``alive`` (K,)."""
        dh = self._loss_grad(alive)
        for layer in reversed(range(self.n_layers)):
            da = None
            if layer > 0:
                da = self._bmm(dh, self.w[layer].transpose(1, 2), out=self.grad_buf[layer % 2])
            self._update(layer, dh)
            if da is not None:
                if self.factors[layer] is not None:
                    self._noise_grad(da, self.factors[layer])
                pre = self.h[layer - 1] if self.kernel.keeps_input else None
                dh = self.kernel.backward(da, self.outputs[layer - 1], pre, da)

    def _loss(self, labels: torch.Tensor) -> torch.Tensor:
        self.log_probs = torch.log_softmax(self.h[-1], dim=-1)
        self.labels = labels
        return -self.log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(1)

    def _loss_grad(self, alive: torch.Tensor) -> torch.Tensor:
        """dL/dlogits (softmax - onehot) / B, times -lr_k for SGD, zero where a network is not alive."""
        dh = torch.exp(self.log_probs)
        dh.scatter_add_(-1, self.labels.unsqueeze(-1), torch.full_like(dh[..., :1], -1.0))
        return torch.where(alive.view(-1, 1, 1), dh * self.scale, torch.zeros_like(dh))

    def _apply_factor(self, y: torch.Tensor, layer: int) -> torch.Tensor:
        self.factors[layer] = self.factor_buf[layer]
        return torch.mul(y, self.factor_buf[layer], out=self.noisy_in[layer])

    @staticmethod
    def _noise_grad(da: torch.Tensor, factor: torch.Tensor) -> None:
        da.mul_(factor)

    def _update(self, layer: int, dh: torch.Tensor) -> None:
        a_t = self.inputs[layer].transpose(1, 2)
        w, b = self.w[layer], self.b[layer]
        if self.optimizer == "sgd":  # dh carries -lr_k / B
            self._add_product_(w, a_t, dh)
            b.add_(dh.sum(1, keepdim=True))
            return
        g_w = self._bmm(a_t, dh, out=self.grad_w[layer])
        g_b = torch.sum(dh, 1, keepdim=True, out=self.grad_b[layer])
        self._rmsprop((w, b), (g_w, g_b), (self.sq_w[layer], self.sq_b[layer]))

    def _rmsprop(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                 squares: Sequence[torch.Tensor]) -> None:
        """v = alpha v + (1 - alpha) g^2, p -= lr g / (sqrt(v) + eps), as torch.optim.RMSprop.

        With one learning rate for all networks this is torch's fused Adam kernel (one pass over p, g, v
        instead of five) at beta1 = 0 and a step count whose bias corrections are 1: Adam's first moment is
        then lerp(m, g, 1) = g exactly (g itself serves as m), its second moment and update are RMSProp's.
        """
        if self.common_lr is not None and self._fused_ok:
            try:
                torch._fused_adam_(list(params), list(grads), list(grads), list(squares), [],
                                   [self._no_bias_correction] * len(params), lr=self.common_lr, beta1=0.0,
                                   beta2=self.alpha, weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
                return
            except (AttributeError, NotImplementedError, RuntimeError):
                self._fused_ok = False  # an older torch or an unsupported device: the five passes below
        for p, g, v in zip(params, grads, squares, strict=True):
            v.mul_(self.alpha).addcmul_(g, g, value=1.0 - self.alpha)
            denom = torch.sqrt(v, out=self._denominator[v.shape]).add_(self.eps)
            if self.common_lr is not None:  # as torch.optim.RMSprop: p -= lr (g / denom)
                p.addcdiv_(g, denom, value=-self.common_lr)
            else:
                p.addcdiv_(g.mul_(self.lr), denom, value=-1.0)
