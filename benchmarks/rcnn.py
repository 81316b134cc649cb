"""The paper's Table 2(c) on the embedded dataset: the end-to-end top-down model (Mask R-CNN's
keypoint branch) with its heatmap head and with the paper's RLE head, over seeds, each head's
keypoint-loss weight chosen by the same sweep; and the one-stage benchmark's L1 row again with a
keypoint weight of its own.

    python benchmarks/rcnn.py [--seeds 0 1 2] [--weights 0.3 1 3] [--epochs 12] [--milestones "[10]"]
                              [--train-images 3000] [--out benchmarks/results/rcnn.json]
    python benchmarks/rcnn.py --one-stage l1,rle [--weights 0.3 1 3] [--out benchmarks/results/one_stage_swept.json]
    python benchmarks/rcnn.py --weights-from benchmarks/results/rcnn_e6_600.json --train-images 1500 ...
    python benchmarks/rcnn.py --merge a.json b.json [--reference benchmarks/results/one_stage.json] --out c.json

Every row trains ``configs/embedded/rcnn_res18_rle.yaml`` with only ``rcnn.head`` (and
``rcnn.keypoint_weight``) changed, on the same rendered images, epochs and seeds. **Sweep:** for
each head, every weight of ``--weights`` is trained with the first seed and scored by COCO AP on
``--tune-images`` rendered images from seed 30 000 — held out from training and from the reported
test images (the 300 standard held-out images, seed 10 000) — and the best weight is kept; the
sweep is in the JSON. ``--weights-from`` skips the sweep and trains each row at the weight an
earlier run's sweep chose (a longer schedule at the weights a shorter one found); ``--sweep-only``
runs the sweeps alone (its JSON has no rows to report). **Rows** ``heatmap`` and ``rle`` (``--rows``):
each head with its weight over every seed, AP/AP50/AP75 (pycocotools) on the test images.
``--one-stage ROWS`` does the same for the one-stage model's rows (losses;
``configs/embedded/one_stage_res18_rle.yaml``, ``one_stage.keypoint_weight``): its ``l1`` row's
13.5 AP gap to RLE in ``one_stage.json`` came with one weight for every loss, tuned for none.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from common import row_record, summarize, train_and_score, write_json
from rlepose.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RCNN_CONFIG = ROOT / "configs" / "embedded" / "rcnn_res18_rle.yaml"
ONE_STAGE_CONFIG = ROOT / "configs" / "embedded" / "one_stage_res18_rle.yaml"
METRICS = ("AP", "AP50", "AP75", "AR", "conf_oks_pearson", "people_per_image")
TUNE_SEED = 30_000
PAPER = {"rcnn": {"heatmap": 66.0, "rle": 66.7}, "one_stage": {"l1": 67.0, "rle": 67.4}}  # Tables 2(c), 2(d), AP


def prepare_data(out: Path, train_images: int, test_images: int, tune_images: int) -> tuple[Path, Path]:
    """The rendered training and test images under ``out/data`` (as `rlepose demo` renders them)
    and a tuning root ``out/tune`` with the same training images and held-out images of its own."""
    from rlepose.data.synthetic import SyntheticConfig, write_dataset, write_splits

    data, tune = out / "data", out / "tune"
    write_splits(data, train_images, test_images)
    tune.mkdir(parents=True, exist_ok=True)
    for name in ("train.json", "train"):
        link = tune / name
        if not link.exists():
            os.symlink((data / name).resolve(), link)
    write_dataset(tune, SyntheticConfig(num_images=tune_images, seed=TUNE_SEED), "val")
    return data, tune


def run(kind: str, row: str, weight: float, seed: int, root: Path, args, tag: str) -> dict:
    """Train one model (``kind``: rcnn or one_stage) and score it on ``root``'s held-out images."""
    if kind == "rcnn":
        config, overrides = RCNN_CONFIG, [f"rcnn.head={row}", f"rcnn.keypoint_weight={weight}"]
    else:
        config, overrides = ONE_STAGE_CONFIG, [f"loss.name={row}", f"one_stage.keypoint_weight={weight}"]
    cfg = load_config(config, overrides + [
        f"name={kind}_{row}_w{weight}_seed{seed}_{tag}", f"data.root={root}", "data.rendered=null",
        f"train.epochs={args.epochs}", f"train.milestones={args.milestones}", f"train.val_every={args.epochs}",
        f"train.seed={seed}", f"train.out_dir={Path(args.dir) / 'runs'}", f"data.num_workers={args.workers}",
        *args.set])
    result = train_and_score(cfg, METRICS, seed)
    print(f"  {kind} {row} weight {weight} seed {seed} ({tag}): AP {result['AP']:.4f} AP50 {result['AP50']:.4f} "
          f"({result['seconds']:.0f} s)", flush=True)
    return {**result, "weight": weight}


