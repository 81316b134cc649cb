"""The YOLOX detector architecture (Ge et al., 2021: CSPDarknet, PAFPN, decoupled head), to time
the person detector when its published weights cannot be downloaded.

Timing depends on the graph, not the weights: this builds YOLOX-tiny/s/m/l/x with random
weights, exports it to ONNX with the raw head output (1, A, 5 + C) that
:class:`rlepose.inference.detectors.YOLOXDetector` decodes (box offsets and log sizes on the stride 8/16/32
grids, objectness and class scores after the sigmoid), and so runs through exactly the
detector's pre- and post-processing. The objectness bias is set low so that random weights do not
flood NMS with boxes (a photo with one person gives a handful). Its parameter and multiply-add
counts are checked against the YOLOX paper's Table (YOLOX-s: 9.0M parameters, 26.8 GFLOPs at
640×640 with 80 classes). Not for detection: the detector's accuracy needs the real weights.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from rlepose.inference.export import torchscript_onnx_export

# name: (depth multiplier, width multiplier, input side) as published
YOLOX_SIZES = {"yolox-tiny": (0.33, 0.375, 416), "yolox-s": (0.33, 0.50, 640), "yolox-m": (0.67, 0.75, 640),
               "yolox-l": (1.0, 1.0, 640), "yolox-x": (1.33, 1.25, 640)}


class ConvBNSiLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.conv1, self.conv2, self.shortcut = ConvBNSiLU(c, c, 1), ConvBNSiLU(c, c, 3), shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPLayer(nn.Module):
    """Two 1×1 branches of half width, ``n`` bottlenecks on one, concatenated and fused by a 1×1."""

    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True) -> None:
        super().__init__()
        hidden = cout // 2
        self.conv1, self.conv2 = ConvBNSiLU(cin, hidden), ConvBNSiLU(cin, hidden)
        self.m = nn.Sequential(*[Bottleneck(hidden, shortcut) for _ in range(n)])
        self.conv3 = ConvBNSiLU(2 * hidden, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(torch.cat([self.m(self.conv1(x)), self.conv2(x)], 1))


class SPPBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        hidden = cin // 2
        self.conv1 = ConvBNSiLU(cin, hidden)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.conv2 = ConvBNSiLU(hidden * (len(kernels) + 1), cout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [p(x) for p in self.pools], 1))


class YOLOX(nn.Module):
    """Input (N, 3, S, S) BGR 0–255 (letterboxed); output (N, A, 5 + C), A = Σ (S/s)² over s ∈ {8, 16, 32}."""

    def __init__(self, depth: float, width: float, num_classes: int = 1) -> None:
        super().__init__()
        c = [int(v * width) for v in (64, 128, 256, 512, 1024)]
        d = max(round(depth * 3), 1)
        self.stem = ConvBNSiLU(12, c[0], 3)  # after the space-to-depth "Focus" step
        self.dark2 = nn.Sequential(ConvBNSiLU(c[0], c[1], 3, 2), CSPLayer(c[1], c[1], d))
        self.dark3 = nn.Sequential(ConvBNSiLU(c[1], c[2], 3, 2), CSPLayer(c[2], c[2], 3 * d))
        self.dark4 = nn.Sequential(ConvBNSiLU(c[2], c[3], 3, 2), CSPLayer(c[3], c[3], 3 * d))
        self.dark5 = nn.Sequential(ConvBNSiLU(c[3], c[4], 3, 2), SPPBottleneck(c[4], c[4]),
                                   CSPLayer(c[4], c[4], d, shortcut=False))
        n = round(3 * depth)
        self.lateral_conv0 = ConvBNSiLU(c[4], c[3])
        self.C3_p4 = CSPLayer(2 * c[3], c[3], n, False)
        self.reduce_conv1 = ConvBNSiLU(c[3], c[2])
        self.C3_p3 = CSPLayer(2 * c[2], c[2], n, False)
        self.bu_conv2 = ConvBNSiLU(c[2], c[2], 3, 2)
        self.C3_n3 = CSPLayer(2 * c[2], c[3], n, False)
        self.bu_conv1 = ConvBNSiLU(c[3], c[3], 3, 2)
        self.C3_n4 = CSPLayer(2 * c[3], c[4], n, False)
        head = int(256 * width)
        self.stems = nn.ModuleList(ConvBNSiLU(cin, head) for cin in (c[2], c[3], c[4]))
        self.cls_convs = nn.ModuleList(nn.Sequential(ConvBNSiLU(head, head, 3), ConvBNSiLU(head, head, 3)) for _ in range(3))
        self.reg_convs = nn.ModuleList(nn.Sequential(ConvBNSiLU(head, head, 3), ConvBNSiLU(head, head, 3)) for _ in range(3))
        self.cls_preds = nn.ModuleList(nn.Conv2d(head, num_classes, 1) for _ in range(3))
        self.reg_preds = nn.ModuleList(nn.Conv2d(head, 4, 1) for _ in range(3))
        self.obj_preds = nn.ModuleList(nn.Conv2d(head, 1, 1) for _ in range(3))
        for obj in self.obj_preds:  # random weights: keep the candidate boxes few, as on a real photo
            nn.init.constant_(obj.bias, -10.0)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)
        x3 = self.dark3(self.dark2(self.stem(x)))
        x4 = self.dark4(x3)
        x5 = self.dark5(x4)
        up = nn.functional.interpolate
        f5 = self.lateral_conv0(x5)
        p4 = self.C3_p4(torch.cat([up(f5, scale_factor=2.0), x4], 1))
        f4 = self.reduce_conv1(p4)
        p3 = self.C3_p3(torch.cat([up(f4, scale_factor=2.0), x3], 1))
        n3 = self.C3_n3(torch.cat([self.bu_conv2(p3), f4], 1))
        n4 = self.C3_n4(torch.cat([self.bu_conv1(n3), f5], 1))
        outs = []
        for i, feat in enumerate((p3, n3, n4)):
            feat = self.stems[i](feat)
            cls, reg = self.cls_convs[i](feat), self.reg_convs[i](feat)
            out = torch.cat([self.reg_preds[i](reg), self.obj_preds[i](reg).sigmoid(), self.cls_preds[i](cls).sigmoid()], 1)
            outs.append(out.flatten(2))
        return torch.cat(outs, 2).transpose(1, 2)


def yolox(name: str, num_classes: int = 1) -> tuple[YOLOX, int]:
    """The named YOLOX with random weights, in eval mode, and its input side."""
    depth, width, side = YOLOX_SIZES[name]
    torch.manual_seed(0)
    return YOLOX(depth, width, num_classes).eval(), side


def export_yolox(name: str, path: str | Path) -> Path:
    """Export the named YOLOX (random weights, one class) to ONNX with an ``input`` of
    (1, 3, S, S) and the raw output (1, A, 6) that :class:`rlepose.inference.detectors.YOLOXDetector` decodes."""
    model, side = yolox(name)
    path = Path(path)
    with torch.no_grad():
        torchscript_onnx_export(model, (torch.zeros(1, 3, side, side),), path, input_names=["input"],
                                output_names=["output"], opset_version=17)
    return path
