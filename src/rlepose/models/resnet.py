"""ResNet-18/34/50/101/152 (He et al., 2016) in plain PyTorch.

Module and parameter names match torchvision's ``torchvision.models.resnet`` (``conv1``,
``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``, …), so an ImageNet state dict
saved from torchvision loads with ``strict=True`` when ``num_classes=1000``. As a pose
backbone use ``num_classes=0`` (no ``fc``) and :meth:`ResNet.forward_features`, which returns
the stride-32 feature map (N, C, H/32, W/32) with C = ``ResNet.out_channels``; loading an
ImageNet checkpoint then reports ``fc.*`` as unexpected, which :func:`load_pretrained` can skip.
Stride-2 sits in the 3×3 convolution of bottlenecks (the "ResNet v1.5" variant torchvision uses).
``width`` scales every stage's channels (0.5: a quarter of the parameters and multiply-adds; same
names, other shapes), for small models trained from scratch.
"""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["conv3x3", "BasicBlock", "Bottleneck", "make_layer", "ResNet", "resnet"]


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(block: type[BasicBlock] | type[Bottleneck], c_in: int, planes: int, blocks: int,
               stride: int = 1) -> nn.Sequential:
    """A stage of ``blocks`` residual blocks; the first one projects when shape changes."""
    downsample = None
    if stride != 1 or c_in != planes * block.expansion:
        downsample = nn.Sequential(nn.Conv2d(c_in, planes * block.expansion, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(planes * block.expansion))
    layers = [block(c_in, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """ResNet with torchvision's names. ``num_classes=0`` drops the classifier; ``width``
    multiplies the channels of the stem and of every stage."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int],
                 num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        if not 0 < width <= 4:
            raise ValueError(f"ResNet width multiplier must be in (0, 4], got {width}")
        c = max(8, round(64 * width))
        self.conv1 = nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            planes = max(8, round(planes * width))
            stages.append(make_layer(block, c, planes, blocks, stride=1 if i == 0 else 2))
            c = planes * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = c
        #: channels of :meth:`forward_pyramid`'s maps (strides 8, 16, 32)
        self.pyramid_channels = tuple(max(8, round(p * width)) * block.expansion for p in (128, 256, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes) if num_classes > 0 else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) normalized RGB → (N, out_channels, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W) → the outputs of ``layer2``, ``layer3``, ``layer4``: strides 8, 16, 32,
        channels :attr:`pyramid_channels` (the C3–C5 of a feature pyramid)."""
        c3 = self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (N, num_classes), or pooled features (N, C) when ``num_classes=0``."""
        x = self.avgpool(self.forward_features(x)).flatten(1)
        return x if self.fc is None else self.fc(x)


_SPECS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


def resnet(depth: int, num_classes: int = 0, width: float = 1.0) -> ResNet:
    """ResNet-``depth`` for depth in 18, 34, 50, 101, 152, channels × ``width``."""
    name = f"resnet{depth}"
    if name not in _SPECS:
        raise ValueError(f"no ResNet-{depth}; choose from 18, 34, 50, 101, 152")
    block, layers = _SPECS[name]
    return ResNet(block, layers, num_classes, width)
