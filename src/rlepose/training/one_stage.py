"""The LightningModules of the whole-image models: the one-stage model (network + joint loss, +
RLE's flow, trained with the one-stage targets, :mod:`rlepose.losses.one_stage`) and the
end-to-end top-down model (:mod:`rlepose.losses.rcnn`); validation decodes every image's people
and runs COCO evaluation at epoch end."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from rlepose.config import ExperimentConfig, config_from_dict, keypoint_spec
from rlepose.inference.one_stage import ONE_STAGE_OUTPUTS, decode_people, people_to_image
from rlepose.losses.one_stage import one_stage_loss
from rlepose.models.one_stage import build_one_stage_model
from rlepose.training.module import ImageModule, gather_outputs, skip_nonfinite

__all__ = ["OneStageModule", "RCNNModule"]


class OneStageModule(ImageModule):
    """Batches are dicts from :func:`rlepose.data.whole_image.collate_people`. ``loss``: a joint
    loss to train the keypoints with instead of the one ``cfg.loss`` builds."""

    def __init__(self, config: dict, evaluator: Callable | None = None, loss: torch.nn.Module | None = None,
                 spec=None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg: ExperimentConfig = config_from_dict(config)
        self.model = self.build_model()
        if self.cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss = loss if loss is not None else self.cfg.loss.build(2)
        self.__dict__["_compiled"] = torch.compile(self.model) if self.cfg.train.compile else None
        self.spec, self.evaluator = spec or keypoint_spec(self.cfg), evaluator
        self._val_outputs: list[dict] = []
        self.last_metrics: dict = {}
        self.last_results: list = []
        self.nonfinite_batches = 0

    def build_model(self) -> torch.nn.Module:
        return build_one_stage_model(self.cfg.model.backbone, self.cfg.model.num_joints, self.cfg.one_stage)

    def loss_of(self, images, batch) -> tuple[torch.Tensor, dict]:
        """The training loss of a batch and its logged parts."""
        out = self._compiled(images) if self._compiled is not None else self.model(images)
        return one_stage_loss(out, batch, self.loss, self.cfg.one_stage)

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        images = self._images(batch)
        loss, parts = self.loss_of(images, batch)
        if not torch.isfinite(loss):
            return skip_nonfinite(self, loss)
        n = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        if batch is None:
            return
        out = self.model.inference(self._images(batch))
        arrays = {k: out[k].float().cpu().numpy() for k in ONE_STAGE_OUTPUTS}
        for j, (image_id, matrix) in enumerate(zip(batch["image_id"].tolist(), batch["matrix"].cpu().numpy())):
            people = decode_people({k: a[j] for k, a in arrays.items()}, self.cfg.one_stage, self.spec.sigmas)
            self._val_outputs.append({"image_id": image_id, "people": people_to_image(people, matrix)})

    def on_validation_epoch_end(self) -> None:
        outputs, self._val_outputs = gather_outputs(self._val_outputs), []
        if not outputs or self.evaluator is None:
            return
        unique = {o["image_id"]: o["people"] for o in outputs}  # a distributed sampler may repeat images
        metrics, results = self.evaluator(list(unique), list(unique.values()))
        self.last_metrics, self.last_results = metrics, results
        for name, value in metrics.items():
            if np.isfinite(value):
                self.log(f"val/{name}", float(value), sync_dist=True)


class RCNNModule(OneStageModule):
    """The end-to-end top-down model (:mod:`rlepose.models.rcnn`): trained with
    :func:`rlepose.losses.rcnn.rcnn_loss` (detector + keypoint head on the model's own
    proposals); its inference has the one-stage model's outputs (one row per detection), so
    validation and evaluation are the one-stage module's."""

    def build_model(self) -> torch.nn.Module:
        from rlepose.models.rcnn import build_rcnn_model

        return build_rcnn_model(self.cfg.model.backbone, self.cfg.model.num_joints, self.cfg.rcnn, self.cfg.one_stage)

    def loss_of(self, images, batch) -> tuple[torch.Tensor, dict]:
        from rlepose.losses.rcnn import rcnn_loss

        return rcnn_loss(self.model, images, batch, self.loss)
