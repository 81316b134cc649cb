"""What every regression loss shares: the tensors it takes, joint weights and the reduction.

Every loss is called as ``loss(mu, sigma, target, weight=None)`` with

* ``mu``     (N, K, D) predicted locations µ̂ (any unit; normalized crop coordinates for pose),
* ``sigma``  (N, K, D) predicted scales σ̂ > 0 (a sigmoid output in the paper, so in (0, 1)),
* ``target`` (N, K, D) labels µg, same unit as ``mu``,
* ``weight`` (N, K) per joint or (N, K, D) per coordinate, e.g. visibility; ``None`` = all 1,

and returns, by ``reduction``:

* ``"mean"`` (default): the sum of weighted per-joint losses / the number of weighted joints (a
  joint weighs ``max_d weight[..., d]``); exactly 0 when every weight is 0,
* ``"batch"``: the same sum / N (the official code's ``size_average``),
* ``"sum"``, or ``"none"`` for the (N, K) weighted per-joint losses.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["JointLoss", "QDensity", "Reduction", "log_q", "sample_q"]

Reduction = Literal["mean", "batch", "sum", "none"]
QDensity = Literal["laplace", "gaussian"]

LOG_2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
SIGMA_EPS = 1e-9


def log_q(x: Tensor, q: QDensity) -> Tensor:
    """Element-wise log-density of the standard (zero-mean, unit-scale) Laplace or Gaussian."""
    if q == "laplace":
        return -x.abs() - LOG_2
    if q == "gaussian":
        return -0.5 * x**2 - HALF_LOG_2PI
    raise ValueError(f"unknown Q density {q!r}: use 'laplace' or 'gaussian'")


def sample_q(q: QDensity, dim: int, n: int) -> Tensor:
    """``n`` draws (n, dim) of the standard Q, from torch's global generator."""
    if q == "laplace":
        return torch.distributions.Laplace(0.0, 1.0).sample((n, dim))
    if q == "gaussian":
        return torch.randn(n, dim)
    raise ValueError(f"unknown Q density {q!r}: use 'laplace' or 'gaussian'")


class JointLoss(nn.Module):
    """Joint weighting and reduction. Subclasses implement :meth:`terms`."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "batch", "sum", "none"):
            raise ValueError(f"unknown reduction {reduction!r}: mean, batch, sum or none")
        self.reduction = reduction

    def terms(self, mu: Tensor, sigma: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-coordinate terms (N, K, D), weighted per coordinate, and per-joint terms (N, K)
        or None, weighted by the joint's smallest coordinate weight."""
        raise NotImplementedError

    def set_flow_warmup(self, active: bool) -> None:
        """Losses with a flow hold its gradient on µ̂ off while ``active``; others ignore it."""

    def forward(self, mu: Tensor, sigma: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if mu.dim() != 3 or mu.shape != target.shape or sigma.shape != mu.shape:
            raise ValueError(
                f"mu, sigma, target must all be (N, K, D); got {tuple(mu.shape)}, "
                f"{tuple(sigma.shape)}, {tuple(target.shape)}")
        if weight is None:
            weight = mu.new_ones(mu.shape)
        elif weight.shape == mu.shape[:2]:
            weight = weight.unsqueeze(-1).expand_as(mu)
        elif weight.shape != mu.shape:
            raise ValueError(f"weight must be (N, K) or (N, K, D) = {tuple(mu.shape)}, got {tuple(weight.shape)}")
        weight = weight.to(mu.dtype)

        coord, joint = self.terms(mu, sigma.clamp_min(SIGMA_EPS), target)
        per_joint = (coord * weight).sum(-1)
        if joint is not None:
            per_joint = per_joint + joint * weight.amin(-1)
        if self.reduction == "none":
            return per_joint
        total = per_joint.sum()
        if self.reduction == "sum":
            return total
        if self.reduction == "batch":
            return total / mu.shape[0]
        return total / weight.amax(-1).sum().clamp_min(1e-12)
