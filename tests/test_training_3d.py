"""3-D: single-stage crops with depth, mixed 2-D/3-D samples, lifting runs, on fixtures."""
import json

import numpy as np
import pytest
import torch
import yaml

from rlepose.cli import main
from rlepose.data.datasets import TopDownDataset, load_mpii_instances
from rlepose.data.h36m import (FROM_32, H36M_KEYPOINTS, h36m_instances, load_cameras, load_h36m_frames,
                               mpii_as_h36m)
from rlepose.data.transforms import TopDownTransform, TransformConfig
from rlepose.evaluation.evaluators import H36MEvaluator
from rlepose.config import load_config
from rlepose.training.run import evaluate, train

SUBJECTS = ["S1", "S5", "S7", "S8"]


def _write(tmp_path, cfg):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_depth_targets_weights_and_flip(fixtures):
    h36m = fixtures / "h36m"
    inst = h36m_instances(load_h36m_frames(h36m / "test_h36m_body3d.npz"), h36m)
    t = TopDownTransform(TransformConfig(flip_prob=1.0, rotation_prob=0.0, half_body_prob=0.0), H36M_KEYPOINTS, True)
    ds = TopDownDataset(inst, t, seed=0, depth_range_mm=2000.0)
    item = ds[0]
    depth = inst[0].depth
    assert item["flipped"] and item["target"].shape == (17, 3) and item["target_weight"].shape == (17, 3)
    perm = H36M_KEYPOINTS.flip_permutation()
    assert torch.allclose(item["target"][:, 2], torch.from_numpy(depth[perm] / 2000.0).float())
    assert item["target"][0, 2] == 0  # root-relative
    mpii = mpii_as_h36m(load_mpii_instances(fixtures / "mpii/test_mpii.json", fixtures / "mpii"))
    mixed = TopDownDataset(mpii, TopDownTransform(TransformConfig(), H36M_KEYPOINTS, False), depth_range_mm=2000.0)[0]
    assert mixed["target_weight"][:, 2].sum() == 0 and mixed["target_weight"][7].sum() == 0  # no z, no spine
    assert mixed["target_weight"][10, :2].tolist() == [1, 1]  # head (MPII head_top) labelled in 2-D


def test_h36m_evaluator_on_ground_truth_is_near_zero(fixtures):
    h36m = fixtures / "h36m"
    inst = h36m_instances(load_h36m_frames(h36m / "test_h36m_body3d.npz"), h36m)
    ev = H36MEvaluator(inst, load_cameras(h36m / "cameras.pkl"), 2000.0)
    kps = np.stack([np.concatenate([i.keypoints, i.depth[:, None] / 2000.0], 1) for i in inst])
    metrics, table = ev(np.arange(4), kps, np.ones((4, 17)), np.ones(4))
    assert metrics["MPJPE"] < 5.0  # only the lens distortion ignored in back-projection remains
    shifted = kps.copy()
    shifted[:, 1:, 2] += 50.0 / 2000.0  # every non-root joint 50 mm deeper
    metrics, _ = ev(np.arange(4), shifted, np.ones((4, 17)), np.ones(4))
    assert 40.0 < metrics["MPJPE"] < 60.0
    assert {row["action"] for row in table} >= {"Directions", "SittingDown", "Average"}


def test_single_stage_training_with_mixed_mpii(tmp_path, fixtures, capsys):
    h36m = fixtures / "h36m"
    cfg = {"name": "single", "model": {"backbone": "resnet18", "head": "regression", "num_joints": 17, "dim": 3},
           "loss": {"name": "rle"},
           "data": {"format": "h36m", "root": str(h36m), "train_ann": "test_h36m_body3d.npz", "train_images": ".",
                    "val_ann": "test_h36m_body3d.npz", "val_images": ".", "cameras": "cameras.pkl",
                    "train_subjects": SUBJECTS, "val_subjects": SUBJECTS, "batch_size": 4, "num_workers": 0,
                    "mix_mpii_ann": str(fixtures / "mpii/test_mpii.json"), "mix_mpii_images": str(fixtures / "mpii")},
           "transform": {"input_size": [128, 128]},
           "train": {"epochs": 1, "val_every": 1, "out_dir": str(tmp_path / "runs")}}
    module, trainer = train(load_config(_write(tmp_path, cfg)), enable_progress_bar=False)
    assert set(module.last_metrics) == {"MPJPE", "PA-MPJPE"} and module.last_metrics["MPJPE"] > 0
    assert trainer.num_training_batches == 3  # 4 H36M + 5 MPII samples, batches of 4
    ckpt = tmp_path / "runs/single/checkpoints/last.ckpt"
    assert main(["eval", str(_write(tmp_path, cfg)), "--checkpoint", str(ckpt)]) == 0
    printed = capsys.readouterr().out
    assert "SittingDown" in printed and "MPJPE (mm)" in printed


