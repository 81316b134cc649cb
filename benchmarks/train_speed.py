"""Training speed, every part of it, in one run on one machine: resident training steps (batches
already on the device: the compute ceiling), the loss alone, one training sample against a bare
decode + warp, the data pipeline at N workers, and ``rlepose train`` end to end.

    python benchmarks/train_speed.py --device cpu     # the CPU rows (a few minutes on 2 cores)
    python benchmarks/train_speed.py --device cuda    # every row (about 4 minutes on one H200)

Rows:

* ``step``: Adam steps over model + loss on random batches resident on the device, images/s;
  ResNet + FC with L1 and with RLE (its loss on the default, compiled path and eagerly), the
  SimpleBaseline heatmap model, HRNet-W32 integral + RLE, at each ``--batches`` ×
  ``--precisions`` (fp32, or bf16 autocast), eager and with ``torch.compile`` of the model
  (``--compile``); channels-last.
* ``loss``: forward + backward of the loss alone at ``--loss-n`` (32, 64, 256) images × 17
  joints, ms, and the top-level ATen operators it dispatches (each a kernel launch on a GPU):
  L1, Laplace NLL, and the flow losses eagerly (``compile=False``) and on their default path
  (one compiled graph, :mod:`rlepose.losses.compiled`); on the CPU on one thread, with the
  floor under any exact implementation: the flow's hidden-layer matrix products alone.
* ``compile``: the default RLE loss's first call (compilation included) in a fresh process,
  with an empty compile cache and again with the cache the first left, seconds.
* ``sample``: one training sample on one core (the COCO config's augmentation at ``--input``,
  uint8 out) against ``cv2.imdecode`` + ``cv2.warpAffine`` of the same photo, ms and ratio.
* ``pipeline``: the training loader alone at each ``--workers``, images/s.
* ``train``: ``rlepose.training.run.train`` on the same photos, images/s between two step counts
  (start-up, compilation and the first batches left out).

Photos: the COCO fixture images (``--photos``, a folder with a COCO keypoints JSON) with their
annotations repeated to ``--instances`` samples; real photos, so decoding costs what it costs
on COCO. On a machine without the fixtures (a lent GPU gets the checkout only), copy them into an
ignored folder first and pass it: ``cp -r ../shared/data/fixtures/coco benchmarks/results/photos``,
then ``--photos benchmarks/results/photos``. JSON: every row with its settings, and the ratios the
project's goals are stated in.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from common import device_name, top_level_aten_ops, write_json
from rlepose.data.datasets import TopDownDataset, collate_skip_none, load_coco_instances
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.data.transforms import TopDownTransform, TransformConfig, affine_matrix, box_to_center_size
from rlepose.losses import LOSSES, FlowLoss, build_loss
from rlepose.models.heads import gaussian_heatmaps, heatmap_mse_loss
from rlepose.models.pose_model import ModelConfig, build_pose_model

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_PHOTOS = ROOT.parent / "shared" / "data" / "fixtures" / "coco"
#: (row name, model, loss) of the resident steps; HRNet only where asked (slow on a CPU)
MODELS = {"l1": ("regression", "l1"), "rle": ("regression", "rle"), "heatmap": ("heatmap", "heatmap_mse"),
          "hrnet_integral_rle": ("integral", "rle")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def resident_step(backbone: str, kind: str, batch: int, input_size: tuple[int, int], precision: str,
                  compile: bool, device: torch.device, steps: int, loss_compile: bool = True) -> float:
    """Images/s of Adam steps on one random batch kept on the device; ``compile``: the model
    under ``torch.compile``; ``loss_compile``: the loss on its default path (False: eagerly)."""
    head, loss_name = MODELS[kind]
    torch.manual_seed(0)
    model = build_pose_model(ModelConfig("hrnet_w32" if kind.startswith("hrnet") else backbone, head))
    model = model.to(device).to(memory_format=torch.channels_last).train()
    flow = head != "heatmap" and issubclass(LOSSES[loss_name], FlowLoss)
    loss = None if head == "heatmap" else build_loss(loss_name, dim=2, **({"compile": loss_compile} if flow else {}))
    loss = loss.to(device) if loss is not None else None
    params = [*model.parameters(), *(loss.parameters() if loss is not None else [])]
    opt = torch.optim.Adam(params, lr=1e-4)
    images = torch.randn(batch, 3, *input_size, device=device).contiguous(memory_format=torch.channels_last)
    target = torch.rand(batch, 17, 2, device=device) - 0.5
    weight = torch.ones(batch, 17, device=device)
    forward = torch.compile(model) if compile else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = forward(images)
        if head == "heatmap":
            value = heatmap_mse_loss(out.float(), gaussian_heatmaps(target, tuple(out.shape[-2:])), weight)
        else:
            value = loss(out[0].float(), out[1].float(), target, weight)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def loss_alone(name: str, n: int, device: torch.device, repeats: int, compile: bool = False) -> tuple[float, int]:
    """Median ms of the loss's forward + backward on n × 17 joints (weighted), and the top-level
    ATen operators of one such call; ``compile``: the default path (False: eagerly)."""
    torch.manual_seed(0)
    loss = build_loss(name, dim=2, compile=compile).to(device)
    mu = (torch.rand(n, 17, 2, device=device) - 0.5).requires_grad_()
    sigma = (torch.rand(n, 17, 2, device=device) * 0.3 + 0.01).requires_grad_()
    target = mu.detach() + 0.05 * torch.randn(n, 17, 2, device=device)
    weight = (torch.rand(n, 17, device=device) > 0.2).float()

    def call() -> None:
        loss(mu, sigma, target, weight).backward()
        mu.grad = sigma.grad = None
        loss.zero_grad(set_to_none=True)

    times = []
    for i in range(repeats + 5):  # the first calls compile (the default path) and warm up
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), top_level_aten_ops(call)


_FIRST_CALL = """
import sys, time, torch
from rlepose.losses import RLELoss
device = torch.device(sys.argv[1])
loss = RLELoss(compile=True).to(device)
mu = torch.rand(64, 17, 2, device=device, requires_grad=True)
sigma = (torch.rand(64, 17, 2, device=device) * 0.3 + 0.01).requires_grad_()
target = torch.rand(64, 17, 2, device=device)
t0 = time.perf_counter()
loss(mu, sigma, target).backward()
torch.cuda.synchronize() if device.type == "cuda" else None
print(time.perf_counter() - t0)
"""


def first_call_seconds(device: torch.device) -> dict[str, float]:
    """The default RLE loss's first forward + backward (N = 64) in a fresh process, compilation
    included: with an empty compile cache, then with the cache that run left."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for run in ("cold_cache_s", "warm_cache_s"):
            proc = subprocess.run([sys.executable, "-c", _FIRST_CALL, device.type], env=env, capture_output=True,
                                  text=True, timeout=900, check=True)
            out[run] = float(proc.stdout.strip().splitlines()[-1])
    return out


