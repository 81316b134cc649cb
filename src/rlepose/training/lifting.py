"""2-D → 3-D lifting on Human3.6M (the paper's two-stage experiment): data, normalization,
and the LightningModule. Inputs are 2-D joints in pixels; targets root-relative camera-space
joints in mm.

Normalization, inputs and targets alike, as in Martinez et al.: minus the training set's
per-coordinate mean, divided by its per-coordinate standard deviation (inputs first go from
pixels to [−1, 1] by the image width). µ̂ and σ̂ are in these std units, per coordinate.
The unit was chosen by measurement (``benchmarks/lifting.py``, generated poses, 8 epochs):
metres instead of std units cost L2 77 → 120 mm and Laplace NLL 86 → 113 mm."""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from rlepose.data.h36m import PoseSet
from rlepose.evaluation.pose3d import per_action_table
from rlepose.models.lifting import LiftingNet
from rlepose.config import ExperimentConfig, config_from_dict, config_to_dict
from rlepose.training.module import apply_flow_warmup, skip_nonfinite

__all__ = ["screen_normalize", "targets_mm", "Normalizer", "lifting_tensors", "LiftingModule"]


def screen_normalize(joints_2d: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    """Pixels → [−1, 1] along x (and the same scale along y), per pose's image (w, h)."""
    w, h = image_size[:, 0][:, None, None], image_size[:, 1][:, None, None]
    return joints_2d / w * 2 - np.concatenate([np.ones_like(w), h / w], -1)


def targets_mm(poses: PoseSet) -> np.ndarray:
    """Root-relative 3-D joints without the root: (N, 16, 3) mm."""
    rel = poses.joints_cam - poses.joints_cam[:, :1]
    return rel[:, 1:]


class Normalizer(nn.Module):
    """Per-coordinate mean and standard deviation of the inputs (17×2, screen units) and of the
    targets (16×3, mm), fitted on the training set; buffers, so checkpoints carry them."""

    def __init__(self) -> None:
        super().__init__()
        for name, shape in (("in_mean", (17, 2)), ("in_std", (17, 2)), ("out_mean", (16, 3)), ("out_std", (16, 3))):
            self.register_buffer(name, torch.zeros(shape) if "mean" in name else torch.ones(shape))

    def fit(self, inputs: np.ndarray, targets: np.ndarray) -> "Normalizer":
        self.in_mean.copy_(torch.from_numpy(inputs.mean(0)))
        self.in_std.copy_(torch.from_numpy(inputs.std(0) + 1e-8))
        self.out_mean.copy_(torch.from_numpy(targets.mean(0)))
        self.out_std.copy_(torch.from_numpy(targets.std(0) + 1e-8))
        return self

    def inputs(self, x: Tensor) -> Tensor:
        return (x - self.in_mean) / self.in_std

    def targets(self, y: Tensor) -> Tensor:
        """mm (N, 16, 3) → std units."""
        return (y - self.out_mean) / self.out_std

    def to_mm(self, y: Tensor) -> Tensor:
        """std units (N, 16, 3) → mm; the inverse of :meth:`targets`."""
        return y * self.out_std + self.out_mean


def lifting_tensors(poses: PoseSet) -> tuple[Tensor, Tensor]:
    """(inputs (N, 17, 2) screen-normalized, targets (N, 16, 3) mm) as float tensors."""
    x = screen_normalize(poses.joints_2d, poses.image_size)
    return torch.from_numpy(x).float(), torch.from_numpy(targets_mm(poses)).float()


class LiftingModule(L.LightningModule):
    """LiftingNet + loss (RLE with a 3-D flow, or L1/L2...), Adam with the learning rate decayed
    by ``train.gamma`` after every epoch (paper: 5% per epoch). Validation: MPJPE and PA-MPJPE
    (mm) per action and averaged; ``last_table`` keeps the table."""

    def __init__(self, config: dict, val_actions: list[str] | None = None, loss: nn.Module | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: ExperimentConfig = config_from_dict(config)
        lc = self.cfg.lifting
        self.model = LiftingNet(17, 16, lc.width, lc.num_blocks, lc.dropout)
        self.normalizer = Normalizer()
        self.loss = loss if loss is not None else self.cfg.loss.build(3)
        self.val_actions = val_actions
        self._val: list[tuple[Tensor, Tensor, Tensor]] = []
        self._calibration: list[Tensor] = []  # per batch: Σσ̂, Σ|µ̂ − µg|, count (std units)
        self.last_metrics: dict = {}
        self.nonfinite_batches = 0  # training batches skipped for a NaN/inf loss
        self.last_table: dict = {}

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, **kwargs) -> "LiftingModule":
        return cls(config_to_dict(cfg), **kwargs)

    def forward(self, joints_2d: Tensor) -> tuple[Tensor, Tensor]:
        """Screen-normalized 2-D (N, 17, 2) → µ̂ in mm (N, 16, 3) root-relative, σ̂ (normalized units)."""
        mu, sigma = self.model(self.normalizer.inputs(joints_2d))
        return self.normalizer.to_mm(mu), sigma

    def on_train_epoch_start(self) -> None:
        apply_flow_warmup(self)

    def training_step(self, batch, batch_idx):
        x, y = batch
        mu, sigma = self.model(self.normalizer.inputs(x))
        loss = self.loss(mu, sigma, self.normalizer.targets(y))
        if not torch.isfinite(loss):
            return skip_nonfinite(self, loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, index = batch
        mu, sigma = self.model(self.normalizer.inputs(x))
        abs_error = (mu - self.normalizer.targets(y)).abs()
        self._val.append((self.normalizer.to_mm(mu).detach().cpu(), y.cpu(), index.cpu()))
        self._calibration.append(torch.stack([sigma.sum(), abs_error.sum(), sigma.new_tensor(sigma.numel())]).detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        pred = torch.cat([p for p, _, _ in self._val]).double().numpy()
        gt = torch.cat([g for _, g, _ in self._val]).double().numpy()
        index = torch.cat([i for _, _, i in self._val]).numpy()
        self._val.clear()
        zeros = np.zeros((len(pred), 1, 3))
        actions = [self.val_actions[i] for i in index] if self.val_actions is not None else ["All"] * len(pred)
        table = per_action_table(np.concatenate([zeros, pred], 1), np.concatenate([zeros, gt], 1), actions)
        self.last_table = table
        sigma_sum, error_sum, count = torch.stack(self._calibration).sum(0).tolist()
        self._calibration.clear()
        self.last_metrics = {"MPJPE": table["Average"]["MPJPE"], "PA-MPJPE": table["Average"]["PA-MPJPE"],
                             # calibration in the normalized (std) units of the targets, per coordinate
                             "sigma_mean": sigma_sum / count, "abs_error_mean": error_sum / count,
                             "sigma_over_error": sigma_sum / max(error_sum, 1e-12)}
        for name, value in self.last_metrics.items():
            self.log(f"val/{name}", value, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        tc = self.cfg.train
        opt = torch.optim.Adam(list(self.model.parameters()) + list(self.loss.parameters()), lr=tc.lr,
                               weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=tc.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
