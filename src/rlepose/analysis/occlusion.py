"""Occlusion sensitivity (the appendix's Tables 15/16, after PARE): a gray square over one joint
at a time, and what it does to every joint's error and uncertainty.

For each held-out crop and each labelled joint j inside it, the crop is copied with a gray
square (pixel value 128, side ``size`` × the person box's height in the crop) centred on j's
label, and the model runs on it. Row j of the K×K tables is the mean change, over the crops where
j was occluded, of joint k's error |µ̂ − µg| (pixels of the network input) and of its uncertainty:
mean σ̂ (input pixels) for regression and integral heads, one minus the heatmap peak for heatmap
heads (both grow when the model is less sure). The diagonal is the occluded joint itself.

Separately, on data that knows where it is occluded (the embedded dataset marks joints under its
occluders v = 1), the uncertainty of occluded against visible joints, as the mean over joints of
the ratio for the same joint (joints with at least 5 of each).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from rlepose.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rlepose.files import write_json

__all__ = ["GRAY", "gray_value", "occlude", "occlusion_tables", "plot_occlusion", "analyze_occlusion"]

GRAY = 128


def gray_value() -> torch.Tensor:
    """Pixel value 128 in the network's normalized units, (3, 1, 1)."""
    return ((GRAY / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).view(3, 1, 1)


def occlude(images: torch.Tensor, centres_px: torch.Tensor, side_px: torch.Tensor) -> torch.Tensor:
    """Copies of (N, 3, H, W) normalized crops with a gray square of side ``side_px`` (N,) around
    ``centres_px`` (N, 2) (x, y input pixels) each."""
    n, _, h, w = images.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    half = (side_px / 2).view(n, 1, 1)
    inside = ((xs - centres_px[:, 0].view(n, 1, 1)).abs() <= half) & ((ys - centres_px[:, 1].view(n, 1, 1)).abs() <= half)
    return torch.where(inside[:, None], gray_value().to(images.dtype), images)


@torch.no_grad()
def _uncertainty(model, images: torch.Tensor, input_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints (N, K, 2) in input pixels, and per joint uncertainty (N, K): mean σ̂ in input
    pixels, or 1 − heatmap peak."""
    out = model.inference(images)
    scale = torch.tensor([input_size[1], input_size[0]], dtype=torch.float32)
    keypoints = (out["keypoints"][..., :2].float() + 0.5) * scale
    if "sigma" in out:
        return keypoints, (out["sigma"][..., :2].float() * scale).mean(-1)
    return keypoints, 1 - out["joint_confidence"].float()


def occlusion_tables(model, batches, input_size: tuple[int, int], size: float = 0.2, padding: float = 1.25) -> dict:
    """K×K mean changes of error and uncertainty (see the module docstring) over ``batches``
    of dicts with ``image`` (N, 3, H, W), ``target`` (N, K, ≥2) normalized crop coordinates and
    ``target_weight`` (N, K); also ``visibility`` (N, K) COCO flags when present. ``size``: the
    square's side as a fraction of the person box's height in the crop (the crop is the box
    widened by ``padding``)."""
    h, w = input_size
    scale = torch.tensor([w, h], dtype=torch.float32)
    side = size * h / padding
    d_err = d_unc = counts = None
    vis_unc: dict[int, list] = {1: [], 2: []}  # (uncertainty, joint) of joints flagged occluded / visible
    for batch in batches:
        if batch is None:
            continue
        images = batch["image"].float()
        target = (batch["target"][..., :2].float() + 0.5) * scale
        labelled = batch["target_weight"].float() > 0
        inside = labelled & (target[..., 0] >= 0) & (target[..., 0] <= w - 1) & (target[..., 1] >= 0) & (target[..., 1] <= h - 1)
        kp, unc = _uncertainty(model, images, input_size)
        err = (kp - target).norm(dim=-1)
        k = err.shape[1]
        if d_err is None:
            d_err, d_unc = torch.zeros(k, k, dtype=torch.float64), torch.zeros(k, k, dtype=torch.float64)
            counts, pairs = torch.zeros(k), torch.zeros(k, k, dtype=torch.float64)
        if "visibility" in batch:
            v = batch["visibility"]
            for flag in (1, 2):
                mask = (v == flag) & labelled
                vis_unc[flag].append((unc[mask], mask.nonzero()[:, 1]))
        for j in range(k):
            rows = inside[:, j].nonzero().flatten()
            if len(rows) == 0:
                continue
            occluded = occlude(images[rows], target[rows, j], torch.full((len(rows),), side))
            kp_o, unc_o = _uncertainty(model, occluded, input_size)
            err_o = (kp_o - target[rows]).norm(dim=-1)
            both = labelled[rows].double()  # only joints with a label count towards k's change
            d_err[j] += ((err_o - err[rows]).double() * both).sum(0)
            d_unc[j] += ((unc_o - unc[rows]).double() * both).sum(0)
            counts[j] += len(rows)
            pairs[j] += both.sum(0)
    if d_err is None:
        raise ValueError("no held-out crops to occlude")
    norm = pairs.clamp_min(1)
    result = {"delta_error_px": (d_err / norm).tolist(), "delta_uncertainty": (d_unc / norm).tolist(),
              "occluded_crops": counts.tolist(), "square_side_px": side, "square_fraction_of_box": size}
    diag = torch.diagonal(d_unc / norm)
    off = (d_unc / norm)[~torch.eye(len(diag), dtype=torch.bool)]
    result["uncertainty_rise_on_occluded_joint"] = float(diag[counts > 0].mean())
    result["uncertainty_change_elsewhere"] = float(off.mean())
    result["error_rise_on_occluded_joint_px"] = float(torch.diagonal(d_err / norm)[counts > 0].mean())
    if vis_unc[1] and vis_unc[2]:
        # per joint, then averaged: joints differ in how sure the model is of them (a face point
        # is easier than a wrist), and which joints the data marks occluded is not uniform
        (occ, occ_j), (vis, vis_j) = ((torch.cat([u for u, _ in vis_unc[f]]), torch.cat([j for _, j in vis_unc[f]]))
                                      for f in (1, 2))
        per_joint = [float(occ[occ_j == j].mean() / vis[vis_j == j].mean())
                     if (occ_j == j).sum() >= 5 and (vis_j == j).sum() >= 5 else None for j in range(len(counts))]
        ratios = [r for r in per_joint if r is not None]
        if ratios:
            result["labelled_occluded_vs_visible"] = {
                "occluded_mean": float(occ.mean()), "visible_mean": float(vis.mean()),
                "per_joint_ratio_mean": float(np.mean(ratios)), "joints_compared": len(ratios),
                "per_joint_ratio": per_joint, "joints_rising": int(sum(r > 1 for r in ratios)),
                "n_occluded": len(occ), "n_visible": len(vis)}
    return result


def plot_occlusion(result: dict, joint_names: list[str], out_file: Path, uncertainty_label: str, title: str = "") -> Path:
    from rlepose.analysis.figures import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(15, 6.4))
    for ax, key, label in ((axes[0], "delta_error_px", "Δ error |µ̂ − µg| (input pixels)"),
                           (axes[1], "delta_uncertainty", f"Δ {uncertainty_label}")):
        table = np.array(result[key])
        bound = np.abs(table).max() or 1.0
        im = ax.imshow(table, cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_xticks(range(len(joint_names)), joint_names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(joint_names)), joint_names, fontsize=7)
        ax.set(xlabel="joint whose change is shown", ylabel="occluded joint (gray square)", title=label)
        fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    return save_figure(fig, out_file, title)


def analyze_occlusion(module, cfg, out_dir: str | Path, size: float = 0.2, title: str = "") -> dict:
    """Occlusion tables on ``cfg``'s validation crops; writes ``occlusion.png`` and ``occlusion.json``."""
    from rlepose.config import keypoint_spec
    from rlepose.training.run import val_loader

    spec = keypoint_spec(cfg)
    loader, _ = val_loader(cfg, spec)
    flags = [inst.flags for inst in loader.dataset.instances]

    from tqdm import tqdm

    def batches():  # one model pass per joint of every crop: minutes on a CPU, so a progress bar
        for batch in tqdm(loader, desc="occlusion", unit="batch", file=sys.stderr):
            if batch is not None and all(flags[int(i)] is not None for i in batch["index"]):
                batch["visibility"] = torch.from_numpy(np.stack([flags[int(i)] for i in batch["index"]]))
            yield batch

    model = module.model.eval()
    result = occlusion_tables(model, batches(), tuple(cfg.transform.input_size), size, cfg.transform.padding)
    heatmap = model.is_heatmap
    label = "uncertainty: 1 − heatmap peak" if heatmap else "uncertainty: mean σ̂ (input pixels)"
    result.update(joints=list(spec.joints), uncertainty=label, head=cfg.model.head)
    out_dir = Path(out_dir)
    result["png"] = str(plot_occlusion(result, list(spec.joints), out_dir / "occlusion.png", label, title))
    write_json(out_dir / "occlusion.json", result, indent=1)
    return result
