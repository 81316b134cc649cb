"""The paper's baselines (Table 7): L1 and L2, and the Laplace and Gaussian negative
log-likelihoods with a learned scale σ̂ (Eq. 2). Tensors and reductions: :mod:`rlepose.losses.base`.

>>> import torch
>>> mu = torch.zeros(1, 1, 2); target = torch.tensor([[[0.3, -0.4]]])
>>> round(float(L1Loss()(mu, torch.ones_like(mu), target)), 4)
0.7
"""
from __future__ import annotations

from rlepose.losses.base import JointLoss, QDensity, log_q

__all__ = ["L1Loss", "L2Loss", "LaplaceNLLLoss", "GaussianNLLLoss"]


class L1Loss(JointLoss):
    """|µg − µ̂| summed over coordinates: Laplace NLL with a constant scale, up to constants.
    ``sigma`` is accepted for a uniform interface and ignored."""

    def terms(self, mu, sigma, target):
        return (target - mu).abs(), None


class L2Loss(JointLoss):
    """(µg − µ̂)² summed over coordinates: Gaussian NLL with a constant variance, up to constants.
    ``sigma`` is ignored."""

    def terms(self, mu, sigma, target):
        return (target - mu) ** 2, None


class _LearnedScaleNLL(JointLoss):
    q: QDensity

    def terms(self, mu, sigma, target):
        return sigma.log() - log_q((target - mu) / sigma, self.q), None


class LaplaceNLLLoss(_LearnedScaleNLL):
    """Laplace NLL with a learned scale: log(2σ̂) + |µg − µ̂|/σ̂ per coordinate."""

    q = "laplace"


class GaussianNLLLoss(_LearnedScaleNLL):
    """Gaussian NLL with a learned σ̂: log σ̂ + (µg − µ̂)²/(2σ̂²) + ½ log 2π per coordinate."""

    q = "gaussian"
