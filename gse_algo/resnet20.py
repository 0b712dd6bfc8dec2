"""The CIFAR-10 ResNet20 in the layout of akamaster/pytorch_resnet_cifar10, which the GSE authors used.

conv3x3-16 + BN + ReLU, three stages of three basic blocks (16/32/64 channels, stride 2 at the start of stages 2
and 3), "option A" shortcuts (every second pixel, channels zero-padded), global average pool, Linear(64, 10).
The parameter names (conv1, bn1, layer{1,2,3}.{0,1,2}.{conv1,bn1,conv2,bn2}, linear) match both the authors'
checkpoint and akamaster's released one, so either state_dict loads as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# The two input conventions of the checkpoints in circulation, as (mean, std) applied to [0,1] pixels.
CONVENTIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # The GSE authors' checkpoint takes 2p - 1, i.e. (p - 0.5) / 0.5.
    "gse": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # akamaster's released resnet20-12fca82f.th was trained with the ImageNet mean/std.
    "akamaster": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class OptionAShortcut(nn.Module):
    """Halve the resolution by taking every second pixel and zero-pad the channels (no parameters)."""

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad_channels, self.pad_channels))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = OptionAShortcut(planes // 4) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, stride=1)
        self.layer2 = self._stage(16, 32, stride=2)
        self.layer3 = self._stage(32, 64, stride=2)
        self.linear = nn.Linear(64, num_classes)

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1), BasicBlock(planes, planes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # the 8x8 average pool for 32x32 inputs
        return self.linear(out)
