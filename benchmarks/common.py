"""Helpers shared by the benchmarks: held-out calibration of σ̂ and mean ± std over seeds."""
from __future__ import annotations

import statistics
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
    mean = {k: statistics.mean(r[k] for r in runs) for k in keys}
    std = {k: (statistics.stdev(r[k] for r in runs) if len(runs) > 1 else 0.0) for k in keys}
    return mean, std


def row_record(row: str, loss: dict, runs: list[dict], metrics: tuple[str, ...], **extra) -> dict:
    """One benchmark row as the JSON keeps it: every run, and mean/std of each metric."""
    mean, std = summarize(runs, metrics)
    return {"row": row, "loss": loss, "runs": runs, "mean": mean, "std": std, **extra}


def write_json(path: Path, data: dict) -> Path:
    """Benchmark JSON, indented, written whole or not at all (:func:`rlepose.files.write_json`)."""
    return files.write_json(path, data, indent=2)
