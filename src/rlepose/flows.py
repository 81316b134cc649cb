"""Normalizing flows that model the (residual) density of the normalized error µ̄.

The loss only needs an object with ``log_prob(x) -> (M,)`` for ``x`` of shape ``(M, D)``;
the paper is agnostic to the flow model (§3.3). :class:`RealNVP` is the paper's default
(appendix A); :class:`ZukoDensity` wraps any flow of the optional ``zuko`` library.

RealNVP layout (appendix A, Eq. 12): ``K`` affine coupling layers with alternating binary
masks. In layer ``k`` the masked part ``x_m = mask_k * x`` passes unchanged and conditions
the rest, which is scaled by ``exp(s_k(x_m))`` and shifted by ``t_k(x_m)``. Each of ``s_k``
and ``t_k`` is an MLP of ``Lfc`` linear layers of width ``Nn`` with LeakyReLU in between
(``Lfc`` counts every linear layer, which reproduces the parameter counts of Table 11:
3×64 → 53.8K). ``s_k`` ends in ``tanh`` so that each layer scales by at most ``e`` — the
bounded scales keep ``exp`` from overflowing early in training.

Module names (``mask``, ``s.{k}.{j}``, ``t.{k}.{j}``) follow the layout of the paper's
official implementation, so its flow weights load without renaming.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["alternating_masks", "RealNVP", "ZukoDensity", "ZeroDensity"]


def _mlp(dim: int, hidden: int, num_linear: int, bounded: bool) -> nn.Sequential:
    """``num_linear`` linear layers ``dim → hidden → … → dim`` with LeakyReLU between."""
    if num_linear < 2:
        raise ValueError(f"a coupling network needs at least 2 linear layers, got {num_linear}")
    widths = [dim] + [hidden] * (num_linear - 1) + [dim]
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(w_in, w_out))
        if i < num_linear - 1:
            layers.append(nn.LeakyReLU())
    if bounded:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def alternating_masks(dim: int, num_layers: int) -> Tensor:
    """Binary masks ``(num_layers, dim)``: even layers keep the last ``dim // 2`` coordinates
    fixed (``[0, 1]`` for D=2, ``[0, 0, 1]`` for D=3), odd layers the complement."""
    if dim < 2:
        raise ValueError("coupling flows need dim >= 2 (nothing to condition on in 1-D)")
    even = torch.zeros(dim)
    even[dim - dim // 2 :] = 1.0
    return torch.stack([even if k % 2 == 0 else 1.0 - even for k in range(num_layers)])


class RealNVP(nn.Module):
    """RealNVP density on ``R^dim`` with a standard-normal base.

    Args:
        dim: D, the dimension of one joint's error vector (2 or 3).
        num_layers: K coupling layers (paper: 6).
        hidden_layers: Lfc, linear layers per s/t network (paper default 3).
        hidden_features: Nn, their width (paper default 64).
        base_std: standard deviation of the Gaussian base (1 in the paper). The density is
            ``G(x) = G₁(x / base_std) / base_std^D`` with ``G₁`` the unit-base flow, so a wide
            base makes G nearly flat on the scale of Q: RLE then starts as plain Q likelihood.
        zero_init: zero the last linear layer of every s/t network, so that the flow starts as
            the identity map and ``G = N(0, base_std² I)`` exactly ("the residual starts at zero").
            Weights loaded afterwards (checkpoints) overwrite it; neither changes parameter names.
    """

    def __init__(self, dim: int = 2, num_layers: int = 6, hidden_layers: int = 3,
                 hidden_features: int = 64, base_std: float = 1.0, zero_init: bool = False) -> None:
        super().__init__()
        if base_std <= 0:
            raise ValueError(f"base_std must be positive, got {base_std}")
        self.dim = dim
        self.base_std = float(base_std)
        self.register_buffer("mask", alternating_masks(dim, num_layers))
        self.s = nn.ModuleList(
            [_mlp(dim, hidden_features, hidden_layers, bounded=True) for _ in range(num_layers)])
        self.t = nn.ModuleList(
            [_mlp(dim, hidden_features, hidden_layers, bounded=False) for _ in range(num_layers)])
        if zero_init:
            with torch.no_grad():
                for net in [*self.s, *self.t]:
                    last = [m for m in net if isinstance(m, nn.Linear)][-1]
                    last.weight.zero_()
                    last.bias.zero_()

    def _coupling(self, k: int, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mask of layer k, with its log-scale and shift evaluated on the kept part of x."""
        m = self.mask[k]
        kept = x * m
        return m, self.s[k](kept) * (1 - m), self.t[k](kept) * (1 - m)

    def forward_transform(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Base → data: ``x = f(z)``; returns ``(x, log|det ∂x/∂z|)``, shapes (M,D), (M,)."""
        log_det = z.new_zeros(z.shape[0])
        x = z
        for k in range(len(self.s)):
            m, s, t = self._coupling(k, x)
            x = x * m + (1 - m) * (x * torch.exp(s) + t)
            log_det = log_det + s.sum(dim=1)
        return x, log_det

    def inverse_transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data → base: ``z = f⁻¹(x)``; returns ``(z, log|det ∂z/∂x|)``, shapes (M,D), (M,)."""
        log_det = x.new_zeros(x.shape[0])
        z = x
        for k in reversed(range(len(self.s))):
            m, s, t = self._coupling(k, z)
            z = z * m + (1 - m) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density at ``x`` (M, D) → (M,), in nats."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"RealNVP(dim={self.dim}).log_prob expects (M, {self.dim}), got {tuple(x.shape)}")
        z, log_det = self.inverse_transform(x / self.base_std)
        base = -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return base + log_det - self.dim * math.log(self.base_std)

    def rsample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` reparameterized samples (n, D) and their log-densities (n,): differentiable
        in the flow's parameters (used to integrate against Gφ inside a loss)."""
        z = torch.randn(n, self.dim, device=self.mask.device, dtype=self.mask.dtype)
        x, log_det = self.forward_transform(z)
        base = -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return x * self.base_std, base - log_det - self.dim * math.log(self.base_std)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples (n, D), e.g. to plot the learned residual density."""
        z = torch.randn(n, self.dim, generator=generator, device=self.mask.device)
        return self.forward_transform(z)[0] * self.base_std


class ZukoDensity(nn.Module):
    """Adapter for a ``zuko`` flow (e.g. ``zuko.flows.NSF(features=2)``): exposes ``log_prob``.

    zuko flows are called (optionally with a context) to build a distribution; RLE's flow is
    unconditional, so the adapter calls it with no context.
    """

    def __init__(self, flow: nn.Module) -> None:
        super().__init__()
        self.flow = flow

    def log_prob(self, x: Tensor) -> Tensor:
        return self.flow().log_prob(x)

    def rsample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        return self.flow().rsample_and_log_prob((n,))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.flow().sample((n,))


class ZeroDensity(nn.Module):
    """``log G(x) = 0`` everywhere: RLE with this "flow" reduces to the plain Q likelihood.
    Not a normalized density; useful as a control and in tests."""

    def log_prob(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0])
