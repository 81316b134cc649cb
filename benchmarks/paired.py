"""Two rows of a benchmark compared seed by seed, each pair trained on one device.

    python benchmarks/paired.py rle laplace_nll benchmarks/results/paper_tables_demo_e24.json parts/*.json
    python benchmarks/paired.py rle l2 benchmarks/results/lifting.json --metrics MPJPE,PA-MPJPE

Seed s of row A is paired with seed s of row B only where both ran on the same device: the same
seed on another device is not the same run (on the 2-D benchmark the H200 and the 2-core CPU
gave the same seed of Laplace NLL 1.0 and 1.5 AP apart, as much as the spread between seeds), so
a pair across devices would measure the device as much as the loss. Seeds without a
same-device pair are listed and left out. Runs made before runs recorded their device count as one
unrecorded device. The files must have been run with the same settings (``--merge``'s rule); a row
may hold a seed once per device (a merged table and the part it was merged from may both be given).

Prints each pair's difference A − B and, over the pairs, the mean difference ± its standard
error (sample std / √n) and how many pairs A is above B. AP-type metrics are printed ×100 (AP
points); the JSON keeps the benchmark's units.
"""
from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from common import PAPER_TABLES_DEFAULTS, read_results, write_json
PREFERRED = ("AP", "AP50", "AP75", "AP_true", "conf_oks_pearson", "abs_error_mean", "MPJPE", "PA-MPJPE")
UNRECORDED = "unrecorded"


def runs_by_seed_and_device(results: list[dict], row: str) -> dict[tuple[int, str], dict]:
    """The runs of ``row`` in every file, keyed by (seed, device); one run per key."""
    runs: dict[tuple[int, str], dict] = {}
    loss = None
    for data in results:
        for r in data["rows"]:
            if r["row"] != row:
                continue
            if loss is not None and r["loss"] != loss:
                raise ValueError(f"row {row!r} was run with loss {r['loss']} in one file and {loss} in another")
            loss = r["loss"]
            for run in r["runs"]:
                key = (run["seed"], run.get("device", UNRECORDED))
                if key in runs and runs[key] != run:  # the same run in a merged table and its part is one run
                    raise ValueError(f"row {row!r} holds seed {key[0]} twice on {key[1]}: keep one of the two files")
                runs[key] = run
    if not runs:
        raise ValueError(f"no runs of row {row!r} in these files")
    return runs


def paired_differences(a: dict[tuple[int, str], dict], b: dict[tuple[int, str], dict],
                       metrics: tuple[str, ...]) -> dict:
    """Pairs of same seed and device; per pair each metric's A, B and A − B, and over the pairs
    the mean difference, its standard error and the number of pairs where A is above B.
    ``unpaired``: seeds that both rows ran, but on no common device, and seeds only one row ran."""
    pairs = [{"seed": seed, "device": device, **{m: {"a": a[seed, device][m], "b": b[seed, device][m],
                                                     "diff": a[seed, device][m] - b[seed, device][m]}
                                                 for m in metrics}}
             for seed, device in sorted(a.keys() & b.keys())]
    paired_seeds = {p["seed"] for p in pairs}
    unpaired = sorted({seed for seed, _ in a.keys() | b.keys()} - paired_seeds)
    summary = {}
    for m in metrics:
        d = [p[m]["diff"] for p in pairs]
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        summary[m] = {"mean_diff": statistics.mean(d) if d else float("nan"), "standard_error": se,
                      "a_above_b": sum(x > 0 for x in d), "pairs": len(d)}
    return {"pairs": pairs, "summary": summary, "unpaired_seeds": unpaired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row_a")
    parser.add_argument("row_b")
    parser.add_argument("files", nargs="+", metavar="JSON", help="benchmark result files (paper_tables.py, lifting.py)")
    parser.add_argument("--metrics", help=f"comma-separated (default: those every run has, of {', '.join(PREFERRED)})")
    parser.add_argument("--out", help="write the pairs and the summary here as JSON")
    args = parser.parse_args()

    first = read_results(args.files[:1])[0]["args"]
    results = read_results(args.files, PAPER_TABLES_DEFAULTS if "demo_model" in first else None)
    a, b = runs_by_seed_and_device(results, args.row_a), runs_by_seed_and_device(results, args.row_b)
    metrics = (tuple(args.metrics.split(",")) if args.metrics else
               tuple(m for m in PREFERRED if all(m in run for run in [*a.values(), *b.values()])))
    missing = [m for m in metrics if not all(m in run for run in [*a.values(), *b.values()])]
    if missing:
        parser.error(f"metric(s) {missing} missing from some runs")
    out = paired_differences(a, b, metrics)
    if not out["pairs"]:
        parser.error(f"{args.row_a} and {args.row_b} share no seed on one device")

    scale = {m: 100.0 if m.startswith("AP") else 1.0 for m in metrics}
    print(f"{args.row_a} − {args.row_b}, paired by seed on one device (AP-type metrics ×100)")
    print(f"{'seed':>4} {'device':>20} " + " ".join(f"{m:>22}" for m in metrics))
    for p in out["pairs"]:
        cells = [f"{scale[m] * p[m]['a']:7.4g} {scale[m] * p[m]['b']:7.4g} {scale[m] * p[m]['diff']:+7.3g}" for m in metrics]
        print(f"{p['seed']:>4} {p['device'][:20]:>20} " + " ".join(f"{c:>22}" for c in cells))
    for m in metrics:
        s = out["summary"][m]
        print(f"{m}: {args.row_a} − {args.row_b} = {scale[m] * s['mean_diff']:+.3g} ± {scale[m] * s['standard_error']:.2g} "
              f"(mean ± standard error over {s['pairs']} pairs), {args.row_a} above on {s['a_above_b']} of {s['pairs']}")
    if out["unpaired_seeds"]:
        print(f"left out, no same-device pair: seeds {out['unpaired_seeds']}")
    if args.out:
        write_json(Path(args.out), {"rows": [args.row_a, args.row_b], "files": args.files, "metrics": list(metrics), **out})
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
