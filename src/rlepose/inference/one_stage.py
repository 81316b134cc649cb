"""People from the one-stage model's dense output, and the predictor that runs it on whole
images (no detector, no boxes).

Decoding, one image: the locations whose person probability is at least ``score_threshold``;
each is scored as the top-down models' people are (probability × mean joint confidence above
0.2, :func:`rlepose.evaluation.coco.rescore_many`); the best ``pre_nms`` go through OKS-NMS
at ``nms_oks`` (the predicted box's area as the object's; boxes of people who overlap can overlap
more than their poses do); at most ``max_people`` are kept. The same NumPy code runs after the PyTorch
model and after its ONNX graph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rlepose.data.io import read_image
from rlepose.data.transforms import apply_affine, crop_boxes, crops_to_array, crops_to_tensor, invert_affine
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.evaluation.coco import expected_oks, oks_nms, rescore_many
from rlepose.inference.predictor import PosePredictor, PoseResult
from rlepose.models.one_stage import OneStageConfig

__all__ = ["ONE_STAGE_OUTPUTS", "decode_people", "people_to_image", "OneStagePredictor"]

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


class OneStagePredictor(PosePredictor):
    """:class:`PosePredictor` for a one-stage model: every person of an image from one pass over
    the whole (letterboxed) image; no detector and no boxes. Results are :class:`PoseResult`\\ s
    with the predicted box, the rescored ``score``, the person probability as ``box_score`` and
    the expected OKS from σ̂ (the predicted box's area as the object's). People whose probability
    is below ``box_threshold`` are left out (the role of a detector's box threshold; evaluation
    keeps down to ``cfg.score_threshold``). No flip test."""

    def __init__(self, backend, spec, input_size: tuple[int, int], cfg: OneStageConfig = OneStageConfig(),
                 batch_size: int = 8, backend_name: str = "custom", box_threshold: float = 0.3) -> None:
        super().__init__(backend, spec, input_size, flip_test=False, batch_size=batch_size, backend_name=backend_name,
                         detector=None)
        self.cfg = cfg
        self.box_threshold = box_threshold

    needs_boxes = False

    def describe(self) -> str:
        return super().describe().replace(", flip test off", "") + ", one-stage (no detector)"

    def dense(self, images: list[np.ndarray]) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """The model's dense outputs (one dict per image, :data:`ONE_STAGE_OUTPUTS`) and the
        letterbox matrices (N, 2, 3) of RGB ``images``."""
        crops, matrices = [], []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
            h, w = image.shape[:2]
            c, m = crop_boxes(image, np.array([[0.0, 0.0, w, h]]), self.input_size, padding=1.0)
            crops.append(c)
            matrices.append(m)
        crops_all = np.concatenate(crops)
        to_batch = crops_to_array if getattr(self.backend, "takes_numpy", False) else crops_to_tensor
        per_image: list[dict] = []
        for i in range(0, len(crops_all), self.batch_size):
            outs = self.backend(to_batch(crops_all[i : i + self.batch_size]))
            arrays = [o.float().numpy() for o in outs]
            per_image += [{k: a[j] for k, a in zip(ONE_STAGE_OUTPUTS, arrays)} for j in range(len(arrays[0]))]
        return per_image, np.concatenate(matrices)

    def predict_many(self, images: list[np.ndarray], boxes=None, box_scores=None) -> list[list[PoseResult]]:
        """Every person in each of ``images``; ``boxes`` must be None (or a list of Nones)."""
        if boxes is not None and any(b is not None for b in boxes):
            raise ValueError("a one-stage model finds the people itself: give no boxes")
        dense, matrices = self.dense(images)
        results = []
        sigmas = np.asarray(self.spec.sigmas, float) if self.spec.sigmas else None
        for out, matrix in zip(dense, matrices):
            p = people_to_image(decode_people(out, self.cfg, self.spec.sigmas), matrix)
            keep = p["box_score"] >= self.box_threshold
            p = {k: v[keep] for k, v in p.items()}
            xywh = np.concatenate([p["boxes"][:, :2], p["boxes"][:, 2:] - p["boxes"][:, :2]], 1)
            believed = [None] * len(xywh)
            if sigmas is not None and len(xywh):
                believed = expected_oks(p["sigma"], xywh[:, 2] * xywh[:, 3], sigmas).tolist()
            results.append([PoseResult(box.tolist(), kp, c, float(s), float(bs), e) for box, kp, c, s, bs, e in
                            zip(xywh, p["keypoints"], p["joint_confidence"], p["score"], p["box_score"], believed)])
        return results

    def predict(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[PoseResult]:
        """Every person in ``image`` (an RGB uint8 array or a path)."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        return self.predict_many([image], None if boxes is None else [boxes])[0]

    def __call__(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[PoseResult]:
        return self.predict(image, boxes)
