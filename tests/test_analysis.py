"""rlepose analyze: numbers it must get right on densities known in closed form."""
import json
import math

import pytest
import torch

from rlepose.analysis.density import analyze_density
from rlepose.flows import RealNVP
from rlepose.losses import CalibratedRLELoss, PaperRLELoss


def test_density_of_a_known_flow_and_its_fits(tmp_path):
    """An identity flow on a base of std 0.8 is N(0, 0.64 I): the Gaussian fit finds σ = 0.8,
    the Laplace fit b = 0.8·√(2/π), kurtosis 3, and the Gaussian fits it exactly."""
    loss = CalibratedRLELoss(2, flow=RealNVP(2, zero_init=True, base_std=0.8))
    torch.manual_seed(0)
    out = analyze_density(loss, tmp_path, residuals=torch.randn(500, 2).numpy() * 0.8)
    for f in out["fits"]:
        assert f["gaussian_sigma"] == pytest.approx(0.8, rel=1e-3)
        assert f["laplace_b"] == pytest.approx(0.8 * math.sqrt(2 / math.pi), rel=1e-3)
        assert f["kurtosis"] == pytest.approx(3.0, rel=1e-2)
        assert f["loglik_gaussian"] == pytest.approx(f["loglik_model"], abs=1e-3)
        assert f["loglik_laplace"] < f["loglik_model"] - 0.02
    assert (tmp_path / "density.png").stat().st_size > 10_000
    residuals = json.loads((tmp_path / "density.json").read_text())["residuals"]
    assert residuals["n"] == 500 and residuals["nll_model"] < residuals["nll_laplace_fit"]


def test_residual_likelihoods_of_laplace_residuals():
    """Laplace(0, b) residuals: kurtosis 6; per coordinate the best Laplace's NLL is 1 + log 2b,
    the best Gaussian's (σ² = 2b²) ½ + ½ log(4πb²); the flat-start flow (identity on N(0, 4²))
    scores ½ E x²/16 + ½ log(32π) = b²/16 + ½ log(32π)."""
    from rlepose.analysis.density import residual_likelihoods

    b, n = 0.7, 400_000
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.0, b).sample((n, 2)).numpy()
    r = residual_likelihoods(CalibratedRLELoss(2), x)
    assert r["n"] == n and r["kurtosis"] == pytest.approx([6.0, 6.0], rel=0.05)
    assert r["nll_laplace_fit"] == pytest.approx(2 * (1 + math.log(2 * b)), abs=5e-3)
    assert r["nll_gaussian_fit"] == pytest.approx(2 * (0.5 + 0.5 * math.log(4 * math.pi * b * b)), abs=5e-3)
    assert r["nll_model"] == pytest.approx(2 * (b * b / 16 + 0.5 * math.log(32 * math.pi)), abs=5e-3)
    assert r["nll_laplace_fit"] < r["nll_gaussian_fit"] < r["nll_model"]
    # a coordinate leaves the ±4 window with probability e^{-4/b}; a joint when either does
    assert r["beyond_window"] == pytest.approx(1 - (1 - math.exp(-4 / b)) ** 2, abs=2e-3)


def test_printed_eq8_density_is_q_times_g_normalized(tmp_path):
    """Eq. 8 with an identity unit flow: Laplace × Gaussian per coordinate, renormalized; its
    mean absolute deviation by quadrature of the closed form."""
    loss = PaperRLELoss(2, flow=RealNVP(2, zero_init=True))
    fits = analyze_density(loss, tmp_path)["fits"]
    x = torch.linspace(-8, 8, 160001, dtype=torch.float64)
    w = torch.exp(-x.abs() - 0.5 * x**2)
    assert fits[0]["mean_abs"] == pytest.approx(((w * x.abs()).sum() / w.sum()).item(), rel=2e-3)


def test_cli_analyze_density_on_a_checkpoint(tmp_path, capsys):
    from rlepose.cli import main
    from rlepose.config import config_from_dict, config_to_dict
    from rlepose.training.module import PoseModule

    for loss in ("rle_calibrated", "l1"):
        cfg = config_from_dict({"name": "a", "model": {"backbone": "resnet18"}, "loss": {"name": loss}})
        torch.save({"state_dict": PoseModule.from_config(cfg).state_dict(),
                    "hyper_parameters": {"config": config_to_dict(cfg)}}, tmp_path / f"{loss}.ckpt")
    assert main(["analyze", "density", "--checkpoint", str(tmp_path / "rle_calibrated.ckpt"), "--out", str(tmp_path / "o")]) == 0
    assert "kurtosis" in capsys.readouterr().out and (tmp_path / "o" / "density.png").is_file()
    # the default flow starts flat on a base of std 4: that is what an untrained model shows
    fits = json.loads((tmp_path / "o" / "density.json").read_text())["fits"]
    assert fits[0]["kurtosis"] < 3.0  # a wide Gaussian seen through the ±4 window is platykurtic
    assert main(["analyze", "density", "--checkpoint", str(tmp_path / "l1.ckpt"), "--out", str(tmp_path / "p")]) == 2
    assert "no learned density" in capsys.readouterr().err