def test_lifting_cli_on_generated_poses(tmp_path, fixtures, capsys):
    cfg = {"name": "lift", "task": "lifting", "loss": {"name": "rle"}, "lifting": {"width": 128},
           "data": {"root": str(fixtures / "h36m"), "cameras": "cameras.pkl", "generated_train": 3000,
                    "generated_val": 500, "batch_size": 256, "val_batch_size": 500},
           "train": {"epochs": 2, "val_every": 1, "out_dir": str(tmp_path / "runs")}}
    path = _write(tmp_path, cfg)
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Crouching" in out and "final validation (lift): MPJPE" in out
    ckpt = tmp_path / "runs/lift/checkpoints/last.ckpt"
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert "normalizer.in_std" in state and "loss.flow.s.0.0.weight" in state
    first = evaluate(load_config(path), ckpt, enable_progress_bar=False)
    again = evaluate(load_config(path), ckpt, enable_progress_bar=False)
    assert first["MPJPE"] == pytest.approx(again["MPJPE"]) and first["MPJPE"] < 1000
    # held-out predictions in the loss's units, checked against the evaluator's MPJPE (the root
    # joint counts as a 17th joint with zero error), then analyzed as 3-D residuals
    from rlepose.training.run import heldout_predictions, lifting_set, load_module

    module = load_module(ckpt)
    mu, sigma, target, weight = heldout_predictions(module, load_config(path))
    assert mu.shape == sigma.shape == target.shape == weight.shape == (500, 16, 3)
    err_mm = ((module.normalizer.to_mm(mu) - module.normalizer.to_mm(target)).norm(dim=-1).sum(1) / 17).numpy()
    actions = np.array(lifting_set(load_config(path), "val").action)  # the table averages the per-action means
    per_action = [err_mm[actions == a].mean() for a in np.unique(actions)]
    assert float(np.mean(per_action)) == pytest.approx(first["MPJPE"], rel=1e-3)
    assert main(["analyze", "density", "--checkpoint", str(ckpt), "--config", str(path), "--out", str(tmp_path / "d")]) == 0
    assert "held-out x̄ (8000 joints)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "d" / "density.json").read_text())
    assert summary["dim"] == 3 and len(summary["residuals"]["kurtosis"]) == 3 and "png" not in summary


def test_lifting_from_a_keypoint_archive(tmp_path, fixtures):
    h36m = fixtures / "h36m"
    cams = load_cameras(h36m / "cameras.pkl")
    frames = load_h36m_frames(h36m / "test_h36m_body3d.npz")
    world = np.stack([cams[(s, c)].camera_to_world(j / 1000.0)
                      for s, c, j in zip(frames.subject, frames.camera, frames.joints_cam)])
    world32 = np.zeros((len(world), 32, 3))
    world32[:, list(FROM_32)] = world
    archive = {s: {"Directions 1": world32, "Walking": world32[::-1]} for s in ("S1", "S5", "S6", "S7", "S8", "S9", "S11")}
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=archive)
    cfg = {"name": "lift_real", "task": "lifting", "loss": {"name": "l2"}, "lifting": {"width": 64},
           "data": {"root": str(h36m), "cameras": "cameras.pkl", "data_3d": str(tmp_path / "data_3d_h36m.npz"),
                    "batch_size": 16, "val_batch_size": 64},
           "train": {"epochs": 1, "val_every": 1, "out_dir": str(tmp_path / "runs")}}
    module, _ = train(load_config(_write(tmp_path, cfg)), enable_progress_bar=False)
    assert set(module.last_table) == {"Directions", "Walking", "Average", "All"}
    assert module.last_table["All"]["n"] == 2 * 4 * 2 * 4  # 2 subjects × 2 actions × 4 frames × 4 cameras
