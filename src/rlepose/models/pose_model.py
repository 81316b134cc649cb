"""Backbone + head, and the factory that builds the paper's configurations."""

from __future__ import annotations


from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn

from rlepose.models.heads import HeatmapHead, IntegralHead, RegressionHead, decode_heatmaps
from rlepose.models.hrnet import hrnet
from rlepose.models.mobilenet import mobilenet_v2
from rlepose.models.resnet import resnet

__all__ = ["ModelConfig", "TopDownPoseModel", "BACKBONES", "build_backbone", "build_pose_model"]


@dataclass(frozen=True)
class ModelConfig:
    """What to build. ``backbone``: a name of :data:`BACKBONES` (resnet18…152, with
    ``_0.5``/``_0.25`` width multipliers for 18/34/50, hrnet_w32/w48, mobilenet_v2[_0.5/_0.75]);
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

    #: what :meth:`inference` returns that the exported graph and the backends pass on, in order
    inference_outputs = ("keypoints", "joint_confidence")
    whole_image = False

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


#: every backbone by its config name: (builder, whether its output has stride 32)
BACKBONES: dict[str, tuple[Callable[[], nn.Module], bool]] = {
    **{f"resnet{d}": (partial(resnet, d, num_classes=0), True) for d in (18, 34, 50, 101, 152)},
    **{f"resnet{d}_{w}": (partial(resnet, d, num_classes=0, width=w), True) for d in (18, 34, 50) for w in (0.25, 0.5)},
    "hrnet_w32": (partial(hrnet, 32), False),
    "hrnet_w48": (partial(hrnet, 48), False),
    "mobilenet_v2": (partial(mobilenet_v2, 1.0), True),
    **{f"mobilenet_v2_{w}": (partial(mobilenet_v2, w), True) for w in (0.5, 0.75)},
}


def build_backbone(name: str) -> nn.Module:
    """The backbone ``name`` of :data:`BACKBONES` (``resnet18_0.5``: half width)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose from {', '.join(BACKBONES)}")
    return BACKBONES[name][0]()


def build_pose_model(cfg: ModelConfig = ModelConfig()) -> TopDownPoseModel:
    """E.g. the paper's main model ``ModelConfig("resnet50", "regression")``, HRNet + RLE
    ``ModelConfig("hrnet_w32", "integral")``, SimpleBaseline ``ModelConfig("resnet50", "heatmap")``."""
    backbone = build_backbone(cfg.backbone)
    c = backbone.out_channels
    stride32 = BACKBONES[cfg.backbone][1]
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
