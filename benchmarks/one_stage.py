"""The paper's Table 2(d) on the embedded dataset: the one-stage model trained with RLE and with
the baselines, over seeds; and the one-stage model against the top-down RLE model with each
available person detector, on the same held-out images (AP and images/s end to end, this machine).

    python benchmarks/one_stage.py [--rows rle,l1,laplace_nll] [--seeds 0 1 2] [--epochs 12] [--milestones 10]
    python benchmarks/one_stage.py --merge part1.json part2.json ... [--out all.json]
    python benchmarks/one_stage.py --versus CKPT [--top-down CKPT] [--out benchmarks/results/one_stage_vs_top_down.json]

Every row trains ``configs/embedded/one_stage_res18_rle.yaml`` (ResNet-18 at half width, P3–P5
pyramid, whole 256×256 rendered images letterboxed to 128×128, from scratch) with only
``loss.name`` changed, on the same rendered images, epochs and seeds; AP by pycocotools on the
300 held-out images, and the Pearson correlation of each person's confidence (1 − mean σ̂) with
its OKS. The paper's PointSet Anchor numbers (COCO, 67.0 → 67.4 AP with RLE) are printed for the
ordering only. ``--versus`` runs a trained one-stage checkpoint and the top-down model (default:
the one that ships with rlepose) after each detector that works offline (HOG; YOLOX when cached)
and after the ground-truth boxes (the detector's ceiling), on the held-out images, one process,
``onnxruntime`` where installed.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from common import device_name, merge_results, run_rows, train_and_score, write_json
from rlepose.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "embedded" / "one_stage_res18_rle.yaml"
ROWS = {"rle": ({"name": "rle"}, 67.4), "l1": ({"name": "l1"}, 67.0), "laplace_nll": ({"name": "laplace_nll"}, None),
        "rle_calibrated": ({"name": "rle_calibrated"}, 67.4)}
METRICS = ("AP", "AP50", "AP75", "AR", "conf_oks_pearson", "people_per_image")


def train_row(row: str, seed: int, args: argparse.Namespace) -> dict:
    loss, _ = ROWS[row]
    out = Path(args.dir)
    cfg = load_config(CONFIG, [f"loss.name={loss['name']}", f"name=one_stage_{row}_seed{seed}_e{args.epochs}",
                               f"data.root={out / 'data'}", f"data.rendered=[{args.train_images}, {args.val_images}]",
                               f"train.epochs={args.epochs}", f"train.milestones={args.milestones}",
                               f"train.val_every={args.epochs}", f"train.seed={seed}", f"train.out_dir={out / 'runs'}"])
    return train_and_score(cfg, METRICS, seed)


def print_table(results: list[dict]) -> None:
    print(f"\n{'row':>14} {'AP':>12} {'AP50':>6} {'AP75':>6} {'AR':>6} {'conf/OKS':>14} {'seeds':>5} {'paper AP':>9}")
    for r in results:
        m, s = r["mean"], r["std"]
        print(f"{r['row']:>14} {100 * m['AP']:5.1f} ± {100 * s['AP']:3.1f} {100 * m['AP50']:6.1f} {100 * m['AP75']:6.1f} "
              f"{100 * m['AR']:6.1f} {m['conf_oks_pearson']:6.3f}±{s['conf_oks_pearson']:.3f} {len(r['runs']):>5} "
              f"{r['paper_AP'] if r['paper_AP'] is not None else '—':>9}")


def versus(args: argparse.Namespace) -> None:
    """One-stage against top-down + detector on the held-out images: AP and images/s."""
    import json

    import numpy as np

    from rlepose.data.io import read_image
    from rlepose.data.keypoints import COCO_KEYPOINTS
    from rlepose.data.synthetic import write_splits
    from rlepose.demo import SHIPPED_MODEL
    from rlepose.evaluation.coco import coco_keypoint_ap, oks_nms
    from rlepose.hub import DownloadError
    from rlepose.inference.detectors import NoDetectorError, build_detector
    from rlepose.inference.predictor import PosePredictor

    data = Path(args.dir) / "data"
    write_splits(data, 0, args.val_images)
    ann = json.loads((data / "val.json").read_text())
    images = [(img["id"], data / "val" / img["file_name"]) for img in ann["images"]]
    truth = {i["id"]: [a["bbox"] for a in ann["annotations"] if a["image_id"] == i["id"]] for i in ann["images"]}
    sigmas = np.asarray(COCO_KEYPOINTS.sigmas)

    def run(name: str, predictor, boxes_of=None, detector=None) -> dict:
        results, start = [], time.perf_counter()
        for image_id, path in images:
            image = read_image(path)
            if boxes_of is not None:
                people = predictor.predict(image, boxes_of(image_id))
            elif detector is not None:
                b, s = detector(image)
                people = predictor.predict(image, b, s) if len(b) else []
            else:
                people = predictor(image)
            if predictor.needs_boxes and len(people) > 1:  # the top-down evaluation's OKS-NMS at 0.9
                kp = np.stack([p.keypoints for p in people])
                keep = oks_nms(kp, np.array([p.score for p in people]),
                               np.array([p.bbox[2] * p.bbox[3] for p in people]), sigmas, 0.9)
                people = [people[i] for i in keep]
            results += [p.to_coco(image_id) for p in people]
        seconds = time.perf_counter() - start
        metrics = coco_keypoint_ap(data / "val.json", results)
        row = {"pipeline": name, "AP": metrics["AP"], "AP50": metrics["AP50"], "AR": metrics["AR"],
               "images_per_s": len(images) / seconds, "people_per_image": len(results) / len(images)}
        print(f"{name:>44}: AP {100 * row['AP']:5.1f}  AP50 {100 * row['AP50']:5.1f}  AR {100 * row['AR']:5.1f}  "
              f"{row['images_per_s']:6.1f} images/s", flush=True)
        return row

    from rlepose.models.checkpoint import read_checkpoint

    def named(path) -> str:  # a run's checkpoints are all last.ckpt or best-*.ckpt: name them by their run
        p = Path(path)
        return p.parent.parent.name if p.parent.name == "checkpoints" else p.name

    tasks = {path: read_checkpoint(path)["hyper_parameters"]["config"].get("task", "topdown") for path in args.versus}
    label = {"one_stage": "one-stage", "rcnn": "end-to-end top-down"}
    rows = [run(f"{label.get(tasks[path], tasks[path])} ({named(path)})",
                PosePredictor.from_checkpoint(path, box_threshold=args.box_threshold)) for path in args.versus]
    top_down = args.top_down or SHIPPED_MODEL
    predictor = PosePredictor.from_checkpoint(top_down, detector=None)
    rows.append(run(f"top-down ({Path(top_down).name}) + true boxes", predictor, boxes_of=lambda i: truth[i]))
    skipped = []
    for det in ("hog", "yolox-tiny", "yolox-s"):
        try:
            detector = build_detector(det, score_threshold=args.box_threshold)
        except (DownloadError, NoDetectorError, FileNotFoundError, ValueError) as e:  # YOLOX: downloaded on first use
            skipped.append(f"{det}: {e}")
            continue
        rows.append(run(f"top-down ({Path(top_down).name}) + {det}", predictor, detector=detector))
    epochs = {name: read_checkpoint(path)["hyper_parameters"]["config"]["train"]["epochs"]
              for name, path in [*((named(p), p) for p in args.versus), ("top_down", top_down)]}
    write_json(Path(args.out), {"whole_image_models": [named(p) for p in args.versus], "top_down": Path(top_down).name,
                                "trained_epochs": epochs,
                                "held_out_images": len(images), "device": device_name(),
                                "box_threshold": args.box_threshold,
                                "note": "one process; images read from disk, detection, pose and decoding timed; "
                                        "true boxes: no detector time (the ceiling of any detector)",
                                "skipped": skipped, "rows": rows})
    print(f"written to {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="rle,l1,laplace_nll", help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--milestones", default="[10]", help="YAML list of epochs where the learning rate drops ×0.1")
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--dir", default="benchmarks/results/one_stage")
    parser.add_argument("--out", default="benchmarks/results/one_stage.json")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join these result files into one table and exit")
    parser.add_argument("--versus", metavar="CKPT", nargs="+",
                        help="compare these whole-image checkpoints (one-stage, rcnn) with top-down + detectors")
    parser.add_argument("--top-down", metavar="CKPT", help="the top-down model for --versus (default: the shipped one)")
    parser.add_argument("--box-threshold", type=float, default=0.05,
                        help="--versus: the lowest person probability (one-stage) and detector score kept; default "
                             "0.05, the one-stage evaluation's")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    if args.versus:
        return versus(args)
    if args.merge:
        # settings added after the first runs, at the values those runs had
        merged_args, results = merge_results(args.merge, METRICS, defaults={"box_threshold": 0.05})
        print_table(results)
        write_json(Path(args.out), {"args": merged_args, "config": CONFIG.name, "merged_from": args.merge,
                                    "rows": results})
        return
    results = run_rows(ROWS, train_row, METRICS, args, CONFIG.name, "paper_AP",
                       lambda r: f"AP {r['AP']:.3f} AP50 {r['AP50']:.3f} corr {r['conf_oks_pearson']:.3f}")
    print_table(results)
    write_json(Path(args.out), {"args": vars(args), "config": str(CONFIG.name), "rows": results})
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
