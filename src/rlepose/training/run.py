"""``train`` and ``evaluate``: datasets, loaders, evaluator and Lightning Trainer from a config."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from rlepose.data.datasets import (DataError, SeededShuffleSampler, TopDownDataset, collate_skip_none,
                                   load_coco_instances, load_mpii_instances)
from rlepose.data.h36m import (TEST_SUBJECTS, TRAIN_SUBJECTS, PoseSet, generate_pose_set,
                               h36m_instances, load_cameras, load_h36m_frames, load_h36m_poses, mpii_as_h36m)
from rlepose.data.keypoints import KeypointSpec
from rlepose.data.oct import BoundaryDataset, BoundaryTransform, load_dme, render_dme_like
from rlepose.data.transforms import TopDownTransform
from rlepose.data.whole_image import WholeImageDataset, WholeImageTransform, collate_people, load_coco_images
from rlepose.evaluation.boundaries import BoundaryEvaluator
from rlepose.evaluation.evaluators import CocoEvaluator, H36MEvaluator, MpiiEvaluator, OneStageCocoEvaluator
from rlepose.models.checkpoint import load_backbone, read_checkpoint, save_atomic
from rlepose.config import DataConfig, ExperimentConfig, LossConfig, config_to_dict, keypoint_spec, upgrade_loss_section
from rlepose.training.boundaries import BoundaryModule
from rlepose.training.lifting import LiftingModule, lifting_tensors
from rlepose.training.module import PoseModule
from rlepose.training.one_stage import OneStageModule, RCNNModule
from rlepose.files import write_json

__all__ = ["load_split", "ResumableLoader", "AtomicCheckpointIO", "val_loader", "checkpoint_paths",
           "lifting_set", "lifting_sets", "train", "heldout_arrays", "heldout_predictions",
           "init_from_checkpoint", "load_module", "evaluate"]

log = logging.getLogger(__name__)


def _check_root(cfg: ExperimentConfig) -> None:
    """The data root exists; the embedded dataset (``data.rendered``) is rendered there first."""
    if cfg.data.rendered and cfg.data.format == "dme":
        render_dme_like(cfg.data.root, *cfg.data.rendered)
    elif cfg.data.rendered:
        from rlepose.data.synthetic import write_splits

        write_splits(cfg.data.root, *cfg.data.rendered)
    root = Path(cfg.data.root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root} (set data.root in the config or override "
                        f"it: data.root=/path/to/{cfg.data.format}); nothing is downloaded")


def load_split(cfg: ExperimentConfig, spec: KeypointSpec, split: str):
    """Instances of ``split`` ('train' or 'val') and, for val, the evaluator."""
    d = cfg.data
    ann, images = (d.path(d.train_ann), d.path(d.train_images)) if split == "train" else \
        (d.path(d.val_ann), d.path(d.val_images))
    if d.format == "coco":
        dets = d.path(d.val_detections) if split == "val" else None
        instances = load_coco_instances(ann, images, spec, detections=dets, det_score_threshold=d.det_score_threshold,
                                        on_error=d.on_error)
        evaluator = CocoEvaluator(ann, instances, spec) if split == "val" else None
    elif d.format == "mpii":
        instances = load_mpii_instances(ann, images, on_error=d.on_error)
        evaluator = MpiiEvaluator(instances, spec) if split == "val" else None
    elif d.format == "h36m":
        subjects = d.train_subjects if split == "train" else d.val_subjects
        stride = d.train_stride if split == "train" else d.val_stride
        instances = h36m_instances(load_h36m_frames(ann, subjects, stride), images)
        if split == "train" and d.mix_mpii_ann:
            instances += mpii_as_h36m(load_mpii_instances(d.path(d.mix_mpii_ann), d.path(d.mix_mpii_images),
                                                          on_error=d.on_error))
        evaluator = None
        if split == "val":
            if d.cameras is None:
                raise DataError("format h36m needs data.cameras (cameras.pkl) for evaluation")
            evaluator = H36MEvaluator(instances, load_cameras(d.path(d.cameras)), d.depth_range_mm)
    else:
        raise DataError(f"unknown data.format {d.format!r}: coco or mpii")
    if not instances:
        raise DataError(f"no usable instances in {ann}")
    return instances, evaluator


class _MidEpochResume(Callback):
    """Exact resumption from a checkpoint written mid-epoch (``checkpoint_every_steps``).

    The checkpoint records how many batches of the current epoch were done; on resume the
    sampler continues that epoch after them, in the same order (the order and each sample's
    augmentation depend only on seed, epoch and index), so the resumed run sees exactly the
    batches the uninterrupted one would have. Register before the checkpoint callbacks, so the
    count is current when they save."""

    def __init__(self, sampler: SeededShuffleSampler, batch_size: int) -> None:
        self.sampler, self.batch_size, self.done = sampler, batch_size, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.done = trainer.fit_loop.epoch_loop.batch_progress.current.completed  # > 0 only when resumed

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.done = batch_idx + 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.done = 0

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint["rlepose_epoch_progress"] = {"epoch": trainer.current_epoch, "batches_done": self.done}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        progress = checkpoint.get("rlepose_epoch_progress")
        used = progress["batches_done"] * self.batch_size * trainer.world_size if progress else 0
        if 0 < used < len(self.sampler):  # under DDP every rank took batch_size of each global step
            self.sampler.resume_at(progress["epoch"], used)


class ResumableLoader(DataLoader):
    """A DataLoader Lightning treats as resumable (its state lives in :class:`_MidEpochResume`)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class StderrProgressBar(TQDMProgressBar):
    """Lightning's progress bars on stderr, so that stdout holds only results (Lightning's own
    bars write to stdout, which it reads when a bar is made)."""

    @staticmethod
    def _on_stderr(make):
        saved, sys.stdout = sys.stdout, sys.stderr
        try:
            return make()
        finally:
            sys.stdout = saved

    def init_sanity_tqdm(self):
        return self._on_stderr(super().init_sanity_tqdm)

    def init_train_tqdm(self):
        return self._on_stderr(super().init_train_tqdm)

    def init_validation_tqdm(self):
        return self._on_stderr(super().init_validation_tqdm)

    def init_predict_tqdm(self):
        return self._on_stderr(super().init_predict_tqdm)

    def init_test_tqdm(self):
        return self._on_stderr(super().init_test_tqdm)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary name beside the target and renamed over it, so a
    crash or a kill mid-write never leaves a truncated file where a good one was."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # remote file systems: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_atomic(checkpoint, path)


