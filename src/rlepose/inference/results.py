"""One person's pose as the predictors return it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PoseResult"]


@dataclass
class PoseResult:
    """One person: ``bbox`` (x, y, w, h) image pixels, ``keypoints`` (K, 2) image pixels,
    ``joint_confidence`` (K,) (``1 − mean_d σ̂``), ``score`` (box score × mean joint confidence
    above 0.2, as in COCO evaluation), ``box_score`` (the detector's, 1 for given boxes) and
    ``expected_oks``: the OKS the model expects its pose to have, from σ̂ (the box's area as the
    object's; :func:`rlepose.evaluation.coco.expected_oks`), None for heatmap models.
    ``sigma`` (K, 2): the expected error of each coordinate as a Laplace scale in image pixels —
    σ̂ times the model's Q scale per σ̂ (:func:`rlepose.losses.laplace_scale_per_sigma`) and the
    checkpoint's fitted per-joint calibration, if any (``rlepose calibrate``); what the expected OKS
    and the video filters use (None for heatmap models). ``track_id``: the person's identity
    across a video's frames (:class:`rlepose.inference.tracking.PoseTracker`), None elsewhere."""

    bbox: list[float]
    keypoints: np.ndarray
    joint_confidence: np.ndarray
    score: float
    box_score: float = 1.0
    expected_oks: float | None = None
    sigma: np.ndarray | None = None
    track_id: int | None = None

    def to_coco(self, image_id) -> dict:
        """The COCO keypoint-results record of this person in image ``image_id``."""
        flat = np.concatenate([self.keypoints[:, :2], self.joint_confidence[:, None]], 1).ravel()
        out = {"image_id": image_id, "category_id": 1, "keypoints": [float(v) for v in flat],
               "score": float(self.score), "bbox": [float(v) for v in self.bbox]}
        if self.expected_oks is not None:
            out["expected_oks"] = float(self.expected_oks)
        if self.sigma is not None:
            out["sigma"] = [round(float(v), 3) for v in np.asarray(self.sigma).mean(-1)]  # per joint, pixels
        if self.track_id is not None:
            out["track_id"] = int(self.track_id)
        return out
