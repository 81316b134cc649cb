"""Residual Log-likelihood Estimation (paper §3) and Direct Likelihood Estimation.

A regressor predicts per joint a location µ̂ and a scale σ̂ (each (N, K, D)). With the
normalized residual x̄ = (µ̂ − µg)/σ̂ (prediction minus label, as in the official code and
MMPose), RLE models the label's density as

    P(µg) = Q(x̄) · Gφ(x̄) · s / σ̂             (Eq. 7, s = 1 / ∫ Q·Gφ, dropped in training)

with Q a fixed Laplace or Gaussian and Gφ a normalizing flow (RealNVP) that learns the
*residual* between Q and the true law of x̄. Eq. 8 is the negative log of it; Q gives µ̂ a
gradient that does not go through the flow (the paper's "gradient shortcut"). The flow is
part of the loss and trains jointly with the network: optimize ``loss.parameters()`` too.

:class:`RLELoss` is the recipe that trained the published COCO numbers (the official code), per
joint and coordinate d:

    L = Σ_d [ 2 log σ̂_d − log Q(x̄_d) − log Gφ(x̄) ]

(log σ̂ twice and the flow term once per coordinate, as the code writes it; Eq. 8 as printed
counts each once: :class:`rlepose.losses.published.PaperRLELoss`). DLE (Fig. 2b) drops Q and lets
the flow model the whole density: ``L = Σ_d log σ̂_d − log Gφ(x̄)``.

Joints labelled in only some coordinates (3-D training with 2-D-only samples: zero weight on z)
get the per-coordinate terms of their labelled coordinates; a per-joint flow term counts only
where every coordinate is labelled.

>>> import torch
>>> loss = RLELoss(dim=2)
>>> mu, sigma, target = torch.zeros(4, 17, 2), torch.full((4, 17, 2), 0.1), torch.randn(4, 17, 2) * 0.1
>>> loss(mu, sigma, target).shape
torch.Size([])
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rlepose.flows import default_flow
from rlepose.losses.base import HALF_LOG_2PI, SIGMA_EPS, JointLoss, QDensity, Reduction, log_q

__all__ = ["FlowLoss", "RLELoss", "DLELoss"]

_SQRT_2 = math.sqrt(2.0)


class FlowLoss(JointLoss):
    """A loss that owns a flow Gφ over the normalized residual x̄ (RLE, DLE and their forms).

    Args:
        dim: D, coordinates per joint (1, 2 or 3).
        q: the fixed density Q, ``"laplace"`` or ``"gaussian"``; ``None`` for DLE.
        flow: any module with ``log_prob((M, D)) -> (M,)``; default :meth:`default_flow`.
        reduction: see :mod:`rlepose.losses.base`.
        compile: run the loss as one compiled graph in training (:mod:`rlepose.losses.compiled`);
            ``None``, the default: yes unless ``RLEPOSE_COMPILE_LOSS=0``; ``False``: eagerly.
    """

    #: the default flow's Gaussian base and start (subclasses may start flat)
    flow_base_std: float = 1.0
    flow_zero_init: bool = False

    def __init__(self, dim: int = 2, q: QDensity | None = "laplace", flow: nn.Module | None = None,
                 reduction: Reduction = "mean", compile: bool | None = None) -> None:
        super().__init__(reduction, compile)
        if q is not None:
            log_q(torch.zeros(1), q)  # checks the name
        self.dim, self.q = dim, q
        self.flow = flow if flow is not None else self.default_flow(dim)
        self.flow_warmup = False

    @classmethod
    def default_flow(cls, dim: int, hidden_layers: int = 3, hidden_features: int = 64,
                     base_std: float | None = None, zero_init: bool | None = None) -> nn.Module:
        """The paper's RealNVP (Lfc × Nn = 3 × 64, appendix A), or for D = 1 the spline flow
        (:func:`rlepose.flows.default_flow`), with this loss's base and start."""
        return default_flow(dim, hidden_layers, hidden_features,
                            base_std=cls.flow_base_std if base_std is None else base_std,
                            zero_init=cls.flow_zero_init if zero_init is None else zero_init)

    def set_flow_warmup(self, active: bool) -> None:
        """While ``active``, the flow term gives µ̂ no gradient (µ̂ learns from Q alone); the
        loss value and the flow's own training are unchanged."""
        self.flow_warmup = bool(active)

    def log_g(self, mu: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
        """log Gφ(x̄) per joint (N, K), x̄ = (µ̂ − µg)/σ̂; µ̂'s path through the flow is cut
        during the warm-up."""
        n, k, d = mu.shape
        if d != self.dim:
            raise ValueError(f"{type(self).__name__}(dim={self.dim}) got D={d}")
        if self.flow_warmup:
            mu = mu.detach()
        return self.flow.log_prob(((mu - target) / sigma).reshape(n * k, d)).reshape(n, k)

    @torch.no_grad()
    def log_s_monte_carlo(self, num_samples: int = 200_000) -> Tensor:
        """log s = −log E_{x~Gφ}[Q(x)] from flow samples (needs ``flow.sample``): the
        normalizer of appendix E, for held-out likelihoods. Scalar."""
        if self.q is None:
            raise ValueError("log s is defined for RLE only (DLE's flow is already normalized)")
        x = self.flow.sample(num_samples)
        return math.log(num_samples) - torch.logsumexp(log_q(x, self.q).sum(-1), 0)

    @torch.no_grad()
    def log_density(self, mu: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
        """The model's normalized log-density of the labels per joint (N, K), in nats of the
        label's unit: ``log Q(x̄) + log Gφ(x̄) + log s − Σ log σ̂`` (Eq. 7, s by Monte Carlo);
        what a held-out likelihood should score."""
        sigma = sigma.clamp_min(SIGMA_EPS)
        log_p = self.log_g(mu, sigma, target) - sigma.log().sum(-1)
        return log_p + log_q((mu - target) / sigma, self.q).sum(-1) + self.log_s_monte_carlo()


class RLELoss(FlowLoss):
    """RLE as the published COCO results were trained (the official code; MMPose's only in Q's
    scale): per coordinate ``2 log σ̂_d − log Q(x̄_d) − log Gφ(x̄)``, weighted per coordinate.

    ``q="laplace"`` is the official code's Q, a Laplace on the scale √2·σ̂ with its constant
    ``½ log 2π`` (``−log Q = |x̄|/√2 + ½ log 2π``); ``q="gaussian"`` the standard Gaussian of
    scale σ̂ (as MMPose, ``−log Q = x̄²/2 + ½ log 2π``). The flow starts as the official one: a
    randomly initialized RealNVP on a unit Gaussian base.
    """

    def q_term(self, bar_mu: Tensor) -> Tensor:
        """−log Q per coordinate (N, K, D)."""
        if self.q == "laplace":
            return bar_mu.abs() / _SQRT_2 + HALF_LOG_2PI
        return -log_q(bar_mu, self.q)

    def terms(self, mu, sigma, target):
        log_g = self.log_g(mu, sigma, target)
        return 2 * sigma.log() + self.q_term((mu - target) / sigma) - log_g.unsqueeze(-1), None


class DLELoss(FlowLoss):
    """Direct Likelihood Estimation (Fig. 2b): the flow models the whole density of x̄,
    ``L = Σ_d log σ̂_d − log Gφ(x̄)``, a normalized likelihood."""

    def __init__(self, dim: int = 2, flow: nn.Module | None = None, reduction: Reduction = "mean",
                 compile: bool | None = None) -> None:
        super().__init__(dim=dim, q=None, flow=flow, reduction=reduction, compile=compile)

    def terms(self, mu, sigma, target):
        return sigma.log(), -self.log_g(mu, sigma, target)

    @torch.no_grad()
    def log_density(self, mu: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
        sigma = sigma.clamp_min(SIGMA_EPS)
        return self.log_g(mu, sigma, target) - sigma.log().sum(-1)