def _depth_range(cfg: ExperimentConfig) -> float | None:
    return cfg.data.depth_range_mm if cfg.model.dim == 3 else None


def _whole_images(cfg: ExperimentConfig, spec: KeypointSpec, split: str) -> WholeImageDataset:
    """The whole-image models' images of ``split`` ('train': augmented, seeded)."""
    d, t, train = cfg.data, cfg.transform, split == "train"
    ann, images = (d.path(d.train_ann), d.path(d.train_images)) if train else (d.path(d.val_ann), d.path(d.val_images))
    transform = WholeImageTransform(t.input_size, spec, train, scale_factor=t.scale_factor,
                                    translate=cfg.one_stage.translate, flip_prob=t.flip_prob, color_jitter=t.color_jitter)
    return WholeImageDataset(load_coco_images(ann, images, spec, d.on_error), transform,
                             seed=cfg.train.seed if train else None, on_error=d.on_error)


def val_loader(cfg: ExperimentConfig, spec: KeypointSpec):
    """The validation loader and its evaluator."""
    if cfg.task in ("one_stage", "rcnn"):
        dataset = _whole_images(cfg, spec, "val")
        loader = DataLoader(dataset, batch_size=cfg.data.val_batch_size, shuffle=False,
                            num_workers=cfg.data.num_workers, collate_fn=collate_people)
        return loader, OneStageCocoEvaluator(cfg.data.path(cfg.data.val_ann), spec)
    instances, evaluator = load_split(cfg, spec, "val")
    dataset = TopDownDataset(instances, TopDownTransform(cfg.transform, spec, train=False), on_error=cfg.data.on_error,
                             depth_range_mm=_depth_range(cfg))
    loader = DataLoader(dataset, batch_size=cfg.data.val_batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                        collate_fn=collate_skip_none)
    return loader, evaluator


