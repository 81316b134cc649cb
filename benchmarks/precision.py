"""Inference precision: fp16 and bf16 autocast against fp32 on a trained checkpoint.

    python benchmarks/precision.py CHECKPOINT [--device cuda] [--batch 64] [--repeats 20]
    python benchmarks/precision.py --speed-only resnet50 [--input 256 192] [--device cuda] [--batch 256]

The ``torch`` backend of :class:`rlepose.inference.PosePredictor` (channels-last, folded BatchNorm,
``inference_mode``) runs the held-out crops of the checkpoint's own config at each precision.
Per precision: the largest and mean |µ̂ − µ̂_fp32| (normalized crop units and pixels of the
input crop), COCO AP on the held-out split by pycocotools (no flip test, so only the precision
differs), and crops/s at ``--batch``. fp16 autocast is meant for GPUs; on a CPU it is reported
when this PyTorch build supports it and skipped otherwise.

``--speed-only BACKBONE`` times a regression model with random weights instead (no accuracy: an
untrained network's outputs say nothing about rounding): ms per crop at batch 1 and crops/s at
``--batch``, with the crops coming from the CPU as ``PosePredictor`` sends them and, on a GPU,
already on the device.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import device_name, write_json
from rlepose.inference.backends import TorchBackend
from rlepose.data.transforms import crop_to_image
from rlepose.config import keypoint_spec
from rlepose.training.run import load_module, val_loader


def heldout_crops(cfg) -> tuple[torch.Tensor, np.ndarray, np.ndarray, object]:
    """Every held-out crop (N, 3, H, W), its crop→image matrix (N, 2, 3), its index, and the evaluator."""
    loader, evaluator = val_loader(cfg, keypoint_spec(cfg))
    images, matrices, index = [], [], []
    for batch in loader:
        if batch is not None:
            images.append(batch["image"])
            matrices.append(batch["matrix"].numpy())
            index.append(batch["index"].numpy())
    return torch.cat(images), np.concatenate(matrices), np.concatenate(index), evaluator


def crops_per_second(backend: TorchBackend, images: torch.Tensor, batch: int, repeats: int) -> float:
    x = images[:batch].repeat((batch + len(images) - 1) // len(images), 1, 1, 1)[:batch]
    for _ in range(3):
        backend(x)
    if backend.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        backend(x)  # returns CPU tensors: every call waits for the device
    return repeats * batch / (time.perf_counter() - t0)


def speed_only(args) -> None:
    from rlepose.models import ModelConfig, build_pose_model

    torch.manual_seed(0)
    model = build_pose_model(ModelConfig(args.speed_only, "regression")).eval()
    images = torch.randn(args.batch, 3, *args.input)
    on_device = [False, True] if args.device.startswith("cuda") else [False]
    rows = []
    for precision in ("fp32", "fp16", "bf16"):
        backend = TorchBackend(model, tuple(args.input), device=args.device, precision=precision)
        try:
            backend(images[:1])
        except RuntimeError as err:
            print(f"{precision}: not run on {args.device} ({str(err).splitlines()[0]})")
            continue
        row = {"precision": precision, "ms_batch1": 1e3 / crops_per_second(backend, images[:1], 1, 5 * args.repeats)}
        for there in on_device:
            x = images.to(backend.device) if there else images
            row["crops_per_s_on_device" if there else "crops_per_s"] = crops_per_second(backend, x, args.batch, args.repeats)
        rows.append(row)
    where = device_name() if args.device.startswith("cuda") else args.device
    print(f"{args.speed_only} regression, random weights, {args.input[0]}×{args.input[1]} on {where}")
    print(f"{'precision':>9} {'ms b=1':>8} {f'crops/s b={args.batch}':>15}" + (f" {'(on device)':>12}" if len(on_device) > 1 else ""))
    for r in rows:
        print(f"{r['precision']:>9} {r['ms_batch1']:8.2f} {r['crops_per_s']:15.0f}"
              + (f" {r['crops_per_s_on_device']:12.0f}" if "crops_per_s_on_device" in r else ""))
    write_json(Path(args.out), {"speed_only": args.speed_only, "input": args.input, "device": args.device,
                                "device_name": where, "batch": args.batch, "rows": rows})
    print(f"written to {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--speed-only", metavar="BACKBONE", help="time a random-weight regression model instead")
    parser.add_argument("--input", type=int, nargs=2, default=[256, 192], metavar=("H", "W"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--trust-checkpoint", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/precision.json")
    args = parser.parse_args()
    if args.speed_only:
        return speed_only(args)
    if not args.checkpoint:
        parser.error("give a CHECKPOINT, or --speed-only BACKBONE")

    module = load_module(args.checkpoint, trust=args.trust_checkpoint)
    cfg = module.cfg
    size = tuple(cfg.transform.input_size)
    images, matrices, index, evaluator = heldout_crops(cfg)
    rows, reference = [], None
    for precision in ("fp32", "bf16", "fp16"):
        backend = TorchBackend(module.model, size, device=args.device, precision=precision)
        try:
            outputs = [backend(images[i:i + args.batch]) for i in range(0, len(images), args.batch)]
        except RuntimeError as err:  # e.g. fp16 autocast on a CPU build without it
            print(f"{precision}: not run on {args.device} ({str(err).splitlines()[0]})")
            continue
        keypoints = torch.cat([k for k, _ in outputs]).numpy()
        joint_conf = torch.cat([c for _, c in outputs]).numpy()
        metrics, _ = evaluator(index, crop_to_image(keypoints, matrices, size), joint_conf, joint_conf.mean(-1))
        if reference is None:
            reference = keypoints
        diff = np.abs(keypoints - reference)
        pixels = diff[..., :2] * np.array([size[1], size[0]])  # x by the crop width, y by its height
        rows.append({"precision": precision, "AP": metrics["AP"], "max_abs_diff": float(diff.max()),
                     "mean_abs_diff": float(diff.mean()), "max_abs_diff_px": float(pixels.max()),
                     "crops_per_s": crops_per_second(backend, images, args.batch, args.repeats)})

    print(f"{Path(args.checkpoint).name} on {device_name() if args.device.startswith('cuda') else args.device}: "
          f"{len(images)} held-out crops {size[0]}×{size[1]}, batch {args.batch}, no flip test")
    print(f"{'precision':>9} {'AP':>6} {'max |Δµ̂|':>10} {'mean |Δµ̂|':>10} {'max Δ px':>9} {'crops/s':>9}")
    for r in rows:
        print(f"{r['precision']:>9} {100 * r['AP']:6.2f} {r['max_abs_diff']:10.2e} {r['mean_abs_diff']:10.2e} "
              f"{r['max_abs_diff_px']:9.3f} {r['crops_per_s']:9.0f}")
    write_json(Path(args.out), {"checkpoint": str(args.checkpoint), "device": args.device,
                                "device_name": device_name() if args.device.startswith("cuda") else args.device,
                                "batch": args.batch, "rows": rows})
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
