"""σ̂ at its true scale: the model's own Q scale in the expected OKS, and `rlepose calibrate`
(one scale per joint by the held-out likelihood) stored with the checkpoint and used everywhere."""
import math

import numpy as np
import pytest

from rlepose.analysis.calibration import fit_joint_scale, laplace_coverage
from rlepose.cli import main
from rlepose.evaluation.coco import expected_oks
from rlepose.inference.predictor import PosePredictor
from rlepose.losses import laplace_scale_per_sigma
from rlepose.models.checkpoint import read_checkpoint, save_atomic, save_compact


def test_each_loss_says_what_its_sigma_means():
    assert laplace_scale_per_sigma("rle") == pytest.approx(math.sqrt(2))  # Q: Laplace on √2·σ̂
    assert laplace_scale_per_sigma("rle", "gaussian") == pytest.approx(1 / math.sqrt(2))  # same variance σ̂²
    for name in ("rle_mmpose", "rle_paper", "rle_calibrated", "laplace_nll", "dle"):
        assert laplace_scale_per_sigma(name) == 1.0
    assert laplace_scale_per_sigma("gaussian_nll") == pytest.approx(1 / math.sqrt(2))
    assert laplace_scale_per_sigma("l1") is None and laplace_scale_per_sigma("heatmap_mse") is None


def test_the_fitted_scale_maximises_the_laplace_likelihood():
    rng = np.random.default_rng(0)
    n, k = 400, 3
    sigma = rng.uniform(0.01, 0.05, (n, k, 2))
    true_scale = np.array([1.5, 0.8, 1.0])
    target = np.zeros((n, k, 2))
    mu = rng.laplace(0, true_scale[None, :, None] * math.sqrt(2) * sigma)
    weight = (rng.random((n, k)) > 0.2).astype(float)
    s = fit_joint_scale(mu, sigma, target, weight, scale_per_sigma=math.sqrt(2))
    grid = np.linspace(0.3, 3.0, 2701)
    for j in range(k):
        lab = weight[:, j] > 0
        e, b0 = np.abs(mu[lab, j]), math.sqrt(2) * sigma[lab, j]
        loglik = [(-np.log(2 * g * b0) - e / (g * b0)).sum() for g in grid]
        assert s[j] == pytest.approx(grid[int(np.argmax(loglik))], abs=1e-3)
    assert np.allclose(s, true_scale, rtol=0.1)  # and it finds the scale the errors were drawn with
    assert fit_joint_scale(mu, sigma, target, np.zeros((n, k)))[0] == 1.0  # never labelled: left alone


def test_laplace_coverage_counts_the_errors_inside_each_interval():
    sigma = np.ones((4, 1, 2))
    err = np.array([0.5, 1.0, 2.0, 4.0])[:, None, None] * np.ones((1, 1, 2))
    cov = laplace_coverage(err, sigma, np.zeros_like(err), np.ones((4, 1)), np.array([1.0]))
    # half-widths −ln(1 − p): 0.693, 1.609, 2.996
    assert cov["0.5"]["overall"] == 0.25 and cov["0.8"]["overall"] == 0.5 and cov["0.95"]["overall"] == 0.75
    wider = laplace_coverage(err, sigma, np.zeros_like(err), np.ones((4, 1)), np.array([2.0]))
    assert wider["0.5"]["overall"] == 0.5 and wider["0.95"]["per_joint"] == [1.0]