# --- calibration -----------------------------------------------------------------------------

import numpy as np  # noqa: E402

from rlepose.analysis.calibration import (analyze_arrays, central_intervals, correlations,  # noqa: E402
                                          keypoint_similarity, rankdata)


def test_intervals_and_coverage_of_a_known_density():
    """The default flow at initialization is N(0, 4² I): central 50/80/95% intervals ±0.674·4,
    ±1.282·4, ±1.960·4, E|x̄| = 4·√(2/π); labels drawn from that law are covered at the nominal
    rates, and the reliability bins sit on the diagonal."""
    loss = CalibratedRLELoss(2, flow=RealNVP(2, zero_init=True, base_std=4.0))
    iv = central_intervals(loss)
    for level, z in ((0.5, 0.6745), (0.8, 1.2816), (0.95, 1.9600)):
        lo, hi = iv[level]
        assert hi == pytest.approx([4 * z] * 2, abs=0.06) and lo == pytest.approx([-4 * z] * 2, abs=0.06)
    assert iv["mean_abs"] == pytest.approx([4 * math.sqrt(2 / math.pi)] * 2, rel=5e-3)
    rng = np.random.default_rng(0)
    n, k = 4000, 17
    sigma = rng.uniform(0.005, 0.05, (n, k, 2))
    target = rng.uniform(-0.4, 0.4, (n, k, 2))
    mu = target + sigma * rng.normal(0, 4.0, (n, k, 2))
    weight = (rng.random((n, k)) < 0.8).astype(float)
    size = np.full((n, 2), [96.0, 128.0])
    area = np.full(n, 5000.0)
    out = analyze_arrays(mu, sigma, target, weight, size, area, np.full(k, 0.05), iv)
    for level in (0.5, 0.8, 0.95):
        assert out["coverage"][str(level)]["overall"] == pytest.approx(level, abs=0.01)
        assert out["coverage"][str(level)]["per_joint"][3] == pytest.approx(level, abs=0.04)
    for b in out["reliability"]["bins"]:
        assert b["observed"] == pytest.approx(b["predicted"], rel=0.06)
    # a model whose σ̂ is half its real error covers far less than nominal
    half = analyze_arrays(mu, sigma / 2, target, weight, size, area, np.full(k, 0.05), iv)
    assert half["coverage"]["0.5"]["overall"] < 0.3
    # σ̂ carries the error here, so confidence (1 − mean σ̂) and OKS go together; a σ̂ drawn
    # independently of the error (same values, other instances) carries nothing
    assert out["instance_confidence_vs_oks"]["spearman"] > 0.3
    blind = analyze_arrays(mu, sigma[rng.permutation(n)], target, weight, size, area, np.full(k, 0.05), iv)
    assert abs(blind["instance_confidence_vs_oks"]["spearman"]) < 0.05


def test_rank_correlations_and_oks_by_hand():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    b = a + rng.normal(size=200)
    b[:20] = b[0]  # ties
    assert np.allclose(rankdata(b), scipy_stats.rankdata(b))
    c = correlations(a, b)
    assert c["spearman"] == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)
    assert c["pearson"] == pytest.approx(scipy_stats.pearsonr(a, b).statistic, abs=1e-12)
    assert math.isnan(correlations(a, np.ones(200))["pearson"])
    # one joint 3 px off (0.03 normalized × 100 px), area 100 px², σ = 0.1: exp(−9 / (2·100·0.2²))
    ks = keypoint_similarity(np.array([[[0.03, 0.0]]]), np.zeros((1, 1, 2)), np.array([[100.0, 100.0]]),
                             np.array([100.0]), np.array([0.1]))
    assert ks[0, 0] == pytest.approx(math.exp(-9 / (2 * 100 * 0.2**2)))


