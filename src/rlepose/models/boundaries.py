"""Boundary regression (paper appendix H): every layer boundary's depth in every column of an
OCT B-scan, as µ̂ and σ̂, from a backbone of :data:`rlepose.models.pose_model.BACKBONES`.

The paper gives the network of an earlier boundary-regression method a fully-connected output.
Here the backbone's C3–C5 go through a small feature pyramid (:class:`FeaturePyramid`, as in the
one-stage model); its stride-8 level P3 is average-pooled to ``columns`` columns, and one linear
layer, shared by the columns, reads each column's whole depth profile (channels × rows) and gives
every boundary's µ̂ and σ̂ there. Pooling along depth instead would discard where in the column
the features are; reading the profile keeps it, as the paper's FC head over the whole feature map
does for a pose. The input height is therefore fixed by the model (``input_height``).

Outputs are shaped as the losses take them: (N, B · C, 1), boundary-major, µ̂ the normalized depth
``(y + 0.5) / H − 0.5`` and σ̂ = sigmoid, in the same unit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rlepose.models.one_stage import FeaturePyramid
from rlepose.models.pose_model import build_backbone

__all__ = ["BoundaryConfig", "BoundaryModel", "build_boundary_model"]


@dataclass(frozen=True)
class BoundaryConfig:
    """``boundaries``: B boundaries per column; ``columns``: C output columns across the image;
    ``channels``: the feature pyramid's width."""

    boundaries: int = 8
    columns: int = 32
    channels: int = 64


class BoundaryModel(nn.Module):
    """``forward(images (N, 3, H, W))`` → µ̂, σ̂ (N, B · C, 1); :meth:`inference` → depths."""

    def __init__(self, backbone: nn.Module, input_height: int, cfg: BoundaryConfig = BoundaryConfig()) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_pyramid"):
            raise ValueError(f"{type(backbone).__name__} has no feature pyramid: use a ResNet or MobileNetV2")
        if input_height % 8:
            raise ValueError(f"the input height must be a multiple of 8, got {input_height}")
        self.backbone, self.cfg, self.input_height = backbone, cfg, input_height
        self.fpn = FeaturePyramid(backbone.pyramid_channels, cfg.channels)
        self.fc = nn.Linear(cfg.channels * (input_height // 8), 2 * cfg.boundaries)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.shape[-2] != self.input_height:
            raise ValueError(f"this model reads B-scans {self.input_height} pixels tall, got {images.shape[-2]}")
        p3 = self.fpn(self.backbone.forward_pyramid(images))[0]
        profile = nn.functional.adaptive_avg_pool2d(p3, (p3.shape[-2], self.cfg.columns))  # (N, ch, H/8, C)
        out = self.fc(profile.permute(0, 3, 1, 2).flatten(2))  # (N, C, 2B)
        n, b = images.shape[0], self.cfg.boundaries
        mu = out[..., :b].transpose(1, 2).reshape(n, -1, 1)
        sigma = torch.sigmoid(out[..., b:]).transpose(1, 2).reshape(n, -1, 1)
        return mu, sigma

    @torch.no_grad()
    def inference(self, images: Tensor) -> dict[str, Tensor]:
        """``depths`` and ``sigma`` (N, B, C), normalized depth units."""
        mu, sigma = self(images)
        shape = (images.shape[0], self.cfg.boundaries, self.cfg.columns)
        return {"depths": mu.reshape(shape), "sigma": sigma.reshape(shape)}


def build_boundary_model(backbone: str, input_height: int, cfg: BoundaryConfig = BoundaryConfig()) -> BoundaryModel:
    """E.g. ``build_boundary_model("resnet18_0.5", 128)``."""
    return BoundaryModel(build_backbone(backbone), input_height, cfg)
