"""CPU inference: ResNet-50 + regression head (RLE's model) vs. ResNet-50 SimpleBaseline heatmaps
and MobileNetV2 + regression head, each on three backends; the predictor end to end; a person
detector + pose on a photo and a video; all in one run on one machine.

    python benchmarks/inference_speed.py [--repeats 20] [--batch 32] [--out benchmarks/results/inference_speed.json]

* Network: latency at batch 1 and throughput at batch ``--batch``, decoding to keypoints
  included (regression: µ̂ and 1 − σ̂; heatmaps: argmax with the quarter-pixel shift), for
  plain eager PyTorch (``model.inference`` under ``no_grad``: the path before optimization),
  the optimized eager path (BatchNorm folded, channels-last, ``inference_mode``:
  ``rlepose.inference.backends.TorchBackend``) and the exported graph under ONNX Runtime. Each throughput is
  also given as a fraction of this machine's fp32 matrix-multiply rate, measured in the same run
  (2 × multiply-adds × images/s ÷ the best n×n matmul FLOP/s); convolution kernels can beat a
  square matmul, so a fraction above 100% is possible and is printed as measured.
* Predictor end to end on a 640×480 image with 1 and 32 person boxes, flip test on: the
  previous predictor (per-box transform, original and flipped crops in two separate runs,
  plain eager model) against today's ``PosePredictor`` on each backend in fp32, and in bf16
  (``auto`` on processors with AVX512-BF16/AMX; fp32, bf16 and int8 with their accuracy:
  ``benchmarks/precision.py``).
* Person detector (HOG always; the YOLOX-s architecture with random weights, exported here by
  ``benchmarks/yolox_arch.py`` because the published weights cannot be downloaded offline;
  ``--detector`` adds e.g. the real YOLOX .onnx) + ResNet-50 RLE on a 640×480 photo with one
  person: ms per photo for each pose backend, and frames per second through ``predict_video``
  on a 16-frame clip of it.
* The paper's Table 5: parameters and multiply-adds (deconvolutions counted per output pixel as
  the paper does; see rlepose.models.complexity).

Medians over repeats after warm-up; compare ratios, which are measured in one run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import interleaved_medians, median_time, random_checkpoint
from rlepose.inference.predictor import PosePredictor
from rlepose.inference.backends import TorchBackend
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.data.transforms import TopDownTransform, TransformConfig
from rlepose.inference.export import InferenceGraph, export_onnx
from rlepose.inference.backends import OnnxBackend
from rlepose.files import write_json
from rlepose.data.transforms import crop_to_image
from rlepose.inference.flip import predict_crops
from rlepose.models import ModelConfig, build_pose_model, complexity

PAPER_TABLE5 = {"regression": {"params": 23.6e6, "gflops": 4.0, "head_gflops": 0.0002},
                "heatmap": {"params": 34.0e6, "gflops": 9.7, "head_gflops": 5.7}}
# MMPose 1.3.2 `inference_topdown` (td-reg_res50_rle-8xb64-210e_coco-256x192, flip test, 2 threads)
# against the previous PosePredictor, run back to back on the development machine (issue
# "Fast inference by default"): 32 people 7.9 against 7.1 people/s, 1 person 101 against 94 ms.
# MMPose cannot be installed here, so its speed is carried over as this ratio to the previous
# predictor, which this script measures.
MMPOSE_OVER_PREVIOUS = {"people_s_32": 7.9 / 7.1, "latency_ms_1": 101.0 / 94.0}
INPUT = (256, 192)
MODEL_NAMES = {"resnet50": "ResNet-50", "mobilenet_v2": "MobileNetV2"}


def matmul_peak(repeats: int, n: int = 2048) -> float:
    """This machine's fp32 matrix-multiply rate in FLOP/s: the fastest of ``repeats`` square
    n×n products, by PyTorch and by NumPy's BLAS (all threads), whichever is faster."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    an, bn = a.numpy(), b.numpy()
    best = float("inf")
    for fn in (lambda: torch.mm(a, b), lambda: an @ bn):
        fn()
        for _ in range(max(5, repeats)):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def previous_predictor(model, spec=COCO_KEYPOINTS):
    """The predictor as it was: one transform call per box, the flipped crops in a second run."""
    transform = TopDownTransform(TransformConfig(input_size=INPUT), spec, train=False)
    perm = spec.flip_permutation()

    def predict(image, boxes):
        samples = [transform(image, box) for box in boxes]
        images = torch.stack([s["image"] for s in samples])
        out = predict_crops(model, images, perm)
        return crop_to_image(out["keypoints"].numpy(), np.stack([s["matrix"].numpy() for s in samples]), INPUT)

    return predict


