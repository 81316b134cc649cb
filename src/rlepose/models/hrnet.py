"""HRNet-W32 / W48 for top-down pose (Sun et al., CVPR 2019), in plain PyTorch.

Stem of two stride-2 3×3 convolutions, a stage of 4 bottlenecks, then stages of 2, 3 and 4
parallel branches (widths W, 2W, 4W, 8W) with 1, 4 and 3 exchange modules; each module runs
4 basic blocks per branch and fuses all branches (nearest upsampling or strided 3×3 convs).
The network returns the highest-resolution branch: (N, W, H/4, W/4).

Parameter names follow the reference pose code of HRNet (``deep-high-resolution-net``) and
MMPose's ``HRNet`` backbone (``conv1``, ``bn1``, ``layer1``, ``transition1``,
``stage2.0.branches.0.0.conv1``, ``stage2.0.fuse_layers.0.1.0``, …), so their ImageNet and
COCO checkpoints load after dropping the ``backbone.`` / head prefixes (see
:func:`rlepose.models.load_pretrained`).
"""
from __future__ import annotations

from torch import Tensor, nn

from rlepose.models.resnet import BasicBlock, Bottleneck, conv3x3, make_layer

__all__ = ["HRModule", "HRNet", "hrnet"]


def _conv_bn(c_in: int, c_out: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """Parallel branches of basic blocks followed by a full exchange (fusion) between them."""

    def __init__(self, channels: tuple[int, ...], num_blocks: int = 4, multiscale_output: bool = True) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList([make_layer(BasicBlock, c, c, num_blocks) for c in channels])
        self.fuse_layers = None
        if n > 1:
            rows = []
            for i in range(n if multiscale_output else 1):
                row: list[nn.Module | None] = []
                for j in range(n):
                    if j > i:  # lower resolution → 1×1 conv + upsample
                        row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                                                 nn.BatchNorm2d(channels[i]),
                                                 nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                    elif j == i:
                        row.append(None)
                    else:  # higher resolution → i−j strided convs, the last one without ReLU
                        steps = [_conv_bn(channels[j], channels[j], 2, relu=True) for _ in range(i - j - 1)]
                        steps.append(_conv_bn(channels[j], channels[i], 2, relu=False))
                        row.append(nn.Sequential(*steps))
                rows.append(nn.ModuleList(row))
            self.fuse_layers = nn.ModuleList(rows)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + layer(xs[j])
            out.append(self.relu(y))
        return out


def _transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """Adapts branch widths between stages and creates the new, lower-resolution branch."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(cur):
        if i < len(prev):
            layers.append(None if prev[i] == c else _conv_bn(prev[i], c, 1, relu=True))
        else:
            steps = [_conv_bn(prev[-1], prev[-1], 2, relu=True) for _ in range(i - len(prev))]
            steps.append(_conv_bn(prev[-1], c, 2, relu=True))
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet-W``width`` (32 or 48 for pose). ``forward(x)`` → (N, width, H/4, W/4)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, 64, 64, 4)
        w = width
        widths = [(w, 2 * w), (w, 2 * w, 4 * w), (w, 2 * w, 4 * w, 8 * w)]
        self.transition1 = _transition((256,), widths[0])
        self.stage2 = nn.Sequential(HRModule(widths[0]))
        self.transition2 = _transition(widths[0], widths[1])
        self.stage3 = nn.Sequential(*[HRModule(widths[1]) for _ in range(4)])
        self.transition3 = _transition(widths[1], widths[2])
        self.stage4 = nn.Sequential(*[HRModule(widths[2], multiscale_output=i < 2) for i in range(3)])
        self.out_channels = w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, ys: list[Tensor]) -> list[Tensor]:
        return [ys[i] if t is None else t(ys[min(i, len(ys) - 1)]) for i, t in enumerate(transition)]

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) → highest-resolution branch (N, width, H/4, W/4)."""
        x = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        ys = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            ys = stage(self._apply_transition(transition, ys))
        return ys[0]

    forward = forward_features


def hrnet(width: int = 32) -> HRNet:
    if width not in (18, 32, 48):
        raise ValueError(f"HRNet-W{width} is not a standard width; use 32 or 48 (or 18)")
    return HRNet(width)
