"""Dataset-level evaluation of a model's predictions (in image pixels) for COCO and MPII."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from rlepose.data.datasets import Instance
from rlepose.data.keypoints import KeypointSpec
from rlepose.evaluation.coco import coco_keypoint_ap, oks, pearson, postprocess
from rlepose.evaluation.pckh import pckh

__all__ = ["CocoEvaluator", "MpiiEvaluator", "H36MEvaluator"]


class CocoEvaluator:
    """COCO AP by pycocotools after rescoring and OKS-NMS, plus the Pearson correlation of
    the instance confidence (1 − mean σ̂) with the OKS of each prediction to its ground truth
    (the person whose box was cropped, or for detections the best-matching person)."""

    main_metric = "AP"

    def __init__(self, ann_file: str | Path, instances: list[Instance], spec: KeypointSpec,
                 nms_threshold: float = 0.9) -> None:
        from pycocotools.coco import COCO

        self.ann_file, self.instances, self.spec, self.nms_threshold = Path(ann_file), instances, spec, nms_threshold
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(self.ann_file))
        self.sigmas = np.asarray(spec.sigmas)

    def _gt_oks(self, inst: Instance, pred: np.ndarray) -> float:
        if inst.visible.any():
            return oks(pred, inst.keypoints, inst.visible, inst.area, self.sigmas)
        best = 0.0
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[inst.image_id], iscrowd=False)):
            kps = np.asarray(ann.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
            if len(kps) == len(pred) and (kps[:, 2] > 0).any():
                best = max(best, oks(pred, kps[:, :2], kps[:, 2], ann["area"], self.sigmas))
        return best

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
