"""Layer boundaries of B-scans with a trained boundary model (``task: boundaries``): depths and
σ̂ in every column, in the image's pixels; drawings with σ̂ as a band; JSON out."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from rlepose.config import ExperimentConfig, config_from_dict
from rlepose.data.oct import BOUNDARIES, BoundaryTransform, BScan, pixel_depth
from rlepose.data.transforms import normalize_images
from rlepose.evaluation.boundaries import depths_at_columns
from rlepose.files import write_json
from rlepose.models.boundaries import BoundaryModel, build_boundary_model
from rlepose.models.checkpoint import read_checkpoint

__all__ = ["LoadedBoundaryModel", "checkpoint_task", "load_boundary_model", "predict_bscan", "draw_boundaries",
           "predict_bscan_files"]

#: RGB colours of the 8 DME boundaries, top to bottom
PALETTE = [(255, 80, 80), (255, 170, 0), (240, 240, 0), (80, 220, 80), (0, 200, 200), (80, 140, 255),
           (190, 90, 255), (255, 90, 200)]


@dataclass
class LoadedBoundaryModel:
    """The network (eval mode, on the CPU) and its config."""

    model: BoundaryModel
    config: ExperimentConfig


def checkpoint_task(path: str | Path) -> str:
    """The ``task`` of the config stored in an rlepose checkpoint, ``topdown`` if it has none or
    cannot be read this way. Memory-mapped and weights-only: the weights are not read, nothing
    in the file runs (the loader that follows reads it and reports its errors)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return ckpt["hyper_parameters"]["config"].get("task", "topdown")
    except Exception:  # a legacy, compact or foreign file: the pose loaders handle those
        return "topdown"


def load_boundary_model(path: str | Path, trust: bool = False) -> LoadedBoundaryModel:
    """The boundary network stored in ``path``, strictly, without Lightning or the loss."""
    ckpt = read_checkpoint(path, trust=trust)
    cfg = config_from_dict(ckpt["hyper_parameters"]["config"])
    if cfg.task != "boundaries":
        raise ValueError(f"{path} is a {cfg.task} model, not a boundary model")
    model = build_boundary_model(cfg.model.backbone, cfg.transform.input_size[0], cfg.boundaries)
    model.load_state_dict({k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")})
    return LoadedBoundaryModel(model.eval(), cfg)


@torch.no_grad()
def predict_bscan(loaded: LoadedBoundaryModel, image: np.ndarray) -> dict[str, np.ndarray]:
    """``image`` (H, W) uint8 (or RGB, averaged to grey) → ``depths_px`` and ``sigma_px`` (B, W):
    every boundary's depth (0-based rows) and σ̂ in every column, in the image's pixels."""
    if image.ndim == 3:
        image = image.mean(-1).astype(np.uint8)
    h, w = image.shape
    cfg = loaded.config
    transform = BoundaryTransform(tuple(cfg.transform.input_size), cfg.boundaries.columns)
    sample = transform(BScan(image, np.full((cfg.boundaries.boundaries, w), np.nan), None, "", 0))
    out = loaded.model.inference(normalize_images(sample["image"][None]))
    depths, sigma = out["depths"][0].numpy(), out["sigma"][0].numpy()
    return {"depths_px": depths_at_columns(pixel_depth(depths, h), w), "sigma_px": depths_at_columns(sigma * h, w)}


def draw_boundaries(image: np.ndarray, depths: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """An RGB copy of the B-scan with each boundary drawn as a line and its ±σ̂ band shaded."""
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy()
    band = rgb.copy()
    x = np.arange(depths.shape[1])
    for k, (d, s) in enumerate(zip(depths, sigma)):
        colour = PALETTE[k % len(PALETTE)]
        polygon = np.concatenate([np.stack([x, d - s], 1), np.stack([x, d + s], 1)[::-1]])
        cv2.fillPoly(band, [np.round(polygon).astype(np.int32)], colour, cv2.LINE_AA)
    out = cv2.addWeighted(band, 0.35, rgb, 0.65, 0)
    for k, d in enumerate(depths):
        cv2.polylines(out, [np.round(np.stack([x, d], 1)).astype(np.int32)], False, PALETTE[k % len(PALETTE)], 1,
                      cv2.LINE_AA)
    return out


def predict_bscan_files(loaded: LoadedBoundaryModel, images: list[Path], out: str | Path,
                        render_dir: str | Path | None = None) -> dict:
    """Boundaries of every image file (read as grey), JSON to ``out`` (rewritten after each
    image), drawings to ``render_dir``. Returns counts and the files that could not be read."""
    results, failed = [], []
    size = loaded.config.data.pixel_size_um
    for path in tqdm(images, desc="B-scans", unit="image", file=sys.stderr, disable=len(images) < 2):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            failed.append(f"{path}: not a readable image")
            continue
        pred = predict_bscan(loaded, image)
        names = list(BOUNDARIES[:pred["depths_px"].shape[0]]) if pred["depths_px"].shape[0] <= len(BOUNDARIES) else \
            [f"boundary_{k}" for k in range(pred["depths_px"].shape[0])]
        results.append({"file": str(path), "height": image.shape[0], "width": image.shape[1], "boundaries": names,
                        "depths_px": pred["depths_px"].round(2).tolist(), "sigma_px": pred["sigma_px"].round(3).tolist(),
                        **({"axial_pixel_size_um": size} if size else {})})
        write_json(out, results)
        if render_dir is not None:
            Path(render_dir).mkdir(parents=True, exist_ok=True)
            drawn = draw_boundaries(image, pred["depths_px"], pred["sigma_px"])
            cv2.imwrite(str(Path(render_dir) / (Path(path).stem + ".png")), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if not results:
        write_json(out, results)
    return {"images": len(results), "failed": failed}
