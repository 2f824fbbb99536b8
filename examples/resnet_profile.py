import torch
from torch import nn

import deepprop


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock without BatchNorm: two 3x3 convolutions and a skip."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class ResNet(nn.Module):
    def __init__(self, channels=32, blocks=8, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(*[BasicBlock(channels) for _ in range(blocks)])
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.blocks(torch.relu(self.stem(x)))
        return self.head(x.mean((2, 3)))


torch.manual_seed(0)
model = ResNet()
x = torch.randn(8, 3, 32, 32)
p = deepprop.profile(model, x)                       # 8 initialisations x 2 Gaussian input pairs
frame = p.to_frame()
print(frame.iloc[[1, 2, 4, 5, 6, -2, -1]].to_string(float_format="%.4g"))
worst = (frame.c - frame.c_theory).abs().idxmax()   # the rows above are not the worst: name the largest gap
print(f"largest correlation gap: {frame.name[worst]}, c = {frame.c[worst]:.4g} vs {frame.c_theory[worst]:.4g} "
      f"({frame.theory[worst]})")
print(p.diagnosis)                                   # the verdict and its reasons
report = deepprop.init_(model, example_input=x)      # critical, delta-orthogonal, branch scale, checked
print(report.summary())
print(deepprop.profile(model, x).diagnosis)
