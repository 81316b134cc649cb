"""MPII PCKh (appendix B): a joint is correct when its distance to the label is at most
α × head size. PCKh@0.5, PCKh@0.1, and AUC = mean PCKh over α ∈ {0, 0.01, …, 0.5} (the area
under the PCKh curve on [0, 0.5], normalized to 1). The mean over joints weighs joints by their
number of labelled instances and, as MPII's official script, leaves out pelvis and thorax."""
from __future__ import annotations

import numpy as np

__all__ = ["MPII_MEAN_EXCLUDES", "pckh"]

MPII_MEAN_EXCLUDES = (6, 7)  # pelvis, thorax


def pckh(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray,
         thresholds: tuple[float, ...] = (0.5, 0.1), exclude: tuple[int, ...] = MPII_MEAN_EXCLUDES,
         auc_max: float = 0.5, auc_steps: int = 51) -> dict:
    """Args: ``pred``, ``gt`` (N, K, 2) pixels, ``visible`` (N, K), ``head_size`` (N,) pixels.

    Returns ``{"PCKh@α": mean, "PCKh@α/joint": (K,) list, "AUC": mean, "AUC/joint": list}``
    (fractions in [0, 1]; NaN for a joint never labelled).
    """
    dist = np.linalg.norm(pred - gt, axis=-1) / head_size[:, None]
    vis = visible > 0
    count = vis.sum(0)
    keep = np.ones(gt.shape[1], dtype=bool)
    keep[list(exclude)] = False
    keep &= count > 0

    def at(alpha: float) -> tuple[np.ndarray, float]:
        hit = ((dist <= alpha) & vis).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_joint = hit / count
        return per_joint, float(hit[keep].sum() / max(count[keep].sum(), 1))

    out: dict = {}
    for alpha in thresholds:
        per_joint, mean = at(alpha)
        out[f"PCKh@{alpha}"] = mean
        out[f"PCKh@{alpha}/joint"] = per_joint.tolist()
    curve = [at(a) for a in np.linspace(0.0, auc_max, auc_steps)]
    out["AUC"] = float(np.mean([m for _, m in curve]))
    out["AUC/joint"] = np.mean([pj for pj, _ in curve], axis=0).tolist()
    return out