def _trainer(cfg: ExperimentConfig, out_dir: Path, monitor: str | None, mode: str = "max",
             first_callbacks: list[Callback] = (), **kwargs) -> L.Trainer:
    tc = cfg.train
    callbacks: list[Callback] = [*first_callbacks]
    if kwargs.get("logger", True) is not False:  # the monitor needs a logger
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    ckpt_dir = out_dir / "checkpoints"
    if monitor:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:03d}", monitor=monitor, mode=mode,
                                         save_top_k=1, auto_insert_metric_name=False))
    # "last" on its own: Lightning ≥ 2.6 refreshes save_last only together with a new best.
    callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                     every_n_train_steps=tc.checkpoint_every_steps,
                                     save_on_train_epoch_end=tc.checkpoint_every_steps is None,
                                     enable_version_counter=False))
    callbacks += kwargs.pop("callbacks", [])  # the caller's callbacks come on top of ours
    if kwargs.get("enable_progress_bar", True) and not any(isinstance(c, TQDMProgressBar) for c in callbacks):
        callbacks.append(StderrProgressBar())
    loggers = [CSVLogger(out_dir, name="csv", version="")]
    try:
        loggers.append(TensorBoardLogger(out_dir, name="tensorboard", version=""))
    except ModuleNotFoundError:  # tensorboard is part of the [train] extra
        log.warning("tensorboard not installed: CSV logs only")
    settings = dict(max_epochs=tc.epochs, max_steps=tc.max_steps, accelerator=tc.accelerator, devices=tc.devices,
                    strategy=tc.strategy, num_nodes=tc.num_nodes, precision=tc.precision,
                    gradient_clip_val=tc.gradient_clip, check_val_every_n_epoch=tc.val_every,
                    limit_train_batches=tc.limit_train_batches, callbacks=callbacks, logger=loggers,
                    default_root_dir=out_dir, log_every_n_steps=10, plugins=[AtomicCheckpointIO()])
    return L.Trainer(**{**settings, **kwargs})


def checkpoint_paths(trainer: L.Trainer) -> dict[str, str]:
    """``{"best": path, "last": path}`` of a trainer built by :func:`train`."""
    out = {}
    for cb in trainer.checkpoint_callbacks:
        key = "best" if cb.monitor else "last"
        out[key] = cb.best_model_path if cb.monitor else cb.last_model_path or cb.best_model_path
    return out


def _resume_path(out_dir: Path, resume: str | None) -> Path | None:
    if resume is None:
        return None
    path = out_dir / "checkpoints" / "last.ckpt" if resume == "last" else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from at {path}")
    return path


def _start(cfg: ExperimentConfig) -> Path:
    _check_root(cfg)
    L.seed_everything(cfg.train.seed, workers=True)
    out_dir = Path(cfg.train.out_dir) / cfg.name
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", config_to_dict(cfg), indent=2)
    return out_dir


def lifting_set(cfg: ExperimentConfig, split: str) -> PoseSet:
    """The ``"train"`` (S1, S5–S8) or ``"val"`` (S9, S11) poses: from ``data.data_3d`` when set,
    else generated poses seen through the real cameras of ``data.cameras`` (labelled generated)."""
    d = cfg.data
    if d.cameras is None:
        raise DataError("lifting needs data.cameras (cameras.pkl)")
    train = split == "train"
    subjects = TRAIN_SUBJECTS if train else TEST_SUBJECTS
    if d.data_3d:
        return load_h36m_poses(d.path(d.data_3d), d.path(d.cameras), subjects, d.path(d.data_2d),
                               d.train_stride if train else d.val_stride)
    count = d.generated_train if train else d.generated_val
    log.warning("no data.data_3d given: %s on %d GENERATED skeletons", "training" if train else "testing", count)
    return generate_pose_set(count, load_cameras(d.path(d.cameras)), subjects, seed=cfg.train.seed + (0 if train else 1))


def lifting_sets(cfg: ExperimentConfig) -> tuple[PoseSet, PoseSet]:
    """Training and test poses (:func:`lifting_set`)."""
    return lifting_set(cfg, "train"), lifting_set(cfg, "val")


