"""End to end on the real fixtures: CLI training, checkpoints, exact resume, evaluation."""
import json

import pytest
import torch
import yaml

from rlepose.cli import main
from rlepose.config import ConfigError, config_from_dict, load_config
from rlepose.training.module import PoseModule
from rlepose.training.run import checkpoint_paths, train

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _config(tmp_path, fixtures, **sections):
    cfg = {"name": "tiny",
           "model": {"backbone": "resnet18", "head": "regression"},
           "data": {"format": "coco", "root": str(fixtures / "coco"), "train_ann": "test_coco.json",
                    "train_images": ".", "val_ann": "test_coco.json", "val_images": ".", "batch_size": 4,
                    "val_batch_size": 8, "num_workers": 0},
           "transform": {"input_size": [128, 96]},
           "train": {"epochs": 2, "val_every": 1, "milestones": [1], "out_dir": str(tmp_path / "runs")}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_train_then_eval_on_coco_fixtures(tmp_path, fixtures, capsys):
    cfg = _config(tmp_path, fixtures)
    assert main(["train", str(cfg), "train.lr=0.002"]) == 0
    out = capsys.readouterr().out
    assert "final validation (tiny): AP" in out and "conf_oks_pearson" in out
    ckpt = tmp_path / "runs/tiny/checkpoints/last.ckpt"
    assert ckpt.is_file() and (tmp_path / "runs/tiny/csv/metrics.csv").is_file()
    stored = torch.load(ckpt, weights_only=False)["hyper_parameters"]["config"]
    assert stored["train"]["lr"] == 0.002  # the override reached the run
    results = tmp_path / "res.json"
    assert main(["eval", str(cfg), "--checkpoint", str(ckpt), "--results", str(results)]) == 0
    assert "tiny: AP" in capsys.readouterr().out
    dets = json.loads(results.read_text())
    assert dets and set(dets[0]) == {"image_id", "category_id", "keypoints", "score"}
    assert len(dets[0]["keypoints"]) == 51


def test_resume_is_exact(tmp_path, fixtures):
    straight, _ = train(load_config(_config(tmp_path, fixtures), ["name=straight"]), enable_progress_bar=False)
    first, _ = train(load_config(_config(tmp_path, fixtures), ["name=split", "train.epochs=1"]),
                     enable_progress_bar=False)
    resumed, trainer = train(load_config(_config(tmp_path, fixtures), ["name=split"]), resume="last",
                             enable_progress_bar=False)
    assert trainer.current_epoch == 2
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    assert not torch.allclose(first.state_dict()["model.head.fc.weight"], a["model.head.fc.weight"])


def _unrelated_file(tmp_path):
    path = tmp_path / "head_only.pth"
    torch.save({"state_dict": {"keypoint_head.final_layer.weight": torch.ones(17, 32, 1, 1)}}, path)
    return path


def test_mpii_and_heatmap_runs(tmp_path, fixtures):
    mpii = _config(tmp_path, fixtures, name="mpii", model={"num_joints": 16},
                   data={"format": "mpii", "root": str(fixtures / "mpii"), "train_ann": "test_mpii.json",
                         "val_ann": "test_mpii.json"}, train={"epochs": 1})
    module, _ = train(load_config(mpii), enable_progress_bar=False)
    assert set(module.last_metrics) >= {"PCKh@0.5", "PCKh@0.1", "AUC", "PCKh@0.5/head_top"}
    heat = _config(tmp_path, fixtures, name="heat", model={"head": "heatmap"}, loss={"name": "heatmap_mse"},
                   train={"epochs": 1})
    module, trainer = train(load_config(heat), enable_progress_bar=False)
    assert "AP" in module.last_metrics and checkpoint_paths(trainer)["last"].endswith("last.ckpt")
    # A regression model started from the heatmap model's backbone (at lr 0 its parameters stay there).
    reg = _config(tmp_path, fixtures, name="from_heat", pretrained=checkpoint_paths(trainer)["last"],
                  train={"epochs": 1, "lr": 0.0})
    started, _ = train(load_config(reg), enable_progress_bar=False)
    ours, theirs = dict(started.model.backbone.named_parameters()), dict(module.model.backbone.named_parameters())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(ValueError, match="no backbone weights"):
        train(load_config(_config(tmp_path, fixtures, name="nothing", pretrained=str(_unrelated_file(tmp_path)))))


def test_clear_errors(tmp_path, fixtures, capsys):
    cfg = _config(tmp_path, fixtures)
    assert main(["train", str(cfg), "data.root=/no/such/dir"]) == 2
    assert "data root not found: /no/such/dir" in capsys.readouterr().err
    assert main(["train", str(cfg), "model.num_joints=16"]) == 2
    assert "has 17 joints" in capsys.readouterr().err
    assert main(["eval", str(cfg), "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(cfg, ["train.learning_rate=1"])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load_and_build(path):
    from rlepose.training.boundaries import BoundaryModule
    from rlepose.training.lifting import LiftingModule
    from rlepose.training.module import PoseModule
    from rlepose.training.one_stage import OneStageModule, RCNNModule

    cfg = load_config(path)
    modules = {"lifting": LiftingModule, "one_stage": OneStageModule, "rcnn": RCNNModule, "boundaries": BoundaryModule}
    module = modules.get(cfg.task, PoseModule).from_config(cfg)
    dim = {"lifting": 3, "boundaries": 1}.get(cfg.task, cfg.model.dim)
    if "rle" in path.stem:
        assert cfg.loss.name.startswith("rle") and module.loss.flow.dim == dim
        if dim == 2:
            assert sum(p.numel() for p in module.loss.flow.parameters()) == 53784  # Table 11, 3×64


@pytest.mark.slow
def test_two_process_ddp_validates_the_whole_set(tmp_path, fixtures):
    """CPU DDP (gloo), 2 processes, bf16 autocast: the logged metric must equal a
    single-process evaluation of the same checkpoint (each rank sees only half the crops)."""
    import csv

    from rlepose.training.run import evaluate

    overrides = ["name=ddp", "train.epochs=1", "train.accelerator=cpu", "train.devices=2",
                 "train.strategy=ddp_spawn", "train.precision=bf16-mixed"]
    cfg = load_config(_config(tmp_path, fixtures), overrides)
    train(cfg, enable_progress_bar=False)
    rows = list(csv.DictReader((tmp_path / "runs/ddp/csv/metrics.csv").read_text().splitlines()))
    logged = [float(r["val/mean_oks"]) for r in rows if r.get("val/mean_oks")]
    single = evaluate(cfg, tmp_path / "runs/ddp/checkpoints/last.ckpt", enable_progress_bar=False, devices=1)
    assert logged[-1] == pytest.approx(single["mean_oks"], rel=1e-5)


def test_a_batch_with_a_nonfinite_loss_updates_nothing(tmp_path, fixtures, monkeypatch):
    """Every batch's loss is NaN (with NaN gradients behind it): no parameter of the network or
    of the flow moves, and the skipped batches are counted."""
    from rlepose.losses import RLELoss
    from rlepose.config import config_to_dict
    from rlepose.training.module import PoseModule

    cfg = load_config(_config(tmp_path, fixtures, train={"epochs": 1}))
    start = PoseModule.from_config(cfg)
    path = tmp_path / "start.ckpt"
    torch.save({"state_dict": start.state_dict(), "hyper_parameters": {"config": config_to_dict(cfg)}}, path)
    original = RLELoss.forward
    monkeypatch.setattr(RLELoss, "forward", lambda self, *a, **k: original(self, *a, **k) * float("nan"))
    cfg = load_config(_config(tmp_path, fixtures, train={"epochs": 1}, init_from=str(path)))
    module, trainer = train(cfg, enable_progress_bar=False, logger=False)
    assert module.nonfinite_batches == trainer.num_training_batches > 0
    before = dict(start.named_parameters())
    assert all(torch.equal(p, before[name]) for name, p in module.named_parameters())


def test_checkpoints_are_written_to_a_temporary_name_and_renamed(tmp_path, monkeypatch):
    """A write that dies halfway (a partial file, then an error) leaves the good checkpoint in
    place and no temporary file behind."""
    from rlepose.training.run import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    good = path.read_bytes()

    def dies_halfway(obj, f):
        __import__("pathlib").Path(f).write_bytes(good[: len(good) // 2])
        raise OSError("no space left on device")
    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="no space"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_channels_last_training_computes_the_same_loss_and_gradients():
    """The memory format is a speed setting only: same loss, same gradients."""
    torch.manual_seed(0)
    images, target = torch.randn(4, 3, 64, 48), torch.rand(4, 17, 2) - 0.5
    batch = {"image": images, "target": target, "target_weight": torch.ones(4, 17)}
    grads = []
    for channels_last in (False, True):
        torch.manual_seed(1)
        cfg = config_from_dict({"model": {"backbone": "resnet18"}, "train": {"channels_last": channels_last}})
        module = PoseModule.from_config(cfg)
        assert module.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        loss = module._loss(batch)
        loss.backward()
        grads.append((loss.item(), module.model.backbone.layer1[0].conv1.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    a, b = grads[0][1], grads[1][1]  # summation order differs: compare to the gradient's scale
    assert (a - b).abs().max() <= 1e-4 * a.abs().max()


_KILLER = """
import os, signal, sys
import lightning as L
from rlepose.config import load_config
from rlepose.training.run import train

class KillAt(L.Callback):  # mid-step: the weights have moved, the step's checkpoint is not written
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

train(load_config(sys.argv[1], ["name=killed", "train.checkpoint_every_steps=1"]), callbacks=[KillAt()],
      enable_progress_bar=False)
"""


@pytest.mark.parametrize("loss_path", ["eager", pytest.param("compiled", marks=pytest.mark.slow)])
def test_sigkill_mid_epoch_then_resume_last_ends_with_the_same_weights(tmp_path, fixtures, loss_path, monkeypatch):
    """A training process killed with SIGKILL in the middle of its second epoch, resumed with
    ``--resume last``, ends with exactly the weights of an uninterrupted run: with the loss run
    eagerly and on its default, compiled path."""
    import signal
    import subprocess
    import sys

    from rlepose.losses.compiled import ENV_VAR

    if loss_path == "compiled":
        monkeypatch.delenv(ENV_VAR)  # the default, here and in the killed process

    cfg = _config(tmp_path, fixtures, data={"batch_size": 2})
    straight, st = train(load_config(cfg, ["name=straight"]), enable_progress_bar=False)
    n_batches = st.num_training_batches
    assert n_batches >= 4
    (tmp_path / "killer.py").write_text(_KILLER)
    kill_step = n_batches + 2  # two batches into epoch 2
    proc = subprocess.run([sys.executable, str(tmp_path / "killer.py"), str(cfg), str(kill_step)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ckpt = torch.load(tmp_path / "runs/killed/checkpoints/last.ckpt", weights_only=False)
    # Lightning runs checkpoint callbacks last: the kill came after step 8's update and before its save
    assert ckpt["global_step"] == kill_step - 1 and ckpt["rlepose_epoch_progress"] == {"epoch": 1, "batches_done": 1}
    assert not list((tmp_path / "runs/killed/checkpoints").glob("*.tmp*"))  # no half-written file left
    assert main(["train", str(cfg), "name=killed", "train.checkpoint_every_steps=1", "--resume", "last"]) == 0
    resumed = torch.load(tmp_path / "runs/killed/checkpoints/last.ckpt", weights_only=False)
    assert (resumed["global_step"], st.global_step) == (2 * n_batches, 2 * n_batches)
    a = straight.state_dict()
    for key, value in resumed["state_dict"].items():
        assert torch.allclose(a[key].float(), value.float(), atol=1e-6), key


def test_augmentation_is_keyed_by_epoch_also_in_loader_workers(fixtures):
    """The epoch travels with the index (epoch · N + i), so persistent worker processes, which
    never see attributes set on the main process's dataset, still draw new augmentations every
    epoch, and the same ones on every run."""
    from torch.utils.data import DataLoader

    from rlepose.data.datasets import SeededShuffleSampler, TopDownDataset, collate_skip_none, load_coco_instances
    from rlepose.data.keypoints import COCO_KEYPOINTS
    from rlepose.data.transforms import TopDownTransform, TransformConfig

    instances = load_coco_instances(fixtures / "coco/test_coco.json", fixtures / "coco")
    ds = TopDownDataset(instances, TopDownTransform(TransformConfig(input_size=(64, 48)), COCO_KEYPOINTS, True), seed=0)
    n = len(ds)
    assert not torch.equal(ds[3]["image"], ds[n + 3]["image"]) and ds[n + 3]["index"] == 3
    assert torch.equal(ds[n + 3]["image"], ds[n + 3]["image"])
    sampler = SeededShuffleSampler(n, seed=0, encode_epoch=True)
    loader = DataLoader(ds, batch_size=n, sampler=sampler, num_workers=2, persistent_workers=True,
                        collate_fn=collate_skip_none)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batch = next(iter(loader))
        epochs.append(batch["image"][batch["index"].argsort()])
    assert not torch.equal(epochs[0], epochs[1])
    assert torch.equal(epochs[1][3], ds[n + 3]["image"])


def test_lr_factor_warmup_step_and_cosine():
    from rlepose.training.module import lr_factor

    # warm-up: linear to 1 over 4 steps; step: ×0.1 at each milestone; cosine: half a period to 0
    assert [lr_factor(s, "step", 100, 4, (10, 20)) for s in (0, 3, 9, 10, 20)] == pytest.approx([0.25, 1, 1, 0.1, 0.01])
    assert lr_factor(4 + 48, "cosine", 100, 4) == pytest.approx(0.5)
    assert lr_factor(4 + 24, "cosine", 100, 4) == pytest.approx(0.5 * (1 + 2 ** -0.5))
    assert lr_factor(100, "cosine", 100, 4) == pytest.approx(0.0)


def test_cosine_schedule_is_stepped_per_batch_to_zero(tmp_path, fixtures):
    cfg = load_config(_config(tmp_path, fixtures), ["train.schedule=cosine", "train.warmup_steps=2", "train.lr=0.002"])
    module, trainer = train(cfg, enable_progress_bar=False)
    steps = trainer.global_step
    assert steps == trainer.estimated_stepping_batches > 2
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="step or cosine"):
        train(load_config(_config(tmp_path, fixtures), ["train.schedule=linear", "name=bad"]), enable_progress_bar=False)


def test_flow_warmup_epochs_switch_the_flow_gradient_on(tmp_path, fixtures):
    import lightning as L

    seen = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            seen.append(module.loss.flow_warmup)

    cfg = load_config(_config(tmp_path, fixtures), ["loss.flow_warmup_epochs=1"])
    train(cfg, enable_progress_bar=False, callbacks=[Record()])
    assert seen == [True, False]


def test_flow_warmup_default_lasts_until_the_learning_rate_first_drops():
    """Unset, rle_calibrated's warm-up ends at the first milestone of a top-down step schedule and
    after half the epochs where the rate decays smoothly; 0 turns it off; the published forms
    (as they trained) and losses without Q get none."""
    def resolved(**sections):
        return config_from_dict(sections).flow_warmup_epochs()

    cal = {"name": "rle_calibrated"}
    assert resolved(train={"epochs": 270, "milestones": [200, 170]}, loss=cal) == 170
    assert resolved(train={"epochs": 24, "milestones": [20]}, loss={**cal, "q": "gaussian"}) == 20
    assert resolved(train={"epochs": 30, "schedule": "cosine"}, loss=cal) == 15
    assert resolved(task="lifting", train={"epochs": 80, "milestones": [10]}, loss=cal) == 40  # lifting decays per epoch
    for name in ("rle", "rle_paper", "rle_mmpose"):
        assert resolved(train={"epochs": 270, "milestones": [170, 200]}, loss={"name": name}) == 0
    assert resolved(loss={"name": "rle", "flow_warmup_epochs": 0}) == 0
    assert resolved(loss={"name": "rle", "flow_warmup_epochs": 3}) == 3
    assert resolved(loss={"name": "dle"}) == resolved(loss={"name": "laplace_nll"}) == 0
    with pytest.raises(ConfigError, match="DLE has no Q"):
        resolved(loss={"name": "dle", "flow_warmup_epochs": 2})
    with pytest.raises(ConfigError, match=">= 0"):
        resolved(loss={"name": "rle", "flow_warmup_epochs": -1})


def test_train_compile_keeps_the_state_dict():
    """train.compile compiles the training forward only: the module's state dict (and so every
    checkpoint) has the same keys as without it."""
    from rlepose.config import config_to_dict
    from rlepose.training.module import PoseModule

    plain = PoseModule(config_to_dict(config_from_dict({"model": {"backbone": "resnet18"}})))
    compiled = PoseModule(config_to_dict(config_from_dict({"model": {"backbone": "resnet18"},
                                                           "train": {"compile": True}})))
    assert list(compiled.state_dict()) == list(plain.state_dict())
    assert compiled._compiled is not None and plain._compiled is None
