"""Helpers shared by the benchmarks: held-out calibration of σ̂ and mean ± std over seeds."""
from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch

from rlepose import files


@torch.no_grad()
def sigma_vs_error(mu: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor,
                   weight: torch.Tensor | None = None) -> dict[str, float]:
    """Means over labelled coordinates (same unit as the inputs) and their ratio; a calibrated
    Laplace-type scale has ratio ≈ 1 (σ̂ is then the predicted mean absolute error)."""
    if weight is None:
        weight = torch.ones_like(mu)
    elif weight.dim() == mu.dim() - 1:
        weight = weight.unsqueeze(-1).expand_as(mu)
    w = (weight > 0).to(mu.dtype)
    n = w.sum().clamp_min(1)
    s, e = (sigma * w).sum() / n, ((mu - target).abs() * w).sum() / n
    return {"sigma_mean": s.item(), "abs_error_mean": e.item(), "sigma_over_error": (s / e).item()}


def summarize(runs: list[dict], metrics: tuple[str, ...]) -> tuple[dict, dict]:
    """Mean and sample standard deviation over runs (seeds) of each metric every run has."""
    keys = [k for k in metrics if all(k in r for r in runs)]
    values = {k: [float(r[k]) for r in runs] for k in keys}
    mean = {k: statistics.mean(v) for k, v in values.items()}
    # a metric undefined in some run (NaN, e.g. a correlation with a constant) has an undefined spread
    std = {k: (0.0 if len(v) == 1 else statistics.stdev(v) if all(math.isfinite(x) for x in v) else math.nan)
           for k, v in values.items()}
    return mean, std


