"""An end-to-end top-down model in the manner of Mask R-CNN's keypoint branch (the paper's Table
2(c)): the model finds the people itself, reads each person's region from its feature pyramid
and places the joints there — with heatmaps, as Mask R-CNN does, or with one FC layer and RLE,
as the paper does.

**Detector stage.** The one-stage model's pyramid and dense head with a score and a box per
location only (:class:`rlepose.models.one_stage.OneStagePoseModel` with ``keypoints=False``; FCOS
style, no anchors), not Mask R-CNN's anchor RPN followed by a box-refinement stage. The keypoint
branch only needs scored person boxes to read RoIs from, and this head gives them in one pass
with targets, loss and decoding that rlepose already has and tests; an RPN would add anchors,
their matching and a second box head for the same role. Its settings are the config's
``one_stage`` section (pyramid width, towers, target assignment, score and box loss weights).

**Proposals.** Per image the ``pre_nms`` best-scoring locations, box NMS at ``nms_iou``, then the
best ``detections`` (at inference; ``train_proposals`` in training) — written with fixed shapes
(NMS as a fixed-length loop over masks), so the whole model exports to one ONNX graph.

**RoIs.** Each box, enlarged ``roi_padding`` times about its centre, is read by RoIAlign
(``roi_size``² bins, 2×2 samples each) from the pyramid level FPN's rule gives it
(:func:`rlepose.models.roi.multilevel_roi_align`).

**Keypoint head.** ``keypoint_convs`` × (3×3 convolution, ReLU) of ``keypoint_channels`` (Mask
R-CNN: 8 × 512), then

* ``heatmap`` (Mask R-CNN's): a 4×4 stride-2 transposed convolution to K maps of 2·roi_size,
  bilinearly up-sampled ×2 (56×56 for 14), trained by cross-entropy over each map's locations
  against the cell of the label (Detectron2's keypoint loss); decoded at the arg-max with the
  quarter-cell shift, confidence = the softmax mass of the 3×3 cells around it;
* ``rle`` (the paper's): global average pooling and one FC layer → K×4: µ̂ in RoI units (0 at
  the centre, ±½ at the edges) and σ̂ = sigmoid, trained with the configured joint loss (RLE);
  joint confidence 1 − mean σ̂, as in every regression model here;
* ``integral`` (ours, opt-in; the paper's Table 2(b) way for HRNet moved to this head): µ̂ by
  soft-argmax over the heatmap branch's maps (:func:`rlepose.models.heads.soft_argmax`), σ̂ by
  average pooling and one FC layer, trained and decoded as ``rle`` — a regression head that keeps
  the RoI's spatial layout instead of pooling it away.

:meth:`RCNNPoseModel.inference` returns the one-stage model's outputs with one row per detection
slot instead of per location, so decoding, evaluation, the predictor and export are shared.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlepose.models.heads import decode_heatmaps, soft_argmax
from rlepose.models.one_stage import STRIDES, OneStageConfig, OneStagePoseModel
from rlepose.models.roi import multilevel_roi_align

HEADS = ("rle", "heatmap", "integral")

__all__ = ["HEADS", "RCNNConfig", "KeypointHead", "RCNNPoseModel", "build_rcnn_model", "nms_mask"]


@dataclass(frozen=True)
class RCNNConfig:
    """Config section ``rcnn`` (the detector's settings are ``one_stage``'s).

    ``head``: ``rle``, ``heatmap`` or ``integral``. ``train_proposals``: proposals per image in training,
    to which the image's true boxes are added; those overlapping a person by IoU ≥ ``fg_iou``
    train the keypoint head, at most ``rois_per_image`` of them (Mask R-CNN: proposals with IoU ≥
    0.5). ``keypoint_weight``: the keypoint loss's weight beside the detector's."""

    head: str = "rle"
    roi_size: int = 14
    roi_padding: float = 1.2
    keypoint_convs: int = 8
    keypoint_channels: int = 64
    pre_nms: int = 100
    nms_iou: float = 0.5
    detections: int = 20
    train_proposals: int = 16
    rois_per_image: int = 16
    fg_iou: float = 0.5
    keypoint_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"rcnn.head must be one of {', '.join(HEADS)}, got {self.head!r}")


class KeypointHead(nn.Module):
    """RoI features (R, C, S, S) → ``rle`` and ``integral``: (µ̂ (R, K, 2) RoI units, σ̂ (R, K, 2));
    ``heatmap``: logits (R, K, 4S, 4S)."""

    def __init__(self, in_channels: int, num_joints: int, cfg: RCNNConfig) -> None:
        super().__init__()
        self.kind, self.num_joints = cfg.head, num_joints
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(cfg.keypoint_convs):
            layers += [nn.Conv2d(channels, cfg.keypoint_channels, 3, padding=1), nn.ReLU(inplace=True)]
            channels = cfg.keypoint_channels
        self.convs = nn.Sequential(*layers)
        for m in self.convs:
            if isinstance(m, nn.Conv2d):  # Mask R-CNN's initialization of the head
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if cfg.head in ("heatmap", "integral"):
            self.deconv = nn.ConvTranspose2d(channels, num_joints, 4, stride=2, padding=1)
            nn.init.kaiming_normal_(self.deconv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(self.deconv.bias)
        if cfg.head in ("rle", "integral"):  # integral: σ̂ only
            self.fc = nn.Linear(channels, num_joints * (4 if cfg.head == "rle" else 2))
            nn.init.normal_(self.fc.weight, std=0.001)
            nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, ...]:
        x = self.convs(features)
        if self.kind == "rle":
            out = self.fc(x.mean((2, 3))).view(-1, self.num_joints, 4)
            return out[..., :2], torch.sigmoid(out[..., 2:])
        maps = F.interpolate(self.deconv(x), scale_factor=2, mode="bilinear", align_corners=False)
        if self.kind == "heatmap":
            return (maps,)
        return soft_argmax(maps), torch.sigmoid(self.fc(x.mean((2, 3)))).view(-1, self.num_joints, 2)


def nms_mask(boxes: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS over boxes (N, M, 4) as (x1, y1, x2, y2), each row already sorted best first:
    which to keep (N, M) bool. A loop of M mask updates (no data-dependent shapes)."""
    area = (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    lt = torch.maximum(boxes[..., :, None, :2], boxes[..., None, :, :2])
    rb = torch.minimum(boxes[..., :, None, 2:], boxes[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    over = inter / (area[..., :, None] + area[..., None, :] - inter).clamp(min=1e-9) > iou_threshold
    later = torch.triu(torch.ones(boxes.shape[-2], boxes.shape[-2], dtype=torch.bool, device=boxes.device), 1)
    over = over & later
    keep = torch.ones(boxes.shape[:-1], dtype=torch.bool, device=boxes.device)
    for i in range(boxes.shape[-2]):
        keep = keep & ~(over[:, i] & keep[:, i:i + 1])
    return keep


class RCNNPoseModel(nn.Module):
    """Detector stage + RoIAlign + keypoint head (module docstring). Inputs are normalized RGB
    (N, 3, H, W), e.g. letterboxed whole images."""

    is_heatmap = False
    whole_image = True
    inference_outputs = ("scores", "boxes", "keypoints", "joint_confidence", "sigma")

    def __init__(self, backbone: nn.Module, num_joints: int, cfg: RCNNConfig = RCNNConfig(),
                 detector: OneStageConfig = OneStageConfig()) -> None:
        super().__init__()
        self.cfg, self.num_joints = cfg, num_joints
        self.detector = OneStagePoseModel(backbone, num_joints, detector, keypoints=False)
        self.head = KeypointHead(detector.fpn_channels, num_joints, cfg)

    def proposals(self, out: dict[str, Tensor], count: int, score_threshold: float = 0.0) -> tuple[Tensor, Tensor]:
        """The ``count`` best boxes per image after NMS: scores (N, count), 0 for an empty slot
        (nothing above ``score_threshold`` left), and boxes (N, count, 4) x1, y1, x2, y2."""
        scores = torch.sigmoid(out["score_logits"])
        boxes = self.detector.boxes(out)
        k = min(self.cfg.pre_nms, int(scores.shape[1]))  # fixed by the input size (so, in a graph, constant)
        top, idx = scores.topk(k, dim=1)
        cand = torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4))
        kept = top * nms_mask(cand, self.cfg.nms_iou) * (top >= score_threshold)
        best, slot = kept.topk(min(count, k), dim=1)
        return best, torch.gather(cand, 1, slot[..., None].expand(-1, -1, 4))

    def rois(self, image: Tensor, boxes: Tensor) -> Tensor:
        """Boxes (R, 4) x1, y1, x2, y2 of images ``image`` (R,) → RoIs (R, 5) (image index, x1, y1,
        x2, y2), enlarged ``roi_padding`` times about their centres (at least a pixel wide)."""
        centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0) / 2
        half = half * self.cfg.roi_padding
        return torch.cat([image.to(boxes.dtype)[:, None], centre - half, centre + half], -1)

    def keypoint_outputs(self, pyramid: list[Tensor], rois: Tensor) -> tuple[Tensor, ...]:
        """The head on each RoI's features (see :class:`KeypointHead`)."""
        size = (self.cfg.roi_size, self.cfg.roi_size)
        return self.head(multilevel_roi_align(pyramid, STRIDES, rois, size))

    def decode(self, head_out: tuple[Tensor, ...], rois: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Head outputs → keypoints (R, K, 2) input pixels, joint confidence (R, K) and σ̂
        (R, K, 2) input pixels (zeros for heatmaps, which have none); ``rle`` and ``integral`` decode alike."""
        size = (rois[:, 3:5] - rois[:, 1:3])[:, None]
        centre = ((rois[:, 1:3] + rois[:, 3:5]) / 2)[:, None]
        if self.cfg.head == "heatmap":
            prob = torch.softmax(head_out[0].flatten(2), -1).view_as(head_out[0])
            normalized, _ = decode_heatmaps(prob)
            peak = prob.flatten(2).argmax(-1, keepdim=True)
            confidence = (F.avg_pool2d(prob, 3, 1, 1) * 9).flatten(2).gather(-1, peak)[..., 0]
            return centre + normalized * size, confidence, torch.zeros_like(normalized)
        mu, sigma = head_out
        return centre + mu * size, 1 - sigma.mean(-1), sigma * size

    @torch.no_grad()
    def inference(self, images: Tensor) -> dict[str, Tensor]:
        """:meth:`forward` without gradients: what the predictor, evaluation and the exported graph run."""
        return self(images)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) → per detection slot (P = ``detections``) in input pixels: ``scores``
        (N, P) person probability (0: an empty slot, whose other outputs are 0 too), ``boxes``
        (N, P, 4) x1, y1, x2, y2, ``keypoints`` (N, P, K, 2), ``joint_confidence`` (N, P, K),
        ``sigma`` (N, P, K, 2)."""
        out, pyramid = self.detector.dense(images)
        scores, boxes = self.proposals(out, self.cfg.detections, self.detector.cfg.score_threshold)
        n, p = scores.shape
        image = torch.arange(n, device=boxes.device)[:, None].expand(n, p).reshape(-1)
        rois = self.rois(image, boxes.reshape(n * p, 4))
        keypoints, confidence, sigma = self.decode(self.keypoint_outputs(pyramid, rois), rois)
        k = self.num_joints
        live = (scores > 0).to(scores.dtype)  # empty slots: all zeros (whatever box filled them)
        return {"scores": scores, "boxes": boxes * live[..., None],
                "keypoints": keypoints.view(n, p, k, 2) * live[..., None, None],
                "joint_confidence": confidence.view(n, p, k) * live[..., None],
                "sigma": sigma.view(n, p, k, 2) * live[..., None, None]}


def build_rcnn_model(backbone: str, num_joints: int = 17, cfg: RCNNConfig = RCNNConfig(),
                     detector: OneStageConfig = OneStageConfig()) -> RCNNPoseModel:
    """E.g. ``build_rcnn_model("resnet18_0.5", cfg=RCNNConfig(head="heatmap"))``: any backbone
    of :data:`rlepose.models.pose_model.BACKBONES` with strides 8–32."""
    from rlepose.models.pose_model import build_backbone

    return RCNNPoseModel(build_backbone(backbone), num_joints, cfg, detector)
