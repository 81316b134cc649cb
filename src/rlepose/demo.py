"""``rlepose demo``: the main job on the embedded default dataset.

Renders the synthetic COCO-format dataset (:mod:`rlepose.data.synthetic`), trains a small
ResNet-18 regression model with RLE on it (CPU, a few minutes), evaluates it with COCO AP
(pycocotools) and the confidence/OKS correlation, saves the checkpoint, and draws predicted
skeletons with per-joint confidence on held-out images.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from rlepose.data.synthetic import SyntheticConfig, write_dataset
from rlepose.training.config import ExperimentConfig, config_from_dict

log = logging.getLogger(__name__)


def demo_config(out_dir: Path, epochs: int = 4, seed: int = 0, loss: str | dict = "rle", backbone: str = "resnet18",
                input_size: tuple[int, int] = (96, 72), name: str = "demo") -> ExperimentConfig:
    """The demo's experiment: a config like any other, on the rendered data under ``out_dir/data``.
    ``loss``: a loss name, or a whole ``loss`` config section (dict)."""
    loss = {"name": loss} if isinstance(loss, str) else dict(loss)
    head = "heatmap" if loss["name"] == "heatmap_mse" else "regression"
    return config_from_dict({
        "name": name,
        "model": {"backbone": backbone, "head": head},
        "loss": loss,
        "data": {"format": "coco", "root": str(out_dir / "data"), "train_ann": "train.json", "train_images": "train",
                 "val_ann": "val.json", "val_images": "val", "batch_size": 32, "val_batch_size": 64,
                 "num_workers": 2},
        "transform": {"input_size": list(input_size)},
        "train": {"epochs": epochs, "milestones": [max(1, epochs - 1)], "val_every": epochs, "seed": seed,
                  "out_dir": str(out_dir / "runs")},
    })


def render_data(out_dir: Path, train_images: int, val_images: int, seed: int = 0) -> None:
    data = out_dir / "data"
    write_dataset(data, SyntheticConfig(num_images=train_images, seed=seed), "train")
    write_dataset(data, SyntheticConfig(num_images=val_images, seed=seed + 10_000), "val")


def draw_examples(checkpoint: str | Path, data_dir: Path, out_file: Path, count: int = 8) -> Path:
    """Predicted skeletons (dots coloured by 1 − σ̂: green sure, red unsure) on held-out images,
    with the ground-truth boxes as the person boxes."""
    from rlepose.api import PosePredictor
    from rlepose.visualize import draw_poses, tile

    predictor = PosePredictor.from_checkpoint(checkpoint)
    ann = json.loads((data_dir / "val.json").read_text())
    panels = []
    for img in ann["images"][:count]:
        boxes = [a["bbox"] for a in ann["annotations"] if a["image_id"] == img["id"]]
        image = cv2.cvtColor(cv2.imread(str(data_dir / "val" / img["file_name"])), cv2.COLOR_BGR2RGB)
        panels.append(draw_poses(image, predictor.predict(image, boxes), predictor.spec))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_file), cv2.cvtColor(tile(panels), cv2.COLOR_RGB2BGR))
    return out_file


def run_demo(out_dir: str | Path = "outputs/demo", train_images: int = 3000, val_images: int = 300,
             epochs: int = 4, seed: int = 0) -> dict:
    """Render, train, evaluate, draw; returns the metrics and the paths written."""
    from rlepose.training.run import checkpoint_paths, train

    out_dir = Path(out_dir)
    render_data(out_dir, train_images, val_images, seed)
    module, trainer = train(demo_config(out_dir, epochs, seed))
    checkpoint = checkpoint_paths(trainer)["last"]
    picture = draw_examples(checkpoint, out_dir / "data", out_dir / "predictions.png")
    summary = {"metrics": module.last_metrics, "checkpoint": str(checkpoint), "picture": str(picture),
               "data": str(out_dir / "data"), "logs": str(Path(trainer.log_dir or out_dir))}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    summary["metrics_file"] = str(out_dir / "metrics.json")
    return summary
