"""3-D pose metrics (Human3.6M protocols #1 and #2), in the unit of the inputs (mm here)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

__all__ = ["mpjpe", "root_relative", "procrustes_align", "pa_mpjpe", "per_action_table"]


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Protocol #1: mean per-joint Euclidean error of (N, K, 3) poses → (N,). Poses are
    compared as given: make them root-relative first (see :func:`root_relative`)."""
    return np.linalg.norm(pred - gt, axis=-1).mean(-1)


def root_relative(poses: np.ndarray, root: int = 0) -> np.ndarray:
    return poses - poses[:, root : root + 1]


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The similarity transform (rotation, uniform scale, translation) of each ``pred`` (N, K, 3)
    that best fits ``gt`` in least squares (Umeyama), applied to ``pred``; reflections excluded."""
    mu_p, mu_g = pred.mean(1, keepdims=True), gt.mean(1, keepdims=True)
    p, g = pred - mu_p, gt - mu_g
    cov = np.einsum("nki,nkj->nij", g, p)  # (N, 3, 3): Σ g pᵀ
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(s)
    fix[:, -1] = d
    rot = u @ (fix[:, :, None] * vt)  # U diag(1, 1, d) Vᵀ
    spread = (p**2).sum((1, 2))
    # a prediction collapsed to one point fits best as the ground truth's centroid (scale 0)
    scale = np.divide((s * fix).sum(-1), spread, out=np.zeros_like(spread), where=spread > 0)
    return scale[:, None, None] * np.einsum("nij,nkj->nki", rot, p) + mu_g


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Protocol #2: MPJPE after Procrustes alignment with scale → (N,)."""
    return mpjpe(procrustes_align(pred, gt), gt)


def per_action_table(pred: np.ndarray, gt: np.ndarray, actions: list[str]) -> dict[str, dict[str, float]]:
    """{action: {"MPJPE", "PA-MPJPE", "n"}} on root-relative poses, plus "Average": the mean over
    actions (the usual H36M table), and "All": the mean over all poses."""
    pred, gt = root_relative(pred), root_relative(gt)
    e1, e2 = mpjpe(pred, gt), pa_mpjpe(pred, gt)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(actions):
        groups[a].append(i)
    table = {a: {"MPJPE": float(e1[idx].mean()), "PA-MPJPE": float(e2[idx].mean()), "n": len(idx)}
             for a, idx in sorted(groups.items())}
    table["Average"] = {"MPJPE": float(np.mean([t["MPJPE"] for t in table.values()])),
                        "PA-MPJPE": float(np.mean([t["PA-MPJPE"] for t in table.values()])),
                        "n": len(actions)}
    table["All"] = {"MPJPE": float(e1.mean()), "PA-MPJPE": float(e2.mean()), "n": len(actions)}
    return table
