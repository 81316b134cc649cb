"""From a batch of crops to keypoints in image pixels: flip test and the inverse crop mapping."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rlepose.models.pose_model import TopDownPoseModel


def unflip(keypoints: Tensor, perm: list[int], width: int) -> Tensor:
    """Keypoints predicted on a horizontally mirrored crop → the unmirrored crop.
    Mirroring maps crop pixel u to W − 1 − u, i.e. normalized x to −x − 1/W; joints swap."""
    out = keypoints[:, perm].clone()
    out[..., 0] = -out[..., 0] - 1.0 / width
    return out


@torch.no_grad()
def predict_crops(model: TopDownPoseModel, images: Tensor, flip_perm: list[int] | None = None) -> dict[str, Tensor]:
    """``model.inference`` on (N, 3, H, W) crops, optionally with the flip test: the mirrored
    crop's µ̂ is unmirrored and averaged with the original; σ̂ (regression/integral heads) or
    the heatmap peak confidences are averaged too, and confidences recomputed from them
    (heatmap outputs are averaged after decoding rather than as heatmaps).

    Returns ``keypoints`` (N, K, D) normalized, ``joint_confidence`` (N, K), ``confidence``
    (N,), and ``sigma`` (N, K, D) when the head predicts it.
    """
    if flip_perm is None:
        return model.inference(images)
    # original and mirrored crops in one batch: one pass instead of two (eval-mode BatchNorm
    # makes every crop's output independent of the others)
    both = model.inference(torch.cat([images, images.flip(-1)]))
    n = len(images)
    out = {k: v[:n] for k, v in both.items()}
    flipped = {k: v[n:] for k, v in both.items()}
    keypoints, joint_conf = merge_flip(out["keypoints"], out["joint_confidence"], flipped["keypoints"],
                                       flipped["joint_confidence"], flip_perm, images.shape[-1])
    merged = {"keypoints": keypoints, "joint_confidence": joint_conf, "confidence": joint_conf.mean(-1)}
    if "sigma" in out:  # averaging σ̂ and recomputing 1 − mean σ̂ is the same as averaging confidences
        merged["sigma"] = (out["sigma"] + flipped["sigma"][:, flip_perm]) / 2
    return merged


def merge_flip(keypoints: Tensor, joint_conf: Tensor, keypoints_flipped: Tensor, joint_conf_flipped: Tensor,
               perm: list[int], width: int) -> tuple[Tensor, Tensor]:
    """Average a crop's prediction with its mirrored crop's, unmirrored (see :func:`unflip`)."""
    return ((keypoints + unflip(keypoints_flipped, perm, width)) / 2,
            (joint_conf + joint_conf_flipped[:, perm]) / 2)


def crop_to_image(keypoints: np.ndarray, matrices: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Normalized crop coordinates (N, K, 2) → image pixels, through the inverse of each crop's
    2×3 image→crop matrix (N, 2, 3); ``input_size`` is (H, W)."""
    h, w = input_size
    crop = (np.asarray(keypoints, dtype=np.float64)[..., :2] + 0.5) * np.array([w, h])
    full = np.concatenate([np.asarray(matrices, dtype=np.float64), np.tile([[[0.0, 0.0, 1.0]]], (len(crop), 1, 1))], 1)
    inv = np.linalg.inv(full)[:, :2]
    return np.einsum("nkj,nij->nki", crop, inv[:, :, :2]) + inv[:, None, :, 2]
