"""The other published forms of RLE, each as its source writes it (tests recompute every one
from its source's formula). :class:`rlepose.losses.rle.RLELoss` is the official code's.

With x̄ = (µ̂ − µg)/σ̂ and G = Gφ(x̄), per joint:

* :class:`PaperRLELoss`, Eq. 8 as printed: ``Σ_d [log σ̂_d − log Q(x̄_d)] − log G``;
* :class:`MMPoseRLELoss`, MMPose 1.x: ``Σ_d [2 log σ̂_d − log Q(x̄_d) − log G]`` with Q the
  standard Laplace or Gaussian of scale σ̂ (the official code's Laplace has scale √2·σ̂).
"""
from __future__ import annotations

from rlepose.losses.base import log_q
from rlepose.losses.rle import FlowLoss, RLELoss

__all__ = ["PaperRLELoss", "MMPoseRLELoss"]


class PaperRLELoss(FlowLoss):
    """Eq. 8 as printed: log σ̂ once per coordinate and the flow term once per joint."""

    def terms(self, mu, sigma, target):
        return sigma.log() - log_q((mu - target) / sigma, self.q), -self.log_g(mu, sigma, target)


class MMPoseRLELoss(RLELoss):
    """MMPose 1.x's ``RLELoss``: the official structure with Q of scale σ̂."""

    def q_term(self, bar_mu):
        return -log_q(bar_mu, self.q)
