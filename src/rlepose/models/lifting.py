"""The FC lifting network of Martinez et al. (2017), the "FC baseline" of the paper's
two-stage Human3.6M experiment, with a (µ̂, σ̂) output so that RLE applies unchanged."""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ResidualBlock", "LiftingNet"]


class _Linear(nn.Module):
    """Linear → BN → ReLU → Dropout."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.relu(self.bn(self.linear(x))))


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.layer1 = _Linear(width, dropout)
        self.layer2 = _Linear(width, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layer2(self.layer1(x))


class LiftingNet(nn.Module):
    """2-D joints (N, K, 2), normalized by dataset mean/std → 3-D µ̂, σ̂ (N, K_out, 3).

    Linear(K·2 → 1024) + BN/ReLU/Dropout, ``num_blocks`` residual blocks of two such layers,
    then one linear layer with K_out·3·2 outputs (µ̂ and σ̂ logits). ``sigma`` is a sigmoid.
    Units of µ̂ are those of the (normalized) 3-D targets the model is trained on.
    """

    def __init__(self, num_joints_in: int = 17, num_joints_out: int = 17, width: int = 1024,
                 num_blocks: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_joints_out = num_joints_out
        self.input = nn.Linear(num_joints_in * 2, width)
        self.input_act = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.blocks = nn.Sequential(*[ResidualBlock(width, dropout) for _ in range(num_blocks)])
        self.output = nn.Linear(width, num_joints_out * 6)

    def forward(self, joints_2d: Tensor) -> tuple[Tensor, Tensor]:
        x = self.blocks(self.input_act(self.input(joints_2d.flatten(1))))
        out = self.output(x)
        k3 = self.num_joints_out * 3
        mu = out[:, :k3].reshape(-1, self.num_joints_out, 3)
        sigma = torch.sigmoid(out[:, k3:]).reshape(-1, self.num_joints_out, 3)
        return mu, sigma
