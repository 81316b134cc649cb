"""The benchmark scripts run end to end in a small form and write the JSON they promise."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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
    assert [p["predictor"] for p in data["predictors"]] == [
        "previous predictor", "PosePredictor torch", "PosePredictor onnxruntime", "PosePredictor torch bf16",
        "MMPose inference_topdown (carried over)"]


def test_interleaved_medians_time_each_function_in_rounds_of_blocks():
    """Calls go a-block, b-block, a-block, b-block (warm-up calls untimed), and each median is
    that function's own duration."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import time

    from common import interleaved_medians

    calls = []
    fns = {"a": lambda: calls.append("a") or time.sleep(0.002), "b": lambda: calls.append("b") or time.sleep(0.02)}
    medians = interleaved_medians(fns, rounds=2, per_block=2, warmup=1, pause=0.0)
    assert "".join(calls) == "aaabbbaaabbb"
    # each its own duration (sleeps only overshoot, and a loaded machine may stretch both)
    assert medians["a"] >= 0.002 and medians["b"] >= 0.02 and medians["b"] > medians["a"]


def test_yolox_architecture_matches_the_paper_and_runs_through_the_detector(tmp_path):
    """The timing stand-in is YOLOX: parameters and FLOPs of the YOLOX paper's table (80 classes,
    640×640: YOLOX-s 9.0M / 26.8 GFLOPs; tiny at 416: 5.06M / 6.45 GFLOPs), and its ONNX export
    goes through the detector's raw-output decoding."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from yolox_arch import export_yolox, yolox

    from rlepose.inference.detectors import YOLOXDetector
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
def test_train_speed_small(tmp_path, fixtures):
    """Every section runs on the CPU and writes its rows and the ratios the goals are stated in;
    the default RLE loss runs in few operators, and a warm compile cache shortens its first call."""
    out = tmp_path / "train.json"
    run_script("train_speed.py", "--device", "cpu", "--steps", "3", "--batches", "4", "--input", "64", "48",
               "--workers", "0", "--models", "l1,rle", "--instances", "64", "--photos", str(fixtures / "coco"),
               "--loss-n", "32", "--out", str(out))
    data = json.loads(out.read_text())
    sections = {r["section"] for r in data["rows"]}
    assert sections == {"step", "loss", "compile", "sample", "pipeline", "train"}
    assert {(r["model"], r["compile"], r["loss_compile"]) for r in data["rows"] if r["section"] == "step"} == {
        ("l1", False, None), ("rle", False, True), ("rle", False, False)}
    assert all(r.get("images_per_s", 1) > 0 and r.get("ms", 1) > 0 for r in data["rows"])
    assert {"l1_step_over_rle_step[batch 4, fp32]", "l1_step_over_rle_step[batch 4, fp32, eager loss]",
            "rle_loss_over_laplace_nll[N = 32, default]", "rle_loss_over_flow_matmul_floor[N = 32, default]",
            "rle_loss_over_flow_matmul_floor[N = 32, eager]", "sample_over_bare_decode_warp"} <= set(data["ratios"])
    loss = {(r["loss"], r["compile"]): r for r in data["rows"] if r["section"] == "loss"}
    assert data["ratios"]["rle_loss_over_laplace_nll[N = 32, default]"] == \
        loss[("rle", True)]["ms"] / loss[("laplace_nll", False)]["ms"]
    for name in ("rle", "rle_calibrated"):
        assert loss[(name, True)]["top_level_aten_ops"] <= 40 < 200 < loss[(name, False)]["top_level_aten_ops"]
    first = {r["cache"]: r["seconds"] for r in data["rows"] if r["section"] == "compile"}
    assert 0 < first["warm"] < first["cold"]


@pytest.mark.slow
def test_lifting_and_paper_tables_small(tmp_path, fixtures):  # lifting.py projects through the H36M fixture cameras
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import device_name

    out = tmp_path / "lift.json"
    run_script("lifting.py", "--rows", "l2,rle", "--seeds", "0", "1", "--epochs", "1", "--train-poses", "2000",
               "--test-poses", "500", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == ["l2", "rle"] and all(len(r["runs"]) == 2 for r in rows)
    for r in rows:
        mpjpe = [run["MPJPE"] for run in r["runs"]]
        assert r["mean"]["MPJPE"] == pytest.approx(sum(mpjpe) / 2) and r["std"]["MPJPE"] >= 0
        assert r["mean"]["sigma_mean"] > 0 and r["mean"]["abs_error_mean"] > 0
        assert all(run["device"] == device_name() for run in r["runs"])  # what trained it, for paired.py
    out = tmp_path / "tables.json"
    run_script("paper_tables.py", "--rows", "rle,l1", "--seeds", "0", "--epochs", "1", "--train-images", "16",
               "--val-images", "8", "--dir", str(tmp_path / "pt"), "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == ["rle", "l1"] and rows[0]["paper_AP"] == 70.5
    assert rows[0]["mean"]["sigma_over_error"] > 0 and "sigma_over_error" in rows[1]["mean"]
    assert all(0 <= run["AP_true"] <= 1 for r in rows for run in r["runs"])  # scored against the true positions
    # a row started from another run's backbone (the heatmap-pretrained protocol's plumbing), and
    # the FC head trained with the demo's short-schedule augmentation
    pre = tmp_path / "pre.json"
    ckpt = tmp_path / "pt/runs/l1_seed0_e1/checkpoints/last.ckpt"
    run_script("paper_tables.py", "--rows", "laplace_nll", "--seeds", "0", "--epochs", "1", "--train-images", "16",
               "--val-images", "8", "--dir", str(tmp_path / "pt"), "--out", str(pre), "--pretrained", str(ckpt),
               "--short-augmentation")
    args = json.loads(pre.read_text())["args"]
    assert args["pretrained"] == str(ckpt) and args["short_augmentation"]
    run = tmp_path / "pt/runs/laplace_nll_seed0_e1_pretrained_short_aug"
    assert (run / "checkpoints/last.ckpt").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["head"] == "regression"
    assert {k: config["transform"][k] for k in ("rotation_prob", "half_body_prob", "scale_factor", "color_jitter")} == \
        {"rotation_prob": 0.0, "half_body_prob": 0.0, "scale_factor": 0.15, "color_jitter": 0.0}
    # the same runs as if a second process had made seed 1: --merge pools them per row
    data = json.loads(out.read_text())
    for r in data["rows"]:
        r["runs"] = [{**run, "seed": 1, "AP": run["AP"] + 0.1} for run in r["runs"]]
    other = tmp_path / "seed1.json"
    other.write_text(json.dumps({**data, "args": {**data["args"], "seeds": [1]}}))
    run_script("paper_tables.py", "--merge", str(out), str(other), "--out", str(tmp_path / "merged.json"))
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["args"]["seeds"] == [0, 1] and [r["row"] for r in merged["rows"]] == ["rle", "l1"]
    for r, alone in zip(merged["rows"], rows):
        assert [run["seed"] for run in r["runs"]] == [0, 1]
        assert r["mean"]["AP"] == pytest.approx(alone["mean"]["AP"] + 0.05)
        assert r["std"]["AP"] == pytest.approx(0.1 / 2 ** 0.5)


@pytest.mark.parametrize("flag, says", [("--official-head", "integral head"), ("--short-augmentation", "already trains with it")])
def test_paper_tables_refuses_fc_head_options_on_the_integral_model(tmp_path, flag, says):
    with pytest.raises(subprocess.CalledProcessError) as err:
        run_script("paper_tables.py", "--demo-model", flag, "--dir", str(tmp_path), "--out", str(tmp_path / "x.json"))
    assert says in err.value.stderr and not (tmp_path / "x.json").exists()


def test_merge_refuses_runs_made_with_other_settings(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import merge_results

    def part(name: str, row: str, seeds: list[int], epochs: int = 24, loss: dict | None = None) -> str:
        runs = [{"seed": s, "AP": 0.1 * (s + 1)} for s in seeds]
        (tmp_path / name).write_text(json.dumps({
            "args": {"epochs": epochs, "rows": row, "seeds": seeds, "out": name},
            "rows": [{"row": row, "loss": loss or {"name": row}, "runs": runs, "mean": {}, "std": {}, "paper_AP": 1.0}]}))
        return str(tmp_path / name)

    args, rows = merge_results([part("a.json", "rle", [2]), part("b.json", "l1", [0]), part("c.json", "rle", [0, 1])],
                               ("AP",))
    assert args["rows"] == "rle,l1" and args["seeds"] == [0, 1, 2] and args["epochs"] == 24
    assert [run["seed"] for run in rows[0]["runs"]] == [0, 1, 2] and rows[0]["paper_AP"] == 1.0
    assert rows[0]["mean"]["AP"] == pytest.approx(0.2) and rows[0]["std"]["AP"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="other settings"):
        merge_results([part("a.json", "rle", [0]), part("d.json", "l1", [0], epochs=4)], ("AP",))
    # a row run with another loss section (a default that changed between the runs) is not pooled
    with pytest.raises(ValueError, match="run with loss"):
        merge_results([part("a.json", "rle", [0]), part("h.json", "rle", [1], loss={"name": "rle", "beta": 1.0})], ("AP",))
    # the same row and seed twice (a rerun on another device) would count that seed twice
    with pytest.raises(ValueError, match=r"seed\(s\) \[1\]"):
        merge_results([part("c.json", "rle", [0, 1]), part("i.json", "rle", [1, 2])], ("AP",))
    # a setting added later: files without it count as its default, files with another value do not merge
    noisy = json.loads(Path(part("e.json", "l1", [3])).read_text())
    for value, name in (("fixed", "f.json"), ("coco", "g.json")):
        (tmp_path / name).write_text(json.dumps({**noisy, "args": {**noisy["args"], "label_noise": value}}))
    args, _ = merge_results([part("a.json", "rle", [0]), str(tmp_path / "f.json")], ("AP",), defaults={"label_noise": "fixed"})
    assert args["label_noise"] == "fixed" and args["seeds"] == [0, 3]
    with pytest.raises(ValueError, match="other settings"):
        merge_results([part("a.json", "rle", [0]), str(tmp_path / "g.json")], ("AP",), defaults={"label_noise": "fixed"})


def test_paired_compares_seeds_run_on_one_device_only(tmp_path):
    def part(name: str, row: str, runs: list[tuple[int, str, float]], epochs: int = 24) -> str:
        (tmp_path / name).write_text(json.dumps({
            "args": {"epochs": epochs, "demo_model": True, "rows": row, "out": name},
            "rows": [{"row": row, "loss": {"name": row}, "mean": {}, "std": {},
                      "runs": [{"seed": s, "device": d, "AP": ap, "MPJPE": 100 * ap} for s, d, ap in runs]}]}))
        return str(tmp_path / name)

    cpu, gpu = "x86_64, 2 cores", "NVIDIA H200"
    files = [part("a.json", "rle", [(0, cpu, 0.50), (1, cpu, 0.47), (2, cpu, 0.52), (3, gpu, 0.49)]),
             part("b.json", "laplace_nll", [(0, gpu, 0.40), (1, cpu, 0.45), (2, cpu, 0.53), (3, cpu, 0.48)]),
             part("c.json", "laplace_nll", [(0, cpu, 0.48), (5, cpu, 0.40)])]
    out = tmp_path / "paired.json"
    run_script("paired.py", "rle", "laplace_nll", *files, "--out", str(out))
    data = json.loads(out.read_text())
    # seed 0 pairs with its CPU partner (not the GPU's 0.40), seed 3 has no same-device pair, seed 5 no rle run
    assert [(p["seed"], p["device"]) for p in data["pairs"]] == [(0, cpu), (1, cpu), (2, cpu)]
    assert data["unpaired_seeds"] == [3, 5] and data["metrics"] == ["AP", "MPJPE"]
    diffs = [0.02, 0.02, -0.01]  # by hand: 0.50 − 0.48, 0.47 − 0.45, 0.52 − 0.53
    mean = sum(diffs) / 3
    se = (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5 / 3 ** 0.5
    ap = data["summary"]["AP"]
    assert ap["mean_diff"] == pytest.approx(0.01) and ap["standard_error"] == pytest.approx(se) and se == pytest.approx(0.01)
    assert (ap["a_above_b"], ap["pairs"]) == (2, 3)
    assert data["summary"]["MPJPE"]["mean_diff"] == pytest.approx(1.0)
    # the same seed twice on one device is ambiguous; files run with other settings do not compare
    dup = part("d.json", "laplace_nll", [(1, cpu, 0.44)])
    for extra, says in ((dup, "seed 1 twice"), (part("e.json", "laplace_nll", [(7, cpu, 0.4)], epochs=4), "other settings")):
        with pytest.raises(subprocess.CalledProcessError) as err:
            run_script("paired.py", "rle", "laplace_nll", *files, extra)
        assert says in err.value.stderr
    # the same run in a merged table and in its part counts once
    run_script("paired.py", "rle", "laplace_nll", *files, files[2], "--out", str(out))
    assert len(json.loads(out.read_text())["pairs"]) == 3


def test_precision_benchmark_compares_every_precision_with_fp32(tmp_path, fixtures):
    """precision.py on the CPU with a checkpoint of one's own: fp32 on ONNX Runtime is the
    reference, fp32 PyTorch agrees with it, bf16 and int8 stay within a few pixels of the crop,
    AP comes from the checkpoint's own val split, and every row has people/s at 1 and 32."""
    import torch

    from rlepose.config import config_from_dict, config_to_dict
    from rlepose.inference.precision import resolve_precision
    from rlepose.training.module import PoseModule

    torch.manual_seed(0)
    cfg = config_from_dict({"name": "p", "model": {"backbone": "resnet18", "head": "integral", "deconv_channels": 16},
                            "data": {"format": "coco", "root": str(fixtures / "coco"), "train_ann": "test_coco.json",
                                     "train_images": ".", "val_ann": "test_coco.json", "val_images": ".",
                                     "val_batch_size": 8, "num_workers": 0},
                            "transform": {"input_size": [64, 48]}})
    module = PoseModule.from_config(cfg)
    ckpt = tmp_path / "p.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": config_to_dict(cfg)}}, ckpt)
    out = tmp_path / "precision.json"
    run_script("precision.py", str(ckpt), "--device", "cpu", "--repeats", "1", "--trust-checkpoint",
               "--speed-backbone", "none", "--out", str(out))
    result = json.loads(out.read_text())
    rows = {(r["precision"], r["backend"]): r for r in result["rows"]}
    assert list(rows) == [("fp32", "onnxruntime"), ("fp32", "torch"), ("bf16", "torch"), ("int8", "onnxruntime")]
    assert rows["fp32", "onnxruntime"]["max_abs_diff_px"] == 0 and rows["fp32", "torch"]["max_abs_diff_px"] < 0.05
    for r in rows.values():
        assert 0 <= r["AP"] <= 1 and r["people_s_32"] > 0 and r["latency_ms_1"] > 0
        assert r["max_abs_diff_px"] < 8 and r["mean_abs_diff_px"] <= r["max_abs_diff_px"]
    auto = resolve_precision(device="cpu")
    assert result["auto"] == {"precision": auto.precision, "backend": auto.backend, "reason": auto.reason}
    assert result["speed_rows"] == [] and "int8_onnxruntime_over_fp32_onnxruntime_32[p.ckpt]" in result["ratios"]


