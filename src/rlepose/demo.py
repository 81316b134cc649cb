"""``rlepose demo``: the main job on the embedded default dataset.

By default it renders the held-out images of the synthetic COCO-format dataset
(:mod:`rlepose.data.synthetic`), evaluates the small RLE model that ships with the package on
them (COCO AP by pycocotools, the confidence/OKS correlation) and draws predicted skeletons with
per-joint confidence (seconds). With ``--train`` it renders the training images too and trains a
ResNet-18 with an integral head and RLE from scratch (CPU, a few minutes) before doing the same.
With ``--one-stage`` the same for the one-stage model (:mod:`rlepose.models.one_stage`): every
person of each held-out image from the whole image, no boxes and no detector.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2

from rlepose.data.synthetic import write_splits
from rlepose.config import ExperimentConfig, config_from_dict, config_to_dict
from rlepose.files import write_json
from rlepose.hub import SHIPPED_ONE_STAGE_PATH, SHIPPED_PATH

__all__ = ["SHORT_SCHEDULE_AUGMENTATION", "demo_config", "DEMO_MODEL", "render_data", "draw_examples",
           "SHIPPED_MODEL", "run_shipped_demo", "run_demo", "one_stage_config", "SHIPPED_ONE_STAGE_MODEL",
           "run_one_stage_demo"]

log = logging.getLogger(__name__)


# Augmentation for a few epochs from scratch: the network underfits, and rotation, half-body
# crops, ±30% scale and colour jitter slow it down.
SHORT_SCHEDULE_AUGMENTATION = {"rotation_prob": 0.0, "half_body_prob": 0.0, "scale_factor": 0.15, "color_jitter": 0.0}


def demo_config(out_dir: Path, epochs: int = 4, seed: int = 0, loss: str | dict = "rle", backbone: str = "resnet18",
                input_size: tuple[int, int] = (96, 72), name: str = "demo", head: str = "regression",
                deconv_channels: int = 256, augmentation: dict | None = None,
                milestones: list[int] | None = None, model: dict | None = None) -> ExperimentConfig:
    """The demo's experiment: a config like any other, on the rendered data under ``out_dir/data``.
    ``loss``: a loss name, or a whole ``loss`` config section (dict); ``heatmap_mse`` implies the
    heatmap head. ``head``, ``deconv_channels``: the model's (regression, integral, heatmap);
    ``augmentation``: ``transform`` settings over the COCO defaults; ``milestones``: the epochs
    where the learning rate drops ×0.1 (default: before the last epoch); ``model``: further ``model``
    settings (e.g. ``{"coord_norm": True}``). The defaults are the paper's
    regression setting that ``benchmarks/paper_tables.py`` trains; :func:`run_demo` passes its own."""
    loss = {"name": loss} if isinstance(loss, str) else dict(loss)
    head = "heatmap" if loss["name"] == "heatmap_mse" else ("regression" if head == "heatmap" else head)
    return config_from_dict({
        "name": name,
        "model": {"backbone": backbone, "head": head, "deconv_channels": deconv_channels, **(model or {})},
        "loss": loss,
        "data": {"format": "coco", "root": str(out_dir / "data"), "train_ann": "train.json", "train_images": "train",
                 "val_ann": "val.json", "val_images": "val", "batch_size": 32, "val_batch_size": 64,
                 "num_workers": 2},
        "transform": {"input_size": list(input_size), **(augmentation or {})},
        "train": {"epochs": epochs, "milestones": list(milestones or [max(1, epochs - 1)]), "val_every": epochs, "seed": seed,
                  "out_dir": str(out_dir / "runs")},
    })


# What `rlepose demo` trains: the integral head (soft-argmax over heatmaps from three light
# deconvolutions, σ̂ from the pooled features; the paper's HRNet + RLE head) learns faster from
# scratch than one FC on pooled features.
DEMO_MODEL = {"head": "integral", "deconv_channels": 64, "augmentation": SHORT_SCHEDULE_AUGMENTATION}


def render_data(out_dir: Path, train_images: int, val_images: int, seed: int = 0, label_noise: str = "fixed") -> None:
    """The embedded dataset under ``out_dir/data`` (:func:`rlepose.data.synthetic.write_splits`)."""
    write_splits(out_dir / "data", train_images, val_images, seed, label_noise)


def draw_examples(checkpoint: str | Path, data_dir: Path, out_file: Path, count: int = 8, backend: str = "auto",
                  color_range: tuple[float, float] = (0.9, 0.98)) -> Path:
    """Predicted skeletons on held-out images, with the ground-truth boxes as the person boxes
    (a one-stage model finds the people itself); dots coloured by 1 − σ̂ from red (σ̂ ≥ 10% of
    the crop, or of a one-stage level's reference scale) to green (≤ 2%) by default."""
    from rlepose.inference.predictor import PosePredictor
    from rlepose.visualize import draw_poses, tile

    predictor = PosePredictor.from_checkpoint(checkpoint, backend=backend)
    ann = json.loads((data_dir / "val.json").read_text())
    panels = []
    for img in ann["images"][:count]:
        boxes = [a["bbox"] for a in ann["annotations"] if a["image_id"] == img["id"]]
        image = cv2.cvtColor(cv2.imread(str(data_dir / "val" / img["file_name"])), cv2.COLOR_BGR2RGB)
        people = predictor.predict(image, boxes) if predictor.needs_boxes else predictor(image)
        panels.append(draw_poses(image, people, predictor.spec, color_range=color_range))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_file), cv2.cvtColor(tile(panels), cv2.COLOR_RGB2BGR))
    return out_file


