"""The LightningModule of boundary regression (``task: boundaries``): the boundary model + any
loss of the family on one-dimensional targets (RLE's flow is then 1-D), validation scored by
:class:`rlepose.evaluation.boundaries.BoundaryEvaluator`."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from rlepose.config import ExperimentConfig, config_from_dict
from rlepose.models.boundaries import build_boundary_model
from rlepose.training.module import ImageModule, gather_outputs, skip_nonfinite

__all__ = ["BoundaryModule"]


class BoundaryModule(ImageModule):
    """Batches are dicts from :class:`rlepose.data.oct.BoundaryDataset`."""

    def __init__(self, config: dict, evaluator: Callable | None = None, loss: torch.nn.Module | None = None,
                 spec=None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: ExperimentConfig = config_from_dict(config)
        self.model = build_boundary_model(self.cfg.model.backbone, self.cfg.transform.input_size[0], self.cfg.boundaries)
        if self.cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss = loss if loss is not None else self.cfg.loss.build(1)
        self.__dict__["_compiled"] = torch.compile(self.model) if self.cfg.train.compile else None
        self.evaluator = evaluator
        self._val_outputs: list[dict] = []
        self.last_metrics: dict = {}
        self.last_results: list = []
        self.nonfinite_batches = 0

    def training_step(self, batch, batch_idx):
        images = self._images(batch)
        mu, sigma = self._compiled(images) if self._compiled is not None else self.model(images)
        loss = self.loss(mu.float(), sigma.float(), batch["target"], batch["target_weight"])
        if not torch.isfinite(loss):
            return skip_nonfinite(self, loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        out = self.model.inference(self._images(batch))
        self._val_outputs.append({"index": batch["index"].cpu().numpy(),
                                  **{k: out[k].float().cpu().numpy() for k in ("depths", "sigma")}})

    def on_validation_epoch_end(self) -> None:
        outputs, self._val_outputs = gather_outputs(self._val_outputs), []
        if not outputs or self.evaluator is None:
            return
        gathered = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
        _, first = np.unique(gathered["index"], return_index=True)  # a distributed sampler may repeat scans
        metrics, results = self.evaluator(*(gathered[k][first] for k in ("index", "depths", "sigma")))
        self.last_metrics, self.last_results = metrics, results
        for name, value in metrics.items():
            if np.isfinite(value):
                self.log(f"val/{name}", float(value), sync_dist=True)
