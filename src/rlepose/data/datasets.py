"""Person instances from COCO-format keypoint files (COCO itself or any custom keypoint set)
and from MPII's common top-down JSON, and the dataset that crops them.

Every loader validates what it reads and raises :class:`DataError` naming the file and
record; with ``on_error="skip"`` bad records are logged and left out instead (at load time),
and unreadable images are logged and dropped from the batch (at crop time).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from rlepose.data.io import MAX_IMAGE_PIXELS, DataError, header_size, read_image  # noqa: F401 (re-exported)
from rlepose.data.keypoints import COCO_KEYPOINTS, KeypointSpec
from rlepose.data.transforms import TopDownTransform

__all__ = ["Instance", "load_coco_instances", "mpii_head_size", "load_mpii_instances", "TopDownDataset",
           "collate_skip_none", "SeededShuffleSampler"]

log = logging.getLogger(__name__)


@dataclass
class Instance:
    """One person to crop. ``box`` (x, y, w, h), ``keypoints`` (K, 2) and ``visible`` (K,) in
    image pixels; ``score`` is the detection score (1 for ground-truth boxes); ``head_size``
    is MPII's PCKh normalizer (pixels) when known."""

    image_path: Path
    image_id: int
    box: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    score: float = 1.0
    area: float = 0.0
    record: str = ""
    head_size: float | None = None
    depth: np.ndarray | None = None  # (K,) root-relative depth in mm, for 3-D samples
    flags: np.ndarray | None = None  # (K,) the file's own visibility flags (COCO: 0, 1 occluded, 2 visible)
    extra: dict = field(default_factory=dict)


def _fail(msg: str, on_error: str) -> None:
    if on_error == "skip":
        log.warning("skipping: %s", msg)
    else:
        raise DataError(msg)


def _load_json(path: Path):
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"annotation file {path} is not valid JSON: {e}") from e


def load_coco_instances(ann_file: str | Path, image_root: str | Path, spec: KeypointSpec = COCO_KEYPOINTS,
                        detections: str | Path | None = None, det_score_threshold: float = 0.0,
                        min_keypoints: int = 1, category_id: int | None = None,
                        on_error: str = "raise") -> list[Instance]:
    """Persons from a COCO keypoints file.

    Without ``detections``: one instance per non-crowd annotation of the category with at
    least ``min_keypoints`` labelled keypoints and a box of positive area (clipped to the
    image, as the reference code does). With ``detections`` (a COCO detection-results JSON):
    one instance per detection of the category scoring ≥ ``det_score_threshold``, without
    keypoint labels (for evaluation). ``category_id`` defaults to the file's category that
    has keypoints.
    """
    ann_file, image_root = Path(ann_file), Path(image_root)
    data = _load_json(ann_file)
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: not a COCO keypoints file (a JSON object with images, annotations, categories)")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"{ann_file}: not a COCO keypoints file (no '{key}')")
        if not isinstance(data[key], list) or not all(isinstance(x, dict) for x in data[key]):
            raise DataError(f"{ann_file}: '{key}' must be a list of objects, got {str(data[key])[:80]}")
    if category_id is None:
        cats = [c for c in data["categories"] if c.get("keypoints")]
        if not cats:
            raise DataError(f"{ann_file}: no category declares keypoints")
        category_id = cats[0]["id"]
    k = spec.num_joints
    images = {}
    for img in data["images"]:
        if "id" not in img or "file_name" not in img:
            raise DataError(f"{ann_file}: image entry without id/file_name: {str(img)[:120]}")
        images[img["id"]] = img

    instances: list[Instance] = []
    if detections is not None:
        dets = _load_json(Path(detections))
        if not isinstance(dets, list):
            raise DataError(f"{detections}: a detection-results file is a JSON list of {{image_id, bbox, score}}")
        for i, det in enumerate(dets):
            rec = f"{Path(detections).name}[{i}]"
            if not all(key in det for key in ("image_id", "bbox", "score")):
                _fail(f"{rec}: detection needs image_id, bbox and score", on_error)
                continue
            if det.get("category_id", category_id) != category_id or det["score"] < det_score_threshold:
                continue
            img = images.get(det["image_id"])
            if img is None:
                _fail(f"{rec}: image_id {det['image_id']} is not in {ann_file.name}", on_error)
                continue
            box = np.asarray(det["bbox"], dtype=np.float64)
            if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
                _fail(f"{rec}: degenerate box {det['bbox']}", on_error)
                continue
            instances.append(Instance(image_root / img["file_name"], img["id"], box, np.zeros((k, 2)),
                                      np.zeros(k), float(det["score"]), float(box[2] * box[3]), rec))
        return instances

    for ann in data["annotations"]:
        rec = f"{ann_file.name} annotation {ann.get('id', '?')}"
        if ann.get("category_id") != category_id or ann.get("iscrowd", 0):
            continue
        kps = ann.get("keypoints")
        if not isinstance(kps, list) or len(kps) != 3 * k:
            got = f"{len(kps)} values" if isinstance(kps, list) else repr(kps)[:40]
            _fail(f"{rec}: expected a list of {3 * k} keypoint values, got {got}", on_error)
            continue
        try:
            kps = np.asarray(kps, dtype=np.float64).reshape(k, 3)
        except (TypeError, ValueError):
            _fail(f"{rec}: keypoints must be numbers, got {str(ann.get('keypoints'))[:80]}", on_error)
            continue
        if not np.all(np.isfinite(kps)):
            _fail(f"{rec}: keypoints hold NaN or inf", on_error)
            continue
        if not np.all(np.isin(kps[:, 2], (0, 1, 2))):
            _fail(f"{rec}: visibility flags must be 0, 1 or 2, got {sorted(set(kps[:, 2].tolist()))}", on_error)
            continue
        visible = (kps[:, 2] > 0).astype(np.float64)
        if visible.sum() < min_keypoints:
            continue
        img = images.get(ann.get("image_id"))
        if img is None:
            _fail(f"{rec}: image_id {ann.get('image_id')} has no image entry", on_error)
            continue
        box = _clip_box(ann.get("bbox"), img.get("width"), img.get("height"))
        if box is None:
            _fail(f"{rec}: degenerate or missing bbox {ann.get('bbox')}", on_error)
            continue
        instances.append(Instance(image_root / img["file_name"], img["id"], box, kps[:, :2], visible, 1.0,
                                  float(ann.get("area", box[2] * box[3])), rec, flags=kps[:, 2].copy()))
    return instances


