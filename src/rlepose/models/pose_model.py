"""Backbone + head, and the factory that builds the paper's configurations."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rlepose.models.heads import HeatmapHead, IntegralHead, RegressionHead, decode_heatmaps
from rlepose.models.hrnet import hrnet
from rlepose.models.mobilenet import mobilenet_v2
from rlepose.models.resnet import resnet


@dataclass(frozen=True)
class ModelConfig:
    """What to build. ``backbone``: resnet18/34/50/101/152, hrnet_w32/hrnet_w48 or
    mobilenet_v2 (``mobilenet_v2_0.5``: width multiplier 0.5);
    ``head``: regression, integral or heatmap; ``dim``: 2, or 3 for 3-D pose."""

    backbone: str = "resnet50"
    head: str = "regression"
    num_joints: int = 17
    dim: int = 2
    depth_bins: int = 64
    coord_norm: bool = False  # regression head: the official code's feature-normalized µ̂ layer
    fc_init_gain: float | None = None  # regression head: Xavier gain of the FC (official code: 0.01); None: PyTorch's
    deconv_channels: int = 256  # integral and heatmap heads on stride-32 backbones (SimpleBaseline: 256)


class TopDownPoseModel(nn.Module):
    """``forward(images)`` → (µ̂, σ̂), each (N, K, D) in normalized crop coordinates, for the
    regression and integral heads, or heatmaps (N, K, h, w) for the heatmap head.

    :meth:`inference` never touches a flow (the flow lives in the loss) and returns
    keypoints with confidences as in the paper's Eq. 9.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def is_heatmap(self) -> bool:
        return isinstance(self.head, HeatmapHead)

    def forward(self, images: Tensor):
        return self.head(self.backbone.forward_features(images))

    @torch.no_grad()
    def inference(self, images: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) normalized images →

        * ``keypoints`` (N, K, D) normalized crop coordinates,
        * ``sigma`` (N, K, D) (regression/integral heads only),
        * ``joint_confidence`` (N, K): ``1 − mean_d σ̂`` (heatmaps: peak value),
        * ``confidence`` (N,): ``1 − mean σ̂`` over all joints and coordinates (Eq. 9;
          heatmaps: mean peak value).
        """
        out = self(images)
        if self.is_heatmap:
            keypoints, peak = decode_heatmaps(out)
            return {"keypoints": keypoints, "joint_confidence": peak, "confidence": peak.mean(-1)}
        mu, sigma = out
        return {"keypoints": mu, "sigma": sigma, "joint_confidence": 1 - sigma.mean(-1),
                "confidence": 1 - sigma.mean(dim=(1, 2))}


def build_backbone(name: str) -> nn.Module:
    if name.startswith("resnet"):  # resnet50, or resnet18_0.5 for a width multiplier
        depth, _, width = name[len("resnet"):].partition("_")
        return resnet(int(depth), num_classes=0, width=float(width) if width else 1.0)
    if name.startswith("hrnet_w"):
        return hrnet(int(name[len("hrnet_w"):]))
    if name.startswith("mobilenet_v2"):  # mobilenet_v2, or mobilenet_v2_0.5 for a width multiplier
        width = name[len("mobilenet_v2"):].lstrip("_")
        return mobilenet_v2(float(width) if width else 1.0)
    raise ValueError(f"unknown backbone {name!r}: resnet18/34/50/101/152[_WIDTH], hrnet_w32/hrnet_w48 or "
                     "mobilenet_v2[_WIDTH]")


def build_pose_model(cfg: ModelConfig = ModelConfig()) -> TopDownPoseModel:
    """E.g. the paper's main model ``ModelConfig("resnet50", "regression")``, HRNet + RLE
    ``ModelConfig("hrnet_w32", "integral")``, SimpleBaseline ``ModelConfig("resnet50", "heatmap")``."""
    backbone = build_backbone(cfg.backbone)
    c = backbone.out_channels
    stride32 = not cfg.backbone.startswith("hrnet")
    if cfg.head == "regression":
        head = RegressionHead(c, cfg.num_joints, cfg.dim, coord_norm=cfg.coord_norm, init_gain=cfg.fc_init_gain)
    elif cfg.head == "integral":
        head = IntegralHead(c, cfg.num_joints, cfg.dim, num_deconv=3 if stride32 else 0,
                            deconv_channels=cfg.deconv_channels, depth_bins=cfg.depth_bins)
    elif cfg.head == "heatmap":
        if cfg.dim != 2:
            raise ValueError("the heatmap head is 2-D; use head='integral' with dim=3 for 3-D heatmaps")
        head = HeatmapHead(c, cfg.num_joints, num_deconv=3 if stride32 else 0, channels=cfg.deconv_channels)
    else:
        raise ValueError(f"unknown head {cfg.head!r}: regression, integral or heatmap")
    return TopDownPoseModel(backbone, head)
