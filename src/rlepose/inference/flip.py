"""The flip test: a crop and its mirror image in one batch, the mirror's prediction unmirrored
and averaged with the original's (the test every pose paper evaluates with)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["unflip", "merge_flip", "with_flip", "predict_crops"]


def unflip(keypoints: Tensor, perm: list[int], width: int) -> Tensor:
    """Keypoints predicted on a horizontally mirrored crop → the unmirrored crop.
    Mirroring maps crop pixel u to W − 1 − u, i.e. normalized x to −x − 1/W; joints swap."""
    out = keypoints[:, perm].clone()
    out[..., 0] = -out[..., 0] - 1.0 / width
    return out


def merge_flip(keypoints: Tensor, joint_conf: Tensor, keypoints_flipped: Tensor, joint_conf_flipped: Tensor,
               perm: list[int], width: int) -> tuple[Tensor, Tensor]:
    """Average a crop's prediction with its mirrored crop's, unmirrored (see :func:`unflip`)."""
    return ((keypoints + unflip(keypoints_flipped, perm, width)) / 2,
            (joint_conf + joint_conf_flipped[:, perm]) / 2)


def with_flip(run: Callable, images: Tensor | np.ndarray, perm: list[int]) -> dict[str, Tensor]:
    """``run`` (crops (N, 3, H, W) → dict with ``keypoints`` (N, K, D) normalized,
    ``joint_confidence`` (N, K), optionally ``sigma`` (N, K, D)) on the crops and their mirror
    images in one batch (eval-mode BatchNorm keeps every crop's output independent of the
    others), merged: keypoints and confidences averaged, σ̂ too when given. A NumPy batch is
    mirrored and joined in NumPy (for ONNX Runtime)."""
    if isinstance(images, np.ndarray):
        both = np.concatenate([images, images[..., ::-1]])
    else:
        both = torch.cat([images, images.flip(-1)])
    out = run(both)
    n = len(images)
    keypoints, joint_conf = merge_flip(out["keypoints"][:n], out["joint_confidence"][:n], out["keypoints"][n:],
                                       out["joint_confidence"][n:], perm, images.shape[-1])
    merged = {"keypoints": keypoints, "joint_confidence": joint_conf, "confidence": joint_conf.mean(-1)}
    if "sigma" in out:  # averaging σ̂ and recomputing 1 − mean σ̂ is the same as averaging confidences
        merged["sigma"] = (out["sigma"][:n] + out["sigma"][n:][:, perm]) / 2
    return merged


@torch.no_grad()
def predict_crops(model, images: Tensor, flip_perm: list[int] | None = None) -> dict[str, Tensor]:
    """``model.inference`` on (N, 3, H, W) crops, with the flip test when ``flip_perm`` is given
    (heatmap outputs are averaged after decoding rather than as heatmaps).

    Returns ``keypoints`` (N, K, D) normalized, ``joint_confidence`` (N, K), ``confidence``
    (N,), and ``sigma`` (N, K, D) when the head predicts it.
    """
    if flip_perm is None:
        return model.inference(images)
    return with_flip(model.inference, images, flip_perm)
