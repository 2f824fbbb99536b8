"""The hand-written training step against independent computations: autograd + torch.optim on each network
alone (with the noise drawn by deepprop.networks), finite differences of the loss, the hash stream's own
uniforms, torch's FLOP counter, and a per-network evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepprop.activations import get_activation
from deepprop.data import load_dataset
from deepprop.networks.noise import LayerNoise
from deepprop.networks.random import hash_normal, hash_uniform
from deepprop.sweep.ensemble import (
    NetSpec,
    TrainSettings,
    _evaluate,
    _HashedNoise,
    batch_indices,
    build_trainer,
    bytes_per_network,
    flops_per_step,
    init_params,
    train_ensemble,
)
from deepprop.sweep.kernels import HashedDropout

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n_train=120, n_features=10, n_classes=4):
    ds = load_dataset("synthetic", n_train=n_train, n_test=60, n_features=n_features, n_classes=n_classes, seed=3)
    f64 = torch.float64
    return (torch.from_numpy(ds.x_train).to(f64), torch.from_numpy(ds.y_train),
            torch.from_numpy(ds.x_test).to(f64), torch.from_numpy(ds.y_test), ds.n_classes)


# --- dropout factors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dropout_factors_are_the_hash_streams_bits(dtype):
    """The uint32 kernel's factors equal (hash_uniform < rho) / rho of deepprop.networks bit for bit, at keep
    rates whose 2^24 multiples are exact, inexact and 1."""
    keys = [0, 1, 2**31 + 5, 2**32 - 1, 123456789, 77]
    keep = torch.tensor([1.0, 0.9, 0.5, 0.999, 0.123456789, 0.75], dtype=dtype).view(-1, 1, 1)
    kernel = HashedDropout(keys, keep, dtype)
    key_t = torch.tensor(keys, dtype=torch.int64)
    for step, layer, shape in [(0, 1, (7, 13)), (3, 2, (64, 33)), (12345, 99, (16, 16))]:
        got = kernel.factors(step, layer, shape)
        want = (hash_uniform(key_t, step, layer, 0, shape).to(dtype) < keep).to(dtype) / keep
        assert got.dtype == dtype and torch.equal(got, want)


def test_a_whole_steps_masks_on_threads_equal_layer_by_layer():
    keep = torch.tensor([0.9, 0.8, 1.0]).view(-1, 1, 1)
    kernel = HashedDropout([5, 6, 7], keep, torch.float32)
    outs = {layer: torch.empty(3, 16, 24) for layer in range(1, 8)}
    kernel.fill(11, outs, threads=3)
    for layer, got in outs.items():
        assert torch.equal(got, kernel.factors(11, layer, (16, 24)))


def test_noise_fast_path_equals_layer_noise_path():
    specs = [NetSpec(1.0, 0.0, 0.1, 0, i, 1000 + i, keep_rate=r) for i, r in enumerate([0.8, 1.0, 0.95])]
    fast = _HashedNoise(specs, torch.device("cpu"), torch.float64)
    slow = _HashedNoise(specs, torch.device("cpu"), torch.float64)
    slow._dropout = None  # the general path: LayerNoise.apply with hash_uniform draws
    y = torch.randn(3, 40, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for step, layer in [(0, 1), (7, 3)]:
        (a, fa), (b, fb) = fast.apply(y, step, layer), slow.apply(y, step, layer)
        assert torch.equal(a, b) and torch.equal(fa, fb)


def test_dropout_keep_fraction():
    """Independent of the stream's construction: the kept fraction is rho within 5 standard errors."""
    rho, n = 0.9, 64 * 500
    kernel = HashedDropout([11, 12], torch.tensor([rho, rho]).view(-1, 1, 1), torch.float32)
    kept = (kernel.factors(5, 4, (64, 500)) > 0).to(torch.float64).mean(dim=(1, 2))
    assert torch.all((kept - rho).abs() < 5 * math.sqrt(rho * (1 - rho) / n))


# --- training against autograd ---------------------------------------------------------------------------------


def _reference_history(w, b, spec, settings, x, y, phi):
    """One network alone: leaf tensors, the noise of deepprop.networks (LayerNoise with hash draws), autograd,
    torch.optim; returns its losses per step and its final parameters."""
    params = [t.clone().requires_grad_(True) for t in (*w, *b)]
    n = len(w)
    if settings.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=spec.lr)
    else:
        opt = torch.optim.RMSprop(params, lr=spec.lr, alpha=settings.rmsprop_alpha, eps=settings.rmsprop_eps)
    noise = LayerNoise(spec.keep_rate, spec.noise_mult, spec.noise_add)
    key = torch.tensor([spec.noise_key & 0xFFFFFFFF])
    idx = batch_indices(spec.seed, len(y), settings.steps, settings.batch_size)
    losses = []
    for step in range(settings.steps):
        h = x[idx[step]] @ params[0] + params[n][0]
        for layer in range(1, n):
            shape = tuple(h.shape)
            act = phi.fn(h)
            act = noise.apply(act, lambda s, st=step, ly=layer, sh=shape: hash_uniform(key, st, ly, s, sh)[0].double(),
                              lambda s, st=step, ly=layer, sh=shape: hash_normal(key, st, ly, s, sh)[0].double())[0]
            h = act @ params[layer] + params[n + layer][0]
        loss = torch.nn.functional.cross_entropy(h, y[idx[step]])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.array(losses), [p.detach() for p in params]


