"""Whole images with all their people, for the one-stage model: COCO-format keypoint files in,
letterboxed images with every person's box and keypoints out.

An image is scaled to fit the network's input (H, W) and centred (the rest is black); training
adds a random scale (``transform.scale_factor``), shift (``one_stage.translate``), horizontal flip
(``transform.flip_prob``, left and right joints swapped) and colour jitter (``transform.color_jitter``),
all in one affine warp of the image and its points. Non-crowd people (with or without labelled
keypoints) are the targets; crowd regions (``iscrowd=1``, by their boxes) are ignored by the loss.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from rlepose.data.datasets import DataError, _load_json, load_coco_instances
from rlepose.data.io import read_image
from rlepose.data.keypoints import KeypointSpec
from rlepose.data.transforms import affine_matrix, apply_affine, box_to_center_size, color_jitter

__all__ = ["ImagePeople", "load_coco_images", "letterbox_matrix", "WholeImageTransform", "WholeImageDataset",
           "collate_people"]

log = logging.getLogger(__name__)


@dataclass
class ImagePeople:
    """One image: ``boxes`` (M, 4) (x, y, w, h), ``keypoints`` (M, K, 2) and ``visible`` (M, K)
    of its non-crowd people, ``crowd`` (C, 4) (x, y, w, h) crowd regions; image pixels."""

    image_path: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    crowd: np.ndarray


def load_coco_images(ann_file: str | Path, image_root: str | Path, spec: KeypointSpec,
                     on_error: str = "raise") -> list[ImagePeople]:
    """Every image of a COCO keypoints file with its people (the records checked as
    :func:`rlepose.data.datasets.load_coco_instances` checks them; people without labelled
    keypoints included) and its crowd regions. Images without people stay (negatives)."""
    ann_file, image_root = Path(ann_file), Path(image_root)
    people = load_coco_instances(ann_file, image_root, spec, min_keypoints=0, on_error=on_error)
    data = _load_json(ann_file)
    category = next(c["id"] for c in data["categories"] if c.get("keypoints"))
    by_image: dict[int, list] = {}
    for inst in people:
        by_image.setdefault(inst.image_id, []).append(inst)
    crowd: dict[int, list] = {}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0) and ann.get("category_id") == category and len(ann.get("bbox") or []) == 4:
            crowd.setdefault(ann["image_id"], []).append(ann["bbox"])
    k = spec.num_joints
    out = []
    for img in data["images"]:
        if "width" not in img or "height" not in img:
            raise DataError(f"{ann_file}: image {img.get('id')} has no width/height")
        mine = by_image.get(img["id"], [])
        out.append(ImagePeople(
            image_root / img["file_name"], img["id"], int(img["width"]), int(img["height"]),
            np.array([i.box for i in mine], float).reshape(-1, 4),
            np.array([i.keypoints for i in mine], float).reshape(-1, k, 2),
            np.array([i.visible for i in mine], float).reshape(-1, k),
            np.array(crowd.get(img["id"], []), float).reshape(-1, 4)))
    return out


def letterbox_matrix(width: int, height: int, input_size: tuple[int, int]) -> np.ndarray:
    """2×3 matrix taking a ``width`` × ``height`` image to the input (H, W): scaled to fit whole,
    centred (the inference warp; :func:`rlepose.data.transforms.crop_boxes` with the whole image
    as the box and no padding makes the same)."""
    center, size = box_to_center_size(np.array([0.0, 0.0, width, height]), input_size[1] / input_size[0], 1.0)
    return affine_matrix(center, size, 0.0, input_size)


def _corners_to_xyxy(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(M, 4) (x, y, w, h) boxes through an affine ``matrix`` → (M, 4) (x1, y1, x2, y2) around
    their four transformed corners."""
    x, y, w, h = boxes.T
    corners = np.stack([np.stack([x, y], -1), np.stack([x + w, y], -1), np.stack([x, y + h], -1),
                        np.stack([x + w, y + h], -1)], 1)
    pts = apply_affine(corners, matrix)
    return np.concatenate([pts.min(1), pts.max(1)], -1)


