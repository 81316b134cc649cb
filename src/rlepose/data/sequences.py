"""Labelled video of the embedded figures: people who walk, turn and swing their limbs smoothly,
occluders that pass in front of them, people who enter and leave. GENERATED data (not real
video), drawn as :mod:`rlepose.data.synthetic` draws its images, so a model trained on those
images sees the same kind of figure; the labels are the true joint positions in every frame,
with each person's identity (``track_id``), which is what judging a tracker and a temporal
filter needs.

>>> import numpy as np
>>> frames, people = render_sequence(np.random.default_rng(0), SequenceConfig(frames=4))
>>> frames.shape, sorted(people[0][0])
((4, 256, 256, 3), ['bbox', 'track_id', 'true', 'visibility'])

Motion, per person: the hip centre moves at a constant velocity (about 0.5–2.5 px per frame,
with a small vertical bob at twice the stride frequency); the figure turns back and forth (up to
75° either way, never through the profile view, where the drawing would swap its sides);
arms and legs swing with a stride phase, the knees bend once per stride; each person has its own
build, clothes and height (constant). A person can start outside the frame and walk in, walk out,
or appear and vanish in the middle (entering or leaving through a door, as it were). Occluders
(rectangles and ellipses) slide across the frame in front of everyone. Every frame gets a little
sensor noise, so that a still figure is not drawn bit-identically twice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.data.synthetic import (Figure, draw_background, draw_figure, figure_joints, joint_visibility,
                                    person_box, sample_figure_params)

__all__ = ["SequenceConfig", "render_sequence", "write_sequence"]


@dataclass(frozen=True)
class SequenceConfig:
    frames: int = 60
    image_size: tuple[int, int] = (256, 256)  # (H, W)
    max_people: int = 3
    max_occluders: int = 2
    fps: float = 25.0
    sensor_noise: float = 3.0  # grey levels, per frame
    seed: int = 0


@dataclass
class _Walker:
    figure: Figure
    height: float
    start: np.ndarray  # hip centre at frame 0 (pixels)
    velocity: np.ndarray  # pixels per frame
    turn: float  # amplitude (radians) of the turning, which stays on one side of the profile view
    turn_period: float  # frames
    stride: float  # stride cycles per frame
    phase: float
    arm_swing: float
    leg_swing: float
    knee: float
    present: tuple[int, int]  # [first, last) frame in which the person exists


def _walker(rng: np.random.Generator, cfg: SequenceConfig, index: int) -> _Walker:
    d = np.deg2rad
    h, w = cfg.image_size
    fig = sample_figure_params(rng)
    # a walking posture: arms near the body, no crouch; the random draws stay in the build and clothes
    fig = replace(fig, yaw=rng.choice([0.0, np.pi]), lean=rng.normal(0, d(4)), arm_raise=rng.uniform(d(5), d(35), 2),
                  elbow_bend=rng.uniform(0, d(40), 2), hip_spread=rng.uniform(0, d(8), 2), thigh_swing=np.zeros(2),
                  knee_bend=np.zeros(2))
    height = rng.uniform(0.45, 0.8) * h
    speed = rng.uniform(0.5, 2.5) * rng.choice([-1, 1])
    entering = rng.random() < 0.4  # walks in from a side
    if entering:
        x0 = -0.15 * w if speed > 0 else 1.15 * w
    else:
        x0 = rng.uniform(0.2, 0.8) * w
    y0 = rng.uniform(0.5, 0.7) * h
    first = 0 if entering or index == 0 or rng.random() < 0.5 else int(rng.integers(1, cfg.frames // 2 + 1))
    last = cfg.frames if rng.random() < 0.7 else int(rng.integers(first + cfg.frames // 3, cfg.frames + 1))
    return _Walker(fig, height, np.array([x0, y0]), np.array([speed, rng.normal(0, 0.2)]), rng.uniform(0.2, 1.3),
                   rng.uniform(40, 160), rng.uniform(0.025, 0.05), rng.uniform(0, 2 * np.pi), rng.uniform(d(10), d(30)),
                   rng.uniform(d(12), d(28)), rng.uniform(d(20), d(50)), (first, max(last, first + 1)))


def _pose(p: _Walker, t: int) -> tuple[np.ndarray, dict]:
    """Joints (17, 2) in image pixels and drawing attributes of walker ``p`` at frame ``t``."""
    phi = p.phase + 2 * np.pi * p.stride * t
    swing = np.array([np.sin(phi), np.sin(phi + np.pi)])
    lean = p.figure.lean + 0.03 * np.sin(2 * phi)
    # |yaw| stays below π/2 (or above it): the figure never flips its left and right sides
    yaw = p.figure.yaw + p.turn * np.sin(2 * np.pi * t / p.turn_period + p.phase)
    thigh_swing = p.leg_swing * swing
    lr = 1.0 if np.cos(yaw) >= 0 else -1.0
    a_th = lean + np.array([lr, -lr]) * p.figure.hip_spread + thigh_swing
    # figure_joints bends the knee away from the torso axis; a stride crosses it, so the sign is
    # undone here and the knee bends the same way all along
    knee = np.sign(a_th - lean + 1e-6) * p.knee * (1 + np.sin(phi + np.array([0.5 * np.pi, 1.5 * np.pi]))) / 2
    fig = replace(p.figure, yaw=yaw, lean=lean, arm_raise=p.figure.arm_raise + p.arm_swing * swing,
                  elbow_bend=p.figure.elbow_bend + 0.5 * p.arm_swing * (1 + swing), thigh_swing=thigh_swing,
                  knee_bend=knee)
    joints, attrs = figure_joints(fig, p.height)
    offset = p.start + p.velocity * t + np.array([0.0, 0.01 * p.height * np.sin(2 * phi)])
    for k in ("head", "neck"):
        attrs[k] = attrs[k] + offset
    return joints + offset, attrs


def render_sequence(rng: np.random.Generator, cfg: SequenceConfig) -> tuple[np.ndarray, list[list[dict]]]:
    """Frames (T, H, W, 3) RGB uint8 and, per frame, its people: ``track_id`` (int, the person),
    ``true`` (17, 2) joint positions in pixels, ``visibility`` (17,) COCO flags (0 outside the
    frame, 1 occluded, 2 visible), ``bbox`` (x, y, w, h). A person is listed in a frame when
    at least one joint is inside it and the box is at least 4 px wide and high."""
    h, w = cfg.image_size
    background = draw_background(rng, h, w)
    walkers = [_walker(rng, cfg, i) for i in range(int(rng.integers(1, cfg.max_people + 1)))]
    walkers.sort(key=lambda p: p.height)  # taller = nearer: drawn later
    occluders = []
    for _ in range(int(rng.integers(0, cfg.max_occluders + 1))):
        size = rng.uniform([20, 30], [60, 110])
        speed = rng.uniform(1.0, 4.0) * rng.choice([-1, 1])
        start_x = -size[0] if speed > 0 else w + size[0]
        delay = rng.uniform(0, max(1.0, cfg.frames - (w + 2 * size[0]) / abs(speed)))
        occluders.append({"size": size, "y": rng.uniform(0.2, 0.8) * h, "x0": start_x - speed * delay,
                          "speed": speed, "color": tuple(int(c) for c in rng.integers(0, 256, 3)),
                          "ellipse": bool(rng.random() < 0.5)})
    frames = np.empty((cfg.frames, h, w, 3), np.uint8)
    labels: list[list[dict]] = []
    for t in range(cfg.frames):
        img = background.copy()
        posed = [(i, *_pose(p, t)) for i, p in enumerate(walkers) if p.present[0] <= t < p.present[1]]
        for _, joints, attrs in posed:
            draw_figure(img, joints, attrs)
        mask = np.zeros((h, w), np.uint8)
        for o in occluders:
            centre = np.array([o["x0"] + o["speed"] * t, o["y"]])
            lo, hi = (centre - o["size"] / 2).astype(int), (centre + o["size"] / 2).astype(int)
            if o["ellipse"]:
                axes = tuple(int(v) for v in o["size"] / 2)
                cv2.ellipse(img, tuple(int(v) for v in centre), axes, 0, 0, 360, o["color"], -1)
                cv2.ellipse(mask, tuple(int(v) for v in centre), axes, 0, 0, 360, 1, -1)
            else:
                cv2.rectangle(img, tuple(lo), tuple(hi), o["color"], -1)
                cv2.rectangle(mask, tuple(lo), tuple(hi), 1, -1)
        noisy = img.astype(np.float32) + rng.normal(0, cfg.sensor_noise, img.shape)
        frames[t] = cv2.cvtColor(np.clip(noisy, 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)
        people = []
        for i, joints, attrs in posed:
            visibility = joint_visibility(joints, attrs, mask)
            x0, y0, x1, y1 = person_box(joints, attrs, (h, w))
            if visibility.any() and x1 - x0 >= 4 and y1 - y0 >= 4:
                people.append({"track_id": i, "true": joints, "visibility": visibility,
                               "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
        labels.append(people)
    return frames, labels


def write_sequence(out_dir: str | Path, cfg: SequenceConfig, name: str = "sequence") -> tuple[Path, Path]:
    """Render one sequence from ``cfg.seed`` and write ``out_dir/<name>.mp4`` and
    ``out_dir/<name>.json``: PoseTrack18-style COCO keypoints (one image per frame with
    ``frame_id`` and ``vid_id``, one annotation per person and frame with ``track_id``, every
    frame labelled). Returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, labels = render_sequence(np.random.default_rng(cfg.seed), cfg)
    video = out_dir / f"{name}.mp4"
    h, w = cfg.image_size
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    images, annotations = [], []
    for t, people in enumerate(labels):
        images.append({"id": t + 1, "file_name": f"{name}/{t:06d}.jpg", "frame_id": t, "vid_id": name,
                       "nframes": cfg.frames, "is_labeled": True, "width": w, "height": h})
        for p in people:
            kps = np.concatenate([np.where(p["visibility"][:, None] > 0, p["true"], 0.0), p["visibility"][:, None]], 1)
            annotations.append({"id": len(annotations) + 1, "image_id": t + 1, "category_id": 1, "iscrowd": 0,
                                "track_id": p["track_id"], "bbox": p["bbox"], "area": p["bbox"][2] * p["bbox"][3],
                                "num_keypoints": int((p["visibility"] > 0).sum()),
                                "keypoints": [float(round(v, 2)) for v in kps.ravel()]})
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS.joints),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton]}]
    info = {"description": "rlepose GENERATED sequence (not real video)", "config": asdict(cfg)}
    ann = out_dir / f"{name}.json"
    ann.write_text(json.dumps({"info": info, "images": images, "annotations": annotations, "categories": categories}))
    return video, ann