# The small model that ships with the package (int8 weights, 3.4 MB): ResNet-18 at half width with
# the integral head and RLE, 60 epochs on the embedded data (LR ×0.1 at 50). `rlepose demo`
# evaluates it on the held-out images in seconds. It was made with `rlepose demo --train`'s config
# and `rlepose train … name=demo_small model.backbone=resnet18_0.5 train.epochs=60
# "train.milestones=[50]" train.seed=2 loss.name=rle_calibrated loss.beta=0`, then `rlepose export
# --format compact`; its σ̂ calibration (one scale per joint, fitted on held-out images of another
# seed) by `python benchmarks/sigma_calibration.py --save <it>`.
SHIPPED_MODEL = SHIPPED_PATH


def shipped_eval_config(out_dir: Path, checkpoint: str | Path = SHIPPED_MODEL, val_images: int = 300) -> ExperimentConfig:
    """The config that evaluates a demo-trained ``checkpoint`` (the shipped model by default)
    on ``val_images`` embedded held-out images, rendered under ``out_dir/data``."""
    from rlepose.models.checkpoint import read_checkpoint

    write_splits(Path(out_dir) / "data", 0, val_images)
    stored = read_checkpoint(checkpoint)["hyper_parameters"]["config"]
    model = stored["model"]
    return demo_config(Path(out_dir), seed=0, backbone=model["backbone"], head=model["head"],
                       deconv_channels=model["deconv_channels"], input_size=tuple(stored["transform"]["input_size"]),
                       augmentation=SHORT_SCHEDULE_AUGMENTATION, name="shipped")


def run_shipped_demo(out_dir: str | Path = "outputs/demo", val_images: int = 300,
                     checkpoint: str | Path = SHIPPED_MODEL) -> dict:
    """Render the held-out images only, evaluate the shipped model on them (COCO AP by
    pycocotools, confidence/OKS) and draw; returns the metrics and the paths written."""
    import time

    from rlepose.training.run import evaluate

    out_dir = Path(out_dir)
    start = time.perf_counter()
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"the shipped demo model is missing ({checkpoint}); `rlepose demo --train` trains one")
    cfg = shipped_eval_config(out_dir, checkpoint, val_images)
    write_json(out_dir / "config.json", config_to_dict(cfg), indent=2)  # for `rlepose analyze … --config`
    logging.getLogger("lightning").setLevel(logging.ERROR)
    metrics = evaluate(cfg, checkpoint, enable_progress_bar=False, enable_model_summary=False)
    # torch: no ONNX graph cached beside a model that lives inside the installed package
    picture = draw_examples(checkpoint, out_dir / "data", out_dir / "predictions.png", backend="torch")
    summary = {"metrics": metrics, "checkpoint": str(checkpoint), "picture": str(picture),
               "data": str(out_dir / "data"), "config": str(out_dir / "config.json"),
               "seconds": time.perf_counter() - start}
    write_json(out_dir / "metrics.json", summary, indent=2)
    summary["metrics_file"] = str(out_dir / "metrics.json")
    return summary


def run_demo(out_dir: str | Path = "outputs/demo", train_images: int = 3000, val_images: int = 300,
             epochs: int = 4, seed: int = 0, compare: tuple[str, ...] = ()) -> dict:
    """Render, train, evaluate, draw; returns the metrics and the paths written. ``compare``:
    loss names (e.g. ``laplace_nll``, ``heatmap_mse``) trained the same way on the same data."""
    import time

    from rlepose.training.run import checkpoint_paths, train

    out_dir = Path(out_dir)
    start = time.perf_counter()
    render_data(out_dir, train_images, val_images, seed)
    module, trainer = train(demo_config(out_dir, epochs, seed, **DEMO_MODEL))
    checkpoint = checkpoint_paths(trainer)["last"]
    picture = draw_examples(checkpoint, out_dir / "data", out_dir / "predictions.png")
    summary = {"metrics": module.last_metrics, "checkpoint": str(checkpoint), "picture": str(picture),
               "data": str(out_dir / "data"), "logs": str(Path(trainer.log_dir or out_dir)),
               "seconds": time.perf_counter() - start}
    summary["comparisons"] = []
    for loss in compare:
        baseline, base_trainer = train(demo_config(out_dir, epochs, seed, loss=loss, name=f"demo_{loss}", **DEMO_MODEL))
        summary["comparisons"].append({"loss": loss, "metrics": baseline.last_metrics,
                                       "checkpoint": str(checkpoint_paths(base_trainer)["last"])})
    write_json(out_dir / "metrics.json", summary, indent=2)
    summary["metrics_file"] = str(out_dir / "metrics.json")
    return summary