def test_precision_speed_only_times_a_random_model(tmp_path):
    """--speed-only: no checkpoint and no accuracy columns, one row per precision this build runs
    on the CPU (fp32 and bf16 at least; no CUDA graphs there), each with a batch-1 time and a throughput."""
    out = tmp_path / "speed.json"
    run_script("precision.py", "--speed-only", "resnet18", "--input", "64", "48", "--device", "cpu",
               "--batch", "2", "--repeats", "1", "--out", str(out))
    result = json.loads(out.read_text())
    rows = {r["precision"]: r for r in result["rows"]}
    assert result["input"] == [64, 48] and {"fp32", "bf16"} <= set(rows)
    for r in rows.values():
        assert r["ms_batch1"] > 0 and r["crops_per_s"] > 0 and "AP" not in r and "crops_per_s_on_device" not in r
        assert r["cuda_graphs"] is False


def test_gpu_table_of_inference_speed_runs_its_rows(tmp_path):
    """inference_speed.py --device cuda's table (batch-1 ms, crops/s), run here on the CPU, where
    CUDA graphs do not exist: one row per precision, the JSON with its goals."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import argparse

        from inference_speed import GPU_GOALS, gpu_main
    finally:
        sys.path.pop(0)
    out = tmp_path / "gpu.json"
    gpu_main(argparse.Namespace(device="cpu", batch=2, repeats=1, out=str(out)))
    data = json.loads(out.read_text())
    assert data["goals"] == GPU_GOALS and {r["precision"] for r in data["gpu_rows"]} >= {"fp32", "bf16"}
    assert all(r["ms_batch1"] > 0 and r["crops_per_s"] > 0 for r in data["gpu_rows"])


def test_benchmark_readme_is_generated_from_the_json():
    """benchmarks/README.md is exactly what benchmarks/report.py makes of benchmarks/results/*.json,
    and every mean it prints is the JSON's (spot check: each paper-table row's AP)."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import report
    finally:
        sys.path.pop(0)
    text = report.render(root / "benchmarks/results")
    assert (root / "benchmarks/README.md").read_text() == text, "run python benchmarks/report.py"
    data = json.loads((root / "benchmarks/results/paper_tables_demo_e24_cpu.json").read_text())
    for r in data["rows"]:
        assert f"| {r['row']} |" in text and f"{100 * r['mean']['AP']:.1f} ± {100 * r['std']['AP']:.1f}" in text
    assert len((root / "README.md").read_text().splitlines()) <= 300


@pytest.mark.slow
def test_one_stage_benchmark_small(tmp_path):
    """Table 2(d)'s rows over seeds, then the trained model against top-down + the offline detector."""
    out = tmp_path / "one_stage.json"
    run_script("one_stage.py", "--rows", "rle,l1", "--seeds", "0", "1", "--epochs", "1", "--milestones", "[1]",
               "--train-images", "8", "--val-images", "6", "--dir", str(tmp_path / "os"), "--out", str(out))
    data = json.loads(out.read_text())
    assert [r["row"] for r in data["rows"]] == ["rle", "l1"] and data["rows"][0]["paper_AP"] == 67.4
    for r in data["rows"]:
        assert [run["seed"] for run in r["runs"]] == [0, 1]
        assert r["mean"]["AP"] == pytest.approx(np.mean([run["AP"] for run in r["runs"]]))
    versus = tmp_path / "versus.json"
    ckpt = tmp_path / "os/runs/one_stage_rle_seed0_e1/checkpoints/last.ckpt"
    run_script("one_stage.py", "--versus", str(ckpt), "--val-images", "6", "--dir", str(tmp_path / "os"),
               "--out", str(versus))
    rows = json.loads(versus.read_text())["rows"]
    names = [r["pipeline"] for r in rows]
    assert names[0].startswith("one-stage") and any("true boxes" in n for n in names) and any("hog" in n for n in names)
    assert all(0 <= r["AP"] <= 1 and r["images_per_s"] > 0 for r in rows)


@pytest.mark.slow
def test_oct_benchmark_small(tmp_path):
    """Table 18's rows over seeds on generated B-scans, merged from two files, and its report."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import oct_table

    parts = []
    for seed in (0, 1):
        parts.append(tmp_path / f"oct{seed}.json")
        run_script("oct.py", "--rows", "l1,rle", "--seeds", str(seed), "--epochs", "1", "--milestones", "[1]",
                   "--subjects", "10", "--scans", "1", "--dir", str(tmp_path / "oct"), "--out", str(parts[-1]))
    out = tmp_path / "oct.json"
    run_script("oct.py", "--merge", *map(str, parts), "--out", str(out))
    data = json.loads(out.read_text())
    assert [r["row"] for r in data["rows"]] == ["l1", "rle"] and data["rows"][1]["paper_error"] == 3.1
    for r in data["rows"]:
        assert [run["seed"] for run in r["runs"]] == [0, 1]
        assert all(run["mean_abs_error_px"] > 0 and "error_px/BM" in run for run in r["runs"])
        assert r["mean"]["mean_abs_error_px"] == pytest.approx(np.mean([run["mean_abs_error_px"] for run in r["runs"]]))
    text = "\n".join(oct_table("oct.json", data))
    assert "| rle |" in text and "RLE − L1, seed by seed" in text


def test_video_smoothing_small(tmp_path):
    """video_smoothing.py on one short sequence per set: every row scored with its tuned settings."""
    out = tmp_path / "video.json"
    run_script("video_smoothing.py", "--seeds", "0", "--sequences", "1", "--frames", "12", "--tune-seed", "5",
               "--out", str(out))
    data = json.loads(out.read_text())
    rows = {r["row"]: r for r in data["rows"]}
    assert list(rows) == ["raw", "one_euro", "savgol", "kalman_constant", "kalman_sigma", "smoother_sigma"]
    for r in rows.values():
        assert r["mean"]["error_px"] > 0 and r["mean"]["accel_px"] >= 0 and 0 <= r["mean"]["ap"] <= 1
    assert set(rows["one_euro"]["params"]) == {"min_cutoff", "beta"} and rows["raw"]["params"] == {}
    assert rows["raw"]["mean"]["id_switches"] == rows["smoother_sigma"]["mean"]["id_switches"]  # tracks shared


def test_sigma_calibration_small(tmp_path):
    out = tmp_path / "cal.json"
    run_script("sigma_calibration.py", "--images", "30", "--out", str(out))
    data = json.loads(out.read_text())
    assert [r["level"] for r in data["rows"]] == [0.5, 0.8, 0.95] and len(data["joint_scale"]) == 17
    assert all(0 <= r["before"] <= 1 and 0 <= r["after"] <= 1 for r in data["rows"])


def test_rcnn_benchmark_small(tmp_path):
    """Table 2(c) in miniature: each head's keypoint weight from a sweep on tuning images that
    are neither trained on nor the test images, then the rows on the test images."""
    out = tmp_path / "rcnn.json"
    run_script("rcnn.py", "--seeds", "0", "--weights", "1", "3", "--epochs", "1", "--milestones", "[1]",
               "--train-images", "8", "--test-images", "4", "--tune-images", "4", "--workers", "0",
               "--dir", str(tmp_path / "r"), "--out", str(out))
    data = json.loads(out.read_text())
    assert [r["row"] for r in data["rows"]] == ["heatmap", "rle"]
    for r in data["rows"]:
        assert [x["weight"] for x in r["sweep"]] == [1.0, 3.0]
        assert r["loss"]["keypoint_weight"] == max(r["sweep"], key=lambda x: x["AP"])["weight"]
        assert [run["seed"] for run in r["runs"]] == [0] and 0 <= r["mean"]["AP"] <= 1
    tune = json.loads((tmp_path / "r" / "tune" / "val.json").read_text())
    test = json.loads((tmp_path / "r" / "data" / "val.json").read_text())
    assert tune["info"]["config"]["seed"] != test["info"]["config"]["seed"]
    # the trained model against top-down with true boxes and with HOG, on the same images
    ckpt = next((tmp_path / "r" / "runs").glob("rcnn_rle_*_test/checkpoints/last.ckpt"))
    versus = tmp_path / "versus.json"
    run_script("one_stage.py", "--versus", str(ckpt), "--val-images", "4", "--dir", str(tmp_path / "os"),
               "--out", str(versus))
    names = [r["pipeline"] for r in json.loads(versus.read_text())["rows"]]
    assert names[0].startswith("end-to-end top-down") and any("true boxes" in n for n in names)


def test_one_stage_rows_swept_small(tmp_path):
    """rcnn.py --one-stage: the one-stage model's rows, each loss with a keypoint weight of its own."""
    out = tmp_path / "swept.json"
    run_script("rcnn.py", "--one-stage", "l1", "--seeds", "0", "--weights", "0.5", "2", "--epochs", "1",
               "--milestones", "[1]", "--train-images", "8", "--test-images", "4", "--tune-images", "4",
               "--workers", "0", "--dir", str(tmp_path / "r"), "--out", str(out))
    row = json.loads(out.read_text())["rows"][0]
    assert row["row"] == "l1" and row["loss"]["name"] == "l1" and row["paper_AP"] == 67.0
    assert row["loss"]["keypoint_weight"] in (0.5, 2.0) and len(row["sweep"]) == 2
    # --weights-from: another seed at the weight that sweep chose, with no tuning runs of its own
    again = tmp_path / "again.json"
    tuned = set((tmp_path / "r" / "runs").glob("*_tune"))
    run_script("rcnn.py", "--one-stage", "l1", "--seeds", "1", "--weights-from", str(out), "--epochs", "1",
               "--milestones", "[1]", "--train-images", "8", "--test-images", "4", "--tune-images", "4",
               "--workers", "0", "--dir", str(tmp_path / "r"), "--out", str(again))
    data = json.loads(again.read_text())
    assert data["sweep_from"] == "swept.json" and set((tmp_path / "r" / "runs").glob("*_tune")) == tuned
    assert data["rows"][0]["loss"] == row["loss"] and data["rows"][0]["sweep"] == row["sweep"]
    assert [r["seed"] for r in data["rows"][0]["runs"]] == [1]
    # --sweep-only: the tuning runs alone, here with a config override for every run
    only = tmp_path / "only.json"
    run_script("rcnn.py", "--one-stage", "l1", "--sweep-only", "--weights", "0.5", "--epochs", "1", "--milestones", "[1]",
               "--train-images", "8", "--test-images", "4", "--tune-images", "4", "--workers", "0", "--dir",
               str(tmp_path / "r"), "--set", "train.lr=0.002", "--out", str(only))
    data = json.loads(only.read_text())
    assert data["rows"] == [{"row": "l1", "sweep": data["rows"][0]["sweep"]}] and len(data["rows"][0]["sweep"]) == 1
    assert data["args"]["set"] == ["train.lr=0.002"]
    ckpt = torch.load(tmp_path / "r" / "runs" / "one_stage_l1_w0.5_seed0_tune" / "checkpoints" / "last.ckpt",
                      map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["config"]["train"]["lr"] == 0.002


def test_rcnn_results_merge_pools_sweeps_and_keeps_runs_at_the_best_weight(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from rcnn import merge
    finally:
        sys.path.pop(0)

    def run(seed, weight, ap):
        return {"seed": seed, "weight": weight, "AP": ap, "AP50": ap, "AP75": ap, "AR": ap}

    first = {"args": {}, "rows": [{"row": "rle", "loss": {"head": "rle", "keypoint_weight": 0.3}, "paper_AP": 66.7,
                                   "sweep": [run(0, 0.3, 0.2), run(0, 1.0, 0.1)], "runs": [run(0, 0.3, 0.2), run(1, 0.3, 0.3)]}]}
    wider = {"args": {}, "rows": [{"row": "rle", "loss": {"head": "rle", "keypoint_weight": 0.1}, "paper_AP": 66.7,
                                   "sweep": [run(0, 0.1, 0.4)], "runs": [run(0, 0.1, 0.5), run(1, 0.1, 0.7)]}]}
    files = []
    for i, part in enumerate((first, wider)):
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(part))
    row = merge([str(f) for f in files])["rows"][0]
    assert row["loss"]["keypoint_weight"] == 0.1 and [x["weight"] for x in row["sweep"]] == [0.1, 0.3, 1.0]
    assert [r["seed"] for r in row["runs"]] == [0, 1] and row["mean"]["AP"] == pytest.approx(0.6)
    assert len(row["superseded_runs"]) == 2


def test_rcnn_reference_rows_join_at_the_same_budget_only(tmp_path):
    """--merge --reference: an earlier file's untrained rows beside these (same budget), and the
    report's RLE − L1 line computed from both."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from rcnn import with_reference
        from report import swept_table
    finally:
        sys.path.pop(0)
    budget = {"train_images": 3000, "epochs": 12, "milestones": "[10]"}

    def row(name, aps, **loss):
        runs = [{"seed": i, "AP": ap, "AP50": ap, "AP75": ap, "AR": ap} for i, ap in enumerate(aps)]
        mean, std = float(np.mean(aps)), float(np.std(aps, ddof=1))
        stats = {k: mean for k in ("AP", "AP50", "AP75", "AR")}, {k: std for k in ("AP", "AP50", "AP75", "AR")}
        return {"row": name, "loss": {"name": name, **loss}, "runs": runs, "mean": stats[0], "std": stats[1],
                "paper_AP": None, "sweep": []}

    ref = tmp_path / "one_stage.json"
    ref.write_text(json.dumps({"args": budget, "rows": [row("rle", [0.24, 0.22]), row("l1", [0.1, 0.1])]}))
    ours = {"args": {**budget, "seeds": [0], "set": ["train.lr=0.002"]}, "config": "c.yaml", "tune": "t", "test": "v",
            "sweep_from": "s.json", "rows": [row("l1", [0.20, 0.22], keypoint_weight=10.0)]}
    joined = with_reference(ours, str(ref))
    assert [r["row"] for r in joined["reference"]["rows"]] == ["rle"] and joined["rows"] == ours["rows"]
    text = "\n".join(swept_table("one_stage_swept.json", joined))
    assert "rle from `one_stage.json`" in text and "s.json" in text and "every run with `train.lr=0.002`" in text
    assert "RLE − l1: +2.0 AP" in text  # (0.23 − 0.21) · 100
    with pytest.raises(SystemExit, match="not comparable"):
        with_reference({**ours, "args": {**budget, "epochs": 6}}, str(ref))
