"""FC lifting network (Martinez et al.) with each loss, over several seeds: MPJPE, PA-MPJPE and
the calibration of σ̂, mean ± std.

    python benchmarks/lifting.py [--rows l2,laplace_nll,rle] [--seeds 0 1 2] [--epochs 8]
    python benchmarks/lifting.py --data-3d data/h36m/data_3d_h36m.npz --cameras data/h36m/cameras.pkl
    python benchmarks/lifting.py --merge a.json b.json ... [--out all.json]   # runs made apart, one table

Without ``--data-3d`` the poses are GENERATED (rlepose.data.h36m.generate_pose_set: H36M bone
lengths, joint-angle limits, seen through the real cameras of the fixture's cameras.pkl;
train subjects' cameras for training, S9/S11's for testing; the seed draws the poses too), so
the numbers are not comparable with the paper's, which are printed beside them for reference
only. Every row gets the same data, seeds, epochs and batch size. Runs through
``rlepose.training.run.train``, the same code as ``rlepose train configs/h36m/lifting_fc_*.yaml``.
σ̂ and |µ̂ − µg| are means over held-out coordinates in the targets' std units.
JSON: one row per loss with every run, and ``mean`` / ``std`` of each metric over the seeds.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from common import device_name, merge_results, row_record, write_json
from experimental_losses import experimental_loss, trainable_section
from rlepose.config import config_from_dict
from rlepose.training.run import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CAMERAS = ROOT.parent / "shared" / "data" / "fixtures" / "h36m" / "cameras.pkl"
ROWS = {  # name: (loss config section, paper Table 8 MPJPE / PA-MPJPE or None)
    "l2": ({"name": "l2"}, {"MPJPE": 43.6, "PA-MPJPE": 33.2}),
    "l1": ({"name": "l1"}, None),
    "laplace_nll": ({"name": "laplace_nll"}, None),
    # the published forms of RLE, trained as published (no flow warm-up)
    "rle": ({"name": "rle"}, {"MPJPE": 40.9, "PA-MPJPE": 31.1}),
    "rle_paper": ({"name": "rle_paper"}, None),
    "rle_mmpose": ({"name": "rle_mmpose"}, None),
    # rlepose's calibrated variant; the flow's gradient reaches µ̂ after half the epochs (the
    # rate decays ×0.95 every epoch) unless flow_warmup_epochs is given
    "rle_calibrated": ({"name": "rle_calibrated", "q": "laplace", "beta": 0.5}, None),
    "rle_calibrated_beta1": ({"name": "rle_calibrated", "q": "laplace", "beta": 1.0}, None),
    "rle_calibrated_beta0": ({"name": "rle_calibrated", "q": "laplace", "beta": 0.0}, None),
    "rle_calibrated_beta0_no_warmup": ({"name": "rle_calibrated", "q": "laplace", "beta": 0.0, "flow_warmup_epochs": 0},
                                       None),
    "rle_calibrated_beta1_no_warmup": ({"name": "rle_calibrated", "q": "laplace", "beta": 1.0, "flow_warmup_epochs": 0},
                                       None),
    "rle_calibrated_unit_flow": ({"name": "rle_calibrated", "q": "laplace", "beta": 0.0, "flow_base_std": 1.0,
                                  "flow_warmup_epochs": 0}, None),
    # ablation: the calibrated loss with a flow that stays flat throughout (β-NLL Laplace)
    "laplace_beta1": ({"name": "rle_calibrated", "q": "laplace", "beta": 1.0, "flow_base_std": 1e3,
                       "flow_warmup_epochs": 0}, None),
    # experimental (benchmarks/experimental_losses.py)
    "rle_standardized": ({"name": "rle_standardized", "flow_warmup_epochs": 0}, None),
}
METRICS = ("MPJPE", "PA-MPJPE", "sigma_mean", "abs_error_mean", "sigma_over_error")


def print_table(source: str, args: dict, rows: list[dict]) -> None:
    print(f"\nFC lifting on {source}, {args['epochs']} epochs, batch 1024, Adam 1e-3 ×0.95/epoch, "
          f"seeds {args['seeds']} (mean ± std)")
    print(f"{'row':>19} {'MPJPE':>12} {'PA-MPJPE':>12} {'σ̂':>6} {'|err|':>6} {'paper MPJPE':>12} {'paper PA':>9}")
    for r in rows:
        m, s = r["mean"], r["std"]
        p = r["paper"] or {"MPJPE": float("nan"), "PA-MPJPE": float("nan")}
        print(f"{r['row']:>19} {m['MPJPE']:6.1f} ± {s['MPJPE']:3.1f} {m['PA-MPJPE']:6.1f} ± {s['PA-MPJPE']:3.1f} "
              f"{m['sigma_mean']:6.3f} {m['abs_error_mean']:6.3f} {p['MPJPE']:12.1f} {p['PA-MPJPE']:9.1f}")
    print("(mm; σ̂ and |err| in target std units; paper: real Human3.6M, 80 epochs — for reference only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-3d", help="a real data_3d_h36m.npz (else generated poses)")
    parser.add_argument("--data-2d", help="optional data_2d_h36m_gt.npz")
    parser.add_argument("--cameras", default=str(FIXTURE_CAMERAS))
    parser.add_argument("--rows", "--losses", dest="rows", default="l2,laplace_nll,rle,rle_calibrated_beta1",
                        help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-poses", type=int, default=50_000)
    parser.add_argument("--test-poses", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="benchmarks/results/lifting.json")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join these result files into one table and exit")
    args = parser.parse_args()
    if args.merge:
        merged_args, rows = merge_results(args.merge, METRICS)
        source = json.loads(Path(args.merge[0]).read_text())["data"]
        print_table(source, merged_args, rows)
        write_json(Path(args.out), {"data": source, "args": merged_args, "merged_from": args.merge, "rows": rows})
        print(f"written to {args.out}")
        return
    logging.getLogger("lightning").setLevel(logging.ERROR)

    cameras = Path(args.cameras).resolve()
    data = {"root": str(cameras.parent), "cameras": cameras.name, "batch_size": 1024, "val_batch_size": 4096,
            "generated_train": args.train_poses, "generated_val": args.test_poses}
    if args.data_3d:
        data["data_3d"] = str(Path(args.data_3d).resolve())
        data["data_2d"] = str(Path(args.data_2d).resolve()) if args.data_2d else None
    rows = []
    out = Path(args.out)
    source = "real (" + args.data_3d + ")" if args.data_3d else \
        f"GENERATED ({args.train_poses} train / {args.test_poses} test poses)"
    for row in args.rows.split(","):
        loss, paper = ROWS[row]
        runs = []
        for seed in args.seeds:
            cfg = config_from_dict({"name": f"bench_lifting_{row}_seed{seed}", "task": "lifting",
                                    "loss": trainable_section(loss),
                                    "data": data, "train": {"epochs": args.epochs, "lr": 1e-3, "gamma": 0.95,
                                                            "val_every": args.epochs, "seed": seed,
                                                            "out_dir": "benchmarks/results/runs"}})
            t0 = time.perf_counter()
            module, _ = train(cfg, loss=experimental_loss(loss, 3), enable_progress_bar=False,
                              enable_model_summary=False, logger=False)
            runs.append({**module.last_metrics, "seed": seed, "seconds": time.perf_counter() - t0,
                         "device": device_name()})
            print(f"  {row} seed {seed}: MPJPE {runs[-1]['MPJPE']:.1f} mm, σ̂/|err| {runs[-1]['sigma_over_error']:.2f} "
                  f"({runs[-1]['seconds']:.0f}s)", flush=True)
            partial = row_record(row, loss, runs, METRICS, paper=paper)
            write_json(out, {"data": source, "args": vars(args), "rows": [*rows, partial]})  # a kill loses one run
        rows.append(partial)
    print_table(source, vars(args), rows)
    write_json(out, {"data": source, "args": vars(args), "rows": rows})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