def _clip_box(bbox, width, height) -> np.ndarray | None:
    if bbox is None or len(bbox) != 4 or not all(np.isfinite(bbox)):
        return None
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = x1 + max(0.0, w - 1), y1 + max(0.0, h - 1)
    if width is not None and height is not None:
        x2, y2 = min(width - 1.0, x2), min(height - 1.0, y2)
    if w <= 0 or h <= 0 or x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1])


def mpii_head_size(record: dict) -> tuple[float, str]:
    """PCKh normalizer of an MPII record, in pixels, and where it came from.

    The official definition is 0.6 × the diagonal of the annotated head box
    (``headboxes_src`` in the evaluation ``.mat``; a ``headbox`` [x1, y1, x2, y2] field in the
    JSON). The common top-down JSON has no head box; there we use the approximation
    0.6 × √2 × ‖head_top − upper_neck‖ (the diagonal of a square box on that segment), which
    is *not* the official normalizer.
    """
    if "headbox" in record:
        x1, y1, x2, y2 = record["headbox"]
        return 0.6 * math.hypot(x2 - x1, y2 - y1), "headbox"
    joints = np.asarray(record["joints"], dtype=np.float64)
    return 0.6 * math.sqrt(2) * float(np.linalg.norm(joints[9] - joints[8])), "neck-head_top approximation"


def load_mpii_instances(ann_file: str | Path, image_root: str | Path, on_error: str = "raise") -> list[Instance]:
    """Persons from the common top-down MPII JSON (list of {image, center, scale, joints[16],
    joints_vis}). As in the reference code the centre moves down by 15·scale and the box is
    200·scale pixels square (``scale`` is person height / 200); the 1.25 padding and the
    input aspect ratio are applied by the transform like for COCO boxes."""
    ann_file, image_root = Path(ann_file), Path(image_root)
    data = _load_json(ann_file)
    if not isinstance(data, list):
        raise DataError(f"{ann_file}: expected a JSON list of MPII records")
    instances = []
    for i, r in enumerate(data):
        rec = f"{ann_file.name}[{i}]"
        try:
            joints = np.asarray(r["joints"], dtype=np.float64)
            vis = np.asarray(r.get("joints_vis", np.ones(len(joints))), dtype=np.float64)
            cx, cy = (float(v) for v in r["center"])
            s = float(r["scale"])
            image = r["image"]
        except (KeyError, TypeError, ValueError) as e:
            _fail(f"{rec}: malformed MPII record ({e!r})", on_error)
            continue
        if joints.shape != (16, 2) or vis.shape != (16,) or not s > 0 or not math.isfinite(s):
            _fail(f"{rec}: expected 16 joints, 16 visibilities and a positive scale", on_error)
            continue
        if not (np.all(np.isfinite(joints)) and math.isfinite(cx) and math.isfinite(cy)):
            _fail(f"{rec}: joints or center hold NaN or inf", on_error)
            continue
        if not np.all(np.isin(vis, (0, 1))):
            _fail(f"{rec}: joints_vis must be 0 or 1, got {sorted(set(vis.tolist()))}", on_error)
            continue
        cy += 15 * s
        side = 200.0 * s
        box = np.array([cx - side / 2, cy - side / 2, side, side])
        head, _ = mpii_head_size(r)
        instances.append(Instance(image_root / image, i, box, joints, vis, 1.0, side * side, rec, head_size=head))
    return instances


