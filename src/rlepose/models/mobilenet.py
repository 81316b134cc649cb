"""MobileNetV2 (Sandler et al., 2018) in plain PyTorch: a small backbone for CPUs and the
model that ships with the package.

Module and parameter names match torchvision's ``torchvision.models.mobilenet_v2``
(``features.0.0`` the stem convolution, ``features.N.conv.…`` the inverted residual blocks,
``features.18`` the last 1×1 convolution, ``classifier.1``), so an ImageNet state dict from
torchvision loads with ``strict=True`` when ``num_classes=1000`` and the same ``width``. As a
pose backbone use ``num_classes=0`` and :meth:`MobileNetV2.forward_features`: the stride-32
feature map (N, C, H/32, W/32) with C = ``out_channels`` (1280 for width ≤ 1).
"""
from __future__ import annotations

from torch import Tensor, nn

# expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never below 90% of ``value`` (torchvision's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution (no bias), BatchNorm, ReLU6: torchvision's ``Conv2dNormActivation`` layout (0, 1, 2)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1×1 expansion (skipped when t = 1), 3×3 depthwise, linear 1×1 projection; identity
    shortcut when the stride is 1 and the channels match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(c_in * expansion))
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = [conv_bn_relu6(c_in, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with torchvision's names; ``width`` multiplies every layer's channels."""

    def __init__(self, width: float = 1.0, num_classes: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        c = make_divisible(32 * width)
        self.out_channels = make_divisible(1280 * max(1.0, width))
        features: list[nn.Module] = [conv_bn_relu6(3, c, 3, stride=2)]
        for t, channels, n, s in _SETTINGS:
            c_out = make_divisible(channels * width)
            for i in range(n):
                features.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        features.append(conv_bn_relu6(c, self.out_channels, 1))
        self.features = nn.Sequential(*features)
        self.classifier = (nn.Sequential(nn.Dropout(dropout), nn.Linear(self.out_channels, num_classes))
                           if num_classes > 0 else None)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) normalized RGB → (N, out_channels, H/32, W/32)."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (N, num_classes), or pooled features (N, C) when ``num_classes=0``."""
        x = self.features(x).mean(dim=(2, 3))
        return x if self.classifier is None else self.classifier(x)


def mobilenet_v2(width: float = 1.0, num_classes: int = 0) -> MobileNetV2:
    return MobileNetV2(width, num_classes)
