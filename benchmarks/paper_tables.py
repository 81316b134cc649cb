"""The rows of the paper's Tables 1, 4 and 7 and the heatmap baseline of Table 2(a), trained on
the embedded synthetic dataset with one fixed budget and seed per row.

    python benchmarks/paper_tables.py [--epochs 4] [--train-images 3000] [--seeds 0 1] [--rows rle,l1,...]

Every row: ResNet-18 at 96×72 from scratch (no pretrained weights can be had here), Adam 1e-3,
the same rendered images, epochs and seeds; only the loss (or the heatmap head) changes. AP,
AP50, AP75 by pycocotools on the held-out rendered images, and the Pearson correlation between
instance confidence and OKS (Table 4). The paper's numbers (ResNet-50, real COCO, 270 epochs)
are printed beside for the ordering only; the absolute values are not comparable.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from rlepose.demo import demo_config, render_data
from rlepose.training.run import train

ROWS = {  # name: (loss, paper AP, paper Table 4 correlation, log s grid)
    "l2": ("l2", 36.6, None, None), "l1": ("l1", 58.1, None, None),
    "gaussian_nll": ("gaussian_nll", 60.2, 0.476, None), "laplace_nll": ("laplace_nll", 67.4, 0.522, None),
    "dle": ("dle", 62.7, None, None), "rle_gaussian": ("rle_gaussian", 70.0, 0.540, None),
    "rle": ("rle", 70.5, 0.553, None), "heatmap": ("heatmap_mse", 71.0, 0.479, None),
    # not a paper row: RLE with the appendix-E log s term (Table 17 reports it changes nothing)
    "rle_log_s": ("rle", 70.5, None, 64),
}
DEFAULT_ROWS = "l2,l1,gaussian_nll,laplace_nll,dle,rle_gaussian,rle,heatmap"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--val-images", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--dir", default="benchmarks/results/paper_tables")
    parser.add_argument("--out", default="benchmarks/results/paper_tables.json")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    out_dir = Path(args.dir)
    render_data(out_dir, args.train_images, args.val_images, seed=0)  # one dataset for every row and seed

    results = []
    for row in args.rows.split(","):
        loss, paper_ap, paper_corr, log_s_grid = ROWS[row]
        runs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            cfg = demo_config(out_dir, args.epochs, seed, loss=loss, name=f"{row}_seed{seed}", log_s_grid=log_s_grid)
            module, _ = train(cfg, enable_progress_bar=False, enable_model_summary=False, logger=False)
            runs.append({**module.last_metrics, "seed": seed, "seconds": time.perf_counter() - t0})
            print(f"  {row} seed {seed}: AP {runs[-1]['AP']:.3f} corr {runs[-1]['conf_oks_pearson']:.3f} "
                  f"({runs[-1]['seconds']:.0f}s)", flush=True)
        summary = {k: statistics.mean(r[k] for r in runs) for k in ("AP", "AP50", "AP75", "conf_oks_pearson")}
        spread = {k: (statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0) for k in ("AP", "conf_oks_pearson")}
        results.append({"row": row, "loss": loss, "runs": runs, "mean": summary, "std": spread,
                        "paper_AP": paper_ap, "paper_corr": paper_corr})

    print(f"\nEmbedded synthetic dataset ({args.train_images} train / {args.val_images} held-out images), "
          f"ResNet-18 96×72 from scratch, {args.epochs} epochs, seeds {args.seeds}")
    print(f"{'row':>13} {'AP':>6} {'±':>5} {'AP50':>6} {'AP75':>6} {'corr':>6} {'paper AP':>9} {'paper corr':>11}")
    for r in results:
        m, s = r["mean"], r["std"]
        corr = "—" if r["paper_corr"] is None else f"{r['paper_corr']:.3f}"
        print(f"{r['row']:>13} {100 * m['AP']:6.1f} {100 * s['AP']:5.1f} {100 * m['AP50']:6.1f} {100 * m['AP75']:6.1f} "
              f"{m['conf_oks_pearson']:6.3f} {r['paper_AP']:9.1f} {corr:>11}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": results}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
