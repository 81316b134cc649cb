"""σ̂ at its true scale: `rlepose calibrate` on the shipped model, checked on other images.

    python benchmarks/sigma_calibration.py [--images 300] [--save calibrated.pt] [--out benchmarks/results/sigma_calibration_shipped.json]

The shipped model (uncalibrated: its stored calibration, if any, is removed first) is calibrated
by ``rlepose calibrate`` on embedded held-out images rendered from seed 20 000 (neither its
training images nor the 300 held-out images every other benchmark scores), which fits on half of
them and checks on the other half. Then, on the standard held-out images (seed 10 000), the
coverage of the central 50/80/95% intervals of each coordinate's Laplace density (scale c·σ̂
before, c·s_k·σ̂ after; c the model's Q scale per σ̂), overall and per joint, and how well each
person's expected OKS (through the predictor, true boxes) follows its true OKS (Pearson). Goal:
every level's coverage within 5 points of the level after calibration.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from common import write_json
from rlepose.analysis.calibration import LEVELS, calibrate_checkpoint, laplace_coverage
from rlepose.config import config_from_dict, config_to_dict
from rlepose.demo import SHIPPED_MODEL, shipped_eval_config
from rlepose.models.checkpoint import read_checkpoint, save_atomic
from rlepose.training.run import heldout_arrays, load_module


def uncalibrated_copy(src: Path, dst: Path) -> Path:
    raw = read_checkpoint(src, expand=False)
    raw.pop("sigma_calibration", None)
    return save_atomic(raw, dst)


def expected_vs_true_oks(checkpoint: Path, data: Path) -> float:
    """Pearson correlation of expected OKS and OKS over the held-out people (true boxes)."""
    from rlepose.data.io import read_image
    from rlepose.evaluation.coco import oks, pearson
    from rlepose.data.keypoints import COCO_KEYPOINTS
    from rlepose.inference.predictor import PosePredictor

    predictor = PosePredictor.from_checkpoint(checkpoint, precision="fp32", detector=None)
    ann = json.loads((data / "val.json").read_text())
    believed, true = [], []
    sigmas = np.asarray(COCO_KEYPOINTS.sigmas)
    for img in ann["images"]:
        people = [a for a in ann["annotations"] if a["image_id"] == img["id"]]
        found = predictor.predict(read_image(data / "val" / img["file_name"]), [a["bbox"] for a in people])
        for p, a in zip(found, people):
            kps = np.reshape(a["keypoints"], (-1, 3))
            believed.append(p.expected_oks)
            true.append(oks(p.keypoints, kps[:, :2], kps[:, 2], a["area"], sigmas))
    return pearson(np.array(believed), np.array(true))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--save", help="also keep the calibrated checkpoint here")
    parser.add_argument("--out", default="benchmarks/results/sigma_calibration_shipped.json")
    args = parser.parse_args()
    from rlepose.data.synthetic import write_splits

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain = uncalibrated_copy(Path(SHIPPED_MODEL), tmp / "plain.pt")
        test_cfg = shipped_eval_config(tmp / "test", plain, args.images)  # seed 10 000: the usual held-out images
        fit_dir = tmp / "fit"
        write_splits(fit_dir / "data", 0, args.images, seed=10_000)  # held out from seed 20 000
        fit_cfg = config_from_dict({**config_to_dict(test_cfg), "data": {**config_to_dict(test_cfg)["data"],
                                                                           "root": str(fit_dir / "data")}})
        calibrated = tmp / "calibrated.pt"
        stored = calibrate_checkpoint(plain, fit_cfg, calibrated)
        module = load_module(plain)
        arrays = {k: v.numpy().astype(np.float64) for k, v in heldout_arrays(module, test_cfg).items()}
        c = stored["scale_per_sigma"]
        parts = [arrays[k] for k in ("mu", "sigma", "target", "weight")]
        before = laplace_coverage(*parts, np.full(len(stored["joint_scale"]), c))
        after = laplace_coverage(*parts, c * np.asarray(stored["joint_scale"]))
        data = Path(test_cfg.data.root)
        corr = {"before": expected_vs_true_oks(plain, data), "after": expected_vs_true_oks(calibrated, data)}
        if args.save:
            save_atomic(read_checkpoint(calibrated, expand=False), args.save)
    rows = [{"level": level, "before": before[str(level)]["overall"], "after": after[str(level)]["overall"],
             "after_minus_level": after[str(level)]["overall"] - level} for level in LEVELS]
    print(f"{'level':>6} {'before':>8} {'after':>8}")
    for r in rows:
        print(f"{int(100 * r['level']):>5}% {100 * r['before']:7.1f}% {100 * r['after']:7.1f}%")
    print(f"expected OKS vs OKS, Pearson: {corr['before']:.3f} before, {corr['after']:.3f} after")
    write_json(Path(args.out), {"model": Path(SHIPPED_MODEL).name, "fit_images": args.images,
                                "fit": "seed 20000 held-out images, half fitted and half checked by rlepose calibrate",
                                "test": f"the {args.images} standard held-out images (seed 10000)",
                                "scale_per_sigma": c, "joint_scale": stored["joint_scale"],
                                "calibrate_check": {"before": stored["coverage_before"], "after": stored["coverage_after"]},
                                "rows": rows, "per_joint_after": {str(k): v["per_joint"] for k, v in after.items()},
                                "expected_oks_pearson": corr})
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