class WholeImageTransform:
    """(image, :class:`ImagePeople`) → the network's sample (module docstring); the image stays
    uint8 (normalized on the device by :func:`normalize_images`)."""

    def __init__(self, input_size: tuple[int, int], spec: KeypointSpec, train: bool, scale_factor: float = 0.3,
                 translate: float = 0.1, flip_prob: float = 0.5, color_jitter: float = 0.2) -> None:
        self.input_size, self.spec, self.train = tuple(input_size), spec, train
        self.scale_factor, self.translate, self.flip_prob, self.jitter = scale_factor, translate, flip_prob, color_jitter
        self._perm = spec.flip_permutation()

    def __call__(self, image: np.ndarray, people: ImagePeople, rng: np.random.Generator | None = None,
                 bgr: bool = False) -> dict:
        h, w = image.shape[:2]
        out_h, out_w = self.input_size
        center, size = box_to_center_size(np.array([0.0, 0.0, w, h]), out_w / out_h, 1.0)
        flip_width = None
        if self.train:
            rng = rng if rng is not None else np.random.default_rng()
            size = size * rng.uniform(1 - self.scale_factor, 1 + self.scale_factor)
            center = center + rng.uniform(-self.translate, self.translate, 2) * size
            if self.spec.flip_pairs and rng.random() < self.flip_prob:
                flip_width = w
        matrix = affine_matrix(center, size, 0.0, self.input_size, flip_width)
        warped = cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(0, 0, 0))
        if bgr:
            warped = cv2.cvtColor(warped, cv2.COLOR_BGR2RGB)
        if self.train and self.jitter > 0:
            warped = color_jitter(warped, self.jitter, rng)
        boxes = _corners_to_xyxy(people.boxes, matrix)
        keypoints = apply_affine(people.keypoints, matrix)
        weight = (people.visible > 0).astype(np.float32)
        if flip_width is not None:
            keypoints, weight = keypoints[:, self._perm], weight[:, self._perm]
        clipped = np.clip(boxes, 0, [out_w - 1, out_h - 1, out_w - 1, out_h - 1])
        keep = (clipped[:, 2] - clipped[:, 0] >= 2) & (clipped[:, 3] - clipped[:, 1] >= 2)  # still in view
        crowd = np.clip(_corners_to_xyxy(people.crowd, matrix), 0, [out_w - 1, out_h - 1, out_w - 1, out_h - 1])
        return {"image": torch.from_numpy(np.ascontiguousarray(warped.transpose(2, 0, 1))), "boxes": torch.from_numpy(clipped[keep]).float(),
                "keypoints": torch.from_numpy(keypoints[keep]).float(),
                "keypoint_weight": torch.from_numpy(weight[keep]).float(),
                "crowd": torch.from_numpy(crowd).float(), "matrix": torch.from_numpy(matrix)}


class WholeImageDataset(Dataset):
    """Images of :func:`load_coco_images` through a :class:`WholeImageTransform`; items add
    ``index`` and ``image_id``. The augmentation of a sample depends on (seed, epoch, index)
    alone (``index`` may be ``epoch · len + index``, see :class:`SeededShuffleSampler`)."""

    def __init__(self, images: list[ImagePeople], transform: WholeImageTransform, seed: int | None = None,
                 on_error: str = "raise") -> None:
        self.images, self.transform, self.seed, self.on_error = images, transform, seed, on_error

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict | None:
        epoch, index = divmod(int(index), len(self.images))
        people = self.images[index]
        try:
            image = read_image(people.image_path, str(people.image_id), bgr=True)
        except DataError:
            if self.on_error == "skip":
                log.warning("skipping unreadable image %s", people.image_path)
                return None
            raise
        rng = np.random.default_rng([self.seed, epoch, index]) if self.seed is not None else None
        sample = self.transform(image, people, rng, bgr=True)
        sample.update(index=index, image_id=people.image_id)
        return sample


def collate_people(batch: list[dict | None]) -> dict | None:
    """Samples → a batch: ``image`` (N, 3, H, W), ``matrix`` (N, 2, 3), ``index``, ``image_id``
    (N,); people padded to the most in the batch, valid ones first: ``boxes`` (N, M, 4),
    ``keypoints`` (N, M, K, 2), ``keypoint_weight`` (N, M, K), ``person_mask`` (N, M) bool; crowd
    regions likewise (``crowd`` (N, C, 4), ``crowd_mask``). Unreadable samples (None) are dropped."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    n = len(batch)
    m = max(1, max(len(b["boxes"]) for b in batch))
    c = max(1, max(len(b["crowd"]) for b in batch))
    k = batch[0]["keypoints"].shape[1]  # (M, K, 2), also when M = 0
    out = {"image": torch.stack([b["image"] for b in batch]), "matrix": torch.stack([b["matrix"] for b in batch]),
           "index": torch.tensor([b["index"] for b in batch]), "image_id": torch.tensor([b["image_id"] for b in batch]),
           "boxes": torch.zeros(n, m, 4), "keypoints": torch.zeros(n, m, k, 2), "keypoint_weight": torch.zeros(n, m, k),
           "person_mask": torch.zeros(n, m, dtype=torch.bool), "crowd": torch.zeros(n, c, 4),
           "crowd_mask": torch.zeros(n, c, dtype=torch.bool)}
    for i, b in enumerate(batch):
        p, q = len(b["boxes"]), len(b["crowd"])
        out["boxes"][i, :p], out["person_mask"][i, :p] = b["boxes"], True
        if p:
            out["keypoints"][i, :p], out["keypoint_weight"][i, :p] = b["keypoints"], b["keypoint_weight"]
        out["crowd"][i, :q], out["crowd_mask"][i, :q] = b["crowd"], True
    return out
