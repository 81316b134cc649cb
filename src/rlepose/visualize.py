"""Drawing predicted skeletons with per-joint confidence (OpenCV, RGB images)."""
from __future__ import annotations

import cv2
import numpy as np

from rlepose.data.keypoints import KeypointSpec

__all__ = ["confidence_color", "draw_poses", "tile"]


def confidence_color(c: float, low: float = 0.0, high: float = 1.0) -> tuple[int, int, int]:
    """RGB from red (confidence ≤ ``low``) through yellow to green (≥ ``high``)."""
    c = float(np.clip((c - low) / (high - low), 0.0, 1.0))
    return (int(255 * min(1.0, 2 * (1 - c))), int(255 * min(1.0, 2 * c)), 0)


def draw_poses(image: np.ndarray, people: list, spec: KeypointSpec, min_confidence: float = 0.0,
               label: bool = True, color_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """A copy of RGB ``image`` with each person's (:class:`rlepose.inference.PoseResult`) skeleton (lines) and joints (dots coloured by
    ``joint_confidence`` from red at ``color_range[0]`` to green at ``color_range[1]``; joints
    below ``min_confidence`` are left out) and its score. For regression models the joint
    confidence is 1 − σ̂ (normalized crop units), so (0.9, 0.98) spans σ̂ from 10% of the crop
    (red) to 2% (green)."""
    out = np.ascontiguousarray(image.copy())
    scale = max(1, round(max(out.shape[:2]) / 400))
    for person in people:
        kp, conf = np.asarray(person.keypoints), np.asarray(person.joint_confidence)
        show = conf >= min_confidence
        for a, b in spec.skeleton:
            if show[a] and show[b]:
                cv2.line(out, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), (255, 255, 255), scale + 1,
                         cv2.LINE_AA)
        for j in np.flatnonzero(show):
            cv2.circle(out, tuple(int(v) for v in kp[j]), 2 * scale + 1, confidence_color(conf[j], *color_range), -1,
                       cv2.LINE_AA)
        if label:
            x, y = (int(v) for v in kp[show].min(0)) if show.any() else (0, 0)
            cv2.putText(out, f"{person.score:.2f}", (x, max(10, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return out


def tile(images: list[np.ndarray], columns: int = 4) -> np.ndarray:
    """Equal-sized images in a grid (padded with black)."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = cv2.resize(img, (w, h))
    return grid