CASES = [
    ("sgd", "tanh", dict(keep_rate=0.8)),
    ("rmsprop", "tanh", dict(keep_rate=0.9)),
    ("sgd", "gelu", dict(keep_rate=0.85)),  # activation whose derivative needs its input
    ("rmsprop", "sigmoid", dict(keep_rate=1.0, noise_mult=0.2, noise_add=0.1)),  # Gaussian noise: the general path
    ("sgd", "relu", dict(keep_rate=0.9)),
    ("rmsprop", "tanh", dict(keep_rate=0.8, lr=2e-3)),  # one learning rate: torch's fused kernel
]


@pytest.mark.parametrize(("optimizer", "activation", "noise"), CASES)
def test_training_matches_autograd_and_torch_optim(optimizer, activation, noise):
    x, y, xt, yt, n_classes = _data()
    settings = TrainSettings(depth=3, width=12, activation=activation, optimizer=optimizer, steps=14, batch_size=9,
                             dtype="float64", record_history=True, eval_train=50, eval_test=40)
    noise = dict(noise)
    lrs = [0.05, 0.2, 0.1] if optimizer == "sgd" else [1e-3, 3e-3, 2e-3]
    lrs = [noise.pop("lr")] * 3 if "lr" in noise else lrs
    specs = [NetSpec(sw2, 0.05, lr, seed, 40 + i, 900 + i, **noise)
             for i, (sw2, lr, seed) in enumerate(zip([0.9, 1.6, 2.5], lrs, [0, 1, 0], strict=True))]
    if noise.get("keep_rate", 1.0) < 1.0:  # a mixed ensemble: one network without dropout
        specs[1] = NetSpec(1.6, 0.05, lrs[1], 1, 41, 901)
    w, b = init_params(specs, settings, x.shape[1], n_classes)
    res = train_ensemble(specs, settings, x, y, xt, yt, n_classes)
    phi = get_activation(activation)
    if optimizer == "rmsprop" and len(set(lrs)) == 1 and hasattr(torch, "_fused_adam_"):
        trainer = build_trainer(specs, settings, w, b)
        trainer.forward_loss(0, x[:9].expand(3, -1, -1).contiguous(), y[:9].expand(3, -1))
        trainer.backward_update(torch.ones(3, dtype=torch.bool))
        assert trainer._fused_ok  # the fused path ran
    assert not res.diverged.any()
    for k, spec in enumerate(specs):
        ref, final = _reference_history([t[k] for t in w], [t[k] for t in b], spec, settings, x, y, phi)
        np.testing.assert_allclose(res.history[:, k], ref, rtol=1e-10, atol=1e-12)
        n = len(w)
        logits = xt[:40] @ final[0] + final[n][0]
        for layer in range(1, n):
            logits = phi.fn(logits) @ final[layer] + final[n + layer][0]
        assert res.test_accuracy[k] == pytest.approx(float((logits.argmax(1) == yt[:40]).double().mean()), abs=1e-12)
        assert max(float((f - i).abs().max()) for f, i in zip(final, [t[k] for t in (*w, *b)], strict=True)) > 1e-3


# --- gradient against finite differences -------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_weight_update_is_minus_the_finite_difference_gradient(activation):
    """SGD at lr 1 moves every parameter by minus dL_k/dp: checked at random entries of every layer's weights
    and biases against central differences of the same step's loss (same batch, same dropout masks)."""
    x, y, _, _, n_classes = _data()
    settings = TrainSettings(depth=3, width=10, activation=activation, batch_size=16, dtype="float64")
    specs = [NetSpec(1.5, 0.1, 1.0, 0, 7 + i, 70 + i, keep_rate=r) for i, r in enumerate([0.8, 1.0])]
    w, b = init_params(specs, settings, x.shape[1], n_classes)
    idx = torch.from_numpy(batch_indices(0, len(y), 1, 16)[0])
    xb, yb = x[idx].expand(2, -1, -1).contiguous(), y[idx].expand(2, -1)
    alive = torch.ones(2, dtype=torch.bool)

    def losses(weights, biases):
        return build_trainer(specs, settings, weights, biases).forward_loss(4, xb, yb)

    trainer = build_trainer(specs, settings, w, b)
    trainer.forward_loss(4, xb, yb)
    trainer.backward_update(alive)
    gen = np.random.default_rng(0)
    eps = 1e-6
    for group, after in ((w, trainer.w), (b, trainer.b)):
        for layer in range(len(group)):
            for _ in range(3):
                k = int(gen.integers(2))
                entry = tuple(int(gen.integers(s)) for s in group[layer].shape[1:])
                plus = [t.clone() for t in group]
                minus = [t.clone() for t in group]
                plus[layer][(k, *entry)] += eps
                minus[layer][(k, *entry)] -= eps
                args = (lambda g: (g, b)) if group is w else (lambda g: (w, g))
                fd = (losses(*args(plus))[k] - losses(*args(minus))[k]) / (2 * eps)
                moved = after[layer][(k, *entry)] - group[layer][(k, *entry)]
                assert float(moved) == pytest.approx(-float(fd), rel=1e-6, abs=1e-9)


