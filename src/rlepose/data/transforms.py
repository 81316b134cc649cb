"""The top-down transform: person box → affine crop of the network's input size, with the
usual training augmentation, done as one OpenCV warp for the image and the keypoints together.

Conventions: image points are pixels with pixel centres at integers (OpenCV's); ``input_size``
is (H, W), 256×192 by default; targets are normalized crop coordinates
``(u / W − 0.5, v / H − 0.5)`` as in :mod:`rlepose.models.heads`. A box is (x, y, w, h) in pixels.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from rlepose.data.keypoints import KeypointSpec

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize_images", "TransformConfig", "box_to_center_size", "affine_matrix",
           "apply_affine", "invert_affine", "normalized_to_crop", "crop_to_normalized", "half_body_box",
           "color_jitter", "to_tensor", "crop_boxes", "crop_to_image", "crops_to_tensor", "crops_to_array",
           "TopDownTransform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TransformConfig:
    """Augmentation settings; the defaults are the reference codebases' COCO settings with
    the paper's ±30% scale and ±30° rotation."""

    input_size: tuple[int, int] = (256, 192)  # (H, W)
    padding: float = 1.25
    scale_factor: float = 0.3
    rotation_factor: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    color_jitter: float = 0.2
    keep_outside: bool = True  # keypoints outside the crop stay targets (regression can predict them)


