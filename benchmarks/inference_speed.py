"""CPU inference: ResNet-50 + regression head (RLE's model) vs. ResNet-50 SimpleBaseline heatmaps.

    python benchmarks/inference_speed.py [--repeats 20] [--batch 32] [--out benchmarks/results/inference_speed.json]

Latency at batch 1 and throughput at batch ``--batch``, decoding to keypoints included
(regression: µ̂ and 1 − σ̂; heatmaps: argmax with the quarter-pixel shift). Medians over
repeats after warm-up; compare the ratio, which is measured in one run on one machine.
Also prints parameters and multiply-adds like the paper's Table 5 (deconvolutions counted
per output pixel as the paper does; see rlepose.models.complexity), and the exported ONNX
inference graph of each model under ONNX Runtime (CPU) against eager PyTorch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rlepose.export import InferenceGraph, OnnxBackend, export_onnx
from rlepose.models import ModelConfig, build_pose_model, complexity

PAPER_TABLE5 = {"regression": {"params": 23.6e6, "gflops": 4.0, "head_gflops": 0.0002},
                "heatmap": {"params": 34.0e6, "gflops": 9.7, "head_gflops": 5.7}}


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/inference_speed.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    rows = []
    for head in ("regression", "heatmap"):
        model = build_pose_model(ModelConfig("resnet50", head)).eval()
        cost = complexity(model, (1, 3, 256, 192), deconv="output")
        x1, xb = torch.randn(1, 3, 256, 192), torch.randn(args.batch, 3, 256, 192)
        with torch.inference_mode():
            latency = median_time(lambda: model.inference(x1), args.repeats)
            batch_time = median_time(lambda: model.inference(xb), max(3, args.repeats // 5), warmup=1)
        graph = InferenceGraph(model).eval()
        with tempfile.TemporaryDirectory() as tmp:
            ort = OnnxBackend(export_onnx(model, Path(tmp) / "m.onnx", (256, 192), {"benchmark": True}))
            ort_latency = median_time(lambda: ort(x1), args.repeats)
            ort_batch = median_time(lambda: ort(xb), max(3, args.repeats // 5), warmup=1)
            with torch.inference_mode():
                max_diff = (ort(xb[:4])[0] - graph(xb[:4])[0]).abs().max().item()
        rows.append({"model": f"ResNet-50 {head}", "head": head, "params": cost.params, "gmacs": cost.macs / 1e9,
                     "head_gmacs": cost.head_macs / 1e9, "latency_ms": 1e3 * latency,
                     "throughput_img_s": args.batch / batch_time, "ort_latency_ms": 1e3 * ort_latency,
                     "ort_throughput_img_s": args.batch / ort_batch, "ort_max_abs_diff": max_diff,
                     "paper": PAPER_TABLE5[head]})
    reg, hm = rows
    ratios = {"latency_heatmap_over_regression": hm["latency_ms"] / reg["latency_ms"],
              "throughput_regression_over_heatmap": reg["throughput_img_s"] / hm["throughput_img_s"]}

    print(f"ResNet-50 at 256×192 on CPU ({torch.get_num_threads()} threads), decoding included")
    print(f"{'model':>22} {'params':>8} {'GMACs':>6} {'head GMACs':>11} {'paper':>14} "
          f"{'lat. b=1':>9} {f'img/s b={args.batch}':>11}")
    for r in rows:
        p = r["paper"]
        print(f"{r['model']:>22} {r['params'] / 1e6:7.1f}M {r['gmacs']:6.2f} {r['head_gmacs']:11.6f} "
              f"{p['params'] / 1e6:5.1f}M/{p['gflops']:4.1f}G {r['latency_ms']:7.1f}ms {r['throughput_img_s']:11.1f}")
    print(f"heatmap/regression latency: {ratios['latency_heatmap_over_regression']:.2f}×; "
          f"regression/heatmap throughput: {ratios['throughput_regression_over_heatmap']:.2f}×; "
          f"head MACs ratio: 1/{hm['head_gmacs'] / reg['head_gmacs']:.0f} (paper 1/28500)")
    print(f"\nONNX Runtime vs eager PyTorch (same machine, same run)")
    print(f"{'model':>22} {'ORT b=1':>9} {'torch b=1':>10} {'ratio':>6} {f'ORT img/s':>9} {'torch img/s':>11} {'ratio':>6} {'max |Δ|':>8}")
    for r in rows:
        ratios[f"ort_speedup_b1_{r['head']}"] = r["latency_ms"] / r["ort_latency_ms"]
        ratios[f"ort_speedup_b{args.batch}_{r['head']}"] = r["ort_throughput_img_s"] / r["throughput_img_s"]
        print(f"{r['model']:>22} {r['ort_latency_ms']:7.1f}ms {r['latency_ms']:8.1f}ms "
              f"{r['latency_ms'] / r['ort_latency_ms']:5.2f}× {r['ort_throughput_img_s']:9.1f} "
              f"{r['throughput_img_s']:11.1f} {r['ort_throughput_img_s'] / r['throughput_img_s']:5.2f}× "
              f"{r['ort_max_abs_diff']:8.1e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "batch": args.batch, "rows": rows,
                               "ratios": ratios}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
