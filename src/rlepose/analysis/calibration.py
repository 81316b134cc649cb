"""Is σ̂ the error it claims? Reliability, interval coverage and confidence/OKS correlation on
held-out crops (the paper's Table 4 and the calibration a user relies on).

Inputs are held-out µ̂, σ̂, labels µg, joint weights (N, K, D) in normalized crop units, and per
instance the crop size (pixels) and the object area (COCO's, pixels²) for OKS.

* Reliability: joints binned by σ̂ (quantile bins); in each, the mean |µ̂ − µg| observed against
  the mean predicted by the model, σ̂·E|x̄| with E|x̄| under the learned density of x̄.
* Coverage: the central 50/80/95% interval of the learned density's marginal, µ̂ − σ̂·[q_hi, q_lo]
  for the label (x̄ = (µ̂ − µg)/σ̂), against the nominal level, per coordinate, per joint, overall.
* Correlation: instance confidence (1 − mean σ̂) and the expected OKS of the predicted density
  (:func:`rlepose.evaluation.coco.expected_oks`) with the instance's OKS (COCO's formula: per-joint
  sigmas, the object's area, labelled joints only), Pearson and Spearman; per joint, the joint
  confidence with that joint's keypoint similarity.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rlepose.analysis.density import density_grid
from rlepose.evaluation.coco import expected_oks
from rlepose.files import write_json

__all__ = ["LEVELS", "marginal_quantiles", "central_intervals", "coverage", "reliability", "rankdata",
           "correlations", "keypoint_similarity", "analyze_arrays", "plot_calibration", "analyze_calibration",
           "fit_joint_scale", "laplace_coverage", "calibrate_checkpoint"]

LEVELS = (0.5, 0.8, 0.95)


def marginal_quantiles(axis: np.ndarray, marginal: np.ndarray, probs) -> np.ndarray:
    """Quantiles of a density tabulated on the cell midpoints ``axis`` (piecewise constant)."""
    step = axis[1] - axis[0]
    cdf = np.concatenate([[0.0], np.cumsum(marginal) * step])
    cdf = cdf / cdf[-1]
    edges = np.concatenate([axis - step / 2, [axis[-1] + step / 2]])
    return np.interp(np.asarray(probs, float), cdf, edges)


def central_intervals(loss, levels=LEVELS, bound: float | None = None) -> dict:
    """{level: (lo (D,), hi (D,))}: the central intervals of each coordinate's marginal of the
    learned density of x̄ (D = 2), and ``mean_abs`` (D,): E|x̄_d|. The grid spans ±``bound``;
    by default 1.5× the 99.95th percentile of |x̄| over 20,000 draws from the flow (which is at
    least as wide as the density: Q only narrows it), so the tails are not cut off."""
    import torch

    if bound is None:
        with torch.no_grad():
            draws = torch.quantile(loss.flow.sample(20_000).abs().flatten().double(), 0.9995).item()
        bound = max(4.0, 1.5 * draws)
    axis, p = density_grid(loss, bound, n=481)
    step = axis[1] - axis[0]
    marginals = [p.sum(axis=1 - d) * step for d in range(2)]
    out = {"mean_abs": np.array([(m * np.abs(axis)).sum() * step / (m.sum() * step) for m in marginals])}
    for level in levels:
        qs = [marginal_quantiles(axis, m, [(1 - level) / 2, (1 + level) / 2]) for m in marginals]
        out[level] = (np.array([q[0] for q in qs]), np.array([q[1] for q in qs]))
    return out


def coverage(mu: np.ndarray, sigma: np.ndarray, target: np.ndarray, weight: np.ndarray, intervals: dict,
             levels=LEVELS) -> dict:
    """Fraction of labelled coordinates whose x̄ = (µ̂ − µg)/σ̂ falls in each central interval:
    ``{level: {"overall", "per_coordinate" (D,), "per_joint" (K,)}}``."""
    x = (mu - target) / sigma
    labelled = np.broadcast_to((weight > 0)[..., None] if weight.ndim == 2 else weight > 0, x.shape)
    out = {}
    for level in levels:
        lo, hi = intervals[level]
        inside = (x >= lo) & (x <= hi)
        per_joint = [inside[:, k][labelled[:, k]].mean() if labelled[:, k].any() else np.nan
                     for k in range(x.shape[1])]
        out[level] = {"overall": float(inside[labelled].mean()),
                      "per_coordinate": [float(inside[..., d][labelled[..., d]].mean()) for d in range(x.shape[-1])],
                      "per_joint": [float(v) for v in per_joint]}
    return out


def reliability(sigma: np.ndarray, abs_error: np.ndarray, mean_abs: np.ndarray, bins: int = 10) -> dict:
    """σ̂ and |µ̂ − µg| of labelled coordinates, (M, D) each → per quantile bin of σ̂: predicted
    mean |error| (σ̂·E|x̄_d|) and observed mean |error|, normalized crop units."""
    predicted = (sigma * mean_abs).ravel()
    observed = abs_error.ravel()
    edges = np.quantile(predicted, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, bins - 1)
    rows = [{"predicted": float(predicted[which == b].mean()), "observed": float(observed[which == b].mean()),
             "n": int((which == b).sum())} for b in range(bins) if (which == b).any()]
    return {"bins": rows, "predicted_mean": float(predicted.mean()), "observed_mean": float(observed.mean())}


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1…n with ties given their average rank."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    values, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def correlations(a: np.ndarray, b: np.ndarray) -> dict:
    """Pearson and Spearman correlation of two 1-D arrays (NaN when either is constant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "n": int(len(a))}
    ra, rb = rankdata(a), rankdata(b)
    return {"pearson": float(np.corrcoef(a, b)[0, 1]), "spearman": float(np.corrcoef(ra, rb)[0, 1]), "n": int(len(a))}


