"""The paper's Table 18 (appendix H) on the embedded OCT data: retinal layer boundaries regressed
column by column with direct regression (L1), L2, Laplace NLL and RLE, over seeds.

    python benchmarks/oct.py [--rows l1,l2,laplace_nll,rle] [--seeds 0 1 2] [--epochs 30]
    python benchmarks/oct.py --merge part1.json part2.json ... [--out all.json]

Every row trains ``configs/embedded/oct_res18_rle.yaml`` (ResNet-18 at half width, a 64-channel
pyramid read column by column, generated DME-like B-scans: subjects 1-5 train, 6-10 held out)
with only ``loss.name`` changed: same data, epochs, learning rate and gradient clipping for every
row. The metric is Table 18's: the mean absolute boundary error in pixels over every labelled
column of the held-out B-scans (per boundary too, and in µm at the generated scans' pixel size);
also the two generated annotators' disagreement (the labels' own noise) and the Pearson
correlation of σ̂ with the error. The paper's numbers (Duke DME, its own network and units:
direct regression 18.1, RLE 3.1) are printed for the ordering only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import device_name, merge_results, run_rows, train_and_score, write_json
from rlepose.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "embedded" / "oct_res18_rle.yaml"
#: row → (loss section, the paper's Table 18 error)
ROWS = {"l1": ({"name": "l1"}, 18.1), "l2": ({"name": "l2"}, None), "laplace_nll": ({"name": "laplace_nll"}, None),
        "rle": ({"name": "rle"}, 3.1)}
METRICS = ("mean_abs_error_px", "mean_abs_error_um", "expert_disagreement_px", "sigma_error_pearson",
           "error_px/ILM", "error_px/NFL/GCL", "error_px/IPL/INL", "error_px/INL/OPL", "error_px/OPL/ONL",
           "error_px/ISM/ISE", "error_px/OS/RPE", "error_px/BM")


def train_row(row: str, seed: int, args: argparse.Namespace) -> dict:
    loss, _ = ROWS[row]
    out = Path(args.dir)
    cfg = load_config(CONFIG, [f"loss.name={loss['name']}", f"name=oct_{row}_seed{seed}_e{args.epochs}",
                               f"data.root={out / 'data'}", f"data.rendered=[{args.subjects}, {args.scans}]",
                               f"train.epochs={args.epochs}", f"train.milestones={args.milestones}",
                               f"train.val_every={args.epochs}", f"train.seed={seed}", f"train.out_dir={out / 'runs'}"])
    return train_and_score(cfg, METRICS, seed)


def print_table(results: list[dict]) -> None:
    print(f"\n{'row':>12} {'error (px)':>14} {'error (µm)':>11} {'σ̂/error r':>10} {'seeds':>5} {'paper':>6}")
    for r in results:
        m, s = r["mean"], r["std"]
        print(f"{r['row']:>12} {m['mean_abs_error_px']:7.3f} ± {s['mean_abs_error_px']:.3f} "
              f"{m.get('mean_abs_error_um', float('nan')):11.1f} {m['sigma_error_pearson']:10.3f} {len(r['runs']):>5} "
              f"{r['paper_error'] if r['paper_error'] is not None else '—':>6}")
    if results:
        print(f"annotators' own disagreement: {results[0]['mean']['expert_disagreement_px']:.3f} px")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated from {', '.join(ROWS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--milestones", default="[24]", help="learning-rate steps (×0.1), a YAML list")
    parser.add_argument("--subjects", type=int, default=10, help="generated subjects (half train, half held out)")
    parser.add_argument("--scans", type=int, default=24, help="labelled B-scans per generated subject")
    parser.add_argument("--dir", default="outputs/oct_benchmark", help="data and runs")
    parser.add_argument("--merge", nargs="+", help="merge these result files (each with its own rows or seeds)")
    parser.add_argument("--out", default="benchmarks/results/oct_boundaries.json")
    args = parser.parse_args()
    if args.merge:
        merged_args, results = merge_results(args.merge, METRICS)
        print_table(results)
        write_json(Path(args.out), {"args": merged_args, "config": CONFIG.name, "merged_from": args.merge,
                                    "rows": results})
        return
    print(f"{device_name()}: {args.epochs} epochs, seeds {args.seeds}, {args.subjects} × {args.scans} B-scans")
    results = run_rows(ROWS, train_row, METRICS, args, CONFIG.name, "paper_error",
                       lambda r: f"{r['mean_abs_error_px']:.3f} px")
    print_table(results)
    write_json(Path(args.out), {"args": vars(args), "config": CONFIG.name, "rows": results})


if __name__ == "__main__":
    main()
