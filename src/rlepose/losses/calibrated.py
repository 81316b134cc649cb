"""rlepose's variant of RLE: σ̂ trained by Q alone, so that it is calibrated and cannot drift.

Eq. 8 without log s is not a normalized likelihood, so σ̂ and the flow's own scale trade off
freely and σ̂ can grow while the flow absorbs it (derivation: ``docs/loss.md``). Here the flow
sees x̄ = (µ̂ − µg)/σ̂ with σ̂ held fixed, so

* σ̂ gets exactly the gradient of Q's likelihood (Laplace Q: σ̂ is the predicted mean absolute
  error, which cannot drift),
* µ̂ gets Q's gradient and the flow's,
* the flow is fitted to the law of x̄ by maximum likelihood (a normalized density, no log s).

The loss value is Eq. 8's; only the gradient paths differ. The default flow starts flat (the
identity map on a wide Gaussian base), so training starts as Q's likelihood, and every term is
weighted by σ̂^β held fixed (β-NLL, Seitzer et al., ICLR 2022): hard joints are not given up as
under the likelihood's 1/σ̂ weighting (β = 1 gives µ̂ exactly L1's gradient from Q), while σ̂
keeps the likelihood's stationary point. ``beta=0`` is the plain likelihood. Training adds a flow
warm-up (the flow's gradient on µ̂ held off until the first learning-rate step). Where it was
measured, and where not: ``benchmarks/README.md`` and ``docs/loss.md``.

>>> import torch
>>> loss = CalibratedRLELoss(dim=2)  # β = 0.5, flat start
>>> float(loss.flow.log_prob(torch.zeros(1, 2)).detach()) < 0
True
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rlepose.losses.base import SIGMA_EPS, QDensity, Reduction, log_q
from rlepose.losses.rle import FlowLoss

__all__ = ["CalibratedRLELoss", "FLAT_START_STD"]

#: the flat start's base standard deviation, in units of σ̂
FLAT_START_STD = 4.0


class CalibratedRLELoss(FlowLoss):
    """Per joint ``σ̂^β ⊙ [Σ_d log σ̂_d − log Q(x̄_d)] − (Π_d σ̂_d)^(β/D) · log Gφ(x̄)`` with
    ``x̄ = (µ̂ − µg)/sg(σ̂)`` in the flow (sg: no gradient) and the σ̂^β factors held fixed."""

    flow_base_std = FLAT_START_STD
    flow_zero_init = True

    def __init__(self, dim: int = 2, q: QDensity = "laplace", flow: nn.Module | None = None,
                 beta: float = 0.5, reduction: Reduction = "mean", compile: bool | None = None) -> None:
        if q is None:
            raise ValueError("CalibratedRLELoss needs a Q: it is Q that trains σ̂")
        super().__init__(dim=dim, q=q, flow=flow, reduction=reduction, compile=compile)
        self.beta = float(beta)

    def terms(self, mu, sigma, target):
        coord = sigma.log() - log_q((mu - target) / sigma, self.q)
        joint = -self.log_g(mu, sigma.detach(), target)
        if self.beta:
            weight = sigma.detach() ** self.beta
            coord, joint = coord * weight, joint * weight.prod(-1) ** (1.0 / mu.shape[-1])
        return coord, joint

    @torch.no_grad()
    def log_density(self, mu: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
        """The flow is the law of x̄: ``log Gφ(x̄) − Σ log σ̂`` per joint (N, K)."""
        sigma = sigma.clamp_min(SIGMA_EPS)
        return self.log_g(mu, sigma, target) - sigma.log().sum(-1)
