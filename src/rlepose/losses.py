"""Regression losses as negative log-likelihoods (paper §3, Table 7, appendix E/F).

Every loss takes the same tensors:

* ``mu``     (N, K, D) predicted locations µ̂ (any unit; normalized crop coordinates for pose),
* ``sigma``  (N, K, D) predicted scales σ̂ > 0 (a sigmoid output in the paper, so in (0, 1)),
* ``target`` (N, K, D) labels µg, same unit as ``mu``,
* ``weight`` (N, K) per joint or (N, K, D) per coordinate, e.g. visibility; ``None`` = all 1.

and returns, by ``reduction``:

* ``"mean"`` (default): sum of weighted per-joint losses / number of weighted joints — the
  sum of joint weights, a joint weighing ``max_d weight[..., d]``; exactly 0 when all weights are 0,
* ``"batch"``: the same sum / N, which is what the official code's ``size_average`` does,
* ``"sum"``, or ``"none"`` for the (N, K) weighted per-joint losses.

With µ̄ = (µg − µ̂)/σ̂ the per-joint RLE loss (Eq. 8) is

    L = −log Q(µ̄) − log Gφ(µ̄) − log s + Σ_d log σ̂_d,

Q a fixed Laplace or Gaussian, Gφ a normalizing flow learning the residual, and s = 1/∫QGφ the
normalizer of appendix E, dropped by default as in the paper (Table 17). The Q term gives
the regressor a gradient that does not depend on the flow — the paper's "gradient shortcut".

A caveat the paper does not discuss: without ``log s`` the loss is not a normalized
likelihood. For a flow expressive enough to fit the law of µ̄ the expected loss becomes
``−E log Q(e/σ̂) + H(e)`` (e = µg − µ̂), which keeps falling as σ̂ grows, so σ̂ drifts up and
the flow's own scale absorbs it (bounded here by the tanh-limited coupling scales). We see it
on the toy problem of :mod:`rlepose.toy`; ``log_s_grid`` restores a proper likelihood. The
official code, for reference, sums ``log σ̂`` twice and the flow term once per coordinate;
we follow Eq. 8 as printed.
DLE drops Q and lets the flow model the whole density: L = −log Gφ(µ̄) + Σ_d log σ̂_d.

Joints labelled in only some coordinates (3-D training with 2-D-only samples: zero weight on
z) get the Q and log σ̂ terms of their labelled coordinates, which is the exact marginal of
the factorized Q; the flow term, a joint density over all D coordinates, counts only where
every coordinate is labelled (it weighs ``min_d weight[..., d]``).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from rlepose.flows import RealNVP

Reduction = Literal["mean", "batch", "sum", "none"]
QDensity = Literal["laplace", "gaussian"]

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_SIGMA_EPS = 1e-9


def log_q(x: Tensor, q: QDensity) -> Tensor:
    """Element-wise log-density of the standard (unit-scale, zero-mean) Laplace or Gaussian."""
    if q == "laplace":
        return -x.abs() - _LOG_2
    if q == "gaussian":
        return -0.5 * x**2 - _HALF_LOG_2PI
    raise ValueError(f"unknown Q density {q!r}: use 'laplace' or 'gaussian'")


class JointLoss(nn.Module):
    """Shared weighting and reduction. Subclasses implement :meth:`terms`."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "batch", "sum", "none"):
            raise ValueError(f"unknown reduction {reduction!r}")
        self.reduction = reduction

    def terms(self, mu: Tensor, sigma: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-coordinate terms (N, K, D) and per-joint terms (N, K) or None."""
        raise NotImplementedError

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

        coord, joint = self.terms(mu, sigma.clamp_min(_SIGMA_EPS), target)
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


class L1Loss(JointLoss):
    """|µg − µ̂| summed over coordinates: Laplace NLL with constant scale, up to constants.
    ``sigma`` is accepted for a uniform interface and ignored."""

    def terms(self, mu, sigma, target):
        return (target - mu).abs(), None


class L2Loss(JointLoss):
    """(µg − µ̂)² summed over coordinates: Gaussian NLL with constant variance, up to constants.
    ``sigma`` is ignored."""

    def terms(self, mu, sigma, target):
        return (target - mu) ** 2, None


class _LearnedScaleNLL(JointLoss):
    q: QDensity

    def terms(self, mu, sigma, target):
        return sigma.log() - log_q((target - mu) / sigma, self.q), None


class LaplaceNLLLoss(_LearnedScaleNLL):
    """Laplace NLL with learned scale: log(2σ̂) + |µg − µ̂|/σ̂ per coordinate (Table 7)."""

    q = "laplace"


class GaussianNLLLoss(_LearnedScaleNLL):
    """Gaussian NLL with learned σ̂: log σ̂ + (µg − µ̂)²/(2σ̂²) + ½log 2π per coordinate (Eq. 2)."""

    q = "gaussian"


class RLELoss(JointLoss):
    """Residual Log-likelihood Estimation (Eq. 8). Owns its flow: optimize
    ``loss.parameters()`` together with the model's, as the paper trains them jointly.

    Args:
        dim: D, coordinates per joint (2 or 3); sets the default flow's dimension.
        q: the fixed density Q, ``"laplace"`` (paper default) or ``"gaussian"``;
           ``None`` gives DLE (see :class:`DLELoss`).
        flow: any module with ``log_prob((M, D)) -> (M,)``; default ``RealNVP(dim)`` (3×64).
        log_s_grid: if set, add the ``−log s`` term of appendix E, with ∫QGφ taken as a
           midpoint Riemann sum on a grid of ``log_s_grid`` points per axis over
           ``[−log_s_bound, log_s_bound]^D`` (the flow then runs on ``log_s_grid**D``
           extra points each call). Off by default, as in the paper.
    """

    def __init__(self, dim: int = 2, q: QDensity | None = "laplace", flow: nn.Module | None = None,
                 log_s_grid: int | None = None, log_s_bound: float = 5.0,
                 reduction: Reduction = "mean") -> None:
        super().__init__(reduction)
        if q is not None:
            log_q(torch.zeros(1), q)  # validates the name early
        self.dim = dim
        self.q = q
        self.flow = flow if flow is not None else RealNVP(dim)
        self.log_s_grid = log_s_grid
        self.log_s_bound = log_s_bound

    def log_s(self) -> Tensor:
        """log s = −log ∫ Q·Gφ by a midpoint Riemann sum (appendix E, Eq. 16). Scalar."""
        if self.q is None:
            raise ValueError("log s is defined for RLE only (DLE's flow is already normalized)")
        n, b = self.log_s_grid or 100, self.log_s_bound
        step = 2 * b / n
        ref = next(self.flow.parameters(), torch.empty(0))
        axis = torch.linspace(-b + step / 2, b - step / 2, n, dtype=ref.dtype, device=ref.device)
        grid = torch.stack(torch.meshgrid(*[axis] * self.dim, indexing="ij"), -1).reshape(-1, self.dim)
        log_qg = log_q(grid, self.q).sum(-1) + self.flow.log_prob(grid)
        return -(torch.logsumexp(log_qg, 0) + self.dim * math.log(step))

    @torch.no_grad()
    def log_s_monte_carlo(self, num_samples: int = 200_000) -> Tensor:
        """log s = −log E_{x~Gφ}[Q(x)], estimated from flow samples (needs ``flow.sample``).
        Unbiased for ∫QGφ and free of grid error, which matters once Gφ is sharply peaked;
        used for evaluation (held-out likelihoods), not in the training loss."""
        if self.q is None:
            raise ValueError("log s is defined for RLE only (DLE's flow is already normalized)")
        x = self.flow.sample(num_samples)
        return math.log(num_samples) - torch.logsumexp(log_q(x, self.q).sum(-1), 0)

    def terms(self, mu, sigma, target):
        n, k, d = mu.shape
        if d != self.dim:
            raise ValueError(f"{type(self).__name__}(dim={self.dim}) got D={d}")
        bar_mu = (target - mu) / sigma
        coord = sigma.log()
        if self.q is not None:
            coord = coord - log_q(bar_mu, self.q)
        joint = -self.flow.log_prob(bar_mu.reshape(n * k, d)).reshape(n, k)
        if self.log_s_grid:
            joint = joint - self.log_s()
        return coord, joint


class DLELoss(RLELoss):
    """Direct Likelihood Estimation (Fig. 2b): the flow models the whole density of µ̄."""

    def __init__(self, dim: int = 2, flow: nn.Module | None = None, reduction: Reduction = "mean") -> None:
        super().__init__(dim=dim, q=None, flow=flow, reduction=reduction)


def build_loss(name: str, dim: int = 2, **kwargs) -> JointLoss:
    """Loss by its config name: ``rle`` (Laplace Q), ``rle_gaussian``, ``dle``, ``l1``, ``l2``,
    ``laplace_nll``, ``gaussian_nll``. Extra keyword arguments go to the class."""
    if name == "rle":
        return RLELoss(dim=dim, q="laplace", **kwargs)
    if name == "rle_gaussian":
        return RLELoss(dim=dim, q="gaussian", **kwargs)
    if name == "dle":
        return DLELoss(dim=dim, **kwargs)
    simple = {"l1": L1Loss, "l2": L2Loss, "laplace_nll": LaplaceNLLLoss, "gaussian_nll": GaussianNLLLoss}
    if name not in simple:
        raise ValueError(f"unknown loss {name!r}; choose from rle, rle_gaussian, dle, {', '.join(simple)}")
    return simple[name](**kwargs)


LOSS_NAMES = ("l1", "l2", "laplace_nll", "gaussian_nll", "dle", "rle", "rle_gaussian")