def sweep_and_rows(kind: str, rows: list[str], args) -> dict:
    data, tune = prepare_data(Path(args.dir), args.train_images, args.test_images, args.tune_images)
    sweeps, results = {}, []
    out = {"args": vars(args), "config": (RCNN_CONFIG if kind == "rcnn" else ONE_STAGE_CONFIG).name,
           "tune": f"{args.tune_images} rendered images from seed {TUNE_SEED} (not trained on, not the test images)",
           "test": f"the {args.test_images} standard held-out images (seed 10000)"}
    earlier = swept_weights(args.weights_from) if args.weights_from else {}
    if earlier:
        out["sweep_from"] = Path(args.weights_from).name
    for row in rows:
        if earlier:
            if row not in earlier:
                raise SystemExit(f"{args.weights_from} has no row {row!r} (it has {', '.join(earlier)})")
            best, sweeps[row] = earlier[row]
        else:
            sweeps[row] = []
            for w in args.weights:
                sweeps[row].append(run(kind, row, w, args.seeds[0], tune, args, "tune"))
                write_json(Path(args.out), {**out, "rows": results, "sweep_in_progress": {row: sweeps[row]}})
            best = max(sweeps[row], key=lambda r: r["AP"])["weight"]
        if args.sweep_only:
            results.append({"row": row, "sweep": sweeps[row]})
            continue
        loss, runs = {"head" if kind == "rcnn" else "name": row, "keypoint_weight": best}, []
        for seed in args.seeds:
            runs.append(run(kind, row, best, seed, data, args, "test"))
            partial = row_record(row, loss, runs, METRICS, paper_AP=PAPER[kind].get(row), sweep=sweeps[row])
            write_json(Path(args.out), {**out, "rows": [*results, partial]})  # an interrupted run keeps what it did
        results.append(partial)
    return {**out, "rows": results}


def swept_weights(path: str) -> dict[str, tuple[float, list[dict]]]:
    """Each row's chosen weight and its sweep from an earlier result file of this benchmark: the
    rows of a longer schedule are trained at the weights a shorter one's sweep chose."""
    return {r["row"]: (r["loss"]["keypoint_weight"], r["sweep"]) for r in json.loads(Path(path).read_text())["rows"]}


def merge(files: list[str]) -> dict:
    """Join result files of the same setting into one: a row's sweeps are pooled (each weight
    once) and its runs at the pooled sweep's best weight are kept (each seed once); runs at another
    weight — a row whose sweep was widened and which was retrained at the new best — are kept
    aside as ``superseded_runs``."""
    parts = [json.loads(Path(f).read_text()) for f in files]
    rows: dict[str, dict] = {}
    for part in parts:
        for r in part["rows"]:
            row = rows.setdefault(r["row"], {"loss": dict(r["loss"]), "paper_AP": r.get("paper_AP"), "sweep": {}, "runs": []})
            for x in r["sweep"]:
                row["sweep"].setdefault(x["weight"], x)
            row["runs"] += r["runs"]
    out = []
    for name, row in rows.items():
        best = max(row["sweep"].values(), key=lambda x: x["AP"])["weight"]
        kept = [run for run in row["runs"] if run["weight"] == best]
        seeds = [run["seed"] for run in kept]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"row {name}: a seed at weight {best} is in more than one file")
        row["loss"]["keypoint_weight"] = best
        out.append(row_record(name, row["loss"], sorted(kept, key=lambda run: run["seed"]), METRICS,
                              paper_AP=row["paper_AP"], sweep=sorted(row["sweep"].values(), key=lambda x: x["weight"]),
                              superseded_runs=[run for run in row["runs"] if run["weight"] != best]))
    return {**{k: v for k, v in parts[0].items() if k != "rows"}, "merged_from": [Path(f).name for f in files],
            "rows": out}