def test_expected_oks_uses_the_q_scale_of_the_official_form(tmp_path):
    """A model trained with `rle` (Q on √2·σ̂): each PoseResult.sigma is √2·σ̂ in pixels, and
    the expected OKS comes from it."""
    from test_optimize import _checkpoint, _image_and_boxes

    path, _ = _checkpoint(tmp_path)  # loss rle
    predictor = PosePredictor.from_checkpoint(path, backend="torch", precision="fp32")
    assert np.allclose(predictor.sigma_scale, math.sqrt(2))
    image, boxes = _image_and_boxes()
    people = predictor.predict(image, boxes)
    crop_w = boxes[0][3] * 1.25 * 48 / 64  # the box (40×90) padded to the 48:64 aspect: height rules
    sigma_hat = 1 - people[0].joint_confidence
    assert np.allclose(people[0].sigma[:, 0], math.sqrt(2) * sigma_hat * crop_w, rtol=1e-4)
    want = expected_oks(people[0].sigma[None], np.array([boxes[0][2] * boxes[0][3]]),
                        np.asarray(predictor.spec.sigmas))[0]
    assert people[0].expected_oks == pytest.approx(want)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """An uncalibrated copy of the shipped model and a config over 40 embedded held-out images."""
    from rlepose.config import config_to_dict
    from rlepose.demo import shipped_eval_config
    from rlepose.files import write_json
    from rlepose.hub import SHIPPED_PATH

    root = tmp_path_factory.mktemp("cal")
    raw = read_checkpoint(SHIPPED_PATH, expand=False)
    raw.pop("sigma_calibration", None)
    plain = save_atomic(raw, root / "plain.pt")
    cfg = shipped_eval_config(root / "demo", plain, 40)
    write_json(root / "config.json", config_to_dict(cfg), indent=2)
    return plain, root / "config.json", root


def test_calibrate_stores_one_scale_per_joint_that_everything_uses(rendered, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from rlepose.inference.export import export_checkpoint, read_onnx_metadata

    plain, config, _ = rendered
    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", "--checkpoint", str(plain), "--config", str(config), "--out", str(out)]) == 0
    assert "95% intervals hold" in capsys.readouterr().out
    stored = read_checkpoint(out)["sigma_calibration"]
    assert len(stored["joint_scale"]) == 17 and stored["fitted_on"] > 0 and stored["checked_on"] > 0
    assert read_checkpoint(out, expand=False)["format"] == "rlepose-int8-weights-v1"  # still compact
    # on the checking half, the calibrated intervals are closer to their levels than before
    for level in ("0.5", "0.8", "0.95"):
        before = abs(stored["coverage_before"][level]["overall"] - float(level))
        after = abs(stored["coverage_after"][level]["overall"] - float(level))
        assert after < before
    # the predictor's σ̂ is the plain one times each joint's scale; the expected OKS follows
    scale = np.asarray(stored["joint_scale"])
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 160, 3), dtype=np.uint8)
    a = PosePredictor.from_checkpoint(plain, precision="fp32", detector=None).predict(image, [[20, 10, 80, 170]])[0]
    b = PosePredictor.from_checkpoint(out, precision="fp32", detector=None).predict(image, [[20, 10, 80, 170]])[0]
    assert np.allclose(b.sigma, a.sigma * scale[:, None]) and b.expected_oks != a.expected_oks
    # exported graphs carry it, and the ONNX predictor applies it
    graph = export_checkpoint(out, tmp_path / "m.onnx")
    assert read_onnx_metadata(graph)["sigma_calibration"]["joint_scale"] == stored["joint_scale"]
    c = PosePredictor.from_onnx(graph, detector=None).predict(image, [[20, 10, 80, 170]])[0]
    assert np.allclose(c.sigma, b.sigma, rtol=1e-3)
    # a compact copy of a calibrated checkpoint keeps it
    small = save_compact(read_checkpoint(out), tmp_path / "small.pt")
    assert read_checkpoint(small)["sigma_calibration"] == stored
    with pytest.raises(ValueError, match="heatmap"):
        from rlepose.analysis.calibration import calibrate_checkpoint
        from rlepose.config import load_config

        calibrate_checkpoint(plain, load_config(config, ["model.head=heatmap"]))


def test_the_shipped_model_is_calibrated():
    from rlepose.hub import SHIPPED_PATH

    stored = read_checkpoint(SHIPPED_PATH)["sigma_calibration"]
    after = stored["coverage_after"]
    assert all(abs(after[str(level)]["overall"] - level) <= 0.05 for level in (0.5, 0.8, 0.95))
    predictor = PosePredictor.from_checkpoint(SHIPPED_PATH, precision="fp32", detector=None)
    assert np.allclose(predictor.sigma_scale, np.asarray(stored["joint_scale"]) * stored["scale_per_sigma"])