def keypoint_similarity(mu: np.ndarray, target: np.ndarray, size: np.ndarray, area: np.ndarray,
                        sigmas: np.ndarray) -> np.ndarray:
    """COCO's per-joint similarity exp(−d²/(2·area·(2σ_k)²)) (N, K), with d the pixel distance:
    normalized crop errors × the crop size in pixels (crops are axis-aligned at evaluation)."""
    d2 = (((mu[..., :2] - target[..., :2]) * size[:, None, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * np.maximum(area, np.finfo(float).eps)[:, None] * (2 * sigmas[None]) ** 2))


def analyze_arrays(mu, sigma, target, weight, size, area, sigmas, intervals: dict, levels=LEVELS) -> dict:
    """Every number of the analysis from arrays (see the module docstring); NumPy in, JSON-ready out."""
    labelled = weight > 0 if weight.ndim == 2 else (weight > 0).all(-1)
    mask = np.broadcast_to(labelled[..., None], mu.shape)
    ks = keypoint_similarity(mu, target, size, area, sigmas)
    has = labelled.any(1)
    oks = (ks * labelled).sum(1)[has] / labelled.sum(1)[has]
    instance_conf = 1 - sigma[has].mean(axis=(1, 2))
    believed = expected_oks(sigma[..., :2] * size[:, None, :], area, sigmas, labelled)[has]
    joint_conf = 1 - sigma.mean(-1)
    d = mu.shape[-1]
    return {
        "reliability": reliability(sigma[mask].reshape(-1, d), np.abs(mu - target)[mask].reshape(-1, d),
                                   intervals["mean_abs"][:d]),
        "coverage": {str(k): v for k, v in coverage(mu, sigma, target, weight, intervals, levels).items()},
        "nominal": list(levels),
        "instance_confidence_vs_oks": correlations(instance_conf, oks),
        "expected_oks_vs_oks": correlations(believed, oks),
        "mean_expected_oks": float(believed.mean()) if len(believed) else float("nan"),
        "joint_confidence_vs_similarity": [correlations(joint_conf[labelled[:, k], k], ks[labelled[:, k], k])
                                           for k in range(mu.shape[1])],
        "mean_oks": float(oks.mean()) if len(oks) else float("nan"),
    }


def plot_calibration(summary: dict, joint_names: list[str], out_file: Path, title: str = "") -> Path:
    """Reliability diagram, coverage against nominal, and per-joint Spearman correlation."""
    from rlepose.analysis.figures import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    rel = summary["reliability"]["bins"]
    pred, obs = [r["predicted"] for r in rel], [r["observed"] for r in rel]
    top = max(max(pred), max(obs)) * 1.1
    axes[0].plot([0, top], [0, top], color="gray", lw=1, label="perfect calibration")
    axes[0].plot(pred, obs, "o-", color="tab:blue", label="held-out joints (σ̂ deciles)")
    axes[0].set(title="reliability of σ̂\npredicted vs observed mean |error|", xlabel="predicted mean |µ̂ − µg|, σ̂·E|x̄| "
                "(normalized crop units)", ylabel="observed mean |µ̂ − µg| (normalized crop units)",
                xlim=(0, top), ylim=(0, top))
    axes[0].legend(fontsize=8)
    levels = summary["nominal"]
    width = 0.25
    xs = np.arange(len(levels))
    axes[1].bar(xs - width, [100 * lv for lv in levels], width, color="lightgray", label="nominal")
    for i, name in enumerate("xy"):
        axes[1].bar(xs + i * width, [100 * summary["coverage"][str(lv)]["per_coordinate"][i] for lv in levels], width,
                    label=f"observed, {name}")
    axes[1].set_xticks(xs, [f"{int(100 * lv)}%" for lv in levels])
    axes[1].set(title="coverage of the learned density's\ncentral intervals", xlabel="interval",
                ylabel="labels inside (%)", ylim=(0, 105))
    axes[1].legend(fontsize=8)
    rho = [c["spearman"] for c in summary["joint_confidence_vs_similarity"]]
    axes[2].barh(np.arange(len(rho)), rho, color="tab:green")
    axes[2].set_yticks(np.arange(len(rho)), joint_names, fontsize=7)
    axes[2].invert_yaxis()
    inst = summary["instance_confidence_vs_oks"]
    axes[2].set(title=f"confidence vs OKS\n(instances: Pearson {inst['pearson']:.2f}, Spearman {inst['spearman']:.2f})",
                xlabel="Spearman ρ, joint confidence vs keypoint similarity")
    axes[2].axvline(0, color="gray", lw=1)
    return save_figure(fig, out_file, title)


def analyze_calibration(module, cfg, out_dir: str | Path, title: str = "") -> dict:
    """Run the model on ``cfg``'s validation crops and write ``calibration.png`` and
    ``calibration.json`` into ``out_dir``; returns the JSON's content."""
    from rlepose.losses import FlowLoss
    from rlepose.config import keypoint_spec
    from rlepose.training.run import heldout_arrays

    if not isinstance(getattr(module, "loss", None), FlowLoss) or module.loss.dim != 2:
        raise ValueError("calibration needs a 2-D model trained with RLE/DLE (its learned density gives the intervals)")
    spec = keypoint_spec(cfg)
    if not spec.sigmas:
        raise ValueError(f"keypoint set {spec.name!r} has no OKS sigmas: calibration needs them for OKS")
    arrays = {k: v.numpy().astype(np.float64) for k, v in heldout_arrays(module, cfg).items()}
    intervals = central_intervals(module.loss)
    summary = analyze_arrays(arrays["mu"], arrays["sigma"], arrays["target"], arrays["weight"], arrays["size"],
                             arrays["area"], np.asarray(spec.sigmas, float), intervals)
    summary["intervals"] = {str(k): [v[0].tolist(), v[1].tolist()] for k, v in intervals.items() if k != "mean_abs"}
    summary["density_mean_abs"] = intervals["mean_abs"].tolist()
    summary["joints"] = list(spec.joints)
    summary["crops"] = int(len(arrays["mu"]))
    out_dir = Path(out_dir)
    summary["png"] = str(plot_calibration(summary, list(spec.joints), out_dir / "calibration.png", title))
    write_json(out_dir / "calibration.json", summary, indent=1)
    return summary


# -- post-hoc calibration: one scale per joint (``rlepose calibrate``) ----------------------------


def fit_joint_scale(mu: np.ndarray, sigma: np.ndarray, target: np.ndarray, weight: np.ndarray,
                    scale_per_sigma: float = 1.0) -> np.ndarray:
    """Per joint k, the factor s_k that maximises the held-out likelihood of the errors
    e = µ̂ − µg under a Laplace density of scale b = s_k·c·σ̂ per coordinate (c =
    ``scale_per_sigma``, the model's own Q scale): Σ −log(2b) − |e|/b is maximal at
    s_k = mean(|e| / (c·σ̂)) over the joint's labelled coordinates (1 for a joint never labelled).
    Inputs (N, K, D) in one unit (e.g. normalized crop units), ``weight`` (N, K)."""
    ratio = np.abs(mu - target) / (scale_per_sigma * np.maximum(sigma, 1e-12))
    labelled = np.broadcast_to((np.asarray(weight) > 0)[..., None], ratio.shape)
    counts = labelled.sum((0, 2))
    return np.where(counts > 0, (ratio * labelled).sum((0, 2)) / np.maximum(counts, 1), 1.0)


def laplace_coverage(mu: np.ndarray, sigma: np.ndarray, target: np.ndarray, weight: np.ndarray,
                     scale: np.ndarray, levels=LEVELS) -> dict:
    """Fraction of labelled coordinates inside the central interval of each level of a Laplace
    density of scale ``scale`` (K,) × σ̂: |e| ≤ −b·ln(1 − level). ``{level: {"overall", "per_joint"}}``."""
    b = np.asarray(scale, float)[None, :, None] * sigma
    err = np.abs(mu - target)
    labelled = np.broadcast_to((np.asarray(weight) > 0)[..., None], err.shape)
    out = {}
    for level in levels:
        inside = err <= -b * np.log(1 - level)
        per_joint = [float(inside[:, k][labelled[:, k]].mean()) if labelled[:, k].any() else float("nan")
                     for k in range(err.shape[1])]
        out[str(level)] = {"overall": float(inside[labelled].mean()), "per_joint": per_joint}
    return out


def calibrate_checkpoint(checkpoint: str | Path, cfg, out: str | Path | None = None, trust: bool = False) -> dict:
    """``rlepose calibrate``: fit :func:`fit_joint_scale` on half of ``cfg``'s held-out images
    (by image id), check the coverage of the Laplace intervals on the other half before and
    after, and store the scales with the checkpoint (``out``, default: in place; written
    atomically) under ``sigma_calibration``, which the predictor, the expected OKS, the video
    filters and exported graphs use. Returns what was stored."""
    from rlepose.losses import laplace_scale_per_sigma
    from rlepose.models.checkpoint import read_checkpoint, save_atomic
    from rlepose.training.run import heldout_arrays, load_module

    if cfg.task not in ("topdown",) or cfg.model.head == "heatmap":
        raise ValueError("calibration fits σ̂ of a top-down regression or integral model; this config is a "
                         f"{cfg.task} model with a {cfg.model.head} head")
    module = load_module(checkpoint, trust=trust)
    trained = module.cfg.loss  # what σ̂ means comes from how the model was trained, not from ``cfg``
    c = laplace_scale_per_sigma(trained.name, trained.q) or 1.0
    arrays = {k: v.numpy().astype(np.float64) for k, v in heldout_arrays(module, cfg).items()}
    image = arrays["image_id"].astype(np.int64)
    fit = (image * 2654435761 % 2**32) % 2 == 0  # a fixed half of the images, the same on every run
    if fit.all() or not fit.any():
        raise ValueError("calibration needs held-out people on at least two images")
    part = lambda m: [arrays[k][m] for k in ("mu", "sigma", "target", "weight")]  # noqa: E731
    scale = c * fit_joint_scale(*part(fit), scale_per_sigma=c)
    ones = np.full_like(scale, c)
    stored = {"joint_scale": (scale / c).tolist(), "scale_per_sigma": c, "levels": list(LEVELS),
              "fitted_on": int(fit.sum()), "checked_on": int((~fit).sum()), "config": cfg.name,
              "coverage_before": laplace_coverage(*part(~fit), ones),
              "coverage_after": laplace_coverage(*part(~fit), scale)}
    raw = read_checkpoint(checkpoint, trust=trust, expand=False)
    raw["sigma_calibration"] = stored
    save_atomic(raw, Path(out) if out else Path(checkpoint))
    return stored
