"""Pose heads. Coordinates are *normalized crop coordinates*: a point (u, v) of an input crop
of width W and height H, in pixels with pixel centres at integers (OpenCV's convention),
maps to (u / W − 0.5, v / H − 0.5), so the crop spans about [−0.5, 0.5] on both axes (points
outside the crop stay representable, which matters for truncation). A heatmap of width w
(stride W/w) has its index i at u = i·W/w, i.e. at i/w − 0.5, as in the reference codebases.
For D = 3 the third coordinate is root-relative depth divided by a documented depth bound
(see the 3-D data module), also centred on 0.

* :class:`RegressionHead` — the paper's model: global average pool + one FC → µ̂, σ̂.
* :class:`IntegralHead` — soft-argmax over per-joint heatmaps (with depth bins for 3-D) for
  µ̂, an FC on pooled features for σ̂ (paper §4.1 "HRNet + RLE"; Integral Pose, Sun et al. 2018).
* :class:`HeatmapHead` — SimpleBaseline (3 deconvolutions + 1×1 conv) trained with MSE on
  Gaussian heatmaps; the heatmap baseline the paper compares against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RegressionHead", "deconv_layers", "soft_argmax", "IntegralHead", "HeatmapHead",
           "gaussian_heatmaps", "heatmap_mse_loss", "decode_heatmaps"]


class RegressionHead(nn.Module):
    """Pool + ``fc`` with K·2D outputs: µ̂ (N, K, D) and σ̂ = sigmoid (N, K, D).

    The FC's output rows are ordered ``[µ̂ of all joints (K·D), σ̂ logits of all joints (K·D)]``,
    joint-major (x₀, y₀, x₁, y₁, …). ``coord_norm`` divides the µ̂ rows' matrix product (not the
    bias) by the pooled feature's L2 norm, as the paper's official code does; off by default.
    ``init_gain``: draw the FC weight Xavier-uniform with this gain (the official code: 0.01, so
    µ̂ starts near its bias and σ̂ near 0.5); ``None`` keeps PyTorch's default initialization.
    """

    def __init__(self, in_channels: int, num_joints: int, dim: int = 2, coord_norm: bool = False,
                 init_gain: float | None = None) -> None:
        super().__init__()
        self.num_joints, self.dim, self.coord_norm = num_joints, dim, coord_norm
        self.fc = nn.Linear(in_channels, num_joints * dim * 2)
        if init_gain is not None:
            # the official code draws the µ̂ and σ̂ rows as two matrices; Xavier's bound depends on
            # the fan-out, so draw each half with its own K·D rows
            for rows in self.fc.weight.data.chunk(2):
                nn.init.xavier_uniform_(rows, gain=init_gain)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        pooled = features.mean(dim=(2, 3))
        out = self.fc(pooled)
        n, kd = out.shape[0], self.num_joints * self.dim
        if self.coord_norm:
            coords = (pooled @ self.fc.weight[:kd].t()) / pooled.norm(dim=1, keepdim=True) + self.fc.bias[:kd]
            out = torch.cat([coords, out[:, kd:]], 1)
        mu = out[:, :kd].reshape(n, self.num_joints, self.dim)
        sigma = torch.sigmoid(out[:, kd:]).reshape(n, self.num_joints, self.dim)
        return mu, sigma


def deconv_layers(in_channels: int, num_layers: int = 3, channels: int = 256) -> nn.Sequential:
    """SimpleBaseline's upsampling: ``num_layers`` × (4×4 stride-2 deconv, BN, ReLU)."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers += [nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2, padding=1,
                                      output_padding=0, bias=False),
                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def soft_argmax(logits: Tensor) -> Tensor:
    """Expected position under ``softmax`` over the last 2 (or 3) axes.

    Args:
        logits: (N, K, H, W) or (N, K, Z, H, W).
    Returns:
        (N, K, 2) as (x, y) or (N, K, 3) as (x, y, z), each in normalized coordinates:
        index i of an axis of length L maps to i/L − 0.5.
    """
    n, k, *sizes = logits.shape
    prob = logits.reshape(n, k, -1).softmax(-1).reshape(logits.shape)
    coords = []
    for axis, size in zip(reversed(range(2, 2 + len(sizes))), reversed(sizes)):  # x (last axis) first
        grid = torch.arange(size, dtype=prob.dtype, device=prob.device) / size - 0.5
        marginal = prob.sum(dim=[a for a in range(2, 2 + len(sizes)) if a != axis])
        coords.append((marginal * grid).sum(-1))
    return torch.stack(coords, -1)