def with_reference(result: dict, path: str) -> dict:
    """``result`` with the rows of an earlier benchmark file at the same budget (training images,
    epochs, milestones) that it did not train, under ``reference``: e.g. one_stage.json's ``rle``
    runs beside an ``l1`` row trained here at its swept weight."""
    ref = json.loads(Path(path).read_text())
    budget = ("train_images", "epochs", "milestones")
    ours, theirs = ({k: str(r["args"].get(k)) for k in budget} for r in (result, ref))
    if ours != theirs:
        raise SystemExit(f"{path} was trained with {theirs}, these runs with {ours}: not comparable")
    trained = {r["row"] for r in result["rows"]}
    rows = [{k: r[k] for k in ("row", "loss", "mean", "std", "runs")} for r in ref["rows"] if r["row"] not in trained]
    return {**result, "reference": {"file": Path(path).name, "rows": rows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--milestones", default="[10]")
    parser.add_argument("--train-images", type=int, default=3000)
    parser.add_argument("--test-images", type=int, default=300)
    parser.add_argument("--tune-images", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", default="heatmap,rle", help="the heads to train (comma-separated)")
    parser.add_argument("--one-stage", metavar="ROWS", help="sweep and train these one-stage rows instead (losses, "
                                                            "comma-separated, e.g. l1,rle)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="further config overrides for every run (e.g. rcnn.keypoint_channels=128)")
    parser.add_argument("--sweep-only", action="store_true", help="the sweeps on the tuning images, no rows")
    parser.add_argument("--weights-from", metavar="JSON", help="no sweep: each row's weight (and sweep, "
                                                               "recorded) from this earlier result file")
    parser.add_argument("--dir", default="benchmarks/results/rcnn")
    parser.add_argument("--out")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join these result files into --out and exit")
    parser.add_argument("--reference", metavar="JSON", help="with --merge: add the rows of this earlier result "
                                                            "at the same budget that were not trained here")
    args = parser.parse_args()
    if args.merge:
        merged = merge(args.merge)
        write_json(Path(args.out or "benchmarks/results/rcnn.json"),
                   with_reference(merged, args.reference) if args.reference else merged)
        return
    args.out = args.out or ("benchmarks/results/one_stage_swept.json" if args.one_stage
                            else "benchmarks/results/rcnn.json")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    result = sweep_and_rows("one_stage" if args.one_stage else "rcnn",
                            (args.one_stage or args.rows).split(","), args)
    if args.sweep_only:
        write_json(Path(args.out), result)
        for r in result["rows"]:
            print(f"{r['row']:>8}: " + ", ".join(f"weight {x['weight']:g} AP {100 * x['AP']:.1f}" for x in r["sweep"]))
        return
    print(f"\n{'row':>8} {'weight':>7} {'AP':>13} {'AP50':>6} {'AP75':>6} {'seeds':>5} {'paper AP':>9}")
    for r in result["rows"]:
        m, s = summarize(r["runs"], METRICS)
        print(f"{r['row']:>8} {r['loss']['keypoint_weight']:7.2f} {100 * m['AP']:5.1f} ± {100 * s['AP']:4.1f} "
              f"{100 * m['AP50']:6.1f} {100 * m['AP75']:6.1f} {len(r['runs']):>5} {r['paper_AP'] or '—':>9}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
