"""Training throughput: RLE vs L1 (the flow's overhead; the paper calls it negligible) and the
data pipeline alone, as ratios measured in one run on one machine.

    python benchmarks/train_speed.py [--backbone resnet18] [--input 128 96] [--steps 20] [--batch 32]

Uses the embedded synthetic dataset (rendered on first use under benchmarks/results/data),
the real loader and transform (train augmentation), Adam over model + loss parameters.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from rlepose.data.datasets import TopDownDataset, collate_skip_none, load_coco_instances
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.data.synthetic import SyntheticConfig, write_dataset
from rlepose.data.transforms import TopDownTransform, TransformConfig
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


def time_training(dl: DataLoader, loss_name: str, backbone: str, steps: int) -> float:
    torch.manual_seed(0)
    model = build_pose_model(ModelConfig(backbone, "regression")).train()
    loss = build_loss(loss_name, dim=2)
    opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-3)
    batches = [b for _, b in zip(range(steps + 2), dl)]  # pre-loaded: time the step, not the loader
    n, t0 = 0, 0.0
    for i, b in enumerate(batches):
        if i == 2:
            t0 = time.perf_counter()
        mu, sigma = model(b["image"])
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
    ratio = rows["rle"] / rows["l1"]
    print(f"{args.backbone} at {args.input[0]}×{args.input[1]}, batch {args.batch}, CPU {torch.get_num_threads()} threads")
    print(f"{'what':>22} {'images/s':>9}")
    print(f"{'data pipeline alone':>22} {rows['pipeline']:9.1f}")
    print(f"{'train step, L1':>22} {rows['l1']:9.1f}")
    print(f"{'train step, RLE':>22} {rows['rle']:9.1f}")
    print(f"RLE/L1 throughput: {ratio:.3f} (flow overhead {100 * (1 - ratio):.1f}%); "
          f"pipeline/training: {rows['pipeline'] / rows['l1']:.1f}×")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**vars(args), "images_per_s": rows, "rle_over_l1": ratio}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