class TopDownDataset(Dataset):
    """Crops of ``instances`` through ``transform``. Items are the transform's dict plus
    ``index``, ``image_id``, ``score``, ``area``. With ``on_error="skip"`` an unreadable image
    gives ``None``, which :func:`collate_skip_none` drops from the batch.

    With ``depth_range_mm`` (3-D training) ``target`` is (K, 3): the third coordinate is the
    root-relative depth divided by ``depth_range_mm`` (2000 mm maps ±1 m to ±0.5, the span of
    the crop's x and y), and ``target_weight`` is (K, 3), 0 on z for instances without depth
    (2-D-only samples such as MPII in mixed training)."""

    def __init__(self, instances: list[Instance], transform: TopDownTransform, on_error: str = "raise",
                 seed: int | None = None, depth_range_mm: float | None = None) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        self.instances, self.transform, self.on_error, self.seed = instances, transform, on_error, seed
        self.depth_range_mm = depth_range_mm
        self._perm = transform.spec.flip_permutation()

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> dict | None:
        """``index`` or ``epoch · len(self) + index`` (see :class:`SeededShuffleSampler`): the
        augmentation of a sample is drawn from (seed, epoch, index) alone."""
        epoch, index = divmod(int(index), len(self.instances))
        inst = self.instances[index]
        try:
            image = read_image(inst.image_path, inst.record, bgr=True)
        except DataError:
            if self.on_error == "skip":
                log.warning("skipping unreadable image %s (%s)", inst.image_path, inst.record)
                return None
            raise
        rng = None
        if self.seed is not None:  # reproducible augmentation: one stream per (seed, epoch, index)
            rng = np.random.default_rng([self.seed, epoch, index])
        sample = self.transform(image, inst.box, inst.keypoints, inst.visible, rng, bgr=True)
        sample.update(index=index, image_id=inst.image_id, score=inst.score, area=inst.area)
        if self.depth_range_mm is not None:
            weight = sample["target_weight"]
            if inst.depth is None:
                z, wz = torch.zeros_like(weight), torch.zeros_like(weight)
            else:
                depth = inst.depth[self._perm] if sample["flipped"] else inst.depth
                z, wz = torch.from_numpy(depth / self.depth_range_mm).float(), weight
            sample["target"] = torch.cat([sample["target"], z[:, None]], -1)
            sample["target_weight"] = torch.stack([weight, weight, wz], -1)
        return sample


def collate_skip_none(batch: list[dict | None]) -> dict | None:
    batch = [b for b in batch if b is not None]
    return default_collate(batch) if batch else None


class SeededShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from (seed, epoch) alone, so that a resumed run
    sees exactly the order an uninterrupted one would (Lightning calls ``set_epoch``).

    ``encode_epoch``: yield ``epoch · length + index`` instead of ``index``, for datasets that
    key each sample's augmentation on its epoch (:class:`TopDownDataset`). The epoch then
    travels with every request, also into loader worker processes, which never see an
    attribute set on the main process's dataset after they start."""

    def __init__(self, length: int, seed: int = 0, encode_epoch: bool = False) -> None:
        self.length, self.seed, self.epoch, self.encode_epoch = length, seed, 0, encode_epoch
        self._resume: tuple[int, int] | None = None  # (epoch, indices already used) after a mid-epoch stop

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, used: int) -> None:
        """Continue epoch ``epoch`` after its first ``used`` indices (a run stopped mid-epoch):
        the next pass over that epoch yields only the rest, in the same order."""
        self._resume = (epoch, used) if used > 0 else None

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=g).tolist()
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1]:]
            self._resume = None
        if self.encode_epoch:
            order = [self.epoch * self.length + i for i in order]
        return iter(order)

    def __len__(self) -> int:
        return self.length