def test_low_precision_matmuls_track_fp32():
    """bf16 matmuls (the CUDA ``bf16`` setting, forced here on the CPU): the first loss within bf16's 3 digits
    of fp32's, and not identical to it."""
    x, y, _, _, n_classes = _data(n_features=64)
    settings = TrainSettings(depth=4, width=64, batch_size=32)
    specs = [NetSpec(1.5, 0.05, 0.01, 0, 3 + i, i, keep_rate=0.9) for i in range(3)]
    w, b = init_params(specs, settings, x.shape[1], n_classes)
    xb = x[:32].float().expand(3, -1, -1).contiguous()
    yb = y[:32].expand(3, -1)
    full = build_trainer(specs, settings, w, b).forward_loss(0, xb, yb)
    low = build_trainer(specs, settings, w, b, low_precision=True).forward_loss(0, xb, yb)
    np.testing.assert_allclose(low.numpy(), full.numpy(), rtol=2e-2)
    assert not torch.equal(low, full)


# --- evaluation, work and memory --------------------------------------------------------------------------------


def test_evaluation_equals_each_network_alone():
    x, y, _, _, n_classes = _data(n_train=150)
    settings = TrainSettings(depth=3, width=16, activation="tanh", dtype="float64")
    specs = [NetSpec(sw2, 0.1, 0.1, 0, 5 + i, i) for i, sw2 in enumerate([0.5, 1.5, 3.0, 6.0])]
    w, b = init_params(specs, settings, x.shape[1], n_classes)
    acc, loss = _evaluate(x, y, w, b, get_activation("tanh"), batch=37)  # chunks that do not divide 150
    for k in range(len(specs)):
        h = x
        for layer in range(len(w)):
            h = (torch.tanh(h) if layer else h) @ w[layer][k] + b[layer][k][0]
        assert float(acc[k]) == pytest.approx(float((h.argmax(1) == y).double().mean()), abs=1e-12)
        assert float(loss[k]) == pytest.approx(float(torch.nn.functional.cross_entropy(h, y)), rel=1e-12)


def test_flops_per_step_equals_torch_flop_counter():
    """torch's own FLOP counter on an autograd step of one plain network (the data need no gradient)."""
    from torch.utils.flop_counter import FlopCounterMode

    settings = TrainSettings(depth=4, width=24, batch_size=16)
    layers, fan_in = [], 30
    for _ in range(settings.depth):
        layers += [torch.nn.Linear(fan_in, 24), torch.nn.Tanh()]
        fan_in = 24
    model = torch.nn.Sequential(*layers, torch.nn.Linear(24, 7))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(torch.randn(16, 30)), torch.randint(0, 7, (16,))).backward()
    assert flops_per_step(settings, 30, 7) == counter.get_total_flops()


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
def test_memory_estimate_bounds_the_trainers_buffers(optimizer):
    settings = TrainSettings(depth=5, width=32, batch_size=16, optimizer=optimizer)
    specs = [NetSpec(1.5, 0.05, 0.01, 0, i, i, keep_rate=0.9) for i in range(4)]
    w, b = init_params(specs, settings, 20, 5)
    trainer = build_trainer(specs, settings, w, b)
    held = {id(t): t.nbytes for v in vars(trainer).values() for t in (v if isinstance(v, (list, tuple)) else
            list(v.values()) if isinstance(v, dict) else [v]) if isinstance(t, torch.Tensor)}
    estimate = len(specs) * bytes_per_network(settings, 20, 5)
    assert 0.6 * estimate < sum(held.values()) <= estimate


@pytest.mark.gpu
def test_cuda_training_equals_cpu():
    """The same networks (CPU-drawn weights), masks and batches on CUDA: the torch hash there, the uint32
    kernel here."""
    x, y, xt, yt, n_classes = _data()
    settings = TrainSettings(depth=3, width=12, steps=10, batch_size=9, dtype="float64", record_history=True,
                             eval_train=50, eval_test=40)
    specs = [NetSpec(sw2, 0.05, 0.1, i, 40 + i, 900 + i, keep_rate=r)
             for i, (sw2, r) in enumerate([(0.9, 0.8), (1.6, 1.0), (2.5, 0.9)])]
    w, b = init_params(specs, settings, x.shape[1], n_classes)
    cpu = train_ensemble(specs, settings, x, y, xt, yt, n_classes, init=(w, b))
    cuda = [t.cuda() for t in (x, y, xt, yt)]
    gpu = train_ensemble(specs, settings, *cuda, n_classes, init=([t.cuda() for t in w], [t.cuda() for t in b]))
    np.testing.assert_allclose(gpu.history, cpu.history, rtol=1e-9)
    np.testing.assert_allclose(gpu.train_accuracy, cpu.train_accuracy, atol=1e-12)
