"""Drawing predicted skeletons with per-joint confidence (OpenCV, RGB images)."""
from __future__ import annotations

import cv2
import numpy as np

from rlepose.data.keypoints import KeypointSpec

__all__ = ["confidence_color", "draw_poses", "track_color", "tile"]


def confidence_color(c: float, low: float = 0.0, high: float = 1.0) -> tuple[int, int, int]:
    """RGB from red (confidence ≤ ``low``) through yellow to green (≥ ``high``)."""
    c = float(np.clip((c - low) / (high - low), 0.0, 1.0))
    return (int(255 * min(1.0, 2 * (1 - c))), int(255 * min(1.0, 2 * c)), 0)


def draw_poses(image: np.ndarray, people: list, spec: KeypointSpec, min_confidence: float = 0.0,
               label: bool = True, color_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """A copy of RGB ``image`` with each person's (:class:`rlepose.inference.PoseResult`) skeleton (lines) and joints (dots coloured by
    ``joint_confidence`` from red at ``color_range[0]`` to green at ``color_range[1]``; joints
    below ``min_confidence`` are left out) and its expected OKS (its score for heatmap models;
    labels that would overlap a better-scoring person's are left out). For regression models the joint
    confidence is 1 − σ̂ (normalized crop units), so (0.9, 0.98) spans σ̂ from 10% of the crop
    (red) to 2% (green). A person with a ``track_id`` (video) has its skeleton in its track's
    colour (:func:`track_color`) and its id before its label."""
    out = np.ascontiguousarray(image.copy())
    scale = max(1, round(max(out.shape[:2]) / 400))
    anchors = []
    for person in people:
        kp, conf = np.asarray(person.keypoints), np.asarray(person.joint_confidence)
        show = conf >= min_confidence
        track = getattr(person, "track_id", None)
        bone = (255, 255, 255) if track is None else track_color(track)
        for a, b in spec.skeleton:
            if show[a] and show[b]:
                cv2.line(out, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]), bone, scale + 1,
                         cv2.LINE_AA)
        for j in np.flatnonzero(show):
            cv2.circle(out, tuple(int(v) for v in kp[j]), 2 * scale + 1, confidence_color(conf[j], *color_range), -1,
                       cv2.LINE_AA)
        if show.any():
            shown = person.expected_oks if getattr(person, "expected_oks", None) is not None else person.score
            anchors.append((shown, tuple(int(v) for v in kp[show].min(0)), track))
    if label:  # best scores first; a label that would overlap one already drawn is left out
        drawn: list[tuple[int, int, int, int]] = []
        for score, (x, y), track in sorted(anchors, key=lambda a: -a[0]):
            text = f"{score:.2f}" if track is None else f"#{track} {score:.2f}"
            (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale, 1)
            y = max(h + 2, y - 4)
            box = (x, y - h - 2, x + w, y + 2)
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in drawn):
                continue
            drawn.append(box)
            cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def track_color(track_id: int) -> tuple[int, int, int]:
    """A bright RGB colour for a track id; consecutive ids get far-apart hues (golden-ratio steps)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    bgr = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])


def tile(images: list[np.ndarray], columns: int = 4) -> np.ndarray:
    """Equal-sized images in a grid (padded with black)."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = cv2.resize(img, (w, h))
    return grid
