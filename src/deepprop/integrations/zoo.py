"""Reference architectures, in plain PyTorch, that the real-model claim, benchmarks and tests profile and train.

Each is what a practitioner would write; nothing here knows about deepprop's theory.

* :class:`ResidualMLP`: ``x + relu(fc(x))`` blocks between an input and an output Linear layer.
* :class:`VanillaCNN`: 3x3 convolutions with ReLU (same padding), global average pooling, a Linear head.
* :class:`NormMLP`: ``Linear -> LayerNorm / BatchNorm -> activation`` layers and a Linear head.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + relu(W x + b)."""

    def __init__(self, width: int):
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


class ResidualMLP(nn.Module):
    """Linear(n_in, width), ``blocks`` residual blocks, Linear(width, classes)."""

    def __init__(self, n_in: int = 784, width: int = 256, blocks: int = 50, classes: int = 10):
        super().__init__()
        self.embed = nn.Linear(n_in, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x.flatten(1))))


class VanillaCNN(nn.Sequential):
    """``depth`` 3x3 convolutions (same padding) each followed by an activation (ReLU by default), global
    average pooling, Linear head."""

    def __init__(self, in_channels: int = 3, channels: int = 64, depth: int = 30, classes: int = 10,
                 activation: type[nn.Module] = nn.ReLU):
        layers: list[nn.Module] = []
        c_in = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(c_in, channels, 3, padding=1), activation()]
            c_in = channels
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


class NormMLP(nn.Sequential):
    """``depth`` blocks Linear -> norm -> activation (norm "layer" or "batch"), then a Linear head."""

    def __init__(self, n_in: int = 784, width: int = 256, depth: int = 10, classes: int = 10, norm: str = "layer",
                 activation: type[nn.Module] = nn.ReLU):
        layers: list[nn.Module] = [nn.Flatten()]
        w_in = n_in
        for _ in range(depth):
            layers += [nn.Linear(w_in, width), nn.LayerNorm(width) if norm == "layer" else nn.BatchNorm1d(width),
                       activation()]
            w_in = width
        super().__init__(*layers, nn.Linear(width, classes))