def _lifting_loaders(cfg: ExperimentConfig, train_set: PoseSet | None, val_set: PoseSet):
    loaders = []
    for poses, is_train in ((train_set, True), (val_set, False)):
        if poses is None:
            loaders.append(None)
            continue
        x, y = lifting_tensors(poses)
        data = TensorDataset(x, y) if is_train else TensorDataset(x, y, torch.arange(len(x)))
        sampler = SeededShuffleSampler(len(data), cfg.train.seed) if is_train else None
        loaders.append(DataLoader(data, batch_size=cfg.data.batch_size if is_train else cfg.data.val_batch_size,
                                  sampler=sampler, num_workers=0))
    return loaders


#: the literature's split of the Duke DME subjects
DME_SUBJECTS = {"train": ("1", "2", "3", "4", "5"), "val": ("6", "7", "8", "9", "10")}


def boundary_scans(cfg: ExperimentConfig, split: str):
    """The labelled B-scans of ``split`` ('train' or 'val'), with ``data.pixel_size_um`` where
    the files give none."""
    d = cfg.data
    subjects = d.train_subjects if split == "train" else d.val_subjects
    if subjects == getattr(DataConfig, "train_subjects" if split == "train" else "val_subjects"):
        subjects = DME_SUBJECTS[split]  # the H36M defaults: not DME names
    scans = load_dme(d.root, subjects, d.annotator)
    for scan in scans:
        scan.pixel_size_um = scan.pixel_size_um or d.pixel_size_um
    return scans


def boundary_loader(cfg: ExperimentConfig, split: str, scans=None) -> DataLoader:
    """The training (shuffled by seed and epoch, augmented) or held-out loader of B-scans."""
    train = split == "train"
    scans = scans if scans is not None else boundary_scans(cfg, split)
    transform = BoundaryTransform(tuple(cfg.transform.input_size), cfg.boundaries.columns, train=train)
    data = BoundaryDataset(scans, transform, seed=cfg.train.seed)
    if train:
        return ResumableLoader(data, batch_size=cfg.data.batch_size, drop_last=False,
                               sampler=SeededShuffleSampler(len(data), cfg.train.seed, encode_epoch=True),
                               num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0)
    return DataLoader(data, batch_size=cfg.data.val_batch_size, shuffle=False, num_workers=cfg.data.num_workers)


def _train_boundaries(cfg: ExperimentConfig, resume: str | None, loss=None, **trainer_kwargs):
    out_dir = _start(cfg)
    train_loader = boundary_loader(cfg, "train")
    val_scans = boundary_scans(cfg, "val")
    module = BoundaryModule.from_config(cfg, evaluator=BoundaryEvaluator(val_scans), loss=loss)
    if cfg.pretrained:
        log.info("backbone weights from %s: %s", cfg.pretrained, load_backbone(module.model.backbone, cfg.pretrained))
    if cfg.init_from:
        init_from_checkpoint(module, cfg.init_from)
    trainer = _trainer(cfg, out_dir, monitor="val/mean_abs_error_px", mode="min",
                       first_callbacks=[_MidEpochResume(train_loader.sampler, cfg.data.batch_size)], **trainer_kwargs)
    trainer.fit(module, train_loader, boundary_loader(cfg, "val", val_scans), ckpt_path=_resume_path(out_dir, resume))
    return module, trainer


def _train_lifting(cfg: ExperimentConfig, resume: str | None, loss=None, **trainer_kwargs):
    out_dir = _start(cfg)
    train_set, val_set = lifting_sets(cfg)
    module = LiftingModule.from_config(cfg, val_actions=val_set.action, loss=loss)
    x, y = lifting_tensors(train_set)
    module.normalizer.fit(x.numpy(), y.numpy())
    train_loader, val_data = _lifting_loaders(cfg, train_set, val_set)
    trainer = _trainer(cfg, out_dir, monitor="val/MPJPE", mode="min", **trainer_kwargs)
    trainer.fit(module, train_loader, val_data, ckpt_path=_resume_path(out_dir, resume))
    return module, trainer


