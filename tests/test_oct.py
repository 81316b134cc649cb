"""Boundary regression on OCT B-scans (appendix H): the Duke DME files, the generator, the
column targets, the metric, the model and `rlepose train / eval / predict` end to end."""
import json

import cv2
import numpy as np
import pytest
import torch
from scipy.io import savemat

from rlepose.cli import main
from rlepose.config import ConfigError, config_from_dict
from rlepose.data.oct import (BoundaryDataset, BoundaryTransform, BScan, OCTDataError, load_dme, normalized_depth,
                              pixel_depth, render_bscan, render_dme_like, sample_columns)
from rlepose.evaluation.boundaries import BoundaryEvaluator, boundary_errors, depths_at_columns
from rlepose.models.boundaries import BoundaryConfig, build_boundary_model
from rlepose.training.run import boundary_scans


def _write_subject(path, seed, slices=5, labelled=(1, 3), height=20, width=12):
    """A subject file as the DME archive has them, written here with SciPy alone: images
    (H, W, S) uint8, manualLayers1/2 (8, W, S) as MATLAB's 1-based rows, NaN where unlabelled."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (height, width, slices), dtype=np.uint8)
    layers = np.full((8, width, slices), np.nan)
    for s in labelled:
        layers[:, 2:width - 1, s] = np.sort(rng.uniform(1, height, (8, width - 3)), axis=0)
    second = layers + 0.5
    savemat(str(path), {"images": images, "manualLayers1": layers, "manualLayers2": second,
                        "manualFluid1": np.zeros((height, width, slices), np.uint8)})
    return images, layers


def test_load_dme_reads_the_labelled_bscans_with_0_based_depths(tmp_path):
    images, layers = _write_subject(tmp_path / "Subject_03.mat", 0)
    scans = load_dme(tmp_path, ("3",))
    assert [s.index for s in scans] == [1, 3] and all(s.subject == "3" for s in scans)
    assert np.array_equal(scans[0].image, images[:, :, 1])
    assert np.allclose(scans[1].depths, layers[:, :, 3] - 1, equal_nan=True)
    assert np.isnan(scans[0].depths[:, :2]).all() and np.isfinite(scans[0].depths[:, 2:-1]).all()
    assert np.allclose(scans[0].second, scans[0].depths + 0.5, equal_nan=True)
    other = load_dme(tmp_path, ("3",), annotator=2)  # the second expert's labels train and score
    assert np.allclose(other[0].depths, scans[0].depths + 0.5, equal_nan=True)


def test_load_dme_refuses_what_is_not_a_dme_subject(tmp_path):
    with pytest.raises(OCTDataError, match="Subject_01.mat not found"):
        load_dme(tmp_path, ("1",))
    savemat(str(tmp_path / "Subject_01.mat"), {"volume": np.zeros((4, 4))})
    with pytest.raises(OCTDataError, match="no images, manualLayers1"):
        load_dme(tmp_path, ("1",))
    (tmp_path / "Subject_02.mat").write_bytes(b"not a mat file")
    with pytest.raises(OCTDataError, match="not a readable MATLAB file"):
        load_dme(tmp_path, ("2",))


def test_the_literature_split_is_subjects_1_to_5_for_training_and_6_to_10_for_testing(tmp_path):
    for s in range(1, 11):
        _write_subject(tmp_path / f"Subject_{s:02d}.mat", s)
    cfg = config_from_dict({"task": "boundaries", "data": {"format": "dme", "root": str(tmp_path)}})
    assert {s.subject for s in boundary_scans(cfg, "train")} == {"1", "2", "3", "4", "5"}
    assert {s.subject for s in boundary_scans(cfg, "val")} == {"6", "7", "8", "9", "10"}
    cfg = config_from_dict({"task": "boundaries", "data": {"format": "dme", "root": str(tmp_path),
                                                           "train_subjects": ["2"], "pixel_size_um": 3.9}})
    scans = boundary_scans(cfg, "train")
    assert {s.subject for s in scans} == {"2"} and scans[0].pixel_size_um == 3.9


def test_task_and_format_go_together():
    with pytest.raises(ConfigError, match="data.format dme"):
        config_from_dict({"task": "boundaries"})
    with pytest.raises(ConfigError, match="data.format dme"):
        config_from_dict({"data": {"format": "dme"}})


def test_the_generator_draws_ordered_layers_with_contrast_and_noisy_annotators():
    rng = np.random.default_rng(0)
    errors, contrast = [], []
    for _ in range(20):
        image, truth, first, second = render_bscan(rng, 128, 256)
        assert image.shape == (128, 256) and image.dtype == np.uint8
        assert (np.diff(truth, axis=0) >= 0).all() and truth.min() > 0 and truth.max() < 127
        errors.append(np.abs(first - truth).mean())
        assert not np.allclose(first, second)
        x = np.arange(256)
        vitreous = image[np.clip(truth[0] - 6, 0, 127).astype(int), x].mean()
        rpe = image[np.clip((truth[5] + truth[6]) / 2, 0, 127).astype(int), x].mean()  # the bright outer band
        contrast.append(rpe - vitreous)
    assert 0.2 < np.mean(errors) < 1.5  # annotator noise: about half a pixel, as stated
    assert np.mean(contrast) > 60


def test_render_dme_like_writes_seeded_subjects_that_the_loader_reads(tmp_path):
    render_dme_like(tmp_path / "a", subjects=2, scans=3, height=64, width=96, seed=5)
    render_dme_like(tmp_path / "b", subjects=2, scans=3, height=64, width=96, seed=5)
    a, b = load_dme(tmp_path / "a", ("1", "2")), load_dme(tmp_path / "b", ("1", "2"))
    assert len(a) == 6 and all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert a[0].image.shape == (64, 96) and a[0].pixel_size_um > 0
    assert np.isnan(a[0].depths[:, 0]).all() and np.isfinite(a[0].depths[:, 48]).all()  # margins unlabelled


def test_column_targets_are_interpolated_at_the_output_columns_and_normalized():
    depths = np.array([[10.0, 12.0, 14.0, 16.0, np.nan, 20.0, 22.0, 24.0]])
    # 4 output columns over 8 image columns: centres at image columns 0.5, 2.5, 4.5, 6.5
    got = sample_columns(depths, 4)[0]
    assert np.allclose(got[[0, 1, 3]], [11.0, 15.0, 23.0]) and np.isnan(got[2])
    assert np.allclose(pixel_depth(normalized_depth(np.array([0.0, 63.0]), 64), 64), [0.0, 63.0])
    assert normalized_depth(np.array([31.5]), 64)[0] == pytest.approx(0.0)


def test_flips_and_shifts_move_the_labels_with_the_pixels():
    """A B-scan with one bright row whose depth slopes across the image: after the training
    transform the brightest row of each output column is where the target says."""
    h, w = 64, 128
    image = np.zeros((h, w), np.uint8)
    depth = np.linspace(15, 45, w)
    image[np.round(depth).astype(int), np.arange(w)] = 255
    scan = BScan(image, np.tile(depth, (8, 1)), None, "1", 0)
    transform = BoundaryTransform((h, w), columns=16, train=True, shift=0.15)
    for seed in range(6):
        sample = transform(scan, np.random.default_rng(seed))
        picture = sample["image"][0].numpy().astype(float)
        target = pixel_depth(sample["target"].numpy().reshape(8, 16)[0], h)
        for c in range(16):
            columns = picture[:, c * 8:(c + 1) * 8]
            assert abs(np.argmax(columns.mean(1)) - target[c]) <= 1.5


def test_errors_are_mean_absolute_depth_differences_over_labelled_columns():
    pred = [np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])]
    truth = [np.array([[1.5, np.nan, 2.0], [6.0, 7.0, np.nan]])]
    out = boundary_errors(pred, truth, ("a", "b"))
    assert out["mean_abs_error_px"] == pytest.approx((0.5 + 1.0 + 1.0 + 2.0) / 4)
    assert out["error_px/a"] == pytest.approx(0.75) and out["error_px/b"] == pytest.approx(1.5)
    # predictions at 2 column centres of a 4-column image (centres 0.5 and 2.5): linear in
    # between, extrapolated beyond
    assert np.allclose(depths_at_columns(np.array([[10.0, 20.0]]), 4), [[7.5, 12.5, 17.5, 22.5]])


def test_the_evaluator_scores_a_perfect_prediction_zero_and_reports_micrometres():
    rng = np.random.default_rng(1)
    scans = []
    for i in range(3):
        image, truth, first, second = render_bscan(rng, 64, 128)
        linear = np.tile(np.linspace(10, 40, 128), (8, 1)) + np.arange(8)[:, None]  # exactly linear: interpolable
        scans.append(BScan(image, linear, linear + 1.0, "9", i, 4.0))
    depths = np.stack([normalized_depth(sample_columns(s.depths, 16), 64) for s in scans])
    metrics, results = BoundaryEvaluator(scans)(np.arange(3), depths, np.full_like(depths, 0.01))
    assert metrics["mean_abs_error_px"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["expert_disagreement_px"] == pytest.approx(1.0)
    assert metrics["mean_abs_error_um"] == pytest.approx(0.0, abs=1e-9) and len(results) == 3
    assert np.asarray(results[0]["sigma_px"]) == pytest.approx(0.64)


def test_the_model_gives_every_boundary_in_every_column():
    model = build_boundary_model("resnet18_0.25", 64, BoundaryConfig(boundaries=8, columns=16, channels=16))
    mu, sigma = model(torch.randn(2, 3, 64, 96))
    assert mu.shape == sigma.shape == (2, 8 * 16, 1) and (sigma > 0).all() and (sigma < 1).all()
    assert model.inference(torch.randn(1, 3, 64, 96))["depths"].shape == (1, 8, 16)
    with pytest.raises(ValueError, match="64 pixels tall"):
        model(torch.randn(1, 3, 32, 96))
    with pytest.raises(ValueError, match="no feature pyramid"):
        build_boundary_model("hrnet_w32", 64)


def test_the_dataset_keys_augmentation_by_seed_epoch_and_index(tmp_path):
    render_dme_like(tmp_path, subjects=1, scans=2, height=64, width=96, seed=0)
    data = BoundaryDataset(load_dme(tmp_path, ("1",)), BoundaryTransform((64, 96), 16, train=True), seed=3)
    assert torch.equal(data[1]["image"], data[1]["image"])  # same epoch and index: same sample
    assert not torch.equal(data[1]["image"], data[1 + len(data)]["image"])  # next epoch: new augmentation
    assert data[1 + len(data)]["index"] == 1


@pytest.mark.slow
def test_train_eval_and_predict_end_to_end(tmp_path, capsys):
    """``rlepose train`` on generated B-scans with RLE (a one-dimensional flow), ``rlepose eval``
    reproduces the final validation, ``rlepose predict`` draws the boundaries with σ̂ bands and
    writes their depths per column."""
    import yaml

    cfg = {"name": "oct", "task": "boundaries", "model": {"backbone": "resnet18_0.25"},
           "boundaries": {"columns": 16, "channels": 16}, "loss": {"name": "rle"},
           "data": {"format": "dme", "root": str(tmp_path / "data"), "rendered": [10, 2], "batch_size": 4,
                    "num_workers": 0},
           "transform": {"input_size": [64, 128]},
           "train": {"epochs": 2, "val_every": 1, "milestones": [1], "out_dir": str(tmp_path / "runs")}}
    path = tmp_path / "oct.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "final validation (oct): mean_abs_error_px" in out
    ckpt = tmp_path / "runs/oct/checkpoints/last.ckpt"
    stored = torch.load(ckpt, weights_only=False)
    assert "loss.flow.widths" in stored["state_dict"]  # the one-dimensional flow trained and saved
    assert main(["eval", str(path), "--checkpoint", str(ckpt)]) == 0
    trained = float(out.split("mean_abs_error_px ")[1].split()[0])
    evaluated = float(capsys.readouterr().out.split("mean_abs_error_px ")[1].split()[0])
    assert evaluated == pytest.approx(trained, rel=1e-4)
    scan = load_dme(tmp_path / "data", ("7",))[0]
    cv2.imwrite(str(tmp_path / "bscan.png"), scan.image)
    assert main(["predict", str(tmp_path / "bscan.png"), "--checkpoint", str(ckpt), "--out",
                 str(tmp_path / "b.json"), "--render", str(tmp_path / "drawn")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())[0]
    assert np.asarray(result["depths_px"]).shape == (8, scan.image.shape[1]) and result["boundaries"][0] == "ILM"
    assert (np.asarray(result["sigma_px"]) > 0).all()
    drawn = cv2.imread(str(tmp_path / "drawn/bscan.png"))
    assert drawn.shape[:2] == scan.image.shape and drawn.std(axis=2).mean() > 1  # coloured boundaries on grey
    assert main(["predict", str(tmp_path / "bscan.png"), "--checkpoint", str(ckpt), "--whole-image"]) == 2
    assert "boundary model" in capsys.readouterr().err
