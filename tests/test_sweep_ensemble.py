"""The batched ensemble is the same experiment as training each network alone with plain PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepprop.data import load_dataset
from deepprop.networks.random import hash_uniform
from deepprop.sweep.ensemble import (
    NetSpec,
    TrainSettings,
    batch_indices,
    init_params,
    train_ensemble,
)


def _data(dtype=torch.float64):
    ds = load_dataset("synthetic", n_train=200, n_test=100, n_features=12, n_classes=3, seed=1)
    return (
        torch.from_numpy(ds.x_train).to(dtype),
        torch.from_numpy(ds.y_train),
        torch.from_numpy(ds.x_test).to(dtype),
        torch.from_numpy(ds.y_test),
        ds.n_classes,
    )


def _reference_losses(w, b, spec, settings, x, y, act):
    """One network alone: nn.Sequential + torch.optim, same initial weights and batch order."""
    layers = []
    for i in range(len(w)):
        lin = torch.nn.Linear(w[i].shape[0], w[i].shape[1], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(w[i].T)
            lin.bias.copy_(b[i][0])
        layers.append(lin)
        if i < len(w) - 1:
            layers.append(act())
    model = torch.nn.Sequential(*layers)
    if settings.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr)
    else:
        opt = torch.optim.RMSprop(model.parameters(), lr=spec.lr, alpha=0.99, eps=1e-8)
    idx = batch_indices(spec.seed, len(y), settings.steps, settings.batch_size)
    losses = []
    for step in range(settings.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[idx[step]]), y[idx[step]])
        losses.append(loss.item())
        if not math.isfinite(loss.item()):
            break
        loss.backward()
        opt.step()
    return np.array(losses)


@pytest.mark.parametrize(
    ("optimizer", "weights", "activation", "act"),
    [("sgd", "gaussian", "tanh", torch.nn.Tanh), ("rmsprop", "orthogonal", "relu", torch.nn.ReLU)],
)
def test_batched_equals_single_network_training(optimizer, weights, activation, act):
    x, y, xt, yt, n_classes = _data()
    settings = TrainSettings(
        depth=4,
        width=16,
        activation=activation,
        weights=weights,
        optimizer=optimizer,
        steps=25,
        batch_size=8,
        dtype="float64",
        record_history=True,
    )
    lrs = [0.05, 0.01, 0.1, 0.02] if optimizer == "sgd" else [1e-3, 3e-3, 1e-3, 5e-4]
    specs = [
        NetSpec(sigma_w2=sw2, sigma_b2=0.05, lr=lr, seed=seed, init_seed=100 + i, noise_key=i)
        for i, (sw2, lr, seed) in enumerate(zip([0.8, 1.5, 2.5, 4.0], lrs, [0, 1, 0, 2], strict=True))
    ]
    w, b = init_params(specs, settings, x.shape[1], n_classes)
    res = train_ensemble(specs, settings, x, y, xt, yt, n_classes)
    assert not res.diverged.any()
    for k, spec in enumerate(specs):
        ref = _reference_losses([t[k] for t in w], [t[k] for t in b], spec, settings, x, y, act)
        np.testing.assert_allclose(res.history[:, k], ref, rtol=1e-9, atol=1e-11)
    # training did something: the loss fell for every network
    assert np.all(res.history[-5:].mean(0) < res.history[:5].mean(0))


def test_initial_weight_statistics_and_orthogonality():
    settings = TrainSettings(depth=3, width=64, weights="orthogonal", dtype="float64")
    specs = [NetSpec(2.0, 0.3, 1e-3, 0, 7, 0), NetSpec(0.5, 0.0, 1e-3, 0, 8, 1)]
    w, b = init_params(specs, settings, 64, 10)
    for k, s in enumerate(specs):
        wk = w[1][k]
        np.testing.assert_allclose((wk.T @ wk).numpy(), s.sigma_w2 * np.eye(64), atol=1e-10)
    g = TrainSettings(depth=3, width=400, dtype="float64")
    wg, bg = init_params([NetSpec(2.0, 0.3, 1e-3, 0, 7, 0)], g, 400, 10)
    # per-entry variance sw2/fan_in and sb2; 160000 samples: relative s.e. ~ 0.35 %
    assert float(wg[1].var()) == pytest.approx(2.0 / 400, rel=0.02)
    assert float(torch.cat([t.flatten() for t in bg[:-1]]).var()) == pytest.approx(0.3, rel=0.15)


def test_dropout_forward_variance_matches_mean_field_linear():
    """Linear net with inverted dropout: q^{l+1} = sw2 * q^l / keep + sb2 (closed form, follow-ups sec. 1)."""
    from deepprop.activations import get_activation
    from deepprop.sweep.ensemble import _HashedNoise, forward

    keep, sw2, sb2, depth, width = 0.8, 0.9, 0.1, 4, 512
    specs = [NetSpec(sw2, sb2, 0.0, 0, 1000 + i, i, keep_rate=keep) for i in range(8)]
    settings = TrainSettings(depth=depth, width=width, activation="linear", dtype="float64")
    w, b = init_params(specs, settings, width, width)
    x = torch.randn(64, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q0 = float((x**2).mean())
    noise = _HashedNoise(specs, torch.device("cpu"), torch.float64)
    # readout is (width -> width) here: it is layer L+1 and sees dropout like the hidden layers
    out = forward(x.expand(len(specs), -1, -1).contiguous(), w, b, get_activation("linear"), noise, step=3)
    q = sw2 * q0 + sb2
    for _ in range(depth):
        q = sw2 * q / keep + sb2
    assert float((out**2).mean()) == pytest.approx(q, rel=0.05)
    u = hash_uniform(noise.keys, 5, 2, 0, (300, 100))
    assert float((u < keep).to(torch.float64).mean()) == pytest.approx(keep, abs=0.005)
    assert float(u.mean()) == pytest.approx(0.5, abs=0.003)


def test_diverging_network_is_recorded_and_does_not_disturb_others():
    x, y, xt, yt, n_classes = _data()
    settings = TrainSettings(
        depth=6, width=16, activation="relu", steps=30, batch_size=8, dtype="float64", record_history=True
    )
    good = NetSpec(2.0, 0.0, 0.01, 0, 11, 0)
    bad = NetSpec(30.0, 0.0, 10.0, 0, 12, 1)  # exploding forward pass and a huge step size
    both = train_ensemble([good, bad], settings, x, y, xt, yt, n_classes)
    alone = train_ensemble([good], settings, x, y, xt, yt, n_classes)
    assert both.diverged.tolist() == [False, True]
    np.testing.assert_allclose(both.history[:, 0], alone.history[:, 0], rtol=1e-12)
    assert both.train_accuracy[0] == alone.train_accuracy[0]
    assert np.isnan(both.train_accuracy[1])
    w, b = init_params([bad], settings, x.shape[1], n_classes)
    ref = _reference_losses([t[0] for t in w], [t[0] for t in b], bad, settings, x, y, torch.nn.ReLU)
    assert both.diverged_step[1] == len(ref) - 1 and not np.isfinite(ref[-1])
