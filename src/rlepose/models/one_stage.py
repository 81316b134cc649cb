"""A one-stage multi-person model: every person's box and keypoints from the whole image, no
detector (the paper's Table 2(d) setting: a dense head whose 2K keypoint channels become 4K,
µ̂ and σ̂).

Backbone maps at strides 8, 16, 32 → a small feature pyramid (P3–P5, ``fpn_channels`` each) →
one dense head shared by the levels. At every location of every level it predicts

* a person score (one logit),
* a box as distances to its left, top, right and bottom sides,
* each keypoint's µ̂: the offset from the location in units of the level's reference scale
  ``reference_scale × stride`` (64, 128, 256 input pixels by default; people are assigned to the
  level whose reference is nearest their size, so µ̂ is an offset normalized by the person's
  scale, up to a factor within √2), and σ̂ = sigmoid, per coordinate, in the same unit.

The loss family is the top-down models' (:mod:`rlepose.losses`), applied to the µ̂, σ̂ of the
locations assigned to a person (:mod:`rlepose.losses.one_stage`); inference needs no flow.
Joint confidence is ``1 − mean_d σ̂`` as in the top-down models.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["OneStageConfig", "FeaturePyramid", "DenseHead", "OneStagePoseModel", "build_one_stage_model"]

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class OneStageConfig:
    """The one-stage model, its training targets and its decoding (config section ``one_stage``).

    ``fpn_channels``, ``head_convs``: the pyramid's width and the 3×3 convolutions (GroupNorm,
    ReLU) of each of the head's two towers (score; box and keypoints). ``reference_scale``: a
    level's unit for µ̂ and σ̂, in strides. ``centre_radius``: a person's positive locations lie
    within this many strides of its box centre (and inside the box) on its level. Loss weights:
    ``score_weight`` (focal loss), ``box_weight`` (GIoU), ``keypoint_weight`` (the configured
    joint loss). Decoding: people scoring ≥ ``score_threshold``, the best ``pre_nms`` of them,
    OKS-NMS at ``nms_oks``, at most ``max_people``. ``translate``: training shift of the
    image, a fraction of the input size (scale and flip from ``transform``)."""

    fpn_channels: int = 64
    head_convs: int = 2
    reference_scale: float = 8.0
    centre_radius: float = 1.5
    score_weight: float = 1.0
    box_weight: float = 1.0
    keypoint_weight: float = 1.0
    score_threshold: float = 0.05
    pre_nms: int = 100
    nms_oks: float = 0.7
    max_people: int = 20
    translate: float = 0.1


class FeaturePyramid(nn.Module):
    """FPN: 1×1 lateral convolutions, top-down nearest upsampling and sums, a 3×3 convolution per
    level. (C3, C4, C5) → (P3, P4, P5), ``channels`` each."""

    def __init__(self, in_channels: tuple[int, ...], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        merged = [lat(f) for lat, f in zip(self.lateral, features)]
        for i in range(len(merged) - 2, -1, -1):
            merged[i] = merged[i] + nn.functional.interpolate(merged[i + 1], size=merged[i].shape[-2:], mode="nearest")
        return [out(m) for out, m in zip(self.output, merged)]


def _tower(channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.GroupNorm(min(8, channels), channels),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DenseHead(nn.Module):
    """Per location: ``score`` (1), ``box`` (4), ``keypoints`` (2K: µ̂) and ``sigma`` (2K: σ̂
    logits), from two towers shared by every level (GroupNorm, so that the levels' statistics
    do not mix). ``keypoints=False``: a person detector only (score and box; None for the rest)."""

    def __init__(self, channels: int, num_joints: int, convs: int = 2, keypoints: bool = True) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.score_tower = _tower(channels, convs)
        self.pose_tower = _tower(channels, convs)
        self.score = nn.Conv2d(channels, 1, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.keypoints = nn.Conv2d(channels, 2 * num_joints, 3, padding=1) if keypoints else None
        self.sigma = nn.Conv2d(channels, 2 * num_joints, 3, padding=1) if keypoints else None
        for conv in (self.score, self.box, self.keypoints, self.sigma):
            if conv is not None:
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)
        nn.init.constant_(self.score.bias, -math.log(99.0))  # every location starts at p = 0.01 (focal loss)

    def forward(self, feature: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        s, p = self.score_tower(feature), self.pose_tower(feature)
        if self.keypoints is None:
            return self.score(s), self.box(p), None, None
        return self.score(s), self.box(p), self.keypoints(p), self.sigma(p)


def _flatten(x: Tensor, channels_per_location: int) -> Tensor:
    """(N, C·c, h, w) → (N, h·w, C, c) with C = channels / c, row-major over locations."""
    n, ch, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, ch // channels_per_location, channels_per_location)


class OneStagePoseModel(nn.Module):
    """``forward(images)`` → the raw dense predictions over all locations of all levels (L in
    total, P3's first, row-major), for training:

    * ``score_logits`` (N, L), ``box_ltrb`` (N, L, 4) input pixels (distances ≥ 0),
    * ``mu`` (N, L, K, 2) and ``sigma`` (N, L, K, 2) in units of each location's reference scale,
    * ``locations`` (L, 2) input pixels, ``reference`` (L,) pixels, ``level`` (L,) 0, 1, 2.

    :meth:`inference` decodes them to input pixels. Inputs are normalized RGB (N, 3, H, W)."""

    is_heatmap = False
    whole_image = True
    #: what :meth:`inference` returns that the exported graph and the backends pass on, in order
    inference_outputs = ("scores", "boxes", "keypoints", "joint_confidence", "sigma")

    def __init__(self, backbone: nn.Module, num_joints: int, cfg: OneStageConfig = OneStageConfig(),
                 keypoints: bool = True) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_pyramid"):
            raise ValueError(f"the one-stage model needs a backbone with strides 8, 16 and 32 (ResNets, MobileNetV2); "
                             f"{type(backbone).__name__} has none")
        self.cfg, self.num_joints = cfg, num_joints
        self.backbone = backbone
        self.fpn = FeaturePyramid(backbone.pyramid_channels, cfg.fpn_channels)
        self.head = DenseHead(cfg.fpn_channels, num_joints, cfg.head_convs, keypoints)

    def grid(self, sizes: list[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Locations (L, 2), reference scales (L,) and levels (L,) of feature maps of ``sizes``
        (h, w) at strides 8, 16, 32. Cell (i, j) of stride s sits at the centre of the input
        pixels it covers: ((j + ½)·s − ½, (i + ½)·s − ½) (pixel centres at integers)."""
        locations, reference, level = [], [], []
        for lvl, ((h, w), s) in enumerate(zip(sizes, STRIDES)):
            ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s - 0.5
            xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s - 0.5
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            locations.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1))
            reference.append(torch.full((h * w,), self.cfg.reference_scale * s, device=device))
            level.append(torch.full((h * w,), lvl, device=device, dtype=torch.long))
        return torch.cat(locations), torch.cat(reference), torch.cat(level)

    def dense(self, images: Tensor) -> tuple[dict[str, Tensor], list[Tensor]]:
        """:meth:`forward`'s outputs and the pyramid (P3, P4, P5) they were computed from
        (without keypoints, ``mu`` and ``sigma`` are left out)."""
        pyramid = self.fpn(self.backbone.forward_pyramid(images))
        parts = [self.head(p) for p in pyramid]
        locations, reference, level = self.grid([tuple(p.shape[-2:]) for p in pyramid], images.device)
        ref = reference[None, :, None]
        score = torch.cat([_flatten(s, 1)[..., 0, 0] for s, _, _, _ in parts], 1)
        box = torch.cat([_flatten(b, 4)[:, :, 0] for _, b, _, _ in parts], 1)
        out = {"score_logits": score.float(),
               # half the reference at a zero output: a person of the level's size
               "box_ltrb": torch.exp(box.float().clamp(-8.0, 8.0)) * ref * 0.5,
               "locations": locations, "reference": reference, "level": level}
        if self.head.keypoints is not None:
            out["mu"] = torch.cat([_flatten(m, 2) for _, _, m, _ in parts], 1).float()
            out["sigma"] = torch.sigmoid(torch.cat([_flatten(s, 2) for _, _, _, s in parts], 1).float())
        return out, pyramid

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.dense(images)[0]

    def boxes(self, out: dict[str, Tensor]) -> Tensor:
        """Every location's box (N, L, 4) as (x1, y1, x2, y2) input pixels, from :meth:`forward`'s outputs."""
        loc, ltrb = out["locations"][None], out["box_ltrb"]
        return torch.cat([loc - ltrb[..., :2], loc + ltrb[..., 2:]], -1)

    @torch.no_grad()
    def inference(self, images: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) normalized images → per location (L of them), in input pixels:

        * ``scores`` (N, L) person probability,
        * ``boxes`` (N, L, 4) as (x1, y1, x2, y2),
        * ``keypoints`` (N, L, K, 2),
        * ``joint_confidence`` (N, L, K): ``1 − mean_d σ̂`` (σ̂ in reference units),
        * ``sigma`` (N, L, K, 2): σ̂ in input pixels.

        People are picked from these by :func:`rlepose.inference.one_stage.decode_people`."""
        out = self(images)
        loc, ref = out["locations"][None], out["reference"][None, :, None]
        boxes = self.boxes(out)
        keypoints = loc[:, :, None] + out["mu"] * ref[..., None]
        sigma = out["sigma"]
        return {"scores": torch.sigmoid(out["score_logits"]), "boxes": boxes, "keypoints": keypoints,
                "joint_confidence": 1 - sigma.mean(-1), "sigma": sigma * ref[..., None]}


def build_one_stage_model(backbone: str, num_joints: int = 17, cfg: OneStageConfig = OneStageConfig()) -> OneStagePoseModel:
    """E.g. ``build_one_stage_model("resnet18_0.5")``: any backbone of
    :data:`rlepose.models.pose_model.BACKBONES` with strides 8–32 (ResNets, MobileNetV2)."""
    from rlepose.models.pose_model import build_backbone

    return OneStagePoseModel(build_backbone(backbone), num_joints, cfg)
