"""A normalizing flow on the real line: the default Gφ for one-dimensional targets (D = 1).

RealNVP cannot serve D = 1 (a coupling layer keeps some coordinates to condition the others on,
and one coordinate leaves nothing to condition on). :class:`SplineFlow1D` is a stack of
monotone maps of the line, each a learned affine map followed by a monotone rational-quadratic
spline (Durkan et al., "Neural Spline Flows", NeurIPS 2019, §3.1), with a Gaussian base like
RealNVP's. Without a conditioner the spline's parameters are the layer's own: bin widths and
heights (softmax-normalized over ``[-bound, bound]``) and the derivatives at the inner knots
(softplus); outside ``[-bound, bound]`` each spline is the identity, its end derivatives fixed
at 1 so that the density is smooth there.

Directions as in :class:`rlepose.flows.RealNVP`: :meth:`SplineFlow1D.inverse_transform` maps
data to the base (closed form, what ``log_prob`` uses in training), and
:meth:`SplineFlow1D.forward_transform` maps the base to data (each spline inverted by its
quadratic, for sampling).

>>> import torch
>>> flow = SplineFlow1D(zero_init=True)             # the identity map: G = N(0, 1)
>>> round(float(flow.log_prob(torch.zeros(1, 1)).detach().exp()), 6)   # 1/√(2π)
0.398942
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SplineFlow1D", "rational_quadratic_spline"]

_MIN_BIN = 1e-3  # smallest bin width and height, as a fraction of the interval
_MIN_DERIVATIVE = 1e-3


def _knots(unnormalized: Tensor, bound: float) -> tuple[Tensor, Tensor]:
    """Bin sizes (K,) summing to 2·bound, each at least ``_MIN_BIN``·2·bound, and the K+1 knot
    positions from −bound to bound."""
    k = unnormalized.shape[-1]
    sizes = 2 * bound * (_MIN_BIN + (1 - _MIN_BIN * k) * torch.softmax(unnormalized, -1))
    knots = F.pad(torch.cumsum(sizes, -1), (1, 0)) - bound
    return sizes, torch.cat([knots[:-1], knots.new_full((1,), bound)])  # the last knot exactly at bound


def rational_quadratic_spline(x: Tensor, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float,
                              inverse: bool = False) -> tuple[Tensor, Tensor]:
    """The monotone rational-quadratic spline of Durkan et al. (2019) on ``[-bound, bound]``,
    the identity outside, applied element-wise to ``x`` (any shape).

    Args:
        widths, heights: (K,) unnormalized bin widths and heights (softmax over the bins).
        derivatives: (K − 1,) unconstrained derivatives at the inner knots (softplus); the end
            knots' derivatives are 1.
        inverse: apply the inverse map (solving each bin's quadratic) instead.

    Returns ``(y, log|dy/dx|)``, both shaped like ``x``.
    """
    w, xk = _knots(widths, bound)
    h, yk = _knots(heights, bound)
    d = F.pad(_MIN_DERIVATIVE + F.softplus(derivatives), (1, 1), value=1.0)
    inside = (x > -bound) & (x < bound)
    xc = x.clamp(-bound, bound)
    edges = yk if inverse else xk
    b = (torch.searchsorted(edges[1:-1].contiguous(), xc.detach().contiguous(), right=True)).clamp(0, w.shape[0] - 1)
    wb, hb, xb, yb, d0, d1 = w[b], h[b], xk[b], yk[b], d[b], d[b + 1]
    s = hb / wb
    if inverse:
        dy = xc - yb
        slope_sum = d1 + d0 - 2 * s
        a = hb * (s - d0) + dy * slope_sum
        bq = hb * d0 - dy * slope_sum
        c = -s * dy
        xi = (2 * c) / (-bq - torch.sqrt((bq * bq - 4 * a * c).clamp_min(0))).clamp_max(-1e-12)
        xi = xi.clamp(0, 1)
        out = xb + xi * wb
    else:
        xi = ((xc - xb) / wb).clamp(0, 1)
    t = xi * (1 - xi)
    denom = s + (d1 + d0 - 2 * s) * t
    log_deriv = 2 * torch.log(s) + torch.log(d1 * xi * xi + 2 * s * t + d0 * (1 - xi) ** 2) - 2 * torch.log(denom)
    if inverse:
        return torch.where(inside, out, x), torch.where(inside, -log_deriv, torch.zeros_like(x))
    y = yb + hb * (s * xi * xi + d0 * t) / denom
    return torch.where(inside, y, x), torch.where(inside, log_deriv, torch.zeros_like(x))


class SplineFlow1D(nn.Module):
    """A density on the real line with a Gaussian base: data → base is ``num_layers`` times an
    affine map ``u = (x − shift)·exp(−log_scale)`` followed by a rational-quadratic spline of
    ``num_bins`` bins on ``[-bound, bound]``.

    Args:
        num_layers: affine + spline layers (default 2).
        num_bins: bins per spline (default 8).
        bound: half-width of the splines' interval, in base units (default 4: the base's
            ±4σ hold all but 6e-5 of its mass).
        base_std: standard deviation of the Gaussian base, as in :class:`RealNVP`.
        zero_init: start as the identity map (``G = N(0, base_std²)`` exactly); otherwise the
            spline parameters start small and random.

    Parameters (each stacked over the layers): ``shift``, ``log_scale`` (L,), ``widths``,
    ``heights`` (L, num_bins), ``derivatives`` (L, num_bins − 1).
    """

    dim = 1

    def __init__(self, num_layers: int = 2, num_bins: int = 8, bound: float = 4.0, base_std: float = 1.0,
                 zero_init: bool = False) -> None:
        super().__init__()
        if base_std <= 0 or bound <= 0:
            raise ValueError(f"base_std and bound must be positive, got {base_std}, {bound}")
        if num_layers < 1 or num_bins < 2:
            raise ValueError(f"need num_layers >= 1 and num_bins >= 2, got {num_layers}, {num_bins}")
        self.num_layers, self.num_bins = num_layers, num_bins
        self.bound, self.base_std = float(bound), float(base_std)
        identity_derivative = math.log(math.expm1(1 - _MIN_DERIVATIVE))  # softplus⁻¹(1 − min): slope 1
        scale = 0.0 if zero_init else 0.1
        self.shift = nn.Parameter(torch.zeros(num_layers))
        self.log_scale = nn.Parameter(torch.zeros(num_layers))
        self.widths = nn.Parameter(scale * torch.randn(num_layers, num_bins))
        self.heights = nn.Parameter(scale * torch.randn(num_layers, num_bins))
        self.derivatives = nn.Parameter(identity_derivative + scale * torch.randn(num_layers, num_bins - 1))

    def inverse_transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data → base: ``z = f⁻¹(x)``; returns ``(z, log|dz/dx|)``, shapes (M, 1), (M,)."""
        z, log_det = x, x.new_zeros(x.shape)
        for i in range(self.num_layers):
            z = (z - self.shift[i]) * torch.exp(-self.log_scale[i])
            z, ld = rational_quadratic_spline(z, self.widths[i], self.heights[i], self.derivatives[i], self.bound)
            log_det = log_det + ld - self.log_scale[i]
        return z, log_det.sum(-1)

    def forward_transform(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Base → data: ``x = f(z)``; returns ``(x, log|dx/dz|)``, shapes (M, 1), (M,)."""
        x, log_det = z, z.new_zeros(z.shape)
        for i in reversed(range(self.num_layers)):
            x, ld = rational_quadratic_spline(x, self.widths[i], self.heights[i], self.derivatives[i], self.bound,
                                              inverse=True)
            x = x * torch.exp(self.log_scale[i]) + self.shift[i]
            log_det = log_det + ld + self.log_scale[i]
        return x, log_det.sum(-1)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density at ``x`` (M, 1) → (M,), in nats."""
        if x.dim() != 2 or x.shape[1] != 1:
            raise ValueError(f"SplineFlow1D.log_prob expects (M, 1), got {tuple(x.shape)}")
        with torch.autocast(x.device.type, enabled=False):
            z, log_det = self.inverse_transform(x.to(self.shift.dtype) / self.base_std)
        return -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi) + log_det - math.log(self.base_std)

    def rsample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` reparameterized samples (n, 1) and their log-densities (n,)."""
        z = torch.randn(n, 1, device=self.shift.device, dtype=self.shift.dtype)
        x, log_det = self.forward_transform(z)
        base = -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
        return x * self.base_std, base - log_det - math.log(self.base_std)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples (n, 1)."""
        z = torch.randn(n, 1, generator=generator, device=self.shift.device, dtype=self.shift.dtype)
        return self.forward_transform(z)[0] * self.base_std