def train(cfg: ExperimentConfig, resume: str | None = None, loss=None, **trainer_kwargs):
    """Train per ``cfg``; ``resume``: a checkpoint path, or "last" for ``out_dir/name/checkpoints/last.ckpt``;
    ``loss``: a loss module to train with instead of the one ``cfg.loss`` builds (its parameters
    must have the names of that one's, so that checkpoints load). Returns the trained module and
    the Lightning trainer."""
    if cfg.task == "lifting":
        return _train_lifting(cfg, resume, loss, **trainer_kwargs)
    if cfg.task == "boundaries":
        return _train_boundaries(cfg, resume, loss, **trainer_kwargs)
    out_dir = _start(cfg)
    spec = keypoint_spec(cfg)
    if cfg.task in ("one_stage", "rcnn"):
        module_class = RCNNModule if cfg.task == "rcnn" else OneStageModule
        train_set, collate = _whole_images(cfg, spec, "train"), collate_people
    else:
        train_instances, _ = load_split(cfg, spec, "train")
        train_set = TopDownDataset(train_instances, TopDownTransform(cfg.transform, spec, train=True, uint8=True),
                                   on_error=cfg.data.on_error, seed=cfg.train.seed, depth_range_mm=_depth_range(cfg))
        collate, module_class = collate_skip_none, PoseModule
    sampler = SeededShuffleSampler(len(train_set), cfg.train.seed, encode_epoch=True)
    # uint8 images (normalized on the device), pinned for an asynchronous copy to a GPU
    train_loader = ResumableLoader(train_set, batch_size=cfg.data.batch_size, drop_last=False, sampler=sampler,
                                   num_workers=cfg.data.num_workers, collate_fn=collate,
                                   persistent_workers=cfg.data.num_workers > 0, pin_memory=torch.cuda.is_available())
    val_data, evaluator = val_loader(cfg, spec)
    module = module_class.from_config(cfg, spec=spec, evaluator=evaluator, loss=loss)
    if cfg.pretrained:
        report = load_backbone(module.model.backbone, cfg.pretrained)
        # a partly covered backbone trains the rest from scratch: worth a warning
        log.log(logging.WARNING if report.missing else logging.INFO, "backbone weights from %s: %s", cfg.pretrained, report)
    if cfg.init_from:
        init_from_checkpoint(module, cfg.init_from)
    trainer = _trainer(cfg, out_dir, monitor=f"val/{evaluator.main_metric}", mode=getattr(evaluator, "mode", "max"),
                       first_callbacks=[_MidEpochResume(sampler, cfg.data.batch_size)], **trainer_kwargs)
    trainer.fit(module, train_loader, val_data, ckpt_path=_resume_path(out_dir, resume))
    return module, trainer