class IntegralHead(nn.Module):
    """µ̂ by soft-argmax over heatmaps, σ̂ by an FC on pooled backbone features.

    Args:
        in_channels: backbone feature channels.
        num_joints: K.
        dim: 2 (heatmaps) or 3 (``depth_bins`` heatmaps per joint, Integral Pose).
        num_deconv: SimpleBaseline deconvolutions before the 1×1 conv (3 for a stride-32
            ResNet, 0 for HRNet which already gives stride 4).
    """

    def __init__(self, in_channels: int, num_joints: int, dim: int = 2, num_deconv: int = 0,
                 deconv_channels: int = 256, depth_bins: int = 64) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError("IntegralHead supports dim 2 or 3")
        self.num_joints, self.dim, self.depth_bins = num_joints, dim, depth_bins
        self.deconv_layers = deconv_layers(in_channels, num_deconv, deconv_channels) if num_deconv else nn.Identity()
        c = deconv_channels if num_deconv else in_channels
        self.final_layer = nn.Conv2d(c, num_joints * (depth_bins if dim == 3 else 1), 1)
        self.fc_sigma = nn.Linear(in_channels, num_joints * dim)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.final_layer(self.deconv_layers(features))
        n, _, h, w = maps.shape
        if self.dim == 3:
            maps = maps.reshape(n, self.num_joints, self.depth_bins, h, w)
        mu = soft_argmax(maps)
        sigma = torch.sigmoid(self.fc_sigma(features.mean(dim=(2, 3)))).reshape(n, self.num_joints, self.dim)
        return mu, sigma


class HeatmapHead(nn.Module):
    """SimpleBaseline head: ``deconv_layers`` then ``final_layer`` (1×1 conv) → (N, K, H/4, W/4)
    for a stride-32 backbone (names as in SimpleBaseline and MMPose's TopdownHeatmapSimpleHead)."""

    def __init__(self, in_channels: int, num_joints: int, num_deconv: int = 3, channels: int = 256) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.deconv_layers = deconv_layers(in_channels, num_deconv, channels) if num_deconv else nn.Identity()
        self.final_layer = nn.Conv2d(channels if num_deconv else in_channels, num_joints, 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(features))


def gaussian_heatmaps(keypoints: Tensor, size: tuple[int, int], sigma: float = 2.0) -> Tensor:
    """Standard Gaussian targets (as in SimpleBaseline, unnormalized, peak 1).

    Args:
        keypoints: (N, K, 2) normalized crop coordinates.
        size: heatmap (H, W).
        sigma: standard deviation in heatmap pixels (2 for 64×48 maps).
    Returns:
        (N, K, H, W), peak at heatmap pixel ``(x + 0.5)·W`` (a continuous position; the
        reference codebases round it to an integer first, which we do not need to).
    """
    h, w = size
    px = (keypoints[..., 0] + 0.5) * w
    py = (keypoints[..., 1] + 0.5) * h
    xs = torch.arange(w, dtype=keypoints.dtype, device=keypoints.device)
    ys = torch.arange(h, dtype=keypoints.dtype, device=keypoints.device)
    gx = torch.exp(-((xs - px[..., None]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - py[..., None]) ** 2) / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :]


def heatmap_mse_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """½·MSE per joint averaged over joints and pixels, joints weighted by ``weight`` (N, K)
    (SimpleBaseline's ``JointsMSELoss`` with target weights)."""
    if weight is None:
        weight = pred.new_ones(pred.shape[:2])
    sq = ((pred - target) ** 2).mean(dim=(2, 3))
    return 0.5 * (sq * weight**2).mean()


def decode_heatmaps(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Argmax decoding with the usual quarter-pixel shift towards the higher neighbour.

    Args:
        heatmaps: (N, K, H, W).
    Returns:
        keypoints (N, K, 2) in normalized crop coordinates (inverse of :func:`gaussian_heatmaps`)
        and the peak values (N, K) as confidence.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    maxval, idx = flat.max(-1)
    x = (idx % w).to(heatmaps.dtype)
    y = torch.div(idx, w, rounding_mode="floor").to(heatmaps.dtype)
    xi, yi = x.long(), y.long()
    padded = F.pad(heatmaps, (1, 1, 1, 1), mode="replicate")  # neighbours exist at the borders
    b = torch.arange(n, device=heatmaps.device)[:, None]
    j = torch.arange(k, device=heatmaps.device)[None, :]
    dx = padded[b, j, yi + 1, xi + 2] - padded[b, j, yi + 1, xi]
    dy = padded[b, j, yi + 2, xi + 1] - padded[b, j, yi, xi + 1]
    x = x + 0.25 * torch.sign(dx)
    y = y + 0.25 * torch.sign(dy)
    keypoints = torch.stack([x / w - 0.5, y / h - 0.5], -1)
    return keypoints, maxval
