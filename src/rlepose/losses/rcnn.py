"""Training targets and loss of the end-to-end top-down model (:mod:`rlepose.models.rcnn`).

Loss = the detector's (the one-stage model's focal score loss and GIoU box loss,
:func:`rlepose.losses.one_stage.detection_loss`) + ``keypoint_weight`` · the keypoint head's, on
RoIs from the model's own proposals, as Mask R-CNN trains: each image's ``train_proposals`` best
boxes after NMS (no gradient through them) and its true boxes; a box overlapping a person by
IoU ≥ ``fg_iou`` trains the head on that person, at most ``rois_per_image`` boxes per image,
drawn at random. The head's loss:

* ``rle`` and ``integral``: the configured joint loss (RLE by default) of µ̂, σ̂ against the labels in RoI units
  ((label − RoI centre) / RoI size), weighted by visibility (v > 0);
* ``heatmap``: cross-entropy over each map's locations against the label's cell (labels outside
  the RoI or unlabelled do not count), averaged over the counted labels (Detectron2's).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rlepose.losses.base import JointLoss
from rlepose.losses.one_stage import detection_loss

__all__ = ["box_iou_xyxy", "sample_rois", "heatmap_targets", "rcnn_loss"]


def box_iou_xyxy(a: Tensor, b: Tensor) -> Tensor:
    """IoU (M, P) of boxes (M, 4) and (P, 4) as (x1, y1, x2, y2)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter).clamp(min=1e-9)


def sample_rois(proposals: Tensor, batch: dict, fg_iou: float, per_image: int) -> tuple[Tensor, Tensor, Tensor]:
    """Boxes for the keypoint head: (image index (R,), box (R, 4) x1, y1, x2, y2, person (R,)),
    from ``proposals`` (N, P, 4) and each image's true boxes (see the module docstring)."""
    images, boxes, people = [], [], []
    for i in range(len(proposals)):
        truth = batch["boxes"][i][batch["person_mask"][i]]
        if not len(truth):
            continue
        candidates = torch.cat([proposals[i].detach(), truth])
        best, person = box_iou_xyxy(candidates, truth).max(1)
        keep = torch.nonzero(best >= fg_iou)[:, 0]
        if len(keep) > per_image:
            keep = keep[torch.randperm(len(keep), device=keep.device)[:per_image]]
        images.append(torch.full_like(keep, i))
        boxes.append(candidates[keep])
        people.append(person[keep])
    if not images:
        empty = torch.zeros(0, dtype=torch.long, device=proposals.device)
        return empty, proposals.new_zeros(0, 4), empty
    return torch.cat(images), torch.cat(boxes), torch.cat(people)


def heatmap_targets(rois: Tensor, keypoints: Tensor, weight: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """The label's cell (R, K) on a ``size``² map over each RoI (cell i of a side sits at
    x1 + i·w/size, the decoder's convention) and which labels count (R, K): labelled and
    inside the RoI."""
    origin, extent = rois[:, None, 1:3], (rois[:, None, 3:5] - rois[:, None, 1:3])
    cell = torch.round((keypoints - origin) / extent * size)
    inside = ((cell >= 0) & (cell <= size - 1)).all(-1)
    cell = cell.clamp(0, size - 1).long()
    return cell[..., 1] * size + cell[..., 0], inside & (weight > 0)


def rcnn_loss(model, images: Tensor, batch: dict, joint_loss: JointLoss) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of the module docstring for ``model`` (:class:`rlepose.models.rcnn.RCNNPoseModel`)
    on a batch of :func:`rlepose.data.whole_image.collate_people`; ``joint_loss``: the RLE head's
    (its flow trained and saved with the model). Returns the total and its parts."""
    cfg, det = model.cfg, model.detector.cfg
    out, pyramid = model.detector.dense(images)
    score, box, _, positive = detection_loss(out, batch, det)
    with torch.no_grad():
        _, proposals = model.proposals({k: v.detach() for k, v in out.items()}, cfg.train_proposals)
    image, boxes, person = sample_rois(proposals, batch, cfg.fg_iou, cfg.rois_per_image)
    rois = model.rois(image, boxes)
    labels, weight = batch["keypoints"][image, person], batch["keypoint_weight"][image, person]
    if not len(rois):
        keypoints = sum(p.sum() for p in model.head.parameters()) * 0.0
    else:
        head_out = model.keypoint_outputs(pyramid, rois)
        if cfg.head == "heatmap":
            logits = head_out[0]
            side = logits.shape[-1]
            target, counted = heatmap_targets(rois, labels, weight, side)
            ce = F.cross_entropy(logits.flatten(2).transpose(1, 2), target, reduction="none")  # (R, K)
            keypoints = (ce * counted).sum() / counted.sum().clamp(min=1)
        else:
            mu, sigma = head_out
            centre, extent = (rois[:, None, 1:3] + rois[:, None, 3:5]) / 2, rois[:, None, 3:5] - rois[:, None, 1:3]
            keypoints = joint_loss(mu, sigma, (labels - centre) / extent, weight)
    total = det.score_weight * score + det.box_weight * box + cfg.keypoint_weight * keypoints
    return total, {"score": score.detach(), "box": box.detach(), "keypoints": keypoints.detach(),
                   "positives": positive.sum().detach().float(), "rois": torch.tensor(float(len(rois)))}
