"""The LightningModule: model + loss (+ flow) trained jointly; validation runs the dataset's
standard evaluation at epoch end."""
from __future__ import annotations

import logging
import math
from functools import partial
from typing import Callable

import lightning as L
import numpy as np
import torch

from rlepose.data.keypoints import KeypointSpec
from rlepose.data.transforms import crop_to_image
from rlepose.inference.flip import predict_crops
from rlepose.data.transforms import normalize_images
from rlepose.models.heads import gaussian_heatmaps, heatmap_mse_loss
from rlepose.models.pose_model import build_pose_model
from rlepose.config import ExperimentConfig, config_from_dict, config_to_dict

__all__ = ["skip_nonfinite", "apply_flow_warmup", "lr_factor", "ImageModule", "PoseModule", "adam_with_schedule",
           "gather_outputs"]


log = logging.getLogger(__name__)


def skip_nonfinite(module: L.LightningModule, loss: torch.Tensor) -> None:
    """Count a batch whose loss is NaN or inf and skip it. Returning None from
    ``training_step`` makes Lightning skip backward and the optimizer step, so neither the
    network nor the flow moves; the running count is logged as ``train/nonfinite_batches``."""
    module.nonfinite_batches += 1
    log.warning("step %d: loss is %s, batch skipped (%d so far)", module.global_step, loss.item(),
                module.nonfinite_batches)
    module.log("train/nonfinite_batches", float(module.nonfinite_batches))
    return None


def apply_flow_warmup(module: L.LightningModule) -> None:
    """At each epoch's start: the RLE flow's gradient on µ̂ off during the flow warm-up
    (:meth:`ExperimentConfig.flow_warmup_epochs`)."""
    if module.loss is not None:
        module.loss.set_flow_warmup(module.current_epoch < module.cfg.flow_warmup_epochs())


def lr_factor(step: int, schedule: str, total_steps: int, warmup_steps: int = 0,
              milestones: tuple[int, ...] = (), gamma: float = 0.1) -> float:
    """The learning rate at optimizer step ``step`` as a fraction of ``train.lr``: linear warm-up
    from 1/warmup_steps over ``warmup_steps``, then ×``gamma`` at each milestone (in steps) for
    ``"step"``, or half a cosine from 1 to 0 over the remaining steps for ``"cosine"``."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if schedule == "step":
        return warm * gamma ** sum(step >= m for m in milestones)
    progress = min(1.0, max(0, step - warmup_steps) / max(1, total_steps - warmup_steps))
    return warm * 0.5 * (1 + math.cos(math.pi * progress))


def gather_outputs(outputs: list) -> list:
    """Under DDP, every rank's validation outputs joined (every rank then evaluates the union;
    the distributed sampler may repeat samples); in one process, ``outputs`` as they are."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, outputs)
        return [o for part in parts for o in part]
    return outputs


class ImageModule(L.LightningModule):
    """What the modules of image models share: built from a config dict (``from_config``),
    batches of uint8 images normalized on the device (channels-last by ``train.channels_last``),
    the flow warm-up at each epoch's start, Adam with ``train.schedule``. Subclasses set
    ``self.cfg``, ``self.model`` and ``self.loss``."""

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, **kwargs):
        return cls(config_to_dict(cfg), **kwargs)

    def _images(self, batch: dict) -> torch.Tensor:
        images = normalize_images(batch["image"])
        return images.contiguous(memory_format=torch.channels_last) if self.cfg.train.channels_last else images

    def on_train_epoch_start(self) -> None:
        apply_flow_warmup(self)

    def configure_optimizers(self):
        return adam_with_schedule(self)


