"""Truncation (the appendix's Fig. 5): person boxes cut from below at stated fractions of their
height, and how well the joints that fall outside the crop are still placed.

Regression predicts coordinates, so it can place a joint outside the crop; a heatmap's argmax
cannot leave its map. For each cut, every held-out person is cropped from the cut box as at
evaluation (the box widened to the input's aspect ratio and by the padding), the model runs
without flip, and its keypoints are mapped back to image pixels. PCK is the fraction of labelled
joints within ``alpha`` × the longer side of the *uncut* box, separately for joints whose label
lies inside the crop and outside it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlepose.data.datasets import read_image
from rlepose.data.transforms import TopDownTransform
from rlepose.data.transforms import crop_to_image
from rlepose.files import write_json

__all__ = ["FRACTIONS", "cut_box", "pck_inside_outside", "truncation_table", "plot_truncation",
           "analyze_truncation"]

FRACTIONS = (0.0, 0.2, 0.3, 0.4)


def cut_box(box: np.ndarray, fraction: float) -> np.ndarray:
    """(x, y, w, h) with its bottom ``fraction`` of the height removed."""
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, w, h * (1 - fraction)])


def pck_inside_outside(pred_px: np.ndarray, target_px: np.ndarray, labelled: np.ndarray, inside: np.ndarray,
                       threshold_px: np.ndarray) -> dict:
    """PCK over labelled joints, split by ``inside`` the crop: ``{"inside": (pck, n), "outside": (pck, n)}``."""
    hit = np.linalg.norm(pred_px - target_px, axis=-1) <= threshold_px[:, None]
    out = {}
    for name, mask in (("inside", labelled & inside), ("outside", labelled & ~inside)):
        n = int(mask.sum())
        out[name] = {"pck": float(hit[mask].mean()) if n else float("nan"), "n": n}
    return out


@torch.no_grad()
def truncation_table(model, instances, transform: TopDownTransform, fractions=FRACTIONS, alpha: float = 0.1,
                     batch_size: int = 64) -> list[dict]:
    """One row per cut fraction: PCK@``alpha`` inside and outside the crop (see module docstring)."""
    h, w = transform.cfg.input_size
    images = {}
    rows = []
    for fraction in fractions:
        crops, matrices, targets, labelled, inside, thresholds = [], [], [], [], [], []
        for inst in instances:
            if inst.image_path not in images:
                images[inst.image_path] = read_image(inst.image_path)
            sample = transform(images[inst.image_path], cut_box(inst.box, fraction), inst.keypoints, inst.visible)
            crops.append(sample["image"])
            matrices.append(sample["matrix"].numpy())
            norm = sample["target"].numpy()
            inside.append((np.abs(norm[:, 0]) <= 0.5) & (np.abs(norm[:, 1]) <= 0.5))
            targets.append(inst.keypoints)
            labelled.append(inst.visible > 0)
            thresholds.append(alpha * max(inst.box[2], inst.box[3]))
        keypoints = []
        for i in range(0, len(crops), batch_size):
            keypoints.append(model.inference(torch.stack(crops[i : i + batch_size]))["keypoints"][..., :2].float().numpy())
        pred_px = crop_to_image(np.concatenate(keypoints), np.stack(matrices), (h, w))
        stats = pck_inside_outside(pred_px, np.stack(targets), np.stack(labelled), np.stack(inside), np.array(thresholds))
        rows.append({"fraction": fraction, **stats})
    return rows


def plot_truncation(tables: dict[str, list[dict]], out_file: Path, alpha: float, title: str = "") -> Path:
    from rlepose.analysis.figures import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (name, rows), color in zip(tables.items(), ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        fr = [100 * r["fraction"] for r in rows]
        ax.plot(fr, [100 * r["inside"]["pck"] for r in rows], "o-", color=color, label=f"{name}: joints inside the crop")
        ax.plot(fr, [100 * r["outside"]["pck"] for r in rows], "s--", color=color, label=f"{name}: joints outside the crop")
    ax.set(xlabel="box cut from below (% of the person's height)", ylabel=f"PCK@{alpha} of the box (%)",
           title=title or "truncation: joints the crop no longer shows", ylim=(0, 102))
    ax.legend(fontsize=8)
    return save_figure(fig, out_file)


def analyze_truncation(modules: dict, cfg, out_dir: str | Path, fractions=FRACTIONS, alpha: float = 0.1) -> dict:
    """Truncation rows for each ``{name: module}`` on ``cfg``'s validation people; writes
    ``truncation.png`` and ``truncation.json``."""
    from rlepose.config import keypoint_spec
    from rlepose.training.run import load_split

    spec = keypoint_spec(cfg)
    instances, _ = load_split(cfg, spec, "val")
    transform = TopDownTransform(cfg.transform, spec, train=False)
    tables = {name: truncation_table(m.model.eval(), instances, transform, fractions, alpha) for name, m in modules.items()}
    out_dir = Path(out_dir)
    png = plot_truncation(tables, out_dir / "truncation.png", alpha)
    summary = {"alpha": alpha, "fractions": list(fractions), "tables": tables, "people": len(instances), "png": str(png)}
    write_json(out_dir / "truncation.json", summary, indent=1)
    return summary
