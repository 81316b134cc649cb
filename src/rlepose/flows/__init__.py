"""Normalizing flows that model the (residual) density of the normalized error x̄.

A loss only needs an object with ``log_prob(x) -> (M,)`` for ``x`` of shape ``(M, D)``; the
paper is agnostic to the flow model (§3.3). :class:`RealNVP` is the paper's (appendix A) for
D ≥ 2; :class:`SplineFlow1D` (monotone rational-quadratic splines) serves D = 1, where a coupling
has nothing to condition on; :class:`ZukoDensity` wraps any flow of the optional ``zuko``
library. :func:`default_flow` picks by D.
"""
from __future__ import annotations

from torch import nn

from rlepose.flows.adapters import ZeroDensity, ZukoDensity
from rlepose.flows.realnvp import RealNVP, alternating_masks
from rlepose.flows.spline import SplineFlow1D, rational_quadratic_spline

__all__ = ["RealNVP", "SplineFlow1D", "ZukoDensity", "ZeroDensity", "alternating_masks",
           "rational_quadratic_spline", "default_flow"]


def default_flow(dim: int, hidden_layers: int = 3, hidden_features: int = 64, base_std: float = 1.0,
                 zero_init: bool = False) -> nn.Module:
    """RealNVP with ``hidden_layers`` × ``hidden_features`` s/t networks (Table 11) for D ≥ 2;
    for D = 1 the spline flow (its own defaults: 2 layers of 8 bins); same base and start."""
    if dim == 1:
        return SplineFlow1D(base_std=base_std, zero_init=zero_init)
    return RealNVP(dim, hidden_layers=hidden_layers, hidden_features=hidden_features, base_std=base_std,
                   zero_init=zero_init)
