"""A trained top-down model for inference, from any rlepose checkpoint (training, converted or
compact), without Lightning and without building the loss or its flow.

>>> from rlepose.inference import load_pose_model
>>> loaded = load_pose_model("runs/coco_res50_rle/checkpoints/last.ckpt")  # doctest: +SKIP
>>> loaded.model.inference(images)["keypoints"]                           # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlepose.config import ExperimentConfig, config_from_dict, keypoint_spec
from rlepose.data.keypoints import KeypointSpec
from rlepose.models.checkpoint import read_checkpoint
from rlepose.models.one_stage import OneStagePoseModel, build_one_stage_model
from rlepose.models.pose_model import TopDownPoseModel, build_pose_model
from rlepose.models.rcnn import RCNNPoseModel, build_rcnn_model

__all__ = ["LoadedPoseModel", "load_pose_model"]


@dataclass
class LoadedPoseModel:
    """The network (eval mode, on the CPU), its config, keypoint set and input size (H, W), and
    ``sigma_calibration``: what ``rlepose calibrate`` stored with the checkpoint (``joint_scale``
    (K,) and how it was fitted), None when it was not calibrated."""

    model: TopDownPoseModel | OneStagePoseModel | RCNNPoseModel
    config: ExperimentConfig
    spec: KeypointSpec
    input_size: tuple[int, int]
    sigma_calibration: dict | None = None

    @property
    def joint_scale(self) -> list[float] | None:
        return None if self.sigma_calibration is None else self.sigma_calibration["joint_scale"]


def load_pose_model(path: str | Path, trust: bool = False) -> LoadedPoseModel:
    """The top-down or one-stage network stored in ``path``, strictly (every weight present, none left over).
    The file runs no code when read unless ``trust`` (:func:`rlepose.models.checkpoint.read_checkpoint`)."""
    ckpt = read_checkpoint(path, trust=trust)
    try:
        config = ckpt["hyper_parameters"]["config"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} holds no rlepose config: train with rlepose, or convert the file "
                         "with `rlepose convert`") from None
    cfg = config_from_dict(config)
    if cfg.task == "lifting":
        raise ValueError(f"{path} is a lifting model; inference on images needs a top-down or one-stage model")
    if cfg.task == "boundaries":
        raise ValueError(f"{path} is a boundary model (OCT B-scans): `rlepose predict` and "
                         "rlepose.inference.boundaries run it; pose inference and export take pose models")
    if cfg.task == "one_stage":
        model = build_one_stage_model(cfg.model.backbone, cfg.model.num_joints, cfg.one_stage)
    elif cfg.task == "rcnn":
        model = build_rcnn_model(cfg.model.backbone, cfg.model.num_joints, cfg.rcnn, cfg.one_stage)
    else:
        model = build_pose_model(cfg.model)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return LoadedPoseModel(model.eval(), cfg, keypoint_spec(cfg), tuple(cfg.transform.input_size),
                           ckpt.get("sigma_calibration"))