def test_cli_analyze_calibration_on_rendered_data(tmp_path, capsys):
    from rlepose.cli import main
    from rlepose.data.synthetic import SyntheticConfig, write_dataset
    from rlepose.config import config_from_dict, config_to_dict
    from rlepose.training.module import PoseModule

    write_dataset(tmp_path / "data", SyntheticConfig(num_images=6, seed=5), "val")
    cfg = config_from_dict({"name": "c", "model": {"backbone": "resnet18"}, "transform": {"input_size": [64, 48]},
                            "data": {"root": str(tmp_path / "data"), "val_ann": "val.json", "val_images": "val",
                                     "num_workers": 0}})
    torch.save({"state_dict": PoseModule.from_config(cfg).state_dict(),
                "hyper_parameters": {"config": config_to_dict(cfg)}}, tmp_path / "m.ckpt")
    (tmp_path / "c.json").write_text(json.dumps(config_to_dict(cfg)))
    assert main(["analyze", "calibration", "--checkpoint", str(tmp_path / "m.ckpt"), "--config",
                 str(tmp_path / "c.json"), "--out", str(tmp_path / "o")]) == 0
    assert "coverage of central intervals" in capsys.readouterr().out
    summary = json.loads((tmp_path / "o/calibration.json").read_text())
    assert summary["crops"] >= 6 and len(summary["joint_confidence_vs_similarity"]) == 17
    assert (tmp_path / "o/calibration.png").stat().st_size > 10_000


# --- occlusion and truncation ------------------------------------------------------------------

from torch import nn  # noqa: E402

from rlepose.analysis.occlusion import gray_value, occlusion_tables  # noqa: E402
from rlepose.analysis.truncation import cut_box, pck_inside_outside, truncation_table  # noqa: E402


class _Lookup(nn.Module):
    """µ̂ fixed at K points; σ̂ of joint k = how far the image is from gray in a 5×5 window at
    its point: a model that sees exactly there and nowhere else."""

    def __init__(self, points_px, input_size, sees=True):
        super().__init__()
        self.points, self.size, self.sees = points_px, input_size, sees
        self.is_heatmap = False

    def inference(self, images):
        h, w = self.size
        n, k = len(images), len(self.points)
        kp = torch.tensor([[(x / w - 0.5, y / h - 0.5) for x, y in self.points]]).float().expand(n, k, 2)
        sigma = torch.zeros(n, k, 2)
        if self.sees:
            for i, (x, y) in enumerate(self.points):
                window = images[:, :, y - 2 : y + 3, x - 2 : x + 3] - gray_value()
                sigma[:, i] = window.abs().mean(dim=(1, 2, 3))[:, None]
        return {"keypoints": kp, "sigma": sigma, "joint_confidence": 1 - sigma.mean(-1)}


def test_occlusion_table_lands_on_the_occluded_joint():
    h, w = 64, 48
    points = [(8, 8), (40, 8), (8, 56), (40, 56), (24, 32)]
    k = len(points)
    target = torch.tensor([[(x / w - 0.5, y / h - 0.5) for x, y in points]]).float().expand(3, k, 2)
    weight = torch.ones(3, k)
    weight[0, 4] = 0  # an unlabelled joint is never occluded and never counted
    batch = {"image": torch.randn(3, 3, h, w) + 1.0, "target": target, "target_weight": weight}
    # square side 0.2 · 64 / 1.25 = 10.24 px: covers a joint's 5×5 window and no other
    table = occlusion_tables(_Lookup(points, (h, w)), [batch], (h, w), size=0.2)
    unc, err = np.array(table["delta_uncertainty"]), np.array(table["delta_error_px"])
    assert table["square_side_px"] == pytest.approx(10.24)
    assert (np.diag(unc) < -0.5).all() and np.abs(unc - np.diag(np.diag(unc))).max() == 0
    assert np.abs(err).max() == 0 and table["occluded_crops"] == [3, 3, 3, 3, 2]
    blind = occlusion_tables(_Lookup(points, (h, w), sees=False), [batch], (h, w), size=0.2)
    assert np.abs(np.array(blind["delta_uncertainty"])).max() == 0 and blind["uncertainty_rise_on_occluded_joint"] == 0


def test_truncation_pck_against_a_model_that_predicts_the_crop_centre(tmp_path):
    """Predicting the crop centre, which is the centre of the cut box: the joints within 0.1 ×
    the box's longer side of that point, counted by hand, are the hits."""
    from rlepose.data.keypoints import COCO_KEYPOINTS
    from rlepose.data.synthetic import SyntheticConfig, write_dataset
    from rlepose.data.datasets import load_coco_instances
    from rlepose.data.transforms import TopDownTransform, TransformConfig

    assert list(cut_box(np.array([10.0, 20, 30, 100]), 0.25)) == [10, 20, 30, 75]
    ann = write_dataset(tmp_path, SyntheticConfig(num_images=8, seed=4), "val")
    instances = load_coco_instances(ann, tmp_path / "val")

    class Centre(nn.Module):
        def inference(self, images):
            return {"keypoints": torch.zeros(len(images), 17, 2)}

    transform = TopDownTransform(TransformConfig(input_size=(64, 48)), COCO_KEYPOINTS, train=False)
    rows = truncation_table(Centre(), instances, transform, fractions=(0.0, 0.4))
    for row, f in zip(rows, (0.0, 0.4)):
        hits = n = 0
        for inst in instances:
            x, y, w, h = inst.box
            centre = np.array([x + w / 2, y + h * (1 - f) / 2])
            d = np.linalg.norm(inst.keypoints - centre, axis=1)
            ok = inst.visible > 0
            hits += (d[ok] <= 0.1 * max(w, h) + 0.05).sum()  # pixel-centre rounding of the crop centre
            n += ok.sum()
        total = row["inside"]["n"] + row["outside"]["n"]
        assert total == n
        pck = (row["inside"]["pck"] * row["inside"]["n"] + (row["outside"]["pck"] * row["outside"]["n"] if row["outside"]["n"] else 0)) / total
        assert pck * total == pytest.approx(hits, abs=2)
    assert rows[1]["outside"]["n"] > rows[0]["outside"]["n"]  # cutting 40% leaves legs outside
    out = pck_inside_outside(np.zeros((1, 2, 2)), np.array([[[0.0, 1.0], [0.0, 3.0]]]), np.array([[True, True]]),
                             np.array([[True, False]]), np.array([2.0]))
    assert out == {"inside": {"pck": 1.0, "n": 1}, "outside": {"pck": 0.0, "n": 1}}


