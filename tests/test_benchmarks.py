"""The benchmark scripts run end to end in a small form and write the JSON they promise."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], check=True, cwd=ROOT,
                   capture_output=True, text=True, timeout=600)


def test_loss_speed_small(tmp_path):
    out = tmp_path / "loss.json"
    run_script("loss_speed.py", "--repeats", "3", "--out", str(out))
    data = json.loads(out.read_text())
    assert {r["loss"] for r in data["loss_speed"]} >= {"l1", "rle", "dle"}
    row = next(r for r in data["flow_cost"] if r["config"] == "3x64")
    assert row["params"] == 53784


@pytest.mark.slow
def test_inference_speed_small(tmp_path):
    out = tmp_path / "inf.json"
    run_script("inference_speed.py", "--repeats", "2", "--batch", "2", "--yolox-arch", "yolox-tiny", "--out", str(out))
    data = json.loads(out.read_text())
    assert {(r["model"], r["head"], r["backend"]) for r in data["rows"]} == {
        (m, h, b) for m, h in (("ResNet-50", "regression"), ("ResNet-50", "heatmap"), ("MobileNetV2", "regression"))
        for b in ("eager (before)", "eager (optimized)", "onnxruntime")}
    assert all(r["max_abs_diff"] < 1e-3 for r in data["rows"])  # every backend computes the same model
    assert data["matmul_peak_gflops"] > 0 and all(r["peak_fraction"] > 0 for r in data["rows"])
    assert data["ratios"]["macs_heatmap_over_regression"] == pytest.approx(9.65 / 4.0, rel=0.01)
    assert {(p["detector"], p["pose_backend"]) for p in data["photos"]} == {
        (d, b) for d in ("hog", "yolox-tiny (arch.)") for b in ("torch", "onnxruntime")}
    assert all(p["photo_ms"] > p["pose_ms"] > 0 and p["video_fps"] > 0 for p in data["photos"])
    assert [p["predictor"] for p in data["predictors"]][:3] == [
        "previous predictor", "PosePredictor torch", "PosePredictor onnxruntime"]


def test_yolox_architecture_matches_the_paper_and_runs_through_the_detector(tmp_path):
    """The timing stand-in is YOLOX: parameters and FLOPs of the YOLOX paper's table (80 classes,
    640×640: YOLOX-s 9.0M / 26.8 GFLOPs; tiny at 416: 5.06M / 6.45 GFLOPs), and its ONNX export
    goes through the detector's raw-output decoding."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from yolox_arch import export_yolox, yolox

    from rlepose.detection import YOLOXDetector
    from rlepose.models.complexity import complexity

    for name, params, gflops in (("yolox-s", 8.97e6, 26.8), ("yolox-tiny", 5.06e6, 6.45)):
        model, side = yolox(name, num_classes=80)
        c = complexity(model, (1, 3, side, side))
        assert c.params == pytest.approx(params, rel=2e-3)
        assert c.flops / 1e9 == pytest.approx(gflops, rel=1e-2)
    detector = YOLOXDetector(export_yolox("yolox-tiny", tmp_path / "yolox.onnx"))
    assert detector.input_size == (416, 416)
    boxes, scores = detector(np.zeros((480, 640, 3), np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)  # the low objectness bias: no random boxes


@pytest.mark.slow
def test_train_speed_small(tmp_path):
    out = tmp_path / "train.json"
    run_script("train_speed.py", "--steps", "2", "--batch", "4", "--input", "64", "48", "--workers", "0",
               "--data", str(tmp_path / "data"), "--out", str(out))
    data = json.loads(out.read_text())
    assert set(data["images_per_s"]) == {"pipeline", "l1", "rle", "rle_channels_last", "rle_live"}
    assert data["rle_over_l1"] > 0 and data["ratios"]["live_over_preloaded"] > 0


@pytest.mark.slow
def test_lifting_and_paper_tables_small(tmp_path, fixtures):  # lifting.py projects through the H36M fixture cameras
    out = tmp_path / "lift.json"
    run_script("lifting.py", "--rows", "l2,rle", "--seeds", "0", "1", "--epochs", "1", "--train-poses", "2000",
               "--test-poses", "500", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == ["l2", "rle"] and all(len(r["runs"]) == 2 for r in rows)
    for r in rows:
        mpjpe = [run["MPJPE"] for run in r["runs"]]
        assert r["mean"]["MPJPE"] == pytest.approx(sum(mpjpe) / 2) and r["std"]["MPJPE"] >= 0
        assert r["mean"]["sigma_mean"] > 0 and r["mean"]["abs_error_mean"] > 0
    out = tmp_path / "tables.json"
    run_script("paper_tables.py", "--rows", "rle,l1", "--seeds", "0", "--epochs", "1", "--train-images", "16",
               "--val-images", "8", "--dir", str(tmp_path / "pt"), "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == ["rle", "l1"] and rows[0]["paper_AP"] == 70.5
    assert rows[0]["mean"]["sigma_over_error"] > 0 and "sigma_over_error" in rows[1]["mean"]
