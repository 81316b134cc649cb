"""The learned density of the normalized residual x̄ = (µ̂ − µg)/σ̂ (appendix, Fig. 4).

What is plotted is the density the loss defines (:meth:`rlepose.losses.FlowLoss.log_density` at
µ̂ = x̄, σ̂ = 1, µg = 0): Gφ for ``rle_calibrated`` and DLE, Q·Gφ·s for the
published forms. It is compared with the best-fitting zero-mean Gaussian and Laplace per coordinate
(maximum likelihood on the model's own density: σ² = E x², b = E|x|), and, when held-out
residuals are given, with their histogram.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from rlepose.losses import FlowLoss
from rlepose.files import write_json

__all__ = ["unit_log_density", "density_grid", "marginal_fits", "residual_likelihoods", "plot_density",
           "analyze_density"]


@torch.no_grad()
def unit_log_density(loss: FlowLoss, x: torch.Tensor) -> torch.Tensor:
    """log-density (M,) of residuals ``x`` (M, D) at σ̂ = 1, in float64 (the flow is switched to
    double for the call and back after)."""
    x = x.to(torch.float64)[:, None, :]  # one joint per residual
    flow = loss.flow.double()
    try:
        return loss.log_density(x, torch.ones_like(x), torch.zeros_like(x))[:, 0]
    finally:
        flow.float()


@torch.no_grad()
def density_grid(loss: FlowLoss, bound: float = 4.0, n: int = 241) -> tuple[np.ndarray, np.ndarray]:
    """``(axis (n,), p (n, n))``: the 2-D density of x̄ on midpoints of [−bound, bound]²,
    renormalized on the grid (it is already normalized; this removes the mass outside)."""
    if loss.dim != 2:
        raise ValueError("density_grid draws D = 2; for D = 3 use marginal_fits on samples")
    step = 2 * bound / n
    axis = torch.linspace(-bound + step / 2, bound - step / 2, n, dtype=torch.float64)
    log_p = unit_log_density(loss, torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2))
    p = torch.exp(log_p - log_p.max()).reshape(n, n)
    p = p / (p.sum() * step**2)
    return axis.numpy(), p.numpy()


def marginal_fits(axis: np.ndarray, p: np.ndarray) -> list[dict]:
    """Per coordinate d (0 = x, 1 = y): the marginal density, its moments, and the maximum
    likelihood zero-mean Gaussian (σ) and Laplace (b) with the expected log-likelihood of the
    model's density under each (nats; the model's own negative entropy is the ceiling)."""
    step = axis[1] - axis[0]
    fits = []
    for d in range(2):
        m = p.sum(axis=1 - d) * step  # integrate out the other coordinate
        m = m / (m.sum() * step)
        second, first_abs = (m * axis**2).sum() * step, (m * np.abs(axis)).sum() * step
        sigma, b = math.sqrt(second), first_abs
        gauss = -0.5 * axis**2 / sigma**2 - 0.5 * math.log(2 * math.pi * sigma**2)
        laplace = -np.abs(axis) / b - math.log(2 * b)
        own = np.log(np.maximum(m, 1e-300))
        fits.append({"coordinate": "xy"[d], "marginal": m.tolist(), "std": sigma, "mean_abs": b,
                     "kurtosis": float((m * axis**4).sum() * step / second**2),
                     "gaussian_sigma": sigma, "laplace_b": b,
                     "loglik_model": float((m * own).sum() * step),
                     "loglik_gaussian": float((m * gauss).sum() * step),
                     "loglik_laplace": float((m * laplace).sum() * step)})
    return fits


def residual_likelihoods(loss: FlowLoss, residuals: np.ndarray, window: float = 4.0) -> dict:
    """How far the law of the residuals ``x̄`` (M, D) is from Q's family, and what the learned
    density makes of it. Per coordinate: kurtosis (Gaussian 3, Laplace 6), mean |x̄| and std,
    and the kurtosis of the core, the residuals with every |x̄_d| < ``window``
    (``beyond_window``: the fraction outside it);
    per joint, the mean negative log-likelihood (nats, x̄ in units of σ̂) under the learned
    density (:meth:`FlowLoss.log_density` at σ̂ = 1) and under the zero-mean Laplace and
    Gaussian that fit these very residuals best (b = mean |x̄|, σ² = mean x̄², per coordinate).
    The fits see the residuals they score, so ``nll_laplace_fit − nll_model`` is at most what
    the learned density gains over the best Q of fixed shape; near zero, RLE has nothing to add
    over Laplace NLL on this data."""
    x = np.asarray(residuals, dtype=np.float64)
    second, first_abs = (x**2).mean(0), np.abs(x).mean(0)
    log_p = unit_log_density(loss, torch.as_tensor(x))
    core = x[(np.abs(x) < window).all(1)]
    return {"n": int(len(x)), "kurtosis": ((x**4).mean(0) / second**2).tolist(),
            "window": window, "beyond_window": 1.0 - len(core) / len(x),
            "kurtosis_within_window": ((core**4).mean(0) / (core**2).mean(0) ** 2).tolist(),
            "mean_abs": first_abs.tolist(), "std": np.sqrt(second).tolist(),
            "nll_model": float(-log_p.mean()),
            "nll_laplace_fit": float((np.abs(x) / first_abs + np.log(2 * first_abs)).sum(1).mean()),
            "nll_gaussian_fit": float((0.5 * x**2 / second + 0.5 * np.log(2 * math.pi * second)).sum(1).mean())}


def plot_density(axis: np.ndarray, p: np.ndarray, fits: list[dict], out_file: Path,
                 residuals: np.ndarray | None = None, title: str = "") -> Path:
    """The 2-D density as an image and both 1-D marginals against the fitted Gaussian and
    Laplace (and a histogram of held-out residuals if given), one PNG."""
    from rlepose.analysis.figures import pyplot, save_figure

    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    extent = [axis[0], axis[-1], axis[0], axis[-1]]
    im = axes[0].imshow(np.log10(np.maximum(p.T, 1e-8)), origin="lower", extent=extent, cmap="magma",
                        vmin=math.log10(p.max()) - 4)
    axes[0].set(title="learned density of x̄ (log10)", xlabel="x̄ₓ (units of σ̂)", ylabel="x̄ᵧ (units of σ̂)")
    fig.colorbar(im, ax=axes[0], label="log10 density")
    for d, ax in enumerate(axes[1:]):
        f = fits[d]
        ax.plot(axis, f["marginal"], color="black", lw=2, label="learned (RLE)")
        ax.plot(axis, np.exp(-0.5 * axis**2 / f["gaussian_sigma"]**2) / math.sqrt(2 * math.pi) / f["gaussian_sigma"],
                "--", color="tab:blue", label=f"Gaussian fit, σ = {f['gaussian_sigma']:.2f}")
        ax.plot(axis, np.exp(-np.abs(axis) / f["laplace_b"]) / (2 * f["laplace_b"]), ":", color="tab:red", lw=2,
                label=f"Laplace fit, b = {f['laplace_b']:.2f}")
        if residuals is not None and len(residuals):
            ax.hist(residuals[:, d], bins=np.linspace(axis[0], axis[-1], 61), density=True, color="tab:gray",
                    alpha=0.35, label=f"held-out residuals (n = {len(residuals)})")
        ax.set(title=f"marginal of x̄{'ₓᵧ'[d]} (kurtosis {f['kurtosis']:.1f}; Gaussian 3, Laplace 6)",
               xlabel="x̄ (units of σ̂)", ylabel="density")
        ax.legend(fontsize=8)
    return save_figure(fig, out_file, title)


def analyze_density(loss: FlowLoss, out_dir: str | Path, residuals: np.ndarray | None = None,
                    bound: float = 4.0, title: str = "") -> dict:
    """Write ``density.png`` and ``density.json`` into ``out_dir``; returns the JSON's content.
    For D = 3 (lifting) there is no picture and no grid: only the residuals' numbers."""
    out_dir = Path(out_dir)
    summary = {"loss": type(loss).__name__, "q": loss.q, "dim": loss.dim, "fits": []}
    if loss.dim == 2:
        axis, p = density_grid(loss, bound)
        fits = marginal_fits(axis, p)
        png = plot_density(axis, p, fits, out_dir / "density.png", residuals, title)
        summary.update({"bound": bound, "axis": axis.tolist(), "fits": fits, "png": str(png)})
    elif residuals is None:
        raise ValueError(f"a {loss.dim}-D density has no picture here: give held-out residuals (--config)")
    if residuals is not None:
        summary["residuals"] = residual_likelihoods(loss, residuals)
    write_json(out_dir / "density.json", summary)
    return summary