def one_stage_config(out_dir: Path, epochs: int = 12, seed: int = 0, loss: str = "rle", train_images: int = 3000,
                     val_images: int = 300, name: str | None = None, task: str = "one_stage") -> ExperimentConfig:
    """The whole-image model of ``configs/embedded/one_stage_res18_rle.yaml`` (``task="rcnn"``:
    of ``configs/embedded/rcnn_res18_rle.yaml``; the same settings: tests keep them equal) on the
    embedded data rendered under ``out_dir/data``; the learning rate drops ×0.1 two epochs before
    the end."""
    sections = {"rcnn": {"head": "rle", "roi_size": 14, "keypoint_convs": 8, "keypoint_channels": 64,
                         "keypoint_weight": 0.1}} \
        if task == "rcnn" else {}
    return config_from_dict({
        "name": name or f"embedded_{task}_res18_rle", "task": task,
        "model": {"backbone": "resnet18_0.5", "num_joints": 17},
        "one_stage": {"fpn_channels": 64, "head_convs": 2}, **sections,
        "loss": {"name": loss},
        "data": {"format": "coco", "root": str(out_dir / "data"), "rendered": [train_images, val_images],
                 "train_ann": "train.json", "train_images": "train", "val_ann": "val.json", "val_images": "val",
                 "batch_size": 16, "val_batch_size": 32, "num_workers": 2},
        "transform": {"input_size": [128, 128], "scale_factor": 0.25, "flip_prob": 0.5, "color_jitter": 0.0},
        "train": {"epochs": epochs, "lr": 1e-3, "milestones": [max(1, epochs - 2)], "val_every": epochs, "seed": seed,
                  "out_dir": str(out_dir / "runs")},
    })


# The one-stage model that ships with the package (int8 weights): `one_stage_config`'s model, 12
# epochs on the embedded data, made by `rlepose train configs/embedded/one_stage_res18_rle.yaml`
# (benchmarks/one_stage.py's rle row, seed 0) and `rlepose export --format compact`.
SHIPPED_ONE_STAGE_MODEL = SHIPPED_ONE_STAGE_PATH


def run_one_stage_demo(out_dir: str | Path = "outputs/demo", val_images: int = 300,
                       checkpoint: str | Path | None = SHIPPED_ONE_STAGE_MODEL, train_images: int = 3000,
                       epochs: int = 12, seed: int = 0, task: str = "one_stage") -> dict:
    """A whole-image model (``task``: ``one_stage``, or ``rcnn`` for the end-to-end top-down
    model) on the held-out images: the ``checkpoint`` evaluated (COCO AP of every person found in
    the whole images), or with ``checkpoint=None`` one trained from scratch first
    (:func:`one_stage_config`, CPU, minutes); draws its people on the first 8 images."""
    import time

    from rlepose.training.run import checkpoint_paths, evaluate, train

    out_dir = Path(out_dir)
    start = time.perf_counter()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    if checkpoint is None:
        cfg = one_stage_config(out_dir, epochs, seed, train_images=train_images, val_images=val_images, task=task)
        module, trainer = train(cfg)
        checkpoint, metrics = checkpoint_paths(trainer)["last"], module.last_metrics
    else:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"model not found: {checkpoint}; `rlepose demo --one-stage --train` or "
                                    "`rlepose demo --rcnn` trains one")
        from rlepose.models.checkpoint import read_checkpoint

        stored = read_checkpoint(checkpoint)["hyper_parameters"]["config"]
        cfg = config_to_dict(one_stage_config(out_dir, train_images=0, val_images=val_images, name=f"{task}_given",
                                              task=stored.get("task", task)))
        cfg.update({k: stored[k] for k in ("model", "one_stage", "rcnn", "transform", "loss") if k in stored})
        cfg = config_from_dict(cfg)
        metrics = evaluate(cfg, checkpoint, enable_progress_bar=False, enable_model_summary=False)
    picture = draw_examples(checkpoint, out_dir / "data", out_dir / f"{task}_predictions.png", backend="torch")
    summary = {"metrics": metrics, "checkpoint": str(checkpoint), "picture": str(picture),
               "data": str(out_dir / "data"), "seconds": time.perf_counter() - start}
    write_json(out_dir / f"{task}_metrics.json", summary, indent=2)
    summary["metrics_file"] = str(out_dir / f"{task}_metrics.json")
    return summary
