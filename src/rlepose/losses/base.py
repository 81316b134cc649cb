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

The arithmetic is :meth:`JointLoss.value`; ``forward`` checks the inputs and runs it, compiled
as one graph where the loss was built with ``compile`` on (:mod:`rlepose.losses.compiled`: the
default of the losses with a flow).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from rlepose.losses.compiled import compile_by_default, compiled_value

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
    """Joint weighting and reduction. Subclasses implement :meth:`terms`.

    Args:
        reduction: see the module docstring.
        compile: run :meth:`value` as one compiled graph while gradients are on
            (:func:`rlepose.losses.compiled.compiled_value`); ``None`` follows
            :func:`rlepose.losses.compiled.compile_by_default` (on unless ``RLEPOSE_COMPILE_LOSS=0``).
    """

    def __init__(self, reduction: Reduction = "mean", compile: bool | None = False) -> None:
        super().__init__()
        if reduction not in ("mean", "batch", "sum", "none"):
            raise ValueError(f"unknown reduction {reduction!r}: mean, batch, sum or none")
        self.reduction = reduction
        self.compile_graph = compile  # not ``compile``: nn.Module.compile is a method

    def terms(self, mu: Tensor, sigma: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-coordinate terms (N, K, D), weighted per coordinate, and per-joint terms (N, K)
        or None, weighted by the joint's smallest coordinate weight."""
        raise NotImplementedError

    def set_flow_warmup(self, active: bool) -> None:
        """Losses with a flow hold its gradient on µ̂ off while ``active``; others ignore it."""

    def compiles(self) -> bool:
        """Whether a call with gradients on runs :meth:`value` compiled (where it can)."""
        return compile_by_default() if self.compile_graph is None else bool(self.compile_graph)

    def forward(self, mu: Tensor, sigma: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if mu.dim() != 3 or mu.shape != target.shape or sigma.shape != mu.shape:
            raise ValueError(
                f"mu, sigma, target must all be (N, K, D); got {tuple(mu.shape)}, "
                f"{tuple(sigma.shape)}, {tuple(target.shape)}")
        if weight is None:
            weight = mu.new_ones(mu.shape[:2])
        elif weight.shape != mu.shape[:2] and weight.shape != mu.shape:
            raise ValueError(f"weight must be (N, K) or (N, K, D) = {tuple(mu.shape)}, got {tuple(weight.shape)}")
        if torch.is_grad_enabled() and self.compiles():
            return compiled_value(self, mu, sigma, target, weight)
        return self.value(mu, sigma, target, weight)

    def value(self, mu: Tensor, sigma: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        """The loss of checked inputs: ``mu``, ``sigma``, ``target`` (N, K, D), ``weight``
        (N, K) or (N, K, D); the reduction of the module docstring."""
        if weight.dim() == 2:
            weight = weight.unsqueeze(-1).expand_as(mu)
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