@torch.no_grad()
def heldout_arrays(module, cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """On the validation crops of a top-down regression model, without flip: ``mu``, ``sigma``,
    ``target`` (N, K, D) normalized crop units, ``weight`` (N, K), and per crop ``size`` (N, 2)
    pixels, the object's ``area`` (N,) pixels² and its ``image_id`` (N,)."""
    loader, _ = val_loader(cfg, keypoint_spec(cfg))
    module.eval()
    device = next(module.parameters()).device
    parts: dict[str, list] = {k: [] for k in ("mu", "sigma", "target", "weight", "size", "area", "image_id")}
    for batch in tqdm(loader, desc="held-out crops", unit="batch", file=sys.stderr, leave=False):
        if batch is None:
            continue
        with torch.inference_mode():
            mu, sigma = (t.cpu() for t in module.model(batch["image"].to(device)))
        for key, value in (("mu", mu), ("sigma", sigma), ("target", batch["target"]),
                           ("weight", batch["target_weight"]), ("size", batch["size"]),
                           ("area", torch.as_tensor(batch["area"])),
                           ("image_id", torch.as_tensor(batch["image_id"]))):
            parts[key].append(value)
    return {k: torch.cat(v) for k, v in parts.items()}


def heldout_predictions(module, cfg: ExperimentConfig) -> tuple[torch.Tensor, ...]:
    """µ̂, σ̂, µg and joint weights on the held-out data, in the units the loss saw: for a
    top-down regression model the validation crops without flip, (N, K, 2) normalized crop
    units, weights (N, K); for a lifting model the test poses, (N, 16, 3) in the targets' std
    units, weights (N, 16, 3) all one."""
    if cfg.task == "lifting":
        x, y = lifting_tensors(lifting_set(cfg, "val"))
        module.eval()
        device = next(module.parameters()).device
        mus, sigmas = [], []
        with torch.inference_mode():
            for i in range(0, len(x), cfg.data.val_batch_size):
                mu, sigma = module.model(module.normalizer.inputs(x[i:i + cfg.data.val_batch_size].to(device)))
                mus.append(mu.cpu())
                sigmas.append(sigma.cpu())
        target = module.normalizer.targets(y.to(device)).cpu()
        return torch.cat(mus), torch.cat(sigmas), target, torch.ones_like(target)
    a = heldout_arrays(module, cfg)
    return a["mu"], a["sigma"], a["target"], a["weight"]


def init_from_checkpoint(module, checkpoint: str | Path, trust: bool = False) -> None:
    """Copy every weight of an rlepose checkpoint (network and flow) into ``module``, strictly.
    The flow is a density of x̄ only under the loss settings it was trained with, so a
    checkpoint whose stored loss section differs in form or flow base is refused."""
    path = Path(checkpoint)
    ckpt = read_checkpoint(path, trust=trust)
    stored = ckpt.get("hyper_parameters", {}).get("config", {}).get("loss")
    if stored is not None:
        theirs, ours = LossConfig(**upgrade_loss_section(stored)), module.cfg.loss
        for key in ("name", "q", "flow_base_std"):
            resolve = {"flow_base_std": LossConfig.resolved_flow_base_std}
            a, b = (resolve[key](c) if key in resolve else getattr(c, key) for c in (theirs, ours))
            if a != b:
                raise ValueError(f"{path} was trained with loss.{key}={a!r} but this config has {b!r}: "
                                 f"its flow would mean another density; set loss.{key}={a!r}")
    module.load_state_dict(ckpt["state_dict"])
    log.info("all weights (network and flow) from %s", path)


def load_module(checkpoint: str | Path, cfg: ExperimentConfig | None = None, trust: bool = False):
    """A trained module (PoseModule or LiftingModule) from a Lightning checkpoint; the config
    stored in it unless ``cfg``. The file is read without running code from it unless ``trust``
    (:func:`rlepose.models.checkpoint.read_checkpoint`)."""
    ckpt = read_checkpoint(checkpoint, trust=trust)
    config = config_to_dict(cfg) if cfg is not None else ckpt["hyper_parameters"]["config"]
    module = {"lifting": LiftingModule, "one_stage": OneStageModule, "rcnn": RCNNModule,
              "boundaries": BoundaryModule}.get(config.get("task"), PoseModule)(config)
    module.load_state_dict(ckpt["state_dict"])
    return module


def evaluate(cfg: ExperimentConfig, checkpoint: str | Path, out_file: str | Path | None = None,
             trust: bool = False, **trainer_kwargs) -> dict:
    """Run the validation split's standard evaluation with the weights of ``checkpoint``;
    ``cfg`` gives data and test settings (its model section must match the checkpoint)."""
    _check_root(cfg)
    module = load_module(checkpoint, cfg, trust=trust)
    if cfg.task == "lifting":
        val_set = lifting_set(cfg, "val")
        module.val_actions = val_set.action
        loader = _lifting_loaders(cfg, None, val_set)[1]
    elif cfg.task == "boundaries":
        scans = boundary_scans(cfg, "val")
        module.evaluator, loader = BoundaryEvaluator(scans), boundary_loader(cfg, "val", scans)
    else:
        spec = keypoint_spec(cfg)
        module.spec = spec
        loader, module.evaluator = val_loader(cfg, spec)
    tc = cfg.train
    # One device by default: the evaluator needs every prediction in one process anyway.
    kwargs = {"accelerator": tc.accelerator, "devices": 1, "precision": tc.precision, "logger": False,
              "enable_checkpointing": False, **trainer_kwargs}
    if kwargs.get("enable_progress_bar", True):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), StderrProgressBar()]
    trainer = L.Trainer(**kwargs)
    trainer.validate(module, loader, verbose=False)
    if out_file is not None:
        payload = module.last_table if cfg.task == "lifting" else module.last_results
        write_json(out_file, payload, indent=1 if cfg.task == "lifting" else None)
    if cfg.task == "lifting":
        return {**module.last_metrics, "table": module.last_table}
    if cfg.data.format == "h36m":  # per-action rows from the H36M evaluator
        return {**module.last_metrics, "table": {r["action"]: {k: v for k, v in r.items() if k != "action"}
                                                 for r in module.last_results}}
    return module.last_metrics