def test_cli_occlusion_and_truncation_for_regression_and_heatmap(tmp_path, capsys):
    from rlepose.cli import main
    from rlepose.data.synthetic import SyntheticConfig, write_dataset
    from rlepose.config import config_from_dict, config_to_dict
    from rlepose.training.module import PoseModule

    write_dataset(tmp_path / "data", SyntheticConfig(num_images=16, seed=6), "val")
    ckpts = []
    for head, loss in (("regression", "rle"), ("heatmap", "heatmap_mse")):
        cfg = config_from_dict({"name": head, "model": {"backbone": "resnet18", "head": head}, "loss": {"name": loss},
                                "transform": {"input_size": [64, 48]},
                                "data": {"root": str(tmp_path / "data"), "val_ann": "val.json", "val_images": "val",
                                         "num_workers": 0}})
        torch.save({"state_dict": PoseModule.from_config(cfg).state_dict(),
                    "hyper_parameters": {"config": config_to_dict(cfg)}}, tmp_path / f"{head}.ckpt")
        (tmp_path / f"{head}.json").write_text(json.dumps(config_to_dict(cfg)))
        ckpts.append(str(tmp_path / f"{head}.ckpt"))
        assert main(["analyze", "occlusion", "--checkpoint", ckpts[-1], "--config", str(tmp_path / f"{head}.json"),
                     "--out", str(tmp_path / head)]) == 0
        r = json.loads((tmp_path / head / "occlusion.json").read_text())
        assert np.array(r["delta_uncertainty"]).shape == (17, 17) and (tmp_path / head / "occlusion.png").is_file()
        c = r["labelled_occluded_vs_visible"]  # the rendered data marks its occluded joints
        ratios = [v for v in c["per_joint_ratio"] if v is not None]
        assert len(c["per_joint_ratio"]) == 17 and len(ratios) == c["joints_compared"]
        assert c["per_joint_ratio_mean"] == pytest.approx(np.mean(ratios))
        assert c["joints_rising"] == sum(v > 1 for v in ratios)
    assert "occluding a joint changes" in capsys.readouterr().out
    assert main(["analyze", "truncation", "--checkpoint", *ckpts, "--config", str(tmp_path / "regression.json"),
                 "--out", str(tmp_path / "t")]) == 0
    s = json.loads((tmp_path / "t/truncation.json").read_text())
    assert len(s["tables"]) == 2 and all(len(rows) == 4 for rows in s["tables"].values())


def test_expected_oks_of_a_calibrated_model_matches_its_oks():
    """Errors drawn from the Laplace law σ̂ predicts: the mean expected OKS is the mean OKS, and
    people with wider σ̂ expect (and get) less."""
    rng = np.random.default_rng(1)
    n, k = 3000, 17
    sigma = rng.uniform(0.005, 0.08, (n, 1, 1)) * np.ones((n, k, 2))
    size = np.tile([[48.0, 64.0]], (n, 1))
    target = rng.uniform(-0.4, 0.4, (n, k, 2))
    mu = target + rng.laplace(0.0, sigma)
    weight = np.ones((n, k))
    area = np.full(n, 40.0 * 55.0)
    sigmas = np.asarray(__import__("rlepose").data.keypoints.COCO_KEYPOINTS.sigmas, float)
    loss = CalibratedRLELoss(2, flow=RealNVP(2, zero_init=True, base_std=4.0))
    s = analyze_arrays(mu, sigma, target, weight, size, area, sigmas, central_intervals(loss))
    assert s["mean_expected_oks"] == pytest.approx(s["mean_oks"], abs=0.01)
    assert s["expected_oks_vs_oks"]["pearson"] > 0.8
