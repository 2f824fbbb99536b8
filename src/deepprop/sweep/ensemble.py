"""Train K fully connected networks of one depth at once, as one batched ensemble.

Network k (k = 0..K-1), depth L, width N, input dimension d, C classes:

    h^1 = x W^1_k + b^1_k,                        W^1_k: (d, N)
    h^l = (y^{l-1} * eps^l_k + a^l_k) W^l_k + b^l_k, y^{l-1} = phi(h^{l-1}),  l = 2..L,  W^l_k: (N, N)
    logits = (y^L * eps + a) W^out_k + b^out_k,    W^out_k: (N, C)
    loss_k = mean over the mini-batch of cross-entropy(logits, label)

with W_ij ~ N(0, sigma_w2 / fan_in) (or sqrt(sigma_w2 * max(1, fan_out/fan_in)) times a Haar (semi-)orthogonal
matrix, which has the same per-entry variance) and b_i ~ N(0, sigma_b2). The noise acts on each layer's
input after the first (follow-ups section 1): inverted dropout eps = Bernoulli(keep_rate)/keep_rate,
optionally times N(1, noise_mult^2), plus additive a ~ N(0, noise_add^2); it is off at evaluation.

All parameters of layer l are stacked into one tensor of shape (K, fan_in, fan_out) and each layer is one
``torch.baddbmm``: there is no Python loop over networks in training. SGD (p <- p - lr_k g) and RMSProp
(v <- a v + (1 - a) g^2, p <- p - lr_k g / (sqrt(v) + eps), as ``torch.optim.RMSprop``) act on the stacked
tensors with a per-network learning rate lr_k. The step is backpropagated by hand on preallocated buffers
(:mod:`deepprop.sweep.trainer`; tests hold it to autograd + torch.optim and to finite differences). A
network whose loss becomes NaN/inf is marked diverged at that step and gets no further update; the others
go on unaffected. Accuracy and loss are measured on the train/test subsets for all networks at once, after
each budget (the inputs, shared by every network, go through the first layer as one matmul).

Randomness is per network, never per batch of networks, so a network trains identically whatever
ensemble it is part of: initial weights come from a generator seeded with its ``init_seed``, mini-batch
order from its data ``seed`` (:func:`batch_indices`), and noise from a counter-based hash of
(noise_key, step, layer, example, unit) (:func:`deepprop.networks.random.hash_uniform`; dropout alone is
drawn on the CPU by :class:`deepprop.sweep.kernels.HashedDropout`, the same bits). Weights and noise come
from the one random-network engine, :mod:`deepprop.networks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from deepprop.activations import Activation, get_activation
from deepprop.errors import ParameterError
from deepprop.networks.noise import LayerNoise
from deepprop.networks.random import MASK32, hash_normal, hash_uniform
from deepprop.networks.weights import unit_weights
from deepprop.noise_models import Dropout
from deepprop.prior import NOISE_FIELDS
from deepprop.sweep.kernels import ActivationKernel, HashedDropout, activation_kernel
from deepprop.sweep.trainer import EnsembleTrainer


@dataclass(frozen=True)
class NetSpec:
    """Hyperparameters and random streams of one network of the ensemble."""

    sigma_w2: float
    sigma_b2: float
    lr: float
    seed: int  # data-order stream
    init_seed: int  # initial weights
    noise_key: int  # noise stream (dropout masks)
    keep_rate: float = 1.0
    noise_mult: float = 0.0
    noise_add: float = 0.0


@dataclass(frozen=True)
class TrainSettings:
    """What all networks of one ensemble share."""

    depth: int
    width: int
    activation: str = "tanh"
    weights: str = "gaussian"  # gaussian | orthogonal
    optimizer: str = "sgd"  # sgd | rmsprop
    steps: int = 200
    batch_size: int = 128
    dtype: str = "float32"  # float32 | float64
    precision: str = "fp32"  # fp32 | tf32 | bf16 (the last two opt-in, on CUDA)
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 1e-8
    eval_train: int | None = 10000  # examples used for the final train accuracy (None: all)
    eval_test: int | None = 10000
    record_history: bool = False
    eval_steps: tuple[int, ...] = ()  # earlier budgets (< steps) at which every network is also evaluated


@dataclass
class EnsembleResult:
    """Per-network outcome, numpy arrays of length K (history: (steps, K) mini-batch losses when recorded, NaN
    after the step a network diverged at)."""

    train_accuracy: np.ndarray
    test_accuracy: np.ndarray
    final_loss: np.ndarray  # mean cross-entropy on the evaluated training examples, no noise
    diverged: np.ndarray  # bool
    diverged_step: np.ndarray  # int, -1 when not diverged
    history: np.ndarray | None = None
    # one row per budget (settings.eval_steps, then settings.steps), one column per network
    budgets: tuple[int, ...] = ()
    train_accuracy_at: np.ndarray | None = None
    test_accuracy_at: np.ndarray | None = None
    loss_at: np.ndarray | None = None
    diverged_at: np.ndarray | None = None
    diverged_step_at: np.ndarray | None = None
    network_steps: int = 0
    flops: float = 0.0
    extra: dict = field(default_factory=dict)


# --- random streams -----------------------------------------------------------------------------------


def batch_indices(seed: int, n: int, steps: int, batch_size: int) -> np.ndarray:
    """Mini-batch example indices (steps, batch_size): epochs of permutations drawn with ``seed``."""
    rng = np.random.default_rng(int(seed))
    need = steps * batch_size
    chunks, have = [], 0
    while have < need:
        chunks.append(rng.permutation(n))
        have += n
    return np.concatenate(chunks)[:need].reshape(steps, batch_size)


# --- parameters -----------------------------------------------------------------------------------------


def layer_sizes(depth: int, width: int, n_in: int, n_out: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of the L hidden layers and the readout."""
    return [(n_in, width)] + [(width, width)] * (depth - 1) + [(width, n_out)]


