"""Region operators in plain PyTorch (torchvision's compiled ones do not load here): RoIAlign on
one feature map and on a feature pyramid, and greedy box non-maximum suppression.

:func:`roi_align` computes what ``torchvision.ops.roi_align`` computes (He et al., Mask R-CNN,
2017): each RoI is cut into ``output_size`` bins, each bin is the mean of ``sampling_ratio²``
bilinear samples at regularly spaced points inside it; ``aligned=True`` shifts the box by half a
pixel so that a box's corners fall on pixel corners (Detectron2's default). Bilinear sampling
follows torchvision's rule at the borders: a point more than one pixel outside the map gives 0,
one within a pixel of it is clamped to the edge. It is written with gathers and arithmetic only,
so it runs on any device and exports to ONNX.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["roi_align", "pyramid_level", "multilevel_roi_align", "box_nms"]


def _bilinear(flat: Tensor, height: int, width: int, batch: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Samples of ``flat`` ((N·H·W, C): a map laid out row-major) at points ``y`` (R, P, 1) and
    ``x`` (R, 1, Q) of image ``batch`` (R,) → (R, P, Q, C)."""
    valid = (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    y, x = y.clamp(min=0.0), x.clamp(min=0.0)
    y0, x0 = y.floor().clamp(max=height - 1), x.floor().clamp(max=width - 1)
    y = torch.where(y0 >= height - 1, y0, y)  # at the last row/column: that row, no interpolation
    x = torch.where(x0 >= width - 1, x0, x)
    y1, x1 = (y0 + 1).clamp(max=height - 1), (x0 + 1).clamp(max=width - 1)
    ly, lx = y - y0, x - x0
    base = batch.view(-1, 1, 1) * (height * width)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        index = base + yy.long() * width + xx.long()  # (R, P, Q)
        return flat[index.reshape(-1)].reshape(*index.shape, flat.shape[1])

    w00, w01, w10, w11 = (1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx
    out = (w00[..., None] * at(y0, x0) + w01[..., None] * at(y0, x1)
           + w10[..., None] * at(y1, x0) + w11[..., None] * at(y1, x1))
    return out * valid[..., None].to(out.dtype)


def roi_align(features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """RoIAlign. ``features`` (N, C, H, W); ``rois`` (R, 5) as (image index, x1, y1, x2, y2) in
    input pixels; ``spatial_scale`` = 1 / the map's stride; ``sampling_ratio`` > 0 samples per
    bin side. Returns (R, C, output_size[0], output_size[1])."""
    if sampling_ratio <= 0:
        raise ValueError("sampling_ratio must be positive (the adaptive count of torchvision is not supported)")
    n, c, h, w = features.shape
    ph, pw = output_size
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    x2, y2 = rois[:, 3] * spatial_scale - offset, rois[:, 4] * spatial_scale - offset
    rw, rh = x2 - x1, y2 - y1
    if not aligned:  # the legacy rule: boxes at least one pixel wide
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    steps_y = (torch.arange(ph * sampling_ratio, device=rois.device, dtype=rois.dtype) + 0.5) / sampling_ratio
    steps_x = (torch.arange(pw * sampling_ratio, device=rois.device, dtype=rois.dtype) + 0.5) / sampling_ratio
    y = y1[:, None, None] + steps_y[None, :, None] * (rh / ph)[:, None, None]  # (R, ph·s, 1)
    x = x1[:, None, None] + steps_x[None, None, :] * (rw / pw)[:, None, None]  # (R, 1, pw·s)
    flat = features.permute(0, 2, 3, 1).reshape(n * h * w, c)
    samples = _bilinear(flat, h, w, rois[:, 0].long(), y, x)  # (R, ph·s, pw·s, C)
    samples = samples.reshape(-1, ph, sampling_ratio, pw, sampling_ratio, c).mean((2, 4))
    return samples.permute(0, 3, 1, 2)


def pyramid_level(rois: Tensor, levels: tuple[int, ...] = (3, 4, 5), canonical_size: float = 224.0,
                  canonical_level: int = 4) -> Tensor:
    """The pyramid level (an index into ``levels``) of each RoI (R, 5) by FPN's rule (Lin et al.,
    2017): ⌊k0 + log2(√(wh) / 224)⌋, clamped to the levels there are."""
    size = ((rois[:, 3] - rois[:, 1]).clamp(min=1e-6) * (rois[:, 4] - rois[:, 2]).clamp(min=1e-6)).sqrt()
    k = torch.floor(canonical_level + torch.log2(size / canonical_size + 1e-8))
    return (k.clamp(min=levels[0], max=levels[-1]) - levels[0]).long()


def multilevel_roi_align(pyramid: list[Tensor], strides: tuple[int, ...], rois: Tensor, output_size: tuple[int, int],
                         sampling_ratio: int = 2, canonical_size: float = 224.0) -> Tensor:
    """RoIAlign of each RoI on its own level of ``pyramid`` (maps at ``strides``; level by
    :func:`pyramid_level`) → (R, C, *output_size). Every level is sampled for every RoI and the
    RoI's own is kept (a few times the work of sampling one, no data-dependent shapes: the same
    graph exports to ONNX)."""
    levels = tuple(int(round(math.log2(s))) for s in strides)
    level = pyramid_level(rois, levels, canonical_size)
    out = None
    for i, (feature, stride) in enumerate(zip(pyramid, strides)):
        sampled = roi_align(feature, rois, output_size, 1.0 / stride, sampling_ratio)
        pick = (level == i).to(sampled.dtype).view(-1, 1, 1, 1)
        out = sampled * pick if out is None else out + sampled * pick
    return out


def box_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression of ``boxes`` (M, 4) as (x1, y1, x2, y2): the indices kept,
    best score first (what ``torchvision.ops.nms`` returns)."""
    order = torch.argsort(scores, descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    iou = inter / (area[:, None] + area[None] - inter).clamp(min=1e-9)
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    for i in range(len(boxes)):
        if keep[i]:
            keep[i + 1:] &= iou[i, i + 1:] <= iou_threshold
    return order[keep]