def top_level_aten_ops(fn) -> int:
    """How many ATen operators one call of ``fn`` dispatches at the top level: the torch
    profiler's ``aten::`` events with no ``aten::`` event above them (an operator's own
    sub-operators not counted). On a GPU each is at least one kernel launch."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()

    def nested(event) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return True
            parent = parent.cpu_parent
        return False

    return sum(1 for e in prof.events() if e.name.startswith("aten::") and not nested(e))


def device_name() -> str:
    """What trained a run: the GPU's name, or the CPU's model and core count."""
    import os
    import platform

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def row_record(row: str, loss: dict, runs: list[dict], metrics: tuple[str, ...], **extra) -> dict:
    """One benchmark row as the JSON keeps it: every run, and mean/std of each metric."""
    mean, std = summarize(runs, metrics)
    return {"row": row, "loss": loss, "runs": runs, "mean": mean, "std": std, **extra}


def write_json(path: Path, data: dict) -> Path:
    """Benchmark JSON, indented, written whole or not at all (:func:`rlepose.files.write_json`)."""
    return files.write_json(path, data, indent=2)


# paper_tables.py's settings added after its first runs, at the values those runs had
PAPER_TABLES_DEFAULTS = {"label_noise": "fixed", "pretrained": None, "official_head": False, "short_augmentation": False}


def read_results(files: list[str], defaults: dict | None = None) -> list[dict]:
    """Each benchmark JSON file, its ``args`` completed by ``defaults`` (settings that files written
    before an option existed lack). The files' settings must agree apart from the rows, seeds and
    paths each ran: runs made with other settings are not comparable."""
    own = ("rows", "seeds", "out", "dir", "merge")
    results, first = [], None
    for f in files:
        data = json.loads(Path(f).read_text())
        data["args"] = {**(defaults or {}), **data["args"]}
        settings = {k: v for k, v in data["args"].items() if k not in own}
        if first is None:
            first = settings
        elif settings != first:
            raise ValueError(f"{f} was run with other settings than {files[0]}: {settings} against {first}")
        results.append(data)
    return results


def merge_results(files: list[str], metrics: tuple[str, ...], defaults: dict | None = None) -> tuple[dict, list[dict]]:
    """The runs of several benchmark JSON files pooled per row (rows in first-seen order, runs in
    seed order), e.g. one row and seed per process run side by side. The files' settings must
    agree (:func:`read_results`), and so must a row's loss section, and a row holds each seed
    once. Returns the merged args and rows."""
    rows: dict[str, dict] = {}
    results = read_results(files, defaults)
    assert results, "no files to merge"
    for f, data in zip(files, results):
        for r in data["rows"]:
            row = rows.setdefault(r["row"], {**r, "runs": []})
            if r["loss"] != row["loss"]:  # e.g. "rle" run before and after a default changed
                raise ValueError(f"{f}: row {r['row']!r} was run with loss {r['loss']} elsewhere with {row['loss']}")
            seen = {run["seed"] for run in row["runs"]}
            twice = sorted(seen & {run["seed"] for run in r["runs"]})
            if twice:  # e.g. a rerun on another device: choose one, or the mean ± std counts that seed twice
                raise ValueError(f"{f}: row {r['row']!r} has seed(s) {twice} in another file as well")
            row["runs"] += r["runs"]
    first = dict(results[0]["args"])
    first.update(rows=",".join(rows), seeds=sorted({run["seed"] for r in rows.values() for run in r["runs"]}))
    merged = []
    for r in rows.values():
        extra = {k: v for k, v in r.items() if k not in ("row", "loss", "runs", "mean", "std")}
        merged.append(row_record(r["row"], r["loss"], sorted(r["runs"], key=lambda run: run["seed"]), metrics, **extra))
    return first, merged


def train_and_score(cfg, metrics: tuple[str, ...], seed: int) -> dict:
    """Train ``cfg`` (quietly, no logger) and return its final validation's ``metrics`` (those
    it has), the seed, the seconds it took and the device."""
    import time

    from rlepose.training.run import train

    start = time.perf_counter()
    module, _ = train(cfg, enable_progress_bar=False, enable_model_summary=False, logger=False)
    return {**{k: module.last_metrics[k] for k in metrics if k in module.last_metrics}, "seed": seed,
            "seconds": time.perf_counter() - start, "device": device_name()}


def run_rows(rows: dict, train_row, metrics: tuple[str, ...], args, config: str, paper_key: str, describe) -> list[dict]:
    """Every row of ``args.rows`` (names of ``rows``: row → (loss section, paper value)) over
    ``args.seeds``: ``train_row(row, seed, args)`` per run, ``describe(run)`` printed after it, the
    JSON rewritten to ``args.out`` after every run (an interrupted benchmark keeps what it did).
    Returns the rows as :func:`row_record` keeps them."""
    results: list[dict] = []
    for row in args.rows.split(","):
        loss, paper = rows[row]
        runs = []
        for seed in args.seeds:
            runs.append(train_row(row, seed, args))
            print(f"  {row} seed {seed}: {describe(runs[-1])} ({runs[-1]['seconds']:.0f} s)", flush=True)
            partial = row_record(row, loss, runs, metrics, **{paper_key: paper})
            write_json(Path(args.out), {"args": vars(args), "config": config, "rows": [*results, partial]})
        results.append(partial)
    return results


def timed_calls(fn, repeats: int, warmup: int = 2) -> list[float]:
    """Seconds of each of ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    return statistics.median(timed_calls(fn, repeats, warmup))


def interleaved_medians(fns: dict, rounds: int, per_block: int, warmup: int = 2, pause: float = 0.2) -> dict:
    """Median seconds per call of each function, timed in ``rounds`` rounds of one block per
    function (``warmup`` untimed calls, then ``per_block`` timed ones, then a pause that lets the
    runtime's idle threads stop spinning), so that a slow spell of the machine falls on every
    function alike instead of on whichever ran then."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name] += timed_calls(fn, per_block, warmup)
            time.sleep(pause)
    return {name: statistics.median(v) for name, v in samples.items()}


def random_checkpoint(backbone: str, input_size: tuple[int, int], path: Path, seed: int = 0):
    """A checkpoint that every rlepose command loads: a regression model on ``backbone`` with
    random weights (for timing) at ``input_size``, saved to ``path``. Returns (path, the model
    in eval mode)."""
    from rlepose.config import config_from_dict, config_to_dict
    from rlepose.training.module import PoseModule

    torch.manual_seed(seed)
    cfg = config_from_dict({"name": "bench", "model": {"backbone": backbone},
                            "transform": {"input_size": list(input_size)}})
    module = PoseModule.from_config(cfg)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": config_to_dict(cfg)}}, path)
    return path, module.model.eval()
