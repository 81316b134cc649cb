"""rlepose analyze: numbers it must get right on densities known in closed form."""
import json
import math

import pytest
import torch

from rlepose.analysis.density import analyze_density
from rlepose.flows import RealNVP
from rlepose.losses import RLELoss


def test_density_of_a_known_flow_and_its_fits(tmp_path):
    """An identity flow on a base of std 0.8 is N(0, 0.64 I): the Gaussian fit finds σ = 0.8,
    the Laplace fit b = 0.8·√(2/π), kurtosis 3, and the Gaussian fits it exactly."""
    loss = RLELoss(2, flow=RealNVP(2, zero_init=True, base_std=0.8), scale="q")
    out = analyze_density(loss, tmp_path, residuals=torch.randn(500, 2).numpy() * 0.8)
    for f in out["fits"]:
        assert f["gaussian_sigma"] == pytest.approx(0.8, rel=1e-3)
        assert f["laplace_b"] == pytest.approx(0.8 * math.sqrt(2 / math.pi), rel=1e-3)
        assert f["kurtosis"] == pytest.approx(3.0, rel=1e-2)
        assert f["loglik_gaussian"] == pytest.approx(f["loglik_model"], abs=1e-3)
        assert f["loglik_laplace"] < f["loglik_model"] - 0.02
    assert (tmp_path / "density.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "density.json").read_text())["residuals"]["n"] == 500


def test_printed_eq8_density_is_q_times_g_normalized(tmp_path):
    """Eq. 8 with an identity unit flow: Laplace × Gaussian per coordinate, renormalized; its
    mean absolute deviation by quadrature of the closed form."""
    loss = RLELoss(2, flow=RealNVP(2, zero_init=True), scale="joint")
    fits = analyze_density(loss, tmp_path)["fits"]
    x = torch.linspace(-8, 8, 160001, dtype=torch.float64)
    w = torch.exp(-x.abs() - 0.5 * x**2)
    assert fits[0]["mean_abs"] == pytest.approx(((w * x.abs()).sum() / w.sum()).item(), rel=2e-3)


def test_cli_analyze_density_on_a_checkpoint(tmp_path, capsys):
    from rlepose.cli import main
    from rlepose.training.config import config_from_dict, config_to_dict
    from rlepose.training.module import PoseModule

    for loss in ("rle", "l1"):
        cfg = config_from_dict({"name": "a", "model": {"backbone": "resnet18"}, "loss": {"name": loss}})
        torch.save({"state_dict": PoseModule.from_config(cfg).state_dict(),
                    "hyper_parameters": {"config": config_to_dict(cfg)}}, tmp_path / f"{loss}.ckpt")
    assert main(["analyze", "density", "--checkpoint", str(tmp_path / "rle.ckpt"), "--out", str(tmp_path / "o")]) == 0
    assert "kurtosis" in capsys.readouterr().out and (tmp_path / "o" / "density.png").is_file()
    # the default flow starts flat on a base of std 4: that is what an untrained model shows
    fits = json.loads((tmp_path / "o" / "density.json").read_text())["fits"]
    assert fits[0]["kurtosis"] < 3.0  # a wide Gaussian seen through the ±4 window is platykurtic
    assert main(["analyze", "density", "--checkpoint", str(tmp_path / "l1.ckpt"), "--out", str(tmp_path / "p")]) == 2
    assert "no learned density" in capsys.readouterr().err
