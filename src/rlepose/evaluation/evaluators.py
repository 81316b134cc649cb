"""Dataset-level evaluation of a model's predictions (in image pixels) for COCO and MPII."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from rlepose.data.datasets import Instance
from rlepose.data.keypoints import KeypointSpec
from rlepose.evaluation.coco import coco_keypoint_ap, oks, pearson, postprocess, to_coco_results
from rlepose.evaluation.pckh import pckh

__all__ = ["best_gt_oks", "CocoEvaluator", "OneStageCocoEvaluator", "MpiiEvaluator", "H36MEvaluator"]


def best_gt_oks(coco, image_id, pred: np.ndarray, sigmas: np.ndarray) -> float:
    """The OKS of ``pred`` (K, 2) to the best-matching labelled non-crowd person of ``image_id``
    in ``coco`` (a pycocotools COCO), 0 when there is none."""
    best = 0.0
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False)):
        kps = np.asarray(ann.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
        if len(kps) == len(pred) and (kps[:, 2] > 0).any():
            best = max(best, oks(pred, kps[:, :2], kps[:, 2], ann["area"], sigmas))
    return best


def _load_coco(ann_file: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


class CocoEvaluator:
    """COCO AP by pycocotools after rescoring and OKS-NMS, plus the Pearson correlation of
    the instance confidence (1 − mean σ̂) with the OKS of each prediction to its ground truth
    (the person whose box was cropped, or for detections the best-matching person)."""

    main_metric = "AP"

    def __init__(self, ann_file: str | Path, instances: list[Instance], spec: KeypointSpec,
                 nms_threshold: float = 0.9) -> None:
        self.ann_file, self.instances, self.spec, self.nms_threshold = Path(ann_file), instances, spec, nms_threshold
        self.coco = _load_coco(self.ann_file)
        self.sigmas = np.asarray(spec.sigmas)

    def _gt_oks(self, inst: Instance, pred: np.ndarray) -> float:
        if inst.visible.any():
            return oks(pred, inst.keypoints, inst.visible, inst.area, self.sigmas)
        return best_gt_oks(self.coco, inst.image_id, pred, self.sigmas)

    def __call__(self, indices: np.ndarray, keypoints: np.ndarray, joint_confidence: np.ndarray,
                 confidence: np.ndarray) -> tuple[dict[str, float], list[dict]]:
        insts = [self.instances[i] for i in indices]
        image_ids = np.array([i.image_id for i in insts])
        results = postprocess(image_ids, keypoints, joint_confidence, np.array([i.score for i in insts]),
                              np.array([i.area for i in insts]), self.sigmas, self.nms_threshold)
        metrics = coco_keypoint_ap(self.coco, results, self.sigmas)
        gt_oks = np.array([self._gt_oks(inst, kp) for inst, kp in zip(insts, keypoints)])
        metrics["conf_oks_pearson"] = pearson(confidence, gt_oks)
        metrics["mean_oks"] = float(gt_oks.mean()) if len(gt_oks) else 0.0
        return metrics, results


class OneStageCocoEvaluator:
    """COCO AP by pycocotools of a one-stage model's people (already scored and NMS'd by
    :func:`rlepose.inference.one_stage.decode_people`), and the Pearson correlation of each
    person's confidence (1 − mean σ̂) with its OKS to the best-matching labelled person."""

    main_metric = "AP"

    def __init__(self, ann_file: str | Path, spec: KeypointSpec) -> None:
        self.ann_file, self.spec = Path(ann_file), spec
        self.coco = _load_coco(self.ann_file)
        self.sigmas = np.asarray(spec.sigmas)

    def __call__(self, image_ids: list, people: list[dict]) -> tuple[dict[str, float], list[dict]]:
        """``people[i]``: image ``image_ids[i]``'s people, ``keypoints`` (M, K, 2) image pixels,
        ``joint_confidence`` (M, K), ``score`` (M,)."""
        results = []
        confidence, gt_oks = [], []
        for image_id, p in zip(image_ids, people):
            results += to_coco_results([image_id] * len(p["score"]), p["keypoints"], p["joint_confidence"], p["score"])
            for kp, c in zip(p["keypoints"], p["joint_confidence"]):
                confidence.append(float(np.mean(c)))
                gt_oks.append(best_gt_oks(self.coco, image_id, kp, self.sigmas))
        metrics = coco_keypoint_ap(self.coco, results, self.sigmas)
        metrics["conf_oks_pearson"] = pearson(np.array(confidence), np.array(gt_oks))
        metrics["people_per_image"] = len(results) / max(1, len(image_ids))
        return metrics, results


class MpiiEvaluator:
    """PCKh@0.5, PCKh@0.1 and AUC (see :mod:`rlepose.evaluation.pckh`)."""

    main_metric = "PCKh@0.5"

    def __init__(self, instances: list[Instance], spec: KeypointSpec) -> None:
        self.instances, self.spec = instances, spec

    def __call__(self, indices: np.ndarray, keypoints: np.ndarray, joint_confidence: np.ndarray,
                 confidence: np.ndarray) -> tuple[dict[str, float], list[dict]]:
        insts = [self.instances[i] for i in indices]
        gt = np.stack([i.keypoints for i in insts])
        vis = np.stack([i.visible for i in insts])
        head = np.array([i.head_size for i in insts], dtype=np.float64)
        full = pckh(keypoints, gt, vis, head)
        metrics = {k: v for k, v in full.items() if not k.endswith("/joint")}
        for name, value in zip(self.spec.joints, full["PCKh@0.5/joint"]):
            metrics[f"PCKh@0.5/{name}"] = value
        results = [{"record": i.record, "keypoints": kp.tolist(), "joint_confidence": c.tolist()}
                   for i, kp, c in zip(insts, keypoints, joint_confidence)]
        return metrics, results


class H36MEvaluator:
    """Single-stage 3-D: (u, v) in image pixels and normalized root-relative depth → camera
    space with the ground-truth root depth (the usual protocol, as in Sun et al.), then MPJPE
    and PA-MPJPE (mm) per action and averaged over actions."""

    main_metric = "MPJPE"
    mode = "min"

    def __init__(self, instances: list[Instance], cameras: dict, depth_range_mm: float) -> None:
        self.instances, self.cameras, self.depth_range_mm = instances, cameras, depth_range_mm

    def __call__(self, indices: np.ndarray, keypoints: np.ndarray, joint_confidence: np.ndarray,
                 confidence: np.ndarray) -> tuple[dict[str, float], list[dict]]:
        from rlepose.evaluation.pose3d import per_action_table

        preds, gts, actions = [], [], []
        for inst, kp in zip((self.instances[i] for i in indices), keypoints):
            gt = inst.extra["joints_cam"]
            cam = self.cameras[(inst.extra["subject"], inst.extra["camera"])]
            depth = gt[0, 2] + kp[:, 2] * self.depth_range_mm
            preds.append(cam.backproject(kp[:, :2], depth / 1000.0) * 1000.0)
            gts.append(gt)
            actions.append(inst.extra["action"])
        table = per_action_table(np.stack(preds), np.stack(gts), actions)
        metrics = {"MPJPE": table["Average"]["MPJPE"], "PA-MPJPE": table["Average"]["PA-MPJPE"]}
        return metrics, [{"action": a, **v} for a, v in table.items()]
