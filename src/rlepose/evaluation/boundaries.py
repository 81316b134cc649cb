"""Layer-boundary errors of OCT B-scans, the standard metric of boundary segmentation: the mean
absolute difference, in pixels, between predicted and labelled depth over every labelled column,
per boundary and over all (and in µm where the axial pixel size is known)."""
from __future__ import annotations

import numpy as np

from rlepose.data.oct import BOUNDARIES, BScan, column_centres, pixel_depth

__all__ = ["depths_at_columns", "boundary_errors", "BoundaryEvaluator"]


def depths_at_columns(depths: np.ndarray, width: int) -> np.ndarray:
    """Depths (B, C) at the centres of C equal output columns → every one of ``width`` image
    columns (B, width), linearly interpolated (and extrapolated from the two outer centres
    beyond them)."""
    x = (column_centres(depths.shape[1]) + 0.5) * width - 0.5
    columns = np.arange(width, dtype=np.float64)
    out = np.stack([np.interp(columns, x, d) for d in depths])
    if depths.shape[1] > 1:
        left, right = columns < x[0], columns > x[-1]
        slope_l = (depths[:, 1] - depths[:, 0]) / (x[1] - x[0])
        slope_r = (depths[:, -1] - depths[:, -2]) / (x[-1] - x[-2])
        out[:, left] = depths[:, :1] + slope_l[:, None] * (columns[left] - x[0])
        out[:, right] = depths[:, -1:] + slope_r[:, None] * (columns[right] - x[-1])
    return out


def boundary_errors(predicted: list[np.ndarray], labelled: list[np.ndarray],
                    names: tuple[str, ...] = BOUNDARIES) -> dict[str, float]:
    """``predicted[i]``, ``labelled[i]``: (B, W) depths in pixels of B-scan i (labels NaN where
    unlabelled). ``mean_abs_error_px`` over every labelled (boundary, column) and
    ``error_px/<name>`` per boundary."""
    diff = np.concatenate([np.abs(p - t) for p, t in zip(predicted, labelled)], axis=1)  # (B, ΣW)
    labelled_mask = np.isfinite(diff)
    out = {"mean_abs_error_px": float(diff[labelled_mask].mean()) if labelled_mask.any() else float("nan")}
    for k, name in enumerate(names[:diff.shape[0]]):
        row = diff[k][labelled_mask[k]]
        out[f"error_px/{name}"] = float(row.mean()) if row.size else float("nan")
    return out


class BoundaryEvaluator:
    """Scores a boundary model's normalized predictions (N, B, C) against the held-out scans'
    labels at every labelled column of the original images; also the two experts' disagreement
    (where the files have both) and the Pearson correlation of σ̂ with the error."""

    main_metric = "mean_abs_error_px"
    mode = "min"

    def __init__(self, scans: list[BScan]) -> None:
        self.scans = scans

    def predictions_in_pixels(self, index: np.ndarray, depths: np.ndarray) -> list[np.ndarray]:
        """Normalized depths (N, B, C) of scans ``index`` → (B, W) pixels of each scan's image."""
        out = []
        for i, d in zip(index, depths):
            h, w = self.scans[i].image.shape
            out.append(depths_at_columns(pixel_depth(d, h), w))
        return out

    def __call__(self, index: np.ndarray, depths: np.ndarray, sigma: np.ndarray) -> tuple[dict[str, float], list[dict]]:
        predicted = self.predictions_in_pixels(index, depths)
        labels = [self.scans[i].depths for i in index]
        metrics = boundary_errors(predicted, labels)
        size = self.scans[index[0]].pixel_size_um if len(index) else None
        if size:
            metrics["mean_abs_error_um"] = metrics["mean_abs_error_px"] * size
        second = [self.scans[i].second for i in index]
        if all(s is not None for s in second):
            metrics["expert_disagreement_px"] = boundary_errors(second, labels)["mean_abs_error_px"]
        sig = [depths_at_columns(s * self.scans[i].image.shape[0], self.scans[i].image.shape[1])
               for i, s in zip(index, sigma)]
        err = np.concatenate([np.abs(p - t).ravel() for p, t in zip(predicted, labels)])
        sig_flat = np.concatenate([s.ravel() for s in sig])
        ok = np.isfinite(err)
        metrics["sigma_error_pearson"] = float(np.corrcoef(sig_flat[ok], err[ok])[0, 1]) if ok.sum() > 2 else float("nan")
        results = [{"subject": self.scans[i].subject, "scan": int(self.scans[i].index),
                    "depths_px": p.round(3).tolist(), "sigma_px": s.round(3).tolist()}
                   for i, p, s in zip(index, predicted, sig)]
        return metrics, results
