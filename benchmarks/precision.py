"""Inference precision: fp16 and bf16 autocast against fp32 on a trained checkpoint.

    python benchmarks/precision.py CHECKPOINT [--device cuda] [--batch 64] [--repeats 20]

The ``torch`` backend of :class:`rlepose.api.PosePredictor` (channels-last, folded BatchNorm,
``inference_mode``) runs the held-out crops of the checkpoint's own config at each precision.
Per precision: the largest and mean |µ̂ − µ̂_fp32| (normalized crop units and pixels of the
input crop), COCO AP on the held-out split by pycocotools (no flip test, so only the precision
differs), and crops/s at ``--batch``. fp16 autocast is meant for GPUs; on a CPU it is reported
when this PyTorch build supports it and skipped otherwise.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import device_name, write_json
from rlepose.api import TorchBackend
from rlepose.inference import crop_to_image
from rlepose.training.run import keypoint_spec, load_module, val_loader


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--trust-checkpoint", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/precision.json")
    args = parser.parse_args()

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
