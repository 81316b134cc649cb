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

__all__ = ["make_divisible", "conv_bn_relu6", "InvertedResidual", "MobileNetV2", "mobilenet_v2",
           "mmpose_to_torchvision_names", "torchvision_to_mmpose_names"]

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
        stride, last_at_stride = 2, {}
        for t, channels, n, s in _SETTINGS:
            c_out = make_divisible(channels * width)
            for i in range(n):
                features.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                stride *= s if i == 0 else 1
                c = c_out
                last_at_stride[stride] = (len(features), c)
        features.append(conv_bn_relu6(c, self.out_channels, 1))
        self.features = nn.Sequential(*features)
        # forward_pyramid: the blocks ending strides 8 and 16, and the last layer (stride 32)
        self._pyramid_ends = (last_at_stride[8][0], last_at_stride[16][0], len(features))
        #: channels of :meth:`forward_pyramid`'s maps (strides 8, 16, 32)
        self.pyramid_channels = (last_at_stride[8][1], last_at_stride[16][1], self.out_channels)
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

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W) → the maps at strides 8, 16 and 32 (channels :attr:`pyramid_channels`)."""
        out, start = [], 0
        for end in self._pyramid_ends:
            for layer in self.features[start:end]:
                x = layer(x)
            out.append(x)
            start = end
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (N, num_classes), or pooled features (N, C) when ``num_classes=0``."""
        x = self.features(x).mean(dim=(2, 3))
        return x if self.classifier is None else self.classifier(x)


def mobilenet_v2(width: float = 1.0, num_classes: int = 0) -> MobileNetV2:
    return MobileNetV2(width, num_classes)


def _block_layout(width: float = 1.0) -> list[tuple[str, int, bool]]:
    """(MMPose block name ``layer{i}.{j}``, torchvision index in ``features``, has expansion)."""
    out, index = [], 1
    for i, (t, _c, n, _s) in enumerate(_SETTINGS):
        for j in range(n):
            out.append((f"layer{i + 1}.{j}", index, t != 1))
            index += 1
    return out


def _name_table() -> dict[str, str]:
    """MMPose prefix → torchvision prefix for every layer of MobileNetV2 (width-independent)."""
    last = 1 + sum(n for *_, n, _ in _SETTINGS)
    table = {"conv1.conv.": "features.0.0.", "conv1.bn.": "features.0.1.",
             "conv2.conv.": f"features.{last}.0.", "conv2.bn.": f"features.{last}.1."}
    for block, index, expands in _block_layout():
        convs = 3 if expands else 2  # mmcv ConvModules (conv + bn); the last one is the projection
        for m in range(convs):
            if m < convs - 1:  # torchvision: Conv2dNormActivation (0 conv, 1 bn)
                table[f"{block}.conv.{m}.conv."] = f"features.{index}.conv.{m}.0."
                table[f"{block}.conv.{m}.bn."] = f"features.{index}.conv.{m}.1."
            else:  # torchvision: a bare Conv2d then BatchNorm2d
                table[f"{block}.conv.{m}.conv."] = f"features.{index}.conv.{m}."
                table[f"{block}.conv.{m}.bn."] = f"features.{index}.conv.{m + 1}."
    return table


def _rename(sd: dict, table: dict[str, str], what: str) -> dict:
    out = {}
    for key, value in sd.items():
        prefix = max((p for p in table if key.startswith(p)), key=len, default=None)
        if prefix is None:
            raise KeyError(f"{key!r} is not a MobileNetV2 parameter in {what}'s names")
        out[table[prefix] + key[len(prefix):]] = value
    return out


def mmpose_to_torchvision_names(sd: dict) -> dict:
    """A MobileNetV2 state dict in MMPose's names (``conv1.conv``, ``layer{i}.{j}.conv.{m}.conv``/
    ``.bn``, ``conv2``: mmcv ``ConvModule`` layers) → torchvision's names. Keys are the
    backbone's own (no ``backbone.`` prefix); an unknown key raises ``KeyError``."""
    return _rename(sd, _name_table(), "MMPose")


def torchvision_to_mmpose_names(sd: dict) -> dict:
    """Inverse of :func:`mmpose_to_torchvision_names`."""
    return _rename(sd, {tv: mm for mm, tv in _name_table().items()}, "torchvision")
