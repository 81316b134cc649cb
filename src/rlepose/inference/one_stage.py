"""People from the one-stage model's dense output (the predictor that runs it on whole images
is :class:`rlepose.inference.predictor.OneStagePredictor`).

Decoding, one image: the locations whose person probability is at least ``score_threshold``;
each is scored as the top-down models' people are (probability × mean joint confidence above
0.2, :func:`rlepose.evaluation.coco.rescore_many`); the best ``pre_nms`` go through OKS-NMS
at ``nms_oks`` (the predicted box's area as the object's; boxes of people who overlap can overlap
more than their poses do); at most ``max_people`` are kept. The same NumPy code runs after the PyTorch
model and after its ONNX graph.
"""
from __future__ import annotations

import numpy as np

from rlepose.data.transforms import apply_affine, invert_affine
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.evaluation.coco import oks_nms, rescore_many
from rlepose.models.one_stage import OneStageConfig

__all__ = ["ONE_STAGE_OUTPUTS", "decode_people", "people_to_image"]

#: the inference graph's outputs, in order (see :meth:`OneStagePoseModel.inference`)
ONE_STAGE_OUTPUTS = ("scores", "boxes", "keypoints", "joint_confidence", "sigma")


def decode_people(out: dict[str, np.ndarray], cfg: OneStageConfig = OneStageConfig(),
                  sigmas=COCO_KEYPOINTS.sigmas) -> dict[str, np.ndarray]:
    """One image's people from its dense outputs (arrays of :data:`ONE_STAGE_OUTPUTS` without the
    batch axis: ``scores`` (L,), ``boxes`` (L, 4), …). Returns, best first, ``location`` (M,)
    indices, ``score`` (M,) rescored, ``box_score`` (M,) the probability, ``boxes`` (M, 4)
    (x1, y1, x2, y2), ``keypoints`` (M, K, 2), ``joint_confidence`` (M, K), ``sigma`` (M, K, 2),
    in the input's pixels. ``sigmas``: the keypoint set's OKS constants (for OKS-NMS; a set
    without them, empty, counts every joint at 0.1)."""
    k = np.shape(out["keypoints"])[-2]
    sigmas = np.asarray(sigmas if len(sigmas) else [0.1] * k, dtype=np.float64)
    scores = np.asarray(out["scores"], dtype=np.float64)
    cand = np.flatnonzero(scores >= cfg.score_threshold)
    person = rescore_many(out["joint_confidence"][cand], scores[cand])
    best = np.argsort(-person, kind="stable")[: cfg.pre_nms]
    cand, person = cand[best], person[best]
    boxes = np.asarray(out["boxes"], dtype=np.float64)[cand]
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    kept = oks_nms(out["keypoints"][cand], person, areas, sigmas, cfg.nms_oks)[: cfg.max_people] if len(cand) else []
    idx = cand[kept]
    return {"location": idx, "score": person[kept], "box_score": scores[idx],
            **{k: np.asarray(out[k])[idx] for k in ("boxes", "keypoints", "joint_confidence", "sigma")}}


def people_to_image(people: dict[str, np.ndarray], matrix: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`decode_people`'s result mapped from the input to the image through the inverse of
    the letterbox ``matrix`` (2×3, image → input; uniform scale, no rotation): boxes and
    keypoints in image pixels, σ̂ scaled likewise."""
    inv = invert_affine(np.asarray(matrix, dtype=np.float64))
    boxes = people["boxes"].reshape(-1, 2, 2)
    out = dict(people)
    out["boxes"] = apply_affine(boxes.astype(np.float64), inv).reshape(-1, 4)
    out["keypoints"] = apply_affine(people["keypoints"].astype(np.float64), inv)
    out["sigma"] = people["sigma"].astype(np.float64) * abs(inv[0, 0])
    return out
