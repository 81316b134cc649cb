"""Training throughput: RLE vs L1 (the flow's overhead; the paper calls it negligible), the
channels-last memory format against the default, and whether the data pipeline holds training
back (the pipeline alone, and training fed live by the loader at the default worker count
against training on pre-loaded batches), as ratios measured in one run on one machine.

    python benchmarks/train_speed.py [--backbone resnet18] [--input 128 96] [--steps 20] [--batch 32]

Uses the embedded synthetic dataset (rendered on first use under benchmarks/results/data),
the real loader and transform (train augmentation), Adam over model + loss parameters.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from rlepose.data.datasets import TopDownDataset, collate_skip_none, load_coco_instances
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.data.synthetic import SyntheticConfig, write_dataset
from rlepose.data.transforms import TopDownTransform, TransformConfig
from rlepose.files import write_json
from rlepose.losses import build_loss
from rlepose.models import ModelConfig, build_pose_model


def loader(data: Path, input_size, batch: int, workers: int) -> DataLoader:
    instances = load_coco_instances(data / "train.json", data / "train")
    ds = TopDownDataset(instances, TopDownTransform(TransformConfig(input_size=tuple(input_size)), COCO_KEYPOINTS, True),
                        seed=0)
    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_skip_none,
                      drop_last=True, persistent_workers=workers > 0)


def time_pipeline(dl: DataLoader, steps: int) -> float:
    it = iter(dl)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        n += next(it)["image"].shape[0]
    return n / (time.perf_counter() - t0)


def time_training(dl: DataLoader, loss_name: str, backbone: str, steps: int, channels_last: bool = False,
                  live: bool = False) -> float:
    """Images/s of Adam steps; ``live``: batches come from the loader as training runs (its
    workers share the CPU with training), otherwise they are loaded first."""
    torch.manual_seed(0)
    model = build_pose_model(ModelConfig(backbone, "regression")).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss = build_loss(loss_name, dim=2)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-3)
    # pre-loaded: time the step, not the loader
    batches = (b for _, b in zip(range(steps + 2), dl)) if live else [b for _, b in zip(range(steps + 2), dl)]
    n, t0 = 0, 0.0
    for i, b in enumerate(batches):
        if i == 2:
            t0 = time.perf_counter()
        images = b["image"].contiguous(memory_format=torch.channels_last) if channels_last else b["image"]
        mu, sigma = model(images)
        value = loss(mu, sigma, b["target"], b["target_weight"])
        opt.zero_grad()
        value.backward()
        opt.step()
        n += b["image"].shape[0] if i >= 2 else 0
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--input", type=int, nargs=2, default=[128, 96], metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", default="benchmarks/results/data")
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    data = Path(args.data)
    write_dataset(data, SyntheticConfig(num_images=1000, seed=0), "train")
    dl = loader(data, args.input, args.batch, args.workers)
    rows = {"pipeline": time_pipeline(dl, args.steps)}
    for name in ("l1", "rle"):
        rows[name] = time_training(dl, name, args.backbone, args.steps)
    rows["rle_channels_last"] = time_training(dl, "rle", args.backbone, args.steps, channels_last=True)
    rows["rle_live"] = time_training(dl, "rle", args.backbone, args.steps, channels_last=True, live=True)
    ratio = rows["rle"] / rows["l1"]
    ratios = {"rle_over_l1": ratio, "channels_last_over_default": rows["rle_channels_last"] / rows["rle"],
              "live_over_preloaded": rows["rle_live"] / rows["rle_channels_last"], "pipeline_over_training": rows["pipeline"] / rows["rle"]}
    print(f"{args.backbone} at {args.input[0]}×{args.input[1]}, batch {args.batch}, CPU {torch.get_num_threads()} threads")
    print(f"{'what':>22} {'images/s':>9}")
    print(f"{'data pipeline alone':>22} {rows['pipeline']:9.1f}")
    print(f"{'train step, L1':>22} {rows['l1']:9.1f}")
    print(f"{'train step, RLE':>22} {rows['rle']:9.1f}")
    print(f"{'RLE, channels-last':>22} {rows['rle_channels_last']:9.1f}")
    print(f"{'RLE, ch.-last, live':>22} {rows['rle_live']:9.1f}   ({args.workers} loader workers sharing the CPU)")
    print(f"RLE/L1 throughput: {ratio:.3f} (flow overhead {100 * (1 - ratio):.1f}%); "
          f"pipeline/training: {ratios['pipeline_over_training']:.1f}×; channels-last/default: "
          f"{ratios['channels_last_over_default']:.2f}×; live/pre-loaded: {ratios['live_over_preloaded']:.2f}×")
    out = write_json(args.out, {**vars(args), "images_per_s": rows, "rle_over_l1": ratio, "ratios": ratios},
                     indent=2)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
