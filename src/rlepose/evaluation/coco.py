"""COCO keypoint evaluation with pycocotools' COCOeval and the standard top-down steps.

Rescoring (stated exactly): a person's score is ``box_score × mean(c_k over joints with
c_k > 0.2)`` — 0 when no joint passes — where c_k is the joint confidence (RLE: 1 − mean_d σ̂;
heatmaps: peak value). This is the SimpleBaseline/HRNet rule with RLE's confidence. Then
OKS-NMS at 0.9 per image over the detections.
"""
from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np

__all__ = ["STAT_NAMES", "oks", "expected_keypoint_similarity", "expected_oks", "rescore", "rescore_many", "oks_nms", "to_coco_results", "postprocess", "coco_keypoint_ap",
           "pearson"]

STAT_NAMES = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")


def oks(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """Object keypoint similarity of ``pred`` (K, 2) to ``gt`` (K, 2) over visible joints, with
    COCO's formula: mean over v>0 of exp(−d² / (2·area·(2σ)²))."""
    vis = visible > 0
    if not vis.any():
        return 0.0
    d2 = ((pred - gt) ** 2).sum(-1)
    e = d2 / ((2 * sigmas) ** 2) / (area + np.spacing(1)) / 2
    return float(np.exp(-e)[vis].mean())


def expected_keypoint_similarity(scale_px: np.ndarray, area: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """What a model expects each joint's COCO keypoint similarity to be, (N, K): the mean of
    ``exp(−d²/(2c²))``, c² = area·(2σ_k)², when each coordinate's error is Laplace with the
    predicted scale ``scale_px`` (N, K, 2) pixels (σ̂ times the crop size), independently:
    per coordinate ``E exp(−x²/(2c²)) = (c/b)·√(π/2)·erfcx(c/(b√2))`` for x ~ Laplace(0, b)
    (erfcx(z) = exp(z²)·erfc(z)), and the product over the two. ``area`` (N,) pixels²."""
    import torch

    c = np.sqrt(np.maximum(np.asarray(area, float), np.finfo(float).tiny))[:, None] * 2 * np.asarray(sigmas, float)
    b = np.maximum(np.asarray(scale_px, float), 1e-12)
    ratio = torch.from_numpy(c[..., None] / b)
    per_coordinate = ratio * np.sqrt(np.pi / 2) * torch.special.erfcx(ratio / np.sqrt(2))
    return per_coordinate.prod(-1).numpy()


def expected_oks(scale_px: np.ndarray, area: np.ndarray, sigmas: np.ndarray,
                 labelled: np.ndarray | None = None) -> np.ndarray:
    """A person's expected OKS (N,): :func:`expected_keypoint_similarity` averaged over its
    joints (the ``labelled`` ones (N, K) when given, as OKS counts them)."""
    ks = expected_keypoint_similarity(scale_px, area, sigmas)
    if labelled is None:
        return ks.mean(1)
    count = labelled.sum(1)
    return np.where(count > 0, (ks * labelled).sum(1) / np.maximum(count, 1), np.nan)


def rescore(joint_confidence: np.ndarray, box_score: float, threshold: float = 0.2) -> float:
    """``box_score × mean(joint_confidence[joint_confidence > threshold])`` (0 if none)."""
    return float(rescore_many(np.asarray(joint_confidence)[None], np.array([box_score]), threshold)[0])


def rescore_many(joint_confidence: np.ndarray, box_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """:func:`rescore` of M people at once: ``joint_confidence`` (M, K), ``box_scores`` (M,) → (M,)."""
    c = np.asarray(joint_confidence, dtype=np.float64)
    keep = c > threshold
    count = keep.sum(-1)
    mean = np.where(count > 0, (c * keep).sum(-1) / np.maximum(count, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64) * mean


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
            threshold: float = 0.9) -> list[int]:
    """Greedy NMS by OKS on one image's poses: ``keypoints`` (M, K, 2), ``scores`` (M,),
    ``areas`` (M,). The kept pose's area normalizes; returns kept indices, best first."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    keep = []
    while len(order):
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        # oks() of every remaining pose to pose i at once (every joint counts)
        d2 = ((keypoints[rest] - keypoints[i]) ** 2).sum(-1)
        similarity = np.exp(-(d2 / variances / (areas[i] + np.spacing(1)) / 2)).mean(-1)
        order = rest[similarity <= threshold]
    return keep


def to_coco_results(image_ids, keypoints, joint_confidence, scores, category_id: int = 1) -> list[dict]:
    """COCO results format: ``keypoints`` as [x1, y1, c1, …] in image pixels."""
    results = []
    for img, kp, conf, score in zip(image_ids, keypoints, joint_confidence, scores):
        flat = np.concatenate([np.asarray(kp, dtype=float), np.asarray(conf, dtype=float)[:, None]], 1).ravel()
        results.append({"image_id": int(img), "category_id": category_id, "keypoints": [float(v) for v in flat],
                        "score": float(score)})
    return results


def postprocess(image_ids: np.ndarray, keypoints: np.ndarray, joint_confidence: np.ndarray,
                box_scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, nms_threshold: float = 0.9,
                category_id: int = 1) -> list[dict]:
    """Rescoring and per-image OKS-NMS (see module docstring), then the COCO results list."""
    scores = np.array([rescore(c, s) for c, s in zip(joint_confidence, box_scores)])
    kept = []
    for img in np.unique(image_ids):
        idx = np.flatnonzero(image_ids == img)
        if nms_threshold < 1.0:
            idx = idx[oks_nms(keypoints[idx], scores[idx], areas[idx], sigmas, nms_threshold)]
        kept.extend(idx.tolist())
    kept.sort()
    return to_coco_results(image_ids[kept], keypoints[kept], joint_confidence[kept], scores[kept], category_id)


def coco_keypoint_ap(gt: "str | Path | object", results: list[dict], sigmas: np.ndarray | None = None,
                     verbose: bool = False) -> dict[str, float]:
    """AP/AP50/AP75/APM/APL and ARs by pycocotools' COCOeval on ``results``.

    Args:
        gt: a COCO keypoints JSON path or a ``pycocotools.coco.COCO`` object.
        sigmas: OKS constants for a custom keypoint set (COCO's default otherwise).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {name: 0.0 for name in STAT_NAMES}
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = gt if isinstance(gt, COCO) else COCO(str(gt))
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))  # loadRes adds fields in place
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.params.imgIds = sorted({r["image_id"] for r in results} | set(coco_gt.getImgIds()))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation coefficient (nan when either side is constant)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