def network_rows(args, peak: float, tmp: Path) -> list[dict]:
    rows = []
    x1, xb = torch.randn(1, 3, *INPUT), torch.randn(args.batch, 3, *INPUT)
    slow_repeats = max(3, args.repeats // 5)
    for backbone, head in (("resnet50", "regression"), ("resnet50", "heatmap"), ("mobilenet_v2", "regression")):
        torch.manual_seed(0)
        model = build_pose_model(ModelConfig(backbone, head)).eval()
        cost = complexity(model, (1, 3, *INPUT), deconv="output")  # the paper's rule, for Table 5
        macs = complexity(model, (1, 3, *INPUT)).macs  # what is computed (PyTorch's rule), for the peak fraction
        fast = TorchBackend(model, INPUT)
        ort = OnnxBackend(export_onnx(model, tmp / f"{backbone}_{head}.onnx", INPUT, {"benchmark": True}))
        backends = {"eager (before)": lambda x: InferenceGraph(model)(x), "eager (optimized)": fast,
                    "onnxruntime": ort}
        if args.compile and (backbone, head) == ("resnet50", "regression"):
            backends["optimized + torch.compile"] = TorchBackend(model, INPUT, compile=True)
        with torch.no_grad():
            ref = InferenceGraph(model)(xb[:4])[0]
        for name, fn in backends.items():
            with torch.no_grad():
                latency = median_time(lambda: fn(x1), args.repeats)
                batch_time = median_time(lambda: fn(xb), slow_repeats, warmup=1)
                diff = (fn(xb[:4])[0] - ref).abs().max().item()
            throughput = args.batch / batch_time
            rows.append({"model": MODEL_NAMES[backbone], "head": head, "backend": name, "params": cost.params, "gmacs": cost.macs / 1e9,
                         "head_gmacs": cost.head_macs / 1e9, "latency_ms": 1e3 * latency,
                         "throughput_img_s": throughput, "peak_fraction": 2 * macs * throughput / peak,
                         "max_abs_diff": diff, "paper": PAPER_TABLE5[head]})
    return rows


def predictor_rows(args, tmp: Path) -> list[dict]:
    ckpt, model = random_checkpoint("resnet50", INPUT, tmp / "reg.ckpt")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    xy = rng.uniform([0, 0], [540, 280], (32, 2))
    boxes32 = np.concatenate([xy, rng.uniform([40, 100], [100, 200], (32, 2))], 1)
    # fp32 on both backends; bf16 (what `auto` runs on AVX512-BF16/AMX processors) and int8 are
    # compared, with their accuracy, by benchmarks/precision.py
    runs = {"previous predictor": previous_predictor(model),
            "PosePredictor torch": PosePredictor.from_checkpoint(ckpt, backend="torch", precision="fp32").predict,
            "PosePredictor onnxruntime": PosePredictor.from_checkpoint(ckpt, backend="onnxruntime").predict,
            "PosePredictor torch bf16": PosePredictor.from_checkpoint(ckpt, precision="bf16").predict}
    # Blocks, not single calls in turns: ONNX Runtime's and torch's idle threads spin for a while
    # after each call and would slow whichever runs next (a run timed call by call put the previous
    # predictor at 146 ms instead of 101–115). The one-person latency, the noisiest ratio quoted,
    # gets 5 rounds of interleaved blocks, so that the baseline and ours see the same machine.
    one = interleaved_medians({name: (lambda fn=fn: fn(image, boxes32[:1])) for name, fn in runs.items()},
                              rounds=5, per_block=max(2, (3 * args.repeats) // 5))
    rows = []
    for name, fn in runs.items():
        many = median_time(lambda: fn(image, boxes32), max(3, args.repeats // 5), warmup=1)
        rows.append({"predictor": name, "latency_ms_1": 1e3 * one[name], "people_s_32": 32 / many})
    prev = rows[0]
    mmpose = {"predictor": "MMPose inference_topdown (carried over)",
              "latency_ms_1": prev["latency_ms_1"] * MMPOSE_OVER_PREVIOUS["latency_ms_1"],
              "people_s_32": prev["people_s_32"] * MMPOSE_OVER_PREVIOUS["people_s_32"]}
    for r in rows:
        r["speedup_vs_mmpose_32"] = r["people_s_32"] / mmpose["people_s_32"]
        r["speedup_vs_mmpose_1"] = mmpose["latency_ms_1"] / r["latency_ms_1"]
    return rows + [mmpose], ckpt


def device_rows(backbone: str, input_size: tuple[int, int], device: str, batch: int, repeats: int) -> list[dict]:
    """The network alone through :class:`TorchBackend` on ``device``, random weights: per
    precision (fp32, fp16, bf16; one this build or device cannot run is left out) and, on a CUDA
    device, with and without CUDA graphs: ms per call at batch 1 and crops/s at ``batch``, the
    crops coming from host memory as the predictor sends them and (GPU) already on the device."""
    torch.manual_seed(0)
    model = build_pose_model(ModelConfig(backbone, "regression")).eval()
    images = torch.randn(batch, 3, *input_size)
    cuda = device.startswith("cuda")
    rows = []
    for precision in ("fp32", "fp16", "bf16"):
        for graphs in ((False, True) if cuda else (False,)):
            backend = TorchBackend(model, input_size, device=device, precision=precision, cuda_graphs=graphs)
            try:
                backend(images[:1])
            except RuntimeError as err:  # e.g. fp16 autocast on a CPU build without it
                print(f"{precision}: not run on {device} ({str(err).splitlines()[0]})")
                break
            row = {"precision": precision, "cuda_graphs": graphs,
                   "ms_batch1": 1e3 * median_time(lambda: backend(images[:1]), 5 * repeats),
                   "crops_per_s": batch / median_time(lambda: backend(images), repeats, warmup=1)}
            if cuda:
                there = images.to(device)
                row["crops_per_s_on_device"] = batch / median_time(lambda: backend(there), repeats, warmup=1)
            rows.append(row)
    return rows


def photo_rows(args, tmp: Path, ckpt: Path) -> list[dict]:
    """Person detector + ResNet-50 RLE on one 640×480 photo with one person, end to end (flip
    test on), per backend; and frames per second of the same on a 16-frame video of that photo."""
    import cv2

    from rlepose.inference.detectors import build_detector
    from rlepose.inference.media import predict_video

    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    person = [[250.0, 80.0, 140.0, 360.0]]
    detectors = {"hog": build_detector("hog")}
    if args.yolox_arch != "none":
        from yolox_arch import export_yolox

        detectors[f"{args.yolox_arch} (arch.)"] = build_detector(str(export_yolox(args.yolox_arch, tmp / "yolox.onnx")))
    if args.detector:
        detectors[Path(args.detector).stem] = build_detector(args.detector)
    clip = tmp / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
    for _ in range(16):
        writer.write(photo)
    writer.release()
    rows = []
    for backend in ("torch", "onnxruntime"):
        predictor = PosePredictor.from_checkpoint(ckpt, backend=backend, precision="fp32", detector=None)
        pose_ms = 1e3 * median_time(lambda: predictor.predict(photo, person), args.repeats)
        for name, detector in detectors.items():
            det_ms = 1e3 * median_time(lambda: detector(photo), args.repeats)

            def one_person(frame, _d=detector):  # the detector runs; the pose model always gets one person
                _d(frame)
                return np.array(person), np.ones(1)

            video = predict_video(predictor, clip, tmp / "video.json", detector=one_person, progress=False)
            rows.append({"detector": name, "pose_backend": backend, "detector_ms": det_ms, "pose_ms": pose_ms,
                         "photo_ms": det_ms + pose_ms, "video_fps": video["fps"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", help="default: benchmarks/results/inference_speed.json "
                                      "(inference_speed_gpu.json with --device cuda)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the optimized eager path under torch.compile (ResNet-50 regression; "
                             "compiling takes minutes on a CPU)")
    parser.add_argument("--detector", help="also time this detector (a YOLOX .onnx path or a name `rlepose predict "
                                           "--detector` takes); HOG is always timed")
    parser.add_argument("--yolox-arch", default="yolox-s", choices=["none", "yolox-tiny", "yolox-s", "yolox-m",
                                                                     "yolox-l", "yolox-x"],
                        help="time this YOLOX architecture with random weights (default yolox-s; see yolox_arch.py)")
    parser.add_argument("--device", default="cpu",
                        help="cuda: time ResNet-50 on the GPU instead (batch-1 latency, crops/s at --batch, "
                             "fp32/fp16/bf16 with and without CUDA graphs), written to --out")
    args = parser.parse_args()
    if args.device != "cpu":
        args.out = args.out or "benchmarks/results/inference_speed_gpu.json"
        return gpu_main(args)
    args.out = args.out or "benchmarks/results/inference_speed.json"
    torch.manual_seed(0)
    peak = matmul_peak(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        rows = network_rows(args, peak, Path(tmp))
        predictors, ckpt = predictor_rows(args, Path(tmp))
        photos = photo_rows(args, Path(tmp), ckpt)

    def row(head, backend, model="ResNet-50"):
        return next(r for r in rows if r["head"] == head and r["backend"] == backend and r["model"] == model)

    backends = [b for b in dict.fromkeys(r["backend"] for r in rows)
                if any(r["backend"] == b and r["head"] == "heatmap" for r in rows)]  # on both heads
    reg, hm = row("regression", backends[0]), row("heatmap", backends[0])
    ratios = {"macs_heatmap_over_regression": hm["gmacs"] / reg["gmacs"],
              "head_macs_heatmap_over_regression": hm["head_gmacs"] / reg["head_gmacs"]}
    for b in backends:
        ratios[f"throughput_regression_over_heatmap[{b}]"] = (row("regression", b)["throughput_img_s"]
                                                              / row("heatmap", b)["throughput_img_s"])
    for head in ("regression", "heatmap"):
        ratios[f"optimized_over_before_b{args.batch}[{head}]"] = (row(head, "eager (optimized)")["throughput_img_s"]
                                                                 / row(head, "eager (before)")["throughput_img_s"])
        ratios[f"optimized_over_onnxruntime_b{args.batch}[{head}]"] = (
            row(head, "eager (optimized)")["throughput_img_s"] / row(head, "onnxruntime")["throughput_img_s"])

    print(f"256×192 crops on CPU ({torch.get_num_threads()} threads), decoding included; "
          f"fp32 matmul rate measured now: {peak / 1e9:.0f} GFLOP/s")
    print(f"{'model':>12} {'head':>10} {'backend':>18} {'params':>7} {'GMACs':>6} {'lat. b=1':>9} "
          f"{f'img/s b={args.batch}':>11} {'of peak':>8} {'max |Δ|':>8}")
    for r in rows:
        print(f"{r['model']:>12} {r['head']:>10} {r['backend']:>18} {r['params'] / 1e6:6.1f}M {r['gmacs']:6.2f} "
              f"{r['latency_ms']:7.1f}ms {r['throughput_img_s']:11.1f} {100 * r['peak_fraction']:7.0f}% "
              f"{r['max_abs_diff']:8.1e}")
    print(f"multiply-adds heatmap/regression: {ratios['macs_heatmap_over_regression']:.2f}× "
          f"(heads alone: {ratios['head_macs_heatmap_over_regression']:.0f}×, paper 28500×); "
          "throughput regression/heatmap: "
          + ", ".join(f"{b} {ratios[f'throughput_regression_over_heatmap[{b}]']:.2f}×" for b in backends))
    print("optimized eager vs before / vs ONNX Runtime at batch "
          f"{args.batch}: " + ", ".join(
              f"{h} {ratios[f'optimized_over_before_b{args.batch}[{h}]']:.2f}× / "
              f"{100 * ratios[f'optimized_over_onnxruntime_b{args.batch}[{h}]']:.0f}%" for h in ("regression", "heatmap")))
    print("\nPredictor end to end, 640×480 image, ResNet-50 regression, flip test on")
    print(f"{'predictor':>40} {'1 person':>10} {'32 people':>12} {'vs MMPose 1 / 32':>17}")
    for r in predictors:
        vs = (f"{r['speedup_vs_mmpose_1']:.2f}× / {r['speedup_vs_mmpose_32']:.2f}×"
              if "speedup_vs_mmpose_1" in r else "1 / 1")
        print(f"{r['predictor']:>40} {r['latency_ms_1']:8.1f}ms {r['people_s_32']:8.1f} p/s {vs:>17}")
    print("\nPerson detector + ResNet-50 RLE, 640×480 photo with one person, flip test on")
    print(f"{'detector':>18} {'pose backend':>13} {'detector':>9} {'pose':>8} {'photo':>8} {'video':>10}")
    for r in photos:
        print(f"{r['detector']:>18} {r['pose_backend']:>13} {r['detector_ms']:7.1f}ms {r['pose_ms']:6.1f}ms "
              f"{r['photo_ms']:6.1f}ms {r['video_fps']:6.1f} fps")
    out = write_json(args.out, {"threads": torch.get_num_threads(), "batch": args.batch, "photos": photos,
                                "matmul_peak_gflops": peak / 1e9, "rows": rows, "predictors": predictors,
                                "mmpose_over_previous": MMPOSE_OVER_PREVIOUS, "ratios": ratios}, indent=2)
    print(f"written to {out}")


GPU_GOALS = {"ms_batch1": 2.0, "crops_per_s_256": 25_000}  # ResNet-50 256×192 on an H100/H200 (issue 47)


def gpu_main(args) -> None:
    """``--device cuda``: the network on the GPU, the predictor's default (fp16 + CUDA graphs) and the rest."""
    from common import device_name

    rows = device_rows("resnet50", INPUT, args.device, args.batch, args.repeats)
    print(f"ResNet-50 regression 256×192 on {device_name()}, random weights (goals: ≤ {GPU_GOALS['ms_batch1']} ms at "
          f"batch 1, ≥ {GPU_GOALS['crops_per_s_256']} crops/s at 256)")
    print(f"{'precision':>9} {'graphs':>7} {'ms b=1':>8} {f'crops/s b={args.batch}':>15} {'(on device)':>12}")
    for r in rows:
        print(f"{r['precision']:>9} {str(r['cuda_graphs']):>7} {r['ms_batch1']:8.2f} {r['crops_per_s']:15.0f} "
              f"{r.get('crops_per_s_on_device', float('nan')):12.0f}")
    out = write_json(args.out, {"device": args.device, "device_name": device_name(), "batch": args.batch,
                                "default": "fp16 + CUDA graphs", "goals": GPU_GOALS, "gpu_rows": rows}, indent=2)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