def init_params(
    specs: Sequence[NetSpec],
    settings: TrainSettings,
    n_in: int,
    n_out: int,
    device: torch.device | str = "cpu",
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Initial weights [(K, fan_in, fan_out)] and biases [(K, 1, fan_out)] of every layer incl. the readout.

    Network k draws, from a generator seeded with ``specs[k].init_seed``, layer by layer, first the weight
    matrix then the bias vector; so its weights do not depend on the other networks of the ensemble.
    """
    device = torch.device(device)
    dtype = getattr(torch, settings.dtype)
    sizes = layer_sizes(settings.depth, settings.width, n_in, n_out)
    gens = [torch.Generator(device=device).manual_seed(int(s.init_seed)) for s in specs]
    weights, biases = [], []
    for fan_in, fan_out in sizes:
        w = torch.stack([torch.randn(fan_in, fan_out, generator=g, device=device, dtype=dtype) for g in gens])
        b = torch.stack([torch.randn(1, fan_out, generator=g, device=device, dtype=dtype) for g in gens])
        sw2 = torch.tensor([s.sigma_w2 for s in specs], dtype=dtype, device=device).view(-1, 1, 1)
        sb2 = torch.tensor([s.sigma_b2 for s in specs], dtype=dtype, device=device).view(-1, 1, 1)
        weights.append((unit_weights(w, fan_in, settings.weights) * torch.sqrt(sw2)).contiguous())
        biases.append((b * torch.sqrt(sb2)).contiguous())
    return weights, biases


# --- the batched network ----------------------------------------------------------------------------------


class _HashedNoise:
    """Per-network layer-input noise (:class:`~deepprop.networks.noise.LayerNoise`) drawn from the
    counter-based hash of (noise_key, step, layer, example, unit)."""

    def __init__(self, specs: Sequence[NetSpec], device: torch.device, dtype: torch.dtype):
        def col(name: str) -> torch.Tensor:
            return torch.tensor([getattr(s, name) for s in specs], dtype=dtype, device=device).view(-1, 1, 1)

        self.noise = LayerNoise(*(col(name) for name in NOISE_FIELDS))
        self.keys = torch.tensor([s.noise_key & MASK32 for s in specs], dtype=torch.int64, device=device)
        self.active = self.noise.active
        # dropout alone on the CPU (the sweeps' case): the same factors (its stream 0) from the uint32 kernel
        kinds = [kind for kind, present in zip(self.noise.kinds, self.noise.present, strict=True) if present]
        only_dropout = len(kinds) == 1 and isinstance(kinds[0], Dropout) and self.noise.kinds[0] is kinds[0]
        self._dropout = (HashedDropout([s.noise_key for s in specs], kinds[0].keep_rate, dtype)
                         if only_dropout and torch.device(device).type == "cpu" else None)

    def fill_factors(self, step: int, buffers: Sequence[torch.Tensor | None]) -> bool:
        """Draw the dropout factors of all layers of ``step`` at once into ``buffers[layer]`` (None where a
        layer has no noise), on torch's number of threads; False where there is no such path (Gaussian
        noise, or not on the CPU): :meth:`apply` then draws each layer's noise."""
        if self._dropout is None:
            return False
        outs = {layer: b for layer, b in enumerate(buffers) if b is not None}
        self._dropout.fill(step, outs, threads=torch.get_num_threads())
        return True

    def apply(self, y: torch.Tensor, step: int, layer: int, out: torch.Tensor | None = None,
              factor_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(noisy y, multiplicative factor or None) of layer ``layer``'s input y (K, B, N) at ``step``;
        ``out`` / ``factor_out``: buffers to write them into (the general path copies)."""
        if self._dropout is not None:
            factor = self._dropout.factors(step, layer, (y.shape[1], y.shape[2]), out=factor_out)
            return torch.mul(y, factor, out=out), factor
        shape = (y.shape[1], y.shape[2])

        def uniform(stream: int) -> torch.Tensor:
            return hash_uniform(self.keys, step, layer, stream, shape).to(y.dtype)

        def normal(stream: int) -> torch.Tensor:
            return hash_normal(self.keys, step, layer, stream, shape).to(y.dtype)

        noisy, factor = self.noise.apply(y, uniform, normal)
        return (noisy if out is None else out.copy_(noisy)), factor

    def __call__(self, y: torch.Tensor, step: int, layer: int) -> torch.Tensor:
        return self.apply(y, step, layer)[0]


def _side_by_side(w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First-layer weights (K, d, N) and biases (K, 1, N) as one (d, K N) matrix and one (1, K N) row."""
    k, d, n = w.shape
    return w.transpose(0, 1).reshape(d, k * n), b.reshape(1, k * n)


def _shared_first_layer(x: torch.Tensor, w_side: torch.Tensor, b_side: torch.Tensor, k: int) -> torch.Tensor:
    """h^1 (K, B, N) of inputs x (B, d) that every network sees: one matmul with the weights side by side."""
    return torch.addmm(b_side, x, w_side).view(x.shape[0], k, -1).transpose(0, 1)


def _later_layers(h: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                  kernel: ActivationKernel, noise: _HashedNoise | None = None, step: int = 0) -> torch.Tensor:
    for layer in range(1, len(weights)):
        y = kernel.forward_(h)
        if noise is not None and noise.active:
            y = noise(y, step, layer)
        h = torch.baddbmm(biases[layer], y, weights[layer])
    return h


def forward(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    phi: Activation,
    noise: _HashedNoise | None = None,
    step: int = 0,
) -> torch.Tensor:
    """Logits (K, B, C) for inputs x of shape (K, B, d) or (B, d) (shared by all networks)."""
    if x.dim() == 2:
        h = _shared_first_layer(x, *_side_by_side(weights[0], biases[0]), weights[0].shape[0])
    else:
        h = torch.baddbmm(biases[0], x, weights[0])
    return _later_layers(h, weights, biases, activation_kernel(phi), noise, step)


def flops_per_step(settings: TrainSettings, n_in: int, n_out: int) -> float:
    """Matmul FLOPs of one training step of one network: 2 B fan_in fan_out per layer for the forward pass,
    as much for the weight gradient, and as much for the input gradient of every layer but the first (the
    data need none)."""
    sizes = layer_sizes(settings.depth, settings.width, n_in, n_out)
    return 2.0 * settings.batch_size * (3 * sum(a * b for a, b in sizes) - n_in * settings.width)


def bytes_per_network(settings: TrainSettings, n_in: int, n_out: int) -> int:
    """Device memory of one network in training: parameters and optimizer state (SGD writes its update
    straight into the weights; RMSProp keeps a gradient, a square average and a denominator), and per layer the
    pre-activation, the noisy input and its noise factor (an upper bound: without noise the last two are not
    allocated), the mini-batch and two gradient buffers."""
    itemsize = 8 if settings.dtype == "float64" else 4
    sizes = layer_sizes(settings.depth, settings.width, n_in, n_out)
    n_params = sum(a * b + b for a, b in sizes)
    state = 4 if settings.optimizer == "rmsprop" else 1  # + gradient, square average, denominator
    acts = settings.batch_size * (3 * settings.width * settings.depth + n_in + n_out + 2 * settings.width)
    return int(itemsize * (state * n_params + acts))


def check_settings(settings: TrainSettings) -> None:
    """Raise ParameterError for settings outside their range."""
    for name in ("depth", "width", "steps", "batch_size"):
        value = getattr(settings, name)
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ParameterError(name, f"must be a positive integer (got {value!r})")
    if settings.weights not in ("gaussian", "orthogonal"):
        raise ParameterError("weights", f"must be gaussian or orthogonal (got {settings.weights!r})")
    if settings.optimizer not in ("sgd", "rmsprop"):
        raise ParameterError("optimizer", f"must be sgd or rmsprop (got {settings.optimizer!r})")
    if settings.dtype not in ("float32", "float64"):
        raise ParameterError("dtype", f"must be float32 or float64 (got {settings.dtype!r})")
    if settings.precision not in ("fp32", "tf32", "bf16"):
        raise ParameterError("precision", f"must be fp32, tf32 or bf16 (got {settings.precision!r})")
    for b in settings.eval_steps:
        if not isinstance(b, (int, np.integer)) or not 1 <= b < settings.steps:
            raise ParameterError("eval_steps", f"must be integers in [1, steps - 1 = {settings.steps - 1}] (got {b!r})")


EVAL_ELEMENTS = 1 << 19
"""Activations per evaluation chunk (K x examples x width): 2 MB a layer in float32, which stays in cache."""


def _evaluate(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    phi: Activation,
    batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(accuracy, mean cross-entropy) per network on (x, y), without noise, all networks at once."""
    k = weights[0].shape[0]
    kernel = activation_kernel(phi)
    side = _side_by_side(weights[0], biases[0])
    if batch is None:
        batch = max(32, EVAL_ELEMENTS // (k * max(w.shape[2] for w in weights)))
    correct = torch.zeros(k, dtype=torch.float64, device=x.device)
    loss = torch.zeros(k, dtype=torch.float64, device=x.device)
    for start in range(0, len(y), batch):
        xb, yb = x[start : start + batch], y[start : start + batch]
        logits = _later_layers(_shared_first_layer(xb, *side, k), weights, biases, kernel)
        correct += (logits.argmax(-1) == yb).sum(-1).to(torch.float64)
        log_p = torch.log_softmax(logits, dim=-1)
        loss -= log_p.gather(-1, yb.expand(k, -1).unsqueeze(-1)).sum((1, 2)).to(torch.float64)
    return correct / len(y), loss / len(y)


def build_trainer(specs: Sequence[NetSpec], settings: TrainSettings, weights: Sequence[torch.Tensor],
                  biases: Sequence[torch.Tensor], *, low_precision: bool = False) -> EnsembleTrainer:
    """The :class:`~deepprop.sweep.trainer.EnsembleTrainer` of ``specs`` from initial parameters (copied)."""
    device, dtype = weights[0].device, weights[0].dtype
    return EnsembleTrainer(
        weights, biases, kernel=activation_kernel(get_activation(settings.activation)),
        noise=_HashedNoise(specs, device, dtype), optimizer=settings.optimizer,
        lr=torch.tensor([s.lr for s in specs], dtype=dtype), batch_size=settings.batch_size,
        rmsprop_alpha=settings.rmsprop_alpha, rmsprop_eps=settings.rmsprop_eps, low_precision=low_precision)


def train_ensemble(
    specs: Sequence[NetSpec],
    settings: TrainSettings,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    n_classes: int,
    *,
    init: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
) -> EnsembleResult:
    """Train the networks ``specs`` (all of depth ``settings.depth``) together; return per-network results.

    Data tensors must already sit on the target device (x: float, y: int64). ``init`` overrides the
    initial parameters (for tests); by default :func:`init_params` draws them.
    """
    check_settings(settings)
    if not specs:
        raise ParameterError("specs", "must contain at least one network")
    device = x_train.device
    phi = get_activation(settings.activation)
    k, n_in = len(specs), x_train.shape[1]
    trainer = build_trainer(specs, settings, *(init or init_params(specs, settings, n_in, n_classes, device)),
                            low_precision=settings.precision == "bf16" and device.type == "cuda")
    table = torch.from_numpy(data_order(specs, len(y_train), settings)).to(device)  # (steps, K, B)
    batch_x = torch.empty(k * settings.batch_size, n_in, dtype=x_train.dtype, device=device)

    alive = torch.ones(k, dtype=torch.bool, device=device)
    div_step = torch.full((k,), -1, dtype=torch.int64, device=device)
    history = (
        torch.full((settings.steps, k), float("nan"), dtype=torch.float64, device=device)
        if settings.record_history
        else None
    )
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = settings.precision == "tf32"
    budgets = tuple(sorted(set(int(b) for b in settings.eval_steps))) + (settings.steps,)
    n_b = len(budgets)
    at = {name: torch.full((n_b, k), float("nan"), dtype=torch.float64, device=device)
          for name in ("train_acc", "test_acc", "loss")}
    div_at = torch.zeros(n_b, k, dtype=torch.bool, device=device)
    div_step_at = torch.full((n_b, k), -1, dtype=torch.int64, device=device)
    ntr = len(y_train) if settings.eval_train is None else min(settings.eval_train, len(y_train))
    nte = len(y_test) if settings.eval_test is None else min(settings.eval_test, len(y_test))

    def evaluate_budget(i: int) -> None:
        """Score the current parameters as the result of a run of ``budgets[i]`` steps (what that run would
        end with: a network dead before it is diverged; one whose scores are non-finite diverged at its end)."""
        nonlocal alive, div_step
        tr_acc, tr_loss = _evaluate(x_train[:ntr], y_train[:ntr], trainer.w, trainer.b, phi)
        te_acc, _ = _evaluate(x_test[:nte], y_test[:nte], trainer.w, trainer.b, phi)
        ok = alive & torch.isfinite(tr_loss)
        late = alive & ~ok
        at["train_acc"][i] = torch.where(ok, tr_acc, at["train_acc"][i])
        at["test_acc"][i] = torch.where(ok, te_acc, at["test_acc"][i])
        at["loss"][i] = torch.where(ok, tr_loss, at["loss"][i])
        div_at[i] = ~ok
        div_step_at[i] = torch.where(late, torch.full_like(div_step, budgets[i]), div_step)
        if i == n_b - 1:
            div_step = div_step_at[i]
            alive = ok

    try:
        with torch.no_grad():
            next_budget = 0
            for step in range(settings.steps):
                if step == budgets[next_budget]:
                    evaluate_budget(next_budget)
                    next_budget += 1
                idx = table[step]  # (K, B)
                torch.index_select(x_train, 0, idx.view(-1), out=batch_x)
                loss = trainer.forward_loss(step, batch_x.view(k, settings.batch_size, n_in), y_train[idx])
                if history is not None:  # a network's loss up to the step it diverged at
                    history[step] = torch.where(alive, loss.to(torch.float64), history[step])
                finite = torch.isfinite(loss)
                div_step = torch.where(alive & ~finite, torch.full_like(div_step, step), div_step)
                alive = alive & finite
                trainer.backward_update(alive)
            # a network whose final parameters give a non-finite loss diverged at the end of training
            evaluate_budget(n_b - 1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    acc_tr, acc_te, loss_b = (at[n].cpu().numpy() for n in ("train_acc", "test_acc", "loss"))
    return EnsembleResult(
        train_accuracy=acc_tr[-1],
        test_accuracy=acc_te[-1],
        final_loss=loss_b[-1],
        diverged=(~alive).cpu().numpy(),
        diverged_step=div_step.cpu().numpy(),
        budgets=budgets,
        train_accuracy_at=acc_tr,
        test_accuracy_at=acc_te,
        loss_at=loss_b,
        diverged_at=div_at.cpu().numpy(),
        diverged_step_at=div_step_at.cpu().numpy(),
        history=None if history is None else history.cpu().numpy(),
        network_steps=k * settings.steps,
        flops=k * settings.steps * flops_per_step(settings, n_in, n_classes),
    )


def data_order(specs: Sequence[NetSpec], n: int, settings: TrainSettings) -> np.ndarray:
    """Example indices (steps, K, B) of every network's mini-batches (networks sharing a seed share them)."""
    tables = {s: batch_indices(s, n, settings.steps, settings.batch_size) for s in {int(s.seed) for s in specs}}
    return np.stack([tables[int(s.seed)] for s in specs], axis=1)


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA or CPU allocator)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