def box_to_center_size(box: np.ndarray, aspect_ratio: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Box (x, y, w, h) → centre (2,) and size (w, h) widened to ``aspect_ratio`` = W/H of the
    input and multiplied by ``padding``, all in pixels."""
    x, y, w, h = (float(v) for v in box)
    center = np.array([x + w * 0.5, y + h * 0.5])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * padding


def affine_matrix(center: np.ndarray, size: np.ndarray, rotation: float, output_size: tuple[int, int],
                  flip_width: int | None = None) -> np.ndarray:
    """2×3 matrix taking image pixels to crop pixels.

    The box of ``size`` (w, h) around ``center`` fills the output (H, W); the content turns by
    ``rotation`` degrees counter-clockwise as displayed (OpenCV's sense). With ``flip_width``
    the image is first mirrored, x → flip_width − 1 − x (``center`` is given unflipped).
    """
    out_h, out_w = output_size
    flip = np.eye(3)
    cx, cy = float(center[0]), float(center[1])
    if flip_width is not None:
        flip = np.array([[-1.0, 0.0, flip_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        cx = flip_width - 1.0 - cx
    a = np.deg2rad(rotation)
    rot = np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    to_origin = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    scale = np.diag([out_w / float(size[0]), out_h / float(size[1]), 1.0])
    to_output = np.array([[1.0, 0.0, out_w * 0.5], [0.0, 1.0, out_h * 0.5], [0.0, 0.0, 1.0]])
    return (to_output @ scale @ rot @ to_origin @ flip)[:2]


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(…, 2) points through a 2×3 matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def normalized_to_crop(keypoints: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Normalized crop coordinates (…, 2) → crop pixels."""
    h, w = input_size
    return (keypoints + 0.5) * np.array([w, h], dtype=np.float64)


def crop_to_normalized(points: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    h, w = input_size
    return points / np.array([w, h], dtype=np.float64) - 0.5


def half_body_box(keypoints: np.ndarray, visible: np.ndarray, spec: KeypointSpec, aspect_ratio: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and size of a box around the visible upper- or lower-body joints (each half chosen
    with probability ½ when it has ≥ 2 visible joints), enlarged 1.5× as in the reference code."""
    upper = [j for j in spec.upper_body if visible[j]]
    lower = [j for j in range(spec.num_joints) if j not in spec.upper_body and visible[j]]
    chosen = upper if (rng.random() < 0.5 and len(upper) > 2) else lower
    if len(chosen) < 2:
        chosen = upper
    if len(chosen) < 2:
        return None
    pts = keypoints[chosen]
    lo, hi = pts.min(0), pts.max(0)
    center = (lo + hi) / 2
    w, h = hi - lo
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w, h]) * 1.5


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness b, contrast c and saturation s, each a factor in [1 − s, 1 + s]:
    ``x·b``, then contrast about the crop's mean, then saturation about each pixel's gray
    (channel mean). The three steps compose to one affine map per pixel,
    ``s·c·b·x + (1 − s)·c·b·gray(x) + (1 − c)·b·mean(x)``, applied in one OpenCV pass, clipped
    to [0, 255] and truncated to uint8."""
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    mean = float(np.mean(cv2.mean(image)[:3]))
    alpha, beta = s * c * b, (1 - s) * c * b / 3
    # cv2.transform rounds to nearest: −0.5 makes that the truncation of the affine value
    matrix = np.full((3, 4), beta)
    matrix[:, :3] += np.eye(3) * alpha
    matrix[:, 3] = (1 - c) * b * mean - 0.5
    return cv2.transform(image, matrix)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 crops (N, 3, H, W) → float, ImageNet mean/std normalized, on their device (the same
    arithmetic as :func:`to_tensor`); float crops are returned as they are."""
    if images.dtype != torch.uint8:
        return images
    mean, std = _normalization(images.device)
    return (images.float().div_(255.0) - mean) / std


@functools.lru_cache(maxsize=None)
def _normalization(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std (1, 3, 1, 1) on ``device``, made once (not copied to it every step)."""
    return (torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
            torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float (3, H, W), ImageNet mean/std normalized."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


_MEAN_255 = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
_STD_255 = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0


def crop_boxes(image: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int],
               padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Inference crops of every box, as :class:`TopDownTransform` makes them without augmentation.

    Args:
        image: RGB uint8 (H, W, 3).
        boxes: (M, 4) as (x, y, w, h) pixels.
        input_size: (H, W) of the crops.
    Returns:
        crops uint8 (M, H, W, 3) and matrices (M, 2, 3) float64 (image → crop pixels).
    """
    out_h, out_w = input_size
    crops = np.empty((len(boxes), out_h, out_w, 3), np.uint8)
    matrices = np.empty((len(boxes), 2, 3))
    for i, box in enumerate(np.asarray(boxes, float)):
        center, size = box_to_center_size(box, out_w / out_h, padding)
        matrices[i] = affine_matrix(center, size, 0.0, input_size)
        cv2.warpAffine(image, matrices[i], (out_w, out_h), dst=crops[i], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crops, matrices


def crop_to_image(keypoints: np.ndarray, matrices: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Normalized crop coordinates (N, K, 2) → image pixels, through the inverse of each crop's
    2×3 image→crop matrix (N, 2, 3); ``input_size`` is (H, W)."""
    h, w = input_size
    crop = (np.asarray(keypoints, dtype=np.float64)[..., :2] + 0.5) * np.array([w, h])
    full = np.concatenate([np.asarray(matrices, dtype=np.float64), np.tile([[[0.0, 0.0, 1.0]]], (len(crop), 1, 1))], 1)
    inv = np.linalg.inv(full)[:, :2]
    return np.einsum("nkj,nij->nki", crop, inv[:, :, :2]) + inv[:, None, :, 2]


def crops_to_tensor(crops: np.ndarray) -> torch.Tensor:
    """RGB uint8 (N, H, W, 3) → float (N, 3, H, W), ImageNet mean/std normalized as
    :func:`to_tensor`, in one operation for the whole batch (channels-last in memory)."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    return (x - _MEAN_255) / _STD_255


_MEAN_255_NP = _MEAN_255.numpy().astype(np.float32)
_STD_255_NP = _STD_255.numpy().astype(np.float32)


def crops_to_array(crops: np.ndarray) -> np.ndarray:
    """:func:`crops_to_tensor` in NumPy: float32 (N, 3, H, W), C-contiguous. For backends that
    take arrays (ONNX Runtime): no torch thread pool runs, so none competes with theirs."""
    x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    x -= _MEAN_255_NP
    x /= _STD_255_NP
    return x


class TopDownTransform:
    """Callable: (image RGB uint8, box, keypoints, visibility) → network sample.

    Returns a dict with ``image`` (3, H, W) float tensor (uint8 with ``uint8``, to be normalized
    on the device by :func:`normalize_images`; ``bgr``: the input image is OpenCV's BGR), ``target`` (K, 2) normalized crop
    coordinates, ``target_weight`` (K,) (visibility > 0; 0 outside the crop when
    ``keep_outside`` is off), and ``center``, ``size`` (pixels), ``rotation`` (degrees),
    ``flipped`` (bool) and ``matrix`` (2×3, image → crop pixels) to map predictions back.
    """

    def __init__(self, cfg: TransformConfig, spec: KeypointSpec, train: bool, uint8: bool = False) -> None:
        self.cfg, self.spec, self.train, self.uint8 = cfg, spec, train, uint8
        self.aspect_ratio = cfg.input_size[1] / cfg.input_size[0]
        self._perm = spec.flip_permutation()

    def __call__(self, image: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None = None,
                 visible: np.ndarray | None = None, rng: np.random.Generator | None = None,
                 bgr: bool = False) -> dict:
        cfg, k = self.cfg, self.spec.num_joints
        keypoints = np.zeros((k, 2)) if keypoints is None else np.asarray(keypoints, dtype=np.float64)
        visible = np.zeros(k) if visible is None else np.asarray(visible, dtype=np.float64)
        center, size = box_to_center_size(box, self.aspect_ratio, cfg.padding)
        rotation, flip_width = 0.0, None
        if self.train:
            rng = rng if rng is not None else np.random.default_rng()
            if (cfg.half_body_prob > 0 and (visible > 0).sum() > cfg.half_body_min_joints
                    and rng.random() < cfg.half_body_prob):
                half = half_body_box(keypoints, visible > 0, self.spec, self.aspect_ratio, rng)
                if half is not None:
                    center, size = half
            size = size * float(np.clip(rng.normal() * cfg.scale_factor + 1, 1 - cfg.scale_factor,
                                        1 + cfg.scale_factor))
            if rng.random() < cfg.rotation_prob:
                rotation = float(rng.uniform(-cfg.rotation_factor, cfg.rotation_factor))
            if self.spec.flip_pairs and rng.random() < cfg.flip_prob:
                flip_width = image.shape[1]
        matrix = affine_matrix(center, size, rotation, cfg.input_size, flip_width)
        out_h, out_w = cfg.input_size
        crop = cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if bgr:  # the warp is per channel: converting the crop is the same as converting the image
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        if self.train and cfg.color_jitter > 0:  # on the crop: a fraction of the image's pixels
            crop = color_jitter(crop, cfg.color_jitter, rng)
        points = apply_affine(keypoints, matrix)
        weight = (visible > 0).astype(np.float32)
        if flip_width is not None:
            points, weight = points[self._perm], weight[self._perm]
        if not cfg.keep_outside:
            inside = (points[:, 0] >= 0) & (points[:, 0] <= out_w - 1) & (points[:, 1] >= 0) & (points[:, 1] <= out_h - 1)
            weight = weight * inside
        image_out = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))) if self.uint8 else to_tensor(crop)
        return {"image": image_out,
                "target": torch.from_numpy(crop_to_normalized(points, cfg.input_size)).float(),
                "target_weight": torch.from_numpy(weight).float(),
                "center": torch.from_numpy(center).float(), "size": torch.from_numpy(np.asarray(size)).float(),
                "rotation": rotation, "flipped": flip_width is not None,
                "matrix": torch.from_numpy(matrix)}  # float64: exact inverse mapping
