"""Training targets and loss of the one-stage model (:mod:`rlepose.models.one_stage`).

Assignment (centre sampling, as in FCOS): a person belongs to the pyramid level whose
reference scale is nearest its size (max of box width and height, in log scale); on that level
the locations within ``centre_radius`` strides of its box centre, inside its box, are its
positives (a location claimed by several people goes to the smallest box). Locations inside a
crowd region that are no person's positive are ignored; every other location is a negative.

Loss = ``score_weight`` · sigmoid focal loss (α 0.25, γ 2) over all locations but the ignored,
summed and divided by the number of positives, + ``box_weight`` · mean GIoU loss over the
positives, + ``keypoint_weight`` · the joint loss (RLE, L1, Laplace NLL… any
:class:`rlepose.losses.base.JointLoss`) of the positives' µ̂, σ̂ against the keypoints as offsets
from the location in reference units, weighted by the labels' visibility (v > 0).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rlepose.losses.base import JointLoss
from rlepose.models.one_stage import OneStageConfig

__all__ = ["assign_locations", "sigmoid_focal_loss", "giou_loss", "one_stage_targets", "detection_loss",
           "one_stage_loss"]


def assign_locations(locations: Tensor, reference: Tensor, level: Tensor, boxes: Tensor, crowd: Tensor,
                     centre_radius: float, reference_scale: float) -> tuple[Tensor, Tensor]:
    """One image's targets. ``locations`` (L, 2), ``reference`` (L,), ``level`` (L,) from
    :meth:`OneStagePoseModel.grid`; ``boxes`` (M, 4) and ``crowd`` (C, 4) as (x1, y1, x2, y2),
    input pixels. Returns ``owner`` (L,): the index of the person a location is a positive of,
    −1 for none; and ``ignore`` (L,) bool."""
    owner = torch.full((len(locations),), -1, dtype=torch.long, device=locations.device)
    if len(boxes):
        size = (boxes[:, 2:] - boxes[:, :2]).amax(-1).clamp_min(1.0)
        levels = torch.unique(reference)  # ascending, one per level
        person_level = (torch.log2(size[:, None] / levels[None])).abs().argmin(1)  # (M,)
        stride = reference / reference_scale
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        x, y = locations[:, 0:1], locations[:, 1:2]  # (L, 1)
        near = ((x - centre[None, :, 0]).abs() <= centre_radius * stride[:, None]) & \
               ((y - centre[None, :, 1]).abs() <= centre_radius * stride[:, None])
        inside = (x >= boxes[None, :, 0]) & (x <= boxes[None, :, 2]) & (y >= boxes[None, :, 1]) & (y <= boxes[None, :, 3])
        ok = near & inside & (level[:, None] == person_level[None])  # (L, M)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand_as(ok)
        area = torch.where(ok, area, torch.full_like(area, float("inf")))
        best_area, best = area.min(1)
        owner = torch.where(torch.isfinite(best_area), best, owner)
    ignore = torch.zeros(len(locations), dtype=torch.bool, device=locations.device)
    if len(crowd):
        x, y = locations[:, 0:1], locations[:, 1:2]
        in_crowd = ((x >= crowd[None, :, 0]) & (x <= crowd[None, :, 2]) & (y >= crowd[None, :, 1])
                    & (y <= crowd[None, :, 3])).any(1)
        ignore = in_crowd & (owner < 0)
    return owner, ignore


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss (Lin et al., 2017) of binary ``targets`` under ``sigmoid(logits)``:
    ``−α_t (1 − p_t)^γ log p_t``."""
    p = torch.sigmoid(logits)
    ce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce


def giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 − GIoU`` (Rezatofighi et al., 2019) of (…, 4) boxes as (x1, y1, x2, y2), element-wise (…)."""
    lt, rb = torch.maximum(pred[..., :2], target[..., :2]), torch.minimum(pred[..., 2:], target[..., 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area_p = (pred[..., 2:] - pred[..., :2]).clamp_min(0).prod(-1)
    area_t = (target[..., 2:] - target[..., :2]).clamp_min(0).prod(-1)
    union = (area_p + area_t - inter).clamp_min(1e-6)
    hull = (torch.maximum(pred[..., 2:], target[..., 2:]) - torch.minimum(pred[..., :2], target[..., :2])).clamp_min(0).prod(-1)
    return 1 - (inter / union - (hull - union) / hull.clamp_min(1e-6))


def one_stage_targets(out: dict[str, Tensor], batch: dict, centre_radius: float,
                      reference_scale: float) -> tuple[Tensor, Tensor]:
    """The owner (N, L) of every location (−1: none) and the ignore mask (N, L) of a batch
    (:func:`assign_locations` per image; people and crowd regions come first in each row of the
    batch, padding after)."""
    owners, ignores = [], []
    for i in range(out["score_logits"].shape[0]):
        owner, ignore = assign_locations(out["locations"], out["reference"], out["level"],
                                         batch["boxes"][i][batch["person_mask"][i]],
                                         batch["crowd"][i][batch["crowd_mask"][i]], centre_radius, reference_scale)
        owners.append(owner)
        ignores.append(ignore)
    return torch.stack(owners), torch.stack(ignores)


def detection_loss(out: dict[str, Tensor], batch: dict, cfg: OneStageConfig = OneStageConfig()
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The person detector's part of the loss: (focal score loss, GIoU box loss, owner (N, L),
    positive (N, L)); see the module docstring."""
    owner, ignore = one_stage_targets(out, batch, cfg.centre_radius, cfg.reference_scale)
    positive = owner >= 0
    score = sigmoid_focal_loss(out["score_logits"], positive.float())
    score = (score * (~ignore)).sum() / positive.sum().clamp_min(1)
    img, loc = torch.nonzero(positive, as_tuple=True)
    locations, ltrb = out["locations"][loc], out["box_ltrb"][img, loc]
    pred_box = torch.cat([locations - ltrb[:, :2], locations + ltrb[:, 2:]], -1)
    box = giou_loss(pred_box, batch["boxes"][img, owner[img, loc]]).mean() if len(loc) else out["box_ltrb"].sum() * 0
    return score, box, owner, positive


def one_stage_loss(out: dict[str, Tensor], batch: dict, joint_loss: JointLoss,
                   cfg: OneStageConfig = OneStageConfig()) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of the module docstring. ``out``: :meth:`OneStagePoseModel.forward`; ``batch``:
    :func:`rlepose.data.whole_image.collate_people`; ``joint_loss``: the keypoints' loss (its
    flow, for RLE, is the caller's, trained and saved with the model as in the top-down models).
    Returns the total and its parts (``score``, ``box``, ``keypoints``, ``positives``)."""
    score, box, owner, positive = detection_loss(out, batch, cfg)
    img, loc = torch.nonzero(positive, as_tuple=True)
    person = owner[img, loc]
    locations, reference = out["locations"][loc], out["reference"][loc]
    target = (batch["keypoints"][img, person] - locations[:, None]) / reference[:, None, None]
    keypoints = joint_loss(out["mu"][img, loc], out["sigma"][img, loc], target, batch["keypoint_weight"][img, person])
    total = cfg.score_weight * score + cfg.box_weight * box + cfg.keypoint_weight * keypoints
    return total, {"score": score.detach(), "box": box.detach(), "keypoints": keypoints.detach(),
                   "positives": positive.sum().detach().float()}
