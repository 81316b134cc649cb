"""Adapters: any ``zuko`` flow as a density, and the zero density (a control)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ZukoDensity", "ZeroDensity"]


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