def keypoint_file(photos: Path) -> Path:
    """The COCO keypoints JSON in ``photos`` (the first with ``annotations``)."""
    for path in sorted(photos.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("annotations"):
            return path
    raise FileNotFoundError(f"no COCO keypoints JSON in {photos}")


def flow_matmul_floor_ms(n: int, device: torch.device, hidden: int = 64, couplings: int = 6) -> float:
    """The time the default RealNVP's hidden-layer products alone take for a loss on n × 17
    joints, forward and backward (three products of (n·17, H) × (H, H) per s and t network and
    coupling), at the rate this machine multiplies such matrices: a floor under any exact
    implementation in this precision."""
    a = torch.randn(n * 17, hidden, device=device)
    w = torch.randn(hidden, hidden, device=device)
    for _ in range(10):
        a @ w
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(100):
        a @ w
    _sync(device)
    return 1e3 * (time.perf_counter() - t0) / 100 * 3 * 2 * couplings


def photo_instances(photos: Path, repeat_to: int):
    """The instances of the photos' COCO file, repeated to ``repeat_to``."""
    ann = keypoint_file(photos)
    instances = [i for i in load_coco_instances(ann, photos) if i.visible.sum() > 0]
    return (instances * (repeat_to // len(instances) + 1))[:repeat_to], ann


def training_set(instances, input_size: tuple[int, int]) -> TopDownDataset:
    """The training loader's dataset: the COCO config's augmentation at ``input_size``, uint8 crops."""
    transform = TopDownTransform(TransformConfig(input_size=input_size), COCO_KEYPOINTS, True, uint8=True)
    return TopDownDataset(instances, transform, seed=0)


def sample_vs_bare(instances, input_size: tuple[int, int], repeats: int) -> dict:
    """One core: a training sample (COCO augmentation, uint8 crop) against imdecode + warpAffine."""
    cv2.setNumThreads(1)
    dataset = training_set(instances, input_size)
    aspect = input_size[1] / input_size[0]

    def bare(i: int) -> None:
        inst = instances[i % len(instances)]
        image = cv2.imdecode(np.fromfile(str(inst.image_path), np.uint8), cv2.IMREAD_COLOR)
        center, size = box_to_center_size(inst.box, aspect)
        cv2.warpAffine(image, affine_matrix(center, size, 0.0, input_size), (input_size[1], input_size[0]),
                       flags=cv2.INTER_LINEAR)

    sample_ms, bare_ms = [], []
    for i in range(repeats + 5):  # interleaved, so that both see the same machine
        t0 = time.perf_counter()
        dataset[i % len(dataset)]
        t1 = time.perf_counter()
        bare(i)
        t2 = time.perf_counter()
        if i >= 5:
            sample_ms.append(1e3 * (t1 - t0))
            bare_ms.append(1e3 * (t2 - t1))
    cv2.setNumThreads(-1)
    s, b = statistics.median(sample_ms), statistics.median(bare_ms)
    return {"sample_ms": s, "bare_decode_warp_ms": b, "ratio": s / b}


def pipeline(instances, input_size, batch: int, workers: int, steps: int) -> float:
    """Images/s of the training loader alone (uint8 crops, the training collate)."""
    dataset = training_set(instances, input_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         collate_fn=collate_skip_none, drop_last=True,
                                         persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
    it = iter(loader)
    for _ in range(2):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        try:
            n += next(it)["image"].shape[0]
        except StopIteration:
            it = iter(loader)
    return n / (time.perf_counter() - t0)


def step_timer(first: int, last: int):
    """A Lightning callback that records the time at training steps ``first`` and ``last``."""
    import lightning as L

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.times: dict[int, float] = {}

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if step in (first, last) and step not in self.times:
                _sync(module.device)
                self.times[step] = time.perf_counter()
            if step >= last:
                trainer.should_stop = True

    return StepTimer()


def end_to_end(photos: Path, instances_count: int, backbone: str, input_size, batch: int, workers: int,
               precision: str, compile: bool, steps: int, out_dir: Path) -> float:
    """Images/s of ``rlepose train`` between step 5 and step 5 + ``steps``."""
    import lightning as L

    from rlepose.config import config_from_dict
    from rlepose.training.run import train

    ann = json.loads(keypoint_file(photos).read_text())
    anns = [a for a in ann["annotations"] if a.get("num_keypoints", 1) > 0 and not a.get("iscrowd")]
    repeated = copy.deepcopy(ann)
    repeated["annotations"] = [{**a, "id": i + 1} for i, a in
                               enumerate((anns * (instances_count // len(anns) + 1))[:instances_count])]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train.json").write_text(json.dumps(repeated))
    cfg = config_from_dict({
        "name": "train_speed", "model": {"backbone": backbone},
        "data": {"root": str(photos.resolve()), "train_ann": str((out_dir / "train.json").resolve()),
                 "train_images": ".", "val_ann": str((out_dir / "train.json").resolve()), "val_images": ".",
                 "batch_size": batch, "num_workers": workers},
        "transform": {"input_size": list(input_size)},
        "train": {"epochs": 1000, "val_every": 1000, "precision": {"bf16": "bf16-mixed"}.get(precision, "32-true"),
                  "compile": compile, "out_dir": str(out_dir / "runs")}})
    timer = step_timer(5, 5 + steps)
    L.seed_everything(0)
    train(cfg, callbacks=[timer], enable_progress_bar=False, enable_model_summary=False, logger=False,
          limit_val_batches=0)
    return batch * steps / (timer.times[5 + steps] - timer.times[5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", help="default: resnet50 on cuda, resnet18 on the CPU")
    parser.add_argument("--input", type=int, nargs=2, metavar=("H", "W"), help="default: 256 192 (cuda), 128 96")
    parser.add_argument("--batches", type=int, nargs="+", help="default: 32 64 256 (cuda), 32")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], help="default: fp32 bf16 (cuda), fp32")
    parser.add_argument("--models", default=None, help=f"comma-separated from {', '.join(MODELS)}; "
                        "default: all on cuda, l1,rle,heatmap on the CPU")
    parser.add_argument("--compile", action="store_true", help="also the resident RLE and L1 steps with torch.compile "
                        "of the model (bf16 where measured, at each batch); default on cuda")
    parser.add_argument("--loss-n", type=int, nargs="+", default=[32, 64, 256],
                        help="batch sizes N (× 17 joints) of the loss section")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per row (default 20 cuda, 5 CPU)")
    parser.add_argument("--workers", type=int, nargs="+", help="loader workers to time (default: 15 8 cuda, 2 CPU)")
    parser.add_argument("--photos", default=str(FIXTURE_PHOTOS), help="a folder of photos with a COCO keypoints JSON")
    parser.add_argument("--instances", type=int, default=2048, help="samples the photos' annotations repeat to")
    parser.add_argument("--skip", default="",
                        help="comma-separated sections to leave out: step,loss,compile,sample,pipeline,train")
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    device = torch.device(args.device)
    backbone = args.backbone or ("resnet50" if cuda else "resnet18")
    input_size = tuple(args.input or ((256, 192) if cuda else (128, 96)))
    batches = args.batches or ([32, 64, 256] if cuda else [32])
    precisions = args.precisions or (["fp32", "bf16"] if cuda else ["fp32"])
    models = (args.models or ("l1,rle,heatmap,hrnet_integral_rle" if cuda else "l1,rle,heatmap")).split(",")
    compile = args.compile or cuda
    steps = args.steps or (20 if cuda else 5)
    workers = args.workers or ([15, 8] if cuda else [2])
    skip = set(filter(None, args.skip.split(",")))
    photos = Path(args.photos)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        value = (f"{row['images_per_s']:9.1f} images/s" if "images_per_s" in row else
                 f"{row['seconds']:9.1f} s" if "seconds" in row else f"{row['ms']:9.3f} ms")
        ops = f"  {row['top_level_aten_ops']:5d} top-level ATen ops" if "top_level_aten_ops" in row else ""
        print(f"{row['section']:>8} {row['what']:<66} {value}{ops}", flush=True)

    print(f"{device_name() if not cuda else torch.cuda.get_device_name()}: {backbone} at {input_size[0]}×{input_size[1]}")
    if "step" not in skip:
        for kind in models:
            for b in batches:
                for p in precisions:
                    for comp in ([False, True] if compile and kind in ("l1", "rle") and (p == "bf16" or not cuda) else [False]):
                        for loss_comp in ([True, False] if kind == "rle" else [True]):
                            ips = resident_step(backbone, kind, b, input_size, p, comp, device, steps, loss_comp)
                            add({"section": "step", "what": f"{kind}, batch {b}, {p}" + (", model compiled" if comp else "")
                                 + ("" if loss_comp or kind != "rle" else ", eager loss"), "model": kind, "batch": b,
                                 "precision": p, "compile": comp, "loss_compile": loss_comp if kind == "rle" else None,
                                 "images_per_s": ips})
    if "loss" not in skip:
        threads = torch.get_num_threads()
        if not cuda:
            torch.set_num_threads(1)
        suffix = "" if cuda else ", one thread"
        for n in args.loss_n:
            runs = [("l1", False), ("laplace_nll", False)] + [(name, comp) for name in ("rle", "rle_calibrated")
                                                              for comp in (False, True)]
            times: dict = {run: [] for run in runs}
            ops: dict = {}
            for _ in range(3):  # rounds over the losses, so that all see the same machine
                for name, comp in runs:
                    ms, ops[(name, comp)] = loss_alone(name, n, device, 50 if cuda else 20, comp)
                    times[(name, comp)].append(ms)
            for (name, comp), ms in times.items():
                path = ("default (compiled)" if comp else "eager") if name.startswith("rle") else ""
                add({"section": "loss", "what": f"{name}{', ' + path if path else ''}, N = {n}{suffix}", "loss": name,
                     "n": n, "path": path or "default", "compile": comp, "ms": statistics.median(ms),
                     "top_level_aten_ops": ops[(name, comp)]})
            if not cuda:
                add({"section": "loss", "what": f"floor: the flow's hidden products alone, N = {n}{suffix}",
                     "loss": "rle_floor", "n": n, "path": "", "compile": False, "ms": flow_matmul_floor_ms(n, device),
                     "top_level_aten_ops": 36})
        torch.set_num_threads(threads)
    if "compile" not in skip:
        first = first_call_seconds(device)
        for run, seconds in first.items():
            add({"section": "compile", "what": f"default RLE loss, first call, {run.split('_')[0]} compile cache",
                 "cache": run.split("_")[0], "seconds": seconds})
    instances = None
    if {"sample", "pipeline", "train"} - skip:
        if not photos.is_dir():
            parser.error(f"no photos at {photos}: give --photos, or --skip sample,pipeline,train")
        instances, _ = photo_instances(photos, args.instances)
    if "sample" not in skip:
        r = sample_vs_bare(instances, input_size, 60)
        add({"section": "sample", "what": "one training sample, one core", "ms": r["sample_ms"], **r})
        add({"section": "sample", "what": "bare cv2.imdecode + cv2.warpAffine, one core", "ms": r["bare_decode_warp_ms"]})
    if "pipeline" not in skip:
        for w in workers:
            ips = pipeline(instances, input_size, max(batches), w, steps * 2)
            add({"section": "pipeline", "what": f"training loader alone, {w} workers, batch {max(batches)}",
                 "workers": w, "images_per_s": ips})
    if "train" not in skip:
        p = precisions[-1]
        for comp in ([False, True] if cuda else [False]):
            b = 64 if cuda else batches[0]
            ips = end_to_end(photos, args.instances, backbone, input_size, b, workers[0], p, comp, steps * 2,
                             Path(args.out).parent / "train_speed_run")
            add({"section": "train", "what": f"rlepose train, batch {b}, {p}, {workers[0]} workers"
                 + (", compiled" if comp else ""), "batch": b, "precision": p, "compile": comp, "images_per_s": ips})

    def find(section, **kw):
        return next((r for r in rows if r["section"] == section and all(r.get(k) == v for k, v in kw.items())), None)

    ratios = {}
    for b in batches:
        for p in precisions:
            l1 = find("step", model="l1", batch=b, precision=p, compile=False)
            for loss_comp, label in ((True, ""), (False, ", eager loss")):
                rle = find("step", model="rle", batch=b, precision=p, compile=False, loss_compile=loss_comp)
                if l1 and rle:
                    ratios[f"l1_step_over_rle_step[batch {b}, {p}{label}]"] = l1["images_per_s"] / rle["images_per_s"]
    for n in args.loss_n:
        lap, floor = find("loss", loss="laplace_nll", n=n), find("loss", loss="rle_floor", n=n)
        for comp, label in ((True, "default"), (False, "eager")):
            rle = find("loss", loss="rle", n=n, compile=comp)
            if rle and lap:
                ratios[f"rle_loss_over_laplace_nll[N = {n}, {label}]"] = rle["ms"] / lap["ms"]
            if rle and floor:
                ratios[f"rle_loss_over_flow_matmul_floor[N = {n}, {label}]"] = rle["ms"] / floor["ms"]
    sample = find("sample", what="one training sample, one core")
    if sample:
        ratios["sample_over_bare_decode_warp"] = sample["ratio"]
    print("\n" + "\n".join(f"{k}: {v:.2f}" for k, v in ratios.items()))
    out = write_json(Path(args.out), {"device": torch.cuda.get_device_name() if cuda else device_name(),
                                      "torch": torch.__version__, "backbone": backbone, "input": list(input_size),
                                      "steps": steps, "rows": rows, "ratios": ratios})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
