"""Train a PyTorch classifier for a fixed budget: the training check behind the real-model claim.

Plain minibatch SGD with momentum on cross-entropy, a fixed number of steps, batches drawn with a seeded
generator; accuracy on the full training subset and on the test split afterwards. A run whose loss
becomes NaN or infinite stops there and is reported as diverged (accuracy of the last finite model is not
claimed: it is chance by definition of the outcome).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from deepprop.integrations.measure import stream_seed


@dataclass(frozen=True)
class TrainResult:
    train_accuracy: float
    test_accuracy: float
    final_loss: float
    steps: int
    diverged: bool

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    model.train(was)
    return correct / max(len(y), 1)


def train_classifier(model: nn.Module, x_train: np.ndarray | torch.Tensor, y_train: np.ndarray | torch.Tensor,
                     x_test: np.ndarray | torch.Tensor, y_test: np.ndarray | torch.Tensor, *, steps: int,
                     lr: float = 0.01, momentum: float = 0.9, batch: int = 128, seed: int = 0) -> TrainResult:
    """Train ``model`` in place for ``steps`` SGD steps; return its train and test accuracy."""
    as_t = lambda a, dt: torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a, dtype=dt)  # noqa: E731
    xtr, ytr = as_t(x_train, torch.float32), as_t(y_train, torch.long)
    xte, yte = as_t(x_test, torch.float32), as_t(y_test, torch.long)
    gen = torch.Generator().manual_seed(stream_seed("batches", seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    loss_value = math.nan
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed("training-masks", seed))
        for step in range(steps):
            idx = torch.randint(0, len(ytr), (batch,), generator=gen)
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                return TrainResult(math.nan, math.nan, loss_value, step, True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return TrainResult(_accuracy(model, xtr, ytr), _accuracy(model, xte, yte), loss_value, steps, False)
