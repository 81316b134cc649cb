"""Experiment configuration: plain dataclasses, read from YAML, with ``key.sub=value`` overrides.

A config names its data root; nothing is downloaded. Paths inside ``data`` are relative to
``data.root`` unless absolute.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlepose.data.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS, KeypointSpec
from rlepose.data.transforms import TransformConfig
from rlepose.models.boundaries import BoundaryConfig
from rlepose.models.one_stage import OneStageConfig
from rlepose.models.rcnn import RCNNConfig
from rlepose.models.pose_model import ModelConfig

__all__ = ["LossConfig", "upgrade_loss_section", "DataConfig", "TrainConfig", "LiftingConfig",
           "ExperimentConfig", "ConfigError", "config_from_dict", "keypoint_spec", "config_to_dict",
           "apply_overrides", "load_config"]


@dataclass(frozen=True)
class LossConfig:
    """``name``: a loss of :func:`rlepose.losses.build_loss` (``rle``, ``rle_paper``,
    ``rle_mmpose``, ``rle_calibrated``, ``dle``, ``l1``, ``l2``, ``laplace_nll``,
    ``gaussian_nll``) for regression and integral heads; ``heatmap_mse`` for the heatmap head.
    For RLE: ``q`` (laplace or gaussian), ``beta`` (``rle_calibrated`` only), and the RealNVP:
    Lfc × Nn (Table 11), its base standard deviation and identity start (None: the loss's own)."""

    name: str = "rle"
    q: str = "laplace"
    beta: float = 0.5
    flow_layers: int = 3
    flow_width: int = 64
    flow_base_std: float | None = None
    flow_zero_init: bool | None = None
    reduction: str = "mean"
    # epochs during which the flow's term gives µ̂ no gradient (the flow still trains on the
    # residuals) and µ̂ learns from Q alone. None: 0 for the published forms (as they trained);
    # until the learning rate first drops for rle_calibrated (ExperimentConfig.flow_warmup_epochs).
    flow_warmup_epochs: int | None = None
    # run the loss as one compiled graph in training (rlepose.losses.compiled; flow losses only):
    # true follows the default (on unless RLEPOSE_COMPILE_LOSS=0), false runs it eagerly
    compile: bool = True

    def loss_class(self):
        """The class ``name`` builds (:data:`rlepose.losses.LOSSES`)."""
        from rlepose.losses import LOSSES

        if self.name not in LOSSES:
            raise ConfigError(f"loss.name {self.name!r}: choose from {', '.join(LOSSES)} or heatmap_mse")
        return LOSSES[self.name]

    def resolved_flow_base_std(self) -> float:
        """``flow_base_std``, or the loss's default when unset."""
        return self.flow_base_std if self.flow_base_std is not None else self.loss_class().flow_base_std

    def build(self, dim: int):
        """The loss module for D = ``dim``, with its RealNVP of Lfc × Nn for RLE and DLE."""
        from rlepose.losses import CalibratedRLELoss, DLELoss, FlowLoss

        cls = self.loss_class()
        if not issubclass(cls, FlowLoss):
            return cls(reduction=self.reduction)
        flow = cls.default_flow(dim, self.flow_layers, self.flow_width, self.flow_base_std, self.flow_zero_init)
        common = {"dim": dim, "flow": flow, "reduction": self.reduction, "compile": None if self.compile else False}
        if cls is DLELoss:
            return cls(**common)
        if cls is CalibratedRLELoss:
            return cls(q=self.q, beta=self.beta, **common)
        return cls(q=self.q, **common)


def upgrade_loss_section(section: dict) -> dict:
    """A loss section written with the keys ``form``/``scale``/``standardize``/``log_s_grid``
    (the schema some checkpoints store) in the names of :data:`rlepose.losses.LOSSES`: ``form="official"`` is
    ``rle``, ``"mmpose"`` ``rle_mmpose``; the paper form is ``rle_paper`` with ``scale="joint"``
    and ``rle_calibrated`` otherwise; ``rle_gaussian`` is ``q="gaussian"``. Other sections are
    returned as they are."""
    old_keys = {"form", "scale", "standardize", "log_s_grid"}
    if not old_keys & set(section) and section.get("name") != "rle_gaussian":
        return section
    out = {k: v for k, v in section.items() if k not in old_keys}
    name = section.get("name", "rle")
    if name in ("rle", "rle_gaussian"):
        out["q"] = "gaussian" if name == "rle_gaussian" else "laplace"
        form = section.get("form") or "paper"
        if section.get("standardize"):
            out["name"] = "rle_standardized"  # benchmarks/experimental_losses.py
        elif section.get("log_s_grid"):
            out["name"], out["log_s_grid"] = "rle_log_s", section["log_s_grid"]
        elif form == "official":
            out["name"] = "rle"
        elif form == "mmpose":
            out["name"] = "rle_mmpose"
        else:
            out["name"] = "rle_paper" if section.get("scale") == "joint" else "rle_calibrated"
        if out["name"] == "rle_calibrated":
            out["beta"] = 0.5 if section.get("beta") is None else section["beta"]
        else:
            out.pop("beta", None)
    return out


@dataclass(frozen=True)
class DataConfig:
    """``format``: coco (COCO or any COCO-format keypoint file), mpii (top-down JSON), h36m, or
    dme (task boundaries: the Duke DME MATLAB files, :mod:`rlepose.data.oct`).
    ``val_detections``: a COCO detection-results file; ground-truth boxes when unset.
    ``keypoints``: a custom keypoint set (see KeypointSpec.from_dict); the format's own otherwise."""

    format: str = "coco"
    root: str = "data/coco"
    train_ann: str = "annotations/person_keypoints_train2017.json"
    train_images: str = "train2017"
    val_ann: str = "annotations/person_keypoints_val2017.json"
    val_images: str = "val2017"
    val_detections: str | None = None
    det_score_threshold: float = 0.0
    keypoints: dict | None = None
    on_error: str = "raise"
    # Human3.6M (format h36m: single-stage crops from a layout-(a) npz given as train_ann/val_ann;
    # task lifting: a data_3d_h36m.npz archive, or generated poses when data_3d is unset)
    cameras: str | None = None
    data_3d: str | None = None
    data_2d: str | None = None
    generated_train: int = 50_000
    generated_val: int = 10_000
    train_stride: int = 1
    val_stride: int = 1
    depth_range_mm: float = 2000.0
    train_subjects: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
    val_subjects: tuple[str, ...] = ("S9", "S11")
    mix_mpii_ann: str | None = None  # mixed 2-D/3-D training: an MPII top-down JSON …
    mix_mpii_images: str | None = None  # … and its image folder (z carries zero weight)
    # the embedded rendered dataset (rlepose.data.synthetic): (train, held-out) image counts, rendered
    # under data.root on first use as train.json/train and val.json/val; for format dme (subjects,
    # B-scans per subject) of generated OCT scans (rlepose.data.oct); None for data on disk
    rendered: tuple[int, int] | None = None
    # format dme: train_subjects / val_subjects name subject files (1 → Subject_01.mat); left at
    # their (Human3.6M) defaults they are the literature's split, subjects 1-5 / 6-10. annotator:
    # whose labels train and score (1 or 2); pixel_size_um: the axial pixel size, for errors in µm,
    # where the files do not give it
    annotator: int = 1
    pixel_size_um: float | None = None
    batch_size: int = 32
    val_batch_size: int = 64
    num_workers: int = 4

    def path(self, rel: str | None) -> Path | None:
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() else Path(self.root) / p


@dataclass(frozen=True)
class TrainConfig:
    """Adam with step decay as in the paper's settings (official COCO config: 270 epochs,
    lr 1e-3, ×0.1 at epochs 170 and 200, batch 32 per GPU)."""

    epochs: int = 270
    lr: float = 1e-3
    milestones: tuple[int, ...] = (170, 200)
    gamma: float = 0.1
    # "step": ×gamma at each milestone epoch (the paper's); "cosine": per optimizer step from lr
    # down to 0 over the whole run (RTMPose's). Either after ``warmup_steps`` of linear warm-up.
    schedule: str = "step"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    precision: str = "32-true"
    gradient_clip: float | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    seed: int = 0
    val_every: int = 10
    flip_test: bool = True
    # weights and images in the channels-last memory format (faster convolutions on CPUs and recent
    # GPUs; benchmarks/train_speed.py measures it)
    channels_last: bool = True
    # torch.compile the network's training forward (weights and checkpoints are unchanged)
    compile: bool = False
    limit_train_batches: float | int = 1.0
    max_steps: int = -1
    checkpoint_every_steps: int | None = None  # also save last.ckpt every N steps (long epochs)
    out_dir: str = "runs"


@dataclass(frozen=True)
class LiftingConfig:
    """The FC lifting network (Martinez et al.): width, residual blocks, dropout."""

    width: int = 1024
    num_blocks: int = 2
    dropout: float = 0.5


@dataclass(frozen=True)
class ExperimentConfig:
    """``task``: topdown (crops → 2-D or 3-D keypoints), one_stage (whole images → every
    person's box and keypoints, :mod:`rlepose.models.one_stage`), rcnn (whole images → people
    found by the model's own detector, then each person's keypoints from its region of the feature
    pyramid, :mod:`rlepose.models.rcnn`; detector settings in ``one_stage``), lifting (2-D joints → 3-D) or
    boundaries (OCT B-scans → every layer boundary's depth per column, one-dimensional targets,
    :mod:`rlepose.models.boundaries`)."""

    name: str = "coco_res50_rle"
    task: str = "topdown"
    model: ModelConfig = ModelConfig()
    lifting: LiftingConfig = LiftingConfig()
    one_stage: OneStageConfig = OneStageConfig()
    rcnn: RCNNConfig = RCNNConfig()
    boundaries: BoundaryConfig = BoundaryConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    transform: TransformConfig = TransformConfig()
    train: TrainConfig = TrainConfig()
    # backbone weights from any checkpoint that has them: torchvision/timm ImageNet weights, an
    # MMPose pose model (e.g. a heatmap model, MMPose's start for its "pretrained" RLE) or an
    # rlepose checkpoint of any head and loss; heads and flows in the file are left out
    pretrained: str | None = None
    # all weights (network and the loss's flow) of an rlepose checkpoint, e.g. one made by
    # `rlepose convert` from the official code or MMPose; training starts there with a fresh optimizer
    init_from: str | None = None

    def flow_warmup_epochs(self) -> int:
        """``loss.flow_warmup_epochs`` resolved: when unset, 0 for the published forms, and for
        ``rle_calibrated`` the first milestone of a top-down step schedule, or half the epochs
        where the rate decays smoothly (cosine, lifting's per-epoch ×gamma); always 0 for losses
        without a flow, and for DLE, which has no Q to train µ̂ meanwhile."""
        loss, tc = self.loss, self.train
        from rlepose.losses import FLOW_LOSSES

        if loss.name == "dle" and loss.flow_warmup_epochs:
            raise ConfigError("loss.flow_warmup_epochs: DLE has no Q, so µ̂ would get no gradient during the warm-up")
        if loss.name not in FLOW_LOSSES:
            return 0
        if loss.flow_warmup_epochs is not None:
            if loss.flow_warmup_epochs < 0:
                raise ConfigError(f"loss.flow_warmup_epochs must be >= 0, got {loss.flow_warmup_epochs}")
            return loss.flow_warmup_epochs
        if loss.name != "rle_calibrated":
            return 0
        if self.task == "topdown" and tc.schedule == "step" and tc.milestones:
            return min(tc.milestones)
        return tc.epochs // 2


_SECTIONS = {"model": ModelConfig, "lifting": LiftingConfig, "one_stage": OneStageConfig, "rcnn": RCNNConfig,
             "boundaries": BoundaryConfig,
             "loss": LossConfig, "data": DataConfig,
             "transform": TransformConfig, "train": TrainConfig}


class ConfigError(ValueError):
    pass


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    kwargs = {}
    for key, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        _check_type(value, fields[key].type, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
          "dict": (dict,), "tuple": (tuple,), "list": (tuple, list)}


def _check_type(value, annotation: str, where: str) -> None:
    """Refuse a value that is not of its field's annotated type (``int``, ``float | None``,
    ``tuple[int, ...]``…; ``Any`` takes anything), naming the field and the type it takes."""
    allowed: tuple = ()
    for part in str(annotation).split("|"):
        name = part.strip().split("[")[0]
        if name == "Any":
            return
        allowed += _TYPES.get(name, (object,))
    bad = not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
    if bad:
        raise ConfigError(f"{where} must be {annotation}, got {value!r} ({type(value).__name__})")


def config_from_dict(d: dict) -> ExperimentConfig:
    d = dict(d or {})
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key == "loss" and isinstance(value, dict):
            value = upgrade_loss_section(value)
        if key in _SECTIONS:
            kwargs[key] = _build(_SECTIONS[key], value or {}, key)
        elif key in ("name", "pretrained", "task", "init_from"):
            kwargs[key] = value
        else:
            raise ConfigError(f"unknown top-level key {key!r}; allowed: name, task, pretrained, init_from, {', '.join(_SECTIONS)}")
    cfg = ExperimentConfig(**kwargs)
    if cfg.loss.name != "heatmap_mse":
        cfg.loss.loss_class()  # checks the name
    if cfg.loss.beta != LossConfig.beta and cfg.loss.name != "rle_calibrated":
        raise ConfigError(f"loss.beta is a setting of rle_calibrated, not of {cfg.loss.name}")
    if cfg.task not in ("topdown", "one_stage", "rcnn", "lifting", "boundaries"):
        raise ConfigError(f"unknown task {cfg.task!r}: topdown, one_stage, rcnn, lifting or boundaries")
    if (cfg.task == "boundaries") != (cfg.data.format == "dme"):
        raise ConfigError(f"task boundaries reads data.format dme, and only it does (got task {cfg.task!r}, "
                          f"data.format {cfg.data.format!r})")
    if cfg.task == "boundaries" and (cfg.loss.name == "heatmap_mse" or cfg.data.annotator not in (1, 2)):
        raise ConfigError(f"task boundaries trains with a regression loss and data.annotator 1 or 2; got loss "
                          f"{cfg.loss.name!r}, annotator {cfg.data.annotator}")
    if cfg.task in ("one_stage", "rcnn") and (cfg.loss.name == "heatmap_mse" or cfg.data.format != "coco"
                                              or cfg.model.dim != 2):
        raise ConfigError(f"task {cfg.task} trains 2-D keypoints from COCO-format files (data.format: coco) with a "
                          f"regression loss; got loss {cfg.loss.name!r}, data.format {cfg.data.format!r}, "
                          f"model.dim {cfg.model.dim}")
    cfg.flow_warmup_epochs()  # validates
    return cfg


def keypoint_spec(cfg: ExperimentConfig) -> KeypointSpec:
    """The keypoint set of ``cfg``: ``data.keypoints`` when given, else its data format's."""
    from rlepose.data.h36m import H36M_KEYPOINTS

    if cfg.data.keypoints:
        spec = KeypointSpec.from_dict(cfg.data.keypoints)
    else:
        spec = {"mpii": MPII_KEYPOINTS, "h36m": H36M_KEYPOINTS}.get(cfg.data.format, COCO_KEYPOINTS)
    if spec.num_joints != cfg.model.num_joints:
        raise ConfigError(f"model.num_joints = {cfg.model.num_joints} but the keypoint set "
                          f"'{spec.name}' has {spec.num_joints} joints")
    return spec


def config_to_dict(cfg: ExperimentConfig) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """``["train.lr=5e-4", "model.backbone=resnet101"]`` → nested updates; values parsed as YAML."""
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({e.problem})") from None
        parts = key.split(".")
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return d


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from None
    return config_from_dict(apply_overrides(raw, list(overrides)))