class PoseModule(ImageModule):
    """Batches are dicts from :class:`rlepose.data.datasets.TopDownDataset`."""

    def __init__(self, config: dict, spec: KeypointSpec | None = None,
                 evaluator: Callable | None = None, loss: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: ExperimentConfig = config_from_dict(config)
        self.model = build_pose_model(self.cfg.model)
        if self.cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss = None
        if self.model.is_heatmap != (self.cfg.loss.name == "heatmap_mse"):
            raise ValueError("the heatmap head trains with loss.name: heatmap_mse, and only it does "
                             f"(got head={self.cfg.model.head!r}, loss={self.cfg.loss.name!r})")
        if not self.model.is_heatmap:
            self.loss = loss if loss is not None else self.cfg.loss.build(self.cfg.model.dim)
        # train.compile: the training forward compiled; kept out of the module tree, so the state
        # dict and checkpoints are the same as without
        self.__dict__["_compiled"] = torch.compile(self.model) if self.cfg.train.compile else None
        self.spec = spec
        self.evaluator = evaluator
        self._val_outputs: list[dict] = []
        self.last_metrics: dict = {}
        self.nonfinite_batches = 0  # training batches skipped for a NaN/inf loss
        self.last_results: list = []

    def _forward(self, images: torch.Tensor):
        return self._compiled(images) if self._compiled is not None else self.model(images)

    def _loss(self, batch: dict) -> torch.Tensor:
        images, target, weight = self._images(batch), batch["target"], batch["target_weight"]
        if self.model.is_heatmap:
            heatmaps = self._forward(images)
            goal = gaussian_heatmaps(target, tuple(heatmaps.shape[-2:]))
            return heatmap_mse_loss(heatmaps, goal, weight)
        mu, sigma = self._forward(images)
        return self.loss(mu, sigma, target, weight)

    def training_step(self, batch, batch_idx):
        if batch is None:  # every sample of the batch was skipped as unreadable
            return None
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            return skip_nonfinite(self, loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        if batch is None:
            return
        perm = self.spec.flip_permutation() if (self.cfg.train.flip_test and self.spec and self.spec.flip_pairs) else None
        out = predict_crops(self.model, self._images(batch), perm)
        keypoints = out["keypoints"].float().cpu().numpy()
        image_xy = crop_to_image(keypoints, batch["matrix"].cpu().numpy(), self.cfg.transform.input_size)
        self._val_outputs.append({
            "index": batch["index"].cpu().numpy(),
            # (N, K, 2) image pixels, or (N, K, 3) with the normalized depth kept for 3-D
            "keypoints": np.concatenate([image_xy, keypoints[..., 2:]], -1),
            "joint_confidence": out["joint_confidence"].float().cpu().numpy(),
            "confidence": out["confidence"].float().cpu().numpy()})

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs or self.evaluator is None:
            self._val_outputs.clear()
            return
        outputs, self._val_outputs = gather_outputs(self._val_outputs), []
        gathered = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
        _, first = np.unique(gathered["index"], return_index=True)
        gathered = {k: v[first] for k, v in gathered.items()}
        metrics, results = self.evaluator(gathered["index"], gathered["keypoints"], gathered["joint_confidence"],
                                          gathered["confidence"])
        self.last_metrics, self.last_results = metrics, results
        for name, value in metrics.items():
            if np.isfinite(value):
                self.log(f"val/{name}", float(value), sync_dist=True)  # equal on every rank



def adam_with_schedule(module: L.LightningModule) -> dict:
    """Adam over the network and the loss (its flow) of ``module``, with ``train.schedule``: the
    paper's step decay per epoch, or warm-up and cosine/step per optimizer step (:func:`lr_factor`)."""
    tc = module.cfg.train
    params = list(module.model.parameters()) + (list(module.loss.parameters()) if module.loss is not None else [])
    opt = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    if tc.schedule not in ("step", "cosine"):
        raise ValueError(f"train.schedule {tc.schedule!r}: step or cosine")
    if tc.schedule == "step" and not tc.warmup_steps:
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(tc.milestones), gamma=tc.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
    total = int(module.trainer.estimated_stepping_batches)
    per_epoch = max(1, total // max(1, module.trainer.max_epochs or 1))
    factor = partial(lr_factor, schedule=tc.schedule, total_steps=total, warmup_steps=tc.warmup_steps,
                     milestones=tuple(m * per_epoch for m in tc.milestones), gamma=tc.gamma)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
