"""Inference precision: fp32, bf16 and int8 (fp16 on a GPU), accuracy and speed in one run.

    python benchmarks/precision.py [CHECKPOINT] [--val-images 300] [--repeats 3] [--out benchmarks/results/precision_cpu.json]
    python benchmarks/precision.py --speed-only BACKBONE [--input 256 192] [--device cuda] [--batch 256]

* **Accuracy.** The checkpoint (default: the shipped model on ``--val-images`` embedded
  held-out images; otherwise on its own config's held-out split) through
  :class:`rlepose.PosePredictor` at each precision: fp32 on ONNX Runtime (the reference) and on
  PyTorch, bf16 (PyTorch autocast), int8 (ONNX Runtime, static quantization calibrated on the
  embedded renderer's calibration images, or ``--calibration``), fp16 on a GPU. The same
  held-out crops (true boxes), flip test on; COCO AP by pycocotools through the config's
  evaluator; how far each moves the keypoints from fp32 (pixels of the input crop).
* **Speed.** People per second through the predictor on a 640×480 image with 1 and 32 person
  boxes, flip test on, crops and decoding included, for the checkpoint's model and for a
  ResNet-50 at 256×192 with random weights (speed does not depend on the weights). Every
  precision of a model is timed in interleaved rounds, so a slow spell of the machine falls on
  all alike; compare the ratios.
* **auto**: what :func:`rlepose.inference.precision.resolve_precision` picks on this machine, and why.

``--speed-only BACKBONE`` times the network alone on ``--device`` (e.g. a GPU: batch-1 latency
and crops/s at ``--batch``, with and without CUDA graphs), random weights, no accuracy.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import device_name, interleaved_medians, random_checkpoint, write_json
from rlepose.config import keypoint_spec
from rlepose.data.transforms import crop_to_image
from rlepose.inference.precision import cpu_bf16_feature, resolve_precision
from rlepose.inference.predictor import PosePredictor
from rlepose.training.run import load_module, val_loader

#: (precision, backend) in the order of the table; fp16 only on a GPU
VARIANTS = (("fp32", "onnxruntime"), ("fp32", "torch"), ("bf16", "torch"), ("int8", "onnxruntime"))
GOALS = {"bf16_ap_drop": 0.005, "int8_ap_drop": 0.01, "int8_over_fp32_32": 1.5, "torch_fp32_over_onnxruntime_32": 0.6}


def cpu_name() -> str:
    """The processor's model name (Linux), else what Python's platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def predictors(checkpoint: Path, device: str, calibration: str | None, trust: bool) -> dict[str, PosePredictor]:
    """One predictor per precision this device runs, named ``precision backend``."""
    # fp32 first: the reference of every other row
    variants = [("fp32", "torch"), ("fp16", "torch"), ("bf16", "torch")] if device.startswith("cuda") else VARIANTS
    out = {}
    for precision, backend in variants:
        p = PosePredictor.from_checkpoint(checkpoint, backend=backend, precision=precision, trust=trust,
                                          device=device if backend == "torch" else None, detector=None,
                                          calibration=calibration)
        out[f"{precision} {backend}"] = p
    return out


def scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 640×480 image and 32 person boxes in it (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    xy = rng.uniform([0, 0], [540, 280], (32, 2))
    return image, np.concatenate([xy, rng.uniform([40, 100], [100, 200], (32, 2))], 1)


def speed(runs: dict[str, PosePredictor], repeats: int) -> dict[str, dict]:
    """Per predictor: ms for one person and people/s for 32 (interleaved rounds, medians)."""
    image, boxes = scene()
    one = interleaved_medians({k: (lambda p=p: p.predict(image, boxes[:1])) for k, p in runs.items()},
                              rounds=3, per_block=max(2, repeats))
    many = interleaved_medians({k: (lambda p=p: p.predict(image, boxes)) for k, p in runs.items()},
                               rounds=3, per_block=max(1, repeats // 3), warmup=1)
    return {k: {"latency_ms_1": 1e3 * one[k], "people_s_1": 1 / one[k], "people_s_32": 32 / many[k]} for k in runs}


def accuracy(runs: dict[str, PosePredictor], cfg) -> dict[str, dict]:
    """Per predictor: AP, AP50 on the held-out crops and |Δ keypoints| from the first predictor (crop pixels)."""
    images, matrices, index, evaluator = heldout_crops(cfg)
    size = tuple(cfg.transform.input_size)
    out, reference = {}, None
    for name, predictor in runs.items():
        keypoints, joint_conf = predictor._run(images)  # the predictor's own batching and flip test
        metrics, _ = evaluator(index, crop_to_image(keypoints, matrices, size), joint_conf, joint_conf.mean(-1))
        if reference is None:
            reference = keypoints
        pixels = np.abs(keypoints - reference)[..., :2] * np.array([size[1], size[0]])
        out[name] = {"AP": metrics["AP"], "AP50": metrics["AP50"], "max_abs_diff_px": float(pixels.max()),
                     "mean_abs_diff_px": float(pixels.mean()), "crops": len(images)}
    return out


def ratios(rows: list[dict], model: str) -> dict[str, float]:
    by = {(r["precision"], r["backend"]): r for r in rows}
    base = by[("fp32", "onnxruntime")] if ("fp32", "onnxruntime") in by else by[("fp32", "torch")]
    out = {}
    for (precision, backend), r in by.items():
        if r is base:
            continue
        for n in (1, 32):
            out[f"{precision}_{backend}_over_fp32_{base['backend']}_{n}[{model}]"] = r[f"people_s_{n}"] / base[f"people_s_{n}"]
    return out


def speed_only(args) -> None:
    from inference_speed import device_rows

    rows = device_rows(args.speed_only, tuple(args.input), args.device, args.batch, args.repeats)
    where = device_name() if args.device.startswith("cuda") else args.device
    print(f"{args.speed_only} regression, random weights, {args.input[0]}×{args.input[1]} on {where}")
    print(f"{'precision':>9} {'graphs':>7} {'ms b=1':>8} {f'crops/s b={args.batch}':>15} {'(on device)':>12}")
    for r in rows:
        print(f"{r['precision']:>9} {str(r['cuda_graphs']):>7} {r['ms_batch1']:8.2f} {r['crops_per_s']:15.0f} "
              f"{r.get('crops_per_s_on_device', float('nan')):12.0f}")
    write_json(Path(args.out), {"speed_only": args.speed_only, "input": args.input, "device": args.device,
                                "device_name": where, "batch": args.batch, "rows": rows})
    print(f"written to {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", help="default: the shipped model on the embedded held-out images")
    parser.add_argument("--val-images", type=int, default=300, help="embedded held-out images (shipped model)")
    parser.add_argument("--calibration", help="int8 calibration crops (a folder or COCO JSON; default: rendered)")
    parser.add_argument("--speed-backbone", default="resnet50", help="also time this backbone at 256×192 ('none': skip)")
    parser.add_argument("--speed-only", metavar="BACKBONE", help="time a random-weight regression model instead")
    parser.add_argument("--input", type=int, nargs=2, default=[256, 192], metavar=("H", "W"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256, help="--speed-only: the throughput batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trust-checkpoint", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/precision_cpu.json")
    args = parser.parse_args()
    if args.speed_only:
        return speed_only(args)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            checkpoint, cfg = Path(args.checkpoint), load_module(args.checkpoint, trust=args.trust_checkpoint).cfg
            model = checkpoint.name
        else:
            from rlepose.demo import SHIPPED_MODEL, shipped_eval_config

            checkpoint, cfg = SHIPPED_MODEL, shipped_eval_config(tmp / "demo", SHIPPED_MODEL, args.val_images)
            model = "shipped"
        runs = predictors(checkpoint, args.device, args.calibration, args.trust_checkpoint)
        scores, timing = accuracy(runs, cfg), speed(runs, args.repeats)
        rows = [{"model": model, "precision": k.split()[0], "backend": k.split()[1], **scores[k], **timing[k]}
                for k in runs]
        speed_rows = []
        if args.speed_backbone != "none":
            r50, _ = random_checkpoint(args.speed_backbone, (256, 192), tmp / "speed.ckpt")
            r50_runs = predictors(r50, args.device, None, False)
            for k, t in speed(r50_runs, args.repeats).items():
                speed_rows.append({"model": f"{args.speed_backbone} 256×192 (random weights)",
                                   "precision": k.split()[0], "backend": k.split()[1], **t})
    auto = resolve_precision(device=args.device)
    result = {"checkpoint": str(checkpoint), "device": args.device, "threads": torch.get_num_threads(),
              "cpu": cpu_name(), "cpu_bf16": cpu_bf16_feature() or "none",
              "auto": {"precision": auto.precision, "backend": auto.backend, "reason": auto.reason},
              "rows": rows, "speed_rows": speed_rows,
              "ratios": {**ratios(rows, model), **(ratios(speed_rows, args.speed_backbone) if speed_rows else {})},
              "goals": GOALS}
    fp32 = next(r for r in rows if r["precision"] == "fp32")
    print(f"{model} ({checkpoint.name}): {rows[0]['crops']} held-out crops, flip test on; auto here: "
          f"{auto.precision} on {auto.backend} ({auto.reason})")
    print(f"{'model':>34} {'precision':>9} {'backend':>12} {'AP':>6} {'ΔAP':>7} {'max Δpx':>8} {'1 person':>9} "
          f"{'32 people':>10}")
    for r in rows + speed_rows:
        ap = f"{100 * r['AP']:6.2f} {100 * (r['AP'] - fp32['AP']):+7.2f} {r['max_abs_diff_px']:8.2f}" if "AP" in r \
            else f"{'':>6} {'':>7} {'':>8}"
        print(f"{r['model'][:34]:>34} {r['precision']:>9} {r['backend']:>12} {ap} {r['latency_ms_1']:7.1f}ms "
              f"{r['people_s_32']:6.1f} p/s")
    for k, v in result["ratios"].items():
        print(f"  {k}: {v:.2f}×")
    write_json(Path(args.out), result)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
