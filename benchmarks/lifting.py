"""FC lifting network (Martinez et al.) with L2 vs. with RLE, MPJPE and PA-MPJPE.

    python benchmarks/lifting.py                       # generated poses, real H36M cameras
    python benchmarks/lifting.py --data-3d data/h36m/data_3d_h36m.npz --cameras data/h36m/cameras.pkl

Without ``--data-3d`` the poses are GENERATED (rlepose.data.h36m.generate_pose_set: H36M bone
lengths, joint-angle limits, seen through the real cameras of the fixture's cameras.pkl;
train subjects' cameras for training, S9/S11's for testing), so the numbers are not
comparable with the paper's, which are printed beside them for reference only. Every loss
gets the same data, seed, epochs and batch size. Runs through ``rlepose.training.run.train``,
the same code as ``rlepose train configs/h36m/lifting_fc_*.yaml``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from rlepose.training.config import config_from_dict
from rlepose.training.run import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CAMERAS = ROOT.parent / "shared" / "data" / "fixtures" / "h36m" / "cameras.pkl"
PAPER = {"l2": {"MPJPE": 43.6, "PA-MPJPE": 33.2}, "rle": {"MPJPE": 40.9, "PA-MPJPE": 31.1}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-3d", help="a real data_3d_h36m.npz (else generated poses)")
    parser.add_argument("--data-2d", help="optional data_2d_h36m_gt.npz")
    parser.add_argument("--cameras", default=str(FIXTURE_CAMERAS))
    parser.add_argument("--losses", default="l2,rle")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-poses", type=int, default=50_000)
    parser.add_argument("--test-poses", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/lifting.json")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)

    cameras = Path(args.cameras).resolve()
    data = {"root": str(cameras.parent), "cameras": cameras.name, "batch_size": 1024, "val_batch_size": 4096,
            "generated_train": args.train_poses, "generated_val": args.test_poses}
    if args.data_3d:
        data["data_3d"] = str(Path(args.data_3d).resolve())
        data["data_2d"] = str(Path(args.data_2d).resolve()) if args.data_2d else None
    rows = []
    for loss in args.losses.split(","):
        cfg = config_from_dict({"name": f"bench_lifting_{loss}", "task": "lifting", "loss": {"name": loss},
                                "data": data, "train": {"epochs": args.epochs, "lr": 1e-3, "gamma": 0.95,
                                                        "val_every": args.epochs, "seed": args.seed,
                                                        "out_dir": "benchmarks/results/runs"}})
        t0 = time.perf_counter()
        module, _ = train(cfg, enable_progress_bar=False, enable_model_summary=False, logger=False)
        rows.append({"loss": loss, **module.last_metrics, "seconds": time.perf_counter() - t0,
                     "paper": PAPER.get(loss)})
    source = "real (" + args.data_3d + ")" if args.data_3d else \
        f"GENERATED ({args.train_poses} train / {args.test_poses} test poses)"
    print(f"\nFC lifting on {source}, {args.epochs} epochs, batch 1024, Adam 1e-3 ×0.95/epoch, seed {args.seed}")
    print(f"{'loss':>5} {'MPJPE':>8} {'PA-MPJPE':>9} {'paper MPJPE':>12} {'paper PA':>9} {'time':>7}")
    for r in rows:
        p = r["paper"] or {"MPJPE": float("nan"), "PA-MPJPE": float("nan")}
        print(f"{r['loss']:>5} {r['MPJPE']:8.1f} {r['PA-MPJPE']:9.1f} {p['MPJPE']:12.1f} {p['PA-MPJPE']:9.1f} "
              f"{r['seconds']:6.0f}s")
    print("(mm; paper: real Human3.6M, 80 epochs — for reference, not comparable with generated data)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"data": source, "epochs": args.epochs, "seed": args.seed, "rows": rows}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
