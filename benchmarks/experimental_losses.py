"""Experimental forms of RLE that only benchmark rows use (not part of the library).

* :class:`LogSRLELoss`: Eq. 8 as printed plus the ``−log s`` term of appendix E, with ∫Q·Gφ as a
  midpoint Riemann sum on a grid.
* :class:`StandardizedRLELoss`: the exact negative log-likelihood of a residual density with an
  identified scale: ``r = Q·Gφ·s`` rescaled per coordinate to unit mean absolute deviation,
  ``r̃(y) = Π_d a_d · r(a⊙y)`` with ``a_d = E_r|x_d|``; σ̂_d is then the predicted mean absolute
  error of coordinate d. ``s`` and ``a`` are estimated each call by importance sampling.

:func:`experimental_loss` builds one from a benchmark row's loss section; :data:`EXPERIMENTAL`
names them. A row trains them with ``train(cfg, loss=...)`` and ``loss.name: rle_paper`` in its
config (the same flow, so its checkpoints load as ``rle_paper``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rlepose.losses import PaperRLELoss, log_q, sample_q

_LOG_2 = math.log(2.0)


class LogSRLELoss(PaperRLELoss):
    """Eq. 8 plus ``−log s`` per joint, ∫QGφ on ``grid`` points per axis over ``[−bound, bound]^D``."""

    def __init__(self, dim: int = 2, q: str = "laplace", flow=None, grid: int = 100, bound: float = 5.0,
                 reduction: str = "mean") -> None:
        super().__init__(dim=dim, q=q, flow=flow, reduction=reduction)
        self.grid, self.bound = grid, bound

    def log_s(self) -> Tensor:
        """log s = −log ∫ Q·Gφ by a midpoint Riemann sum (appendix E, Eq. 16). Scalar."""
        n, b = self.grid, self.bound
        step = 2 * b / n
        ref = next(self.flow.parameters(), torch.empty(0))
        axis = torch.linspace(-b + step / 2, b - step / 2, n, dtype=ref.dtype, device=ref.device)
        points = torch.stack(torch.meshgrid(*[axis] * self.dim, indexing="ij"), -1).reshape(-1, self.dim)
        log_qg = log_q(points, self.q).sum(-1) + self.flow.log_prob(points)
        return -(torch.logsumexp(log_qg, 0) + self.dim * math.log(step))

    def terms(self, mu, sigma, target):
        coord, joint = super().terms(mu, sigma, target)
        return coord, joint - self.log_s()


class StandardizedRLELoss(PaperRLELoss):
    """The standardized density r̃ (module docstring); ``quadrature_points`` draws per call."""

    def __init__(self, dim: int = 2, q: str = "laplace", flow=None, quadrature_points: int = 2048,
                 reduction: str = "mean") -> None:
        super().__init__(dim=dim, q=q, flow=flow, reduction=reduction)
        self.quadrature_points = quadrature_points

    def residual_scale(self) -> tuple[Tensor, Tensor]:
        """``(a, log ∫QGφ)``: a (D,) = E_r|x_d| under r = Q·Gφ·s.

        Importance sampling from the even mixture m = ½Q + ½Gφ, fresh draws every call:
        ``∫QGφ·f ≈ mean_i Q(x_i)Gφ(x_i)/m(x_i)·f(x_i)``. The flow's half (reparameterized, so
        differentiable) covers wherever Gφ puts mass, which a proposal from Q alone or a fixed
        grid misses once the flow moves mass into Q's tails; the Q half covers the core."""
        m = self.quadrature_points // 2
        dtype = next(self.flow.parameters()).dtype
        x_q = sample_q(self.q, self.dim, m).to(dtype)
        x_g, log_g_at_g = self.flow.rsample_and_log_prob(m)
        x = torch.cat([x_q, x_g])
        log_g = torch.cat([self.flow.log_prob(x_q), log_g_at_g])
        log_qx = log_q(x, self.q).sum(-1)
        log_w = log_qx + log_g - (torch.logaddexp(log_qx, log_g) - _LOG_2)
        w = torch.softmax(log_w, 0)
        a = (w[:, None] * x.abs()).sum(0)
        return a, torch.logsumexp(log_w, 0) - math.log(x.shape[0])

    def terms(self, mu, sigma, target):
        n, k, d = mu.shape
        a, log_integral = self.residual_scale()
        y = (mu - target) / sigma * a.to(mu.dtype)
        coord = sigma.log() - a.log().to(mu.dtype) - log_q(y, self.q)
        joint = log_integral.to(mu.dtype) - self.flow.log_prob(y.reshape(n * k, d)).reshape(n, k)
        return coord, joint

    @torch.no_grad()
    def log_density(self, mu, sigma, target):
        coord, joint = self.terms(mu, sigma.clamp_min(1e-9), target)
        return -coord.sum(-1) - joint


EXPERIMENTAL = {"rle_standardized": StandardizedRLELoss, "rle_log_s": LogSRLELoss}


def experimental_loss(section: dict, dim: int):
    """The experimental loss of a row's loss section (``name`` in :data:`EXPERIMENTAL`), or None."""
    cls = EXPERIMENTAL.get(section.get("name"))
    if cls is None:
        return None
    kwargs = {"grid": section["log_s_grid"]} if cls is LogSRLELoss and section.get("log_s_grid") else {}
    return cls(dim=dim, q=section.get("q", "laplace"), **kwargs)


def trainable_section(section: dict) -> dict:
    """The config section a row trains with: experimental rows as ``rle_paper`` (same flow)."""
    if section.get("name") not in EXPERIMENTAL:
        return section
    return {k: v for k, v in section.items() if k != "log_s_grid"} | {"name": "rle_paper"}
