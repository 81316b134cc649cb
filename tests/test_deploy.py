"""The embedded dataset, ONNX export, prediction on files, the Python API, checkpoint import."""
import json
import shutil

import numpy as np
import pytest
import torch

from rlepose.inference.predictor import PosePredictor
from rlepose.cli import main
from rlepose.convert import convert_checkpoint, from_mmpose, from_official, to_mmpose, to_official
from rlepose.data.datasets import load_coco_instances
from rlepose.data.synthetic import SyntheticConfig, write_dataset
from rlepose.losses import RLELoss
from rlepose.evaluation.coco import coco_keypoint_ap
from rlepose.config import config_from_dict, config_to_dict
from rlepose.training.module import PoseModule
from rlepose.training.run import load_module


def _checkpoint(tmp_path, backbone="resnet18", head="regression", loss="rle", coord_norm=False, seed=0):
    torch.manual_seed(seed)
    cfg = config_from_dict({"name": "t", "model": {"backbone": backbone, "head": head, "coord_norm": coord_norm},
                            "loss": {"name": loss}, "transform": {"input_size": [128, 96]}})
    module = PoseModule.from_config(cfg)
    with torch.no_grad():  # move BN statistics and the head away from their initial values
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        if head != "heatmap":
            head_fc = module.model.head.fc if head == "regression" else module.model.head.fc_sigma
            head_fc.weight.normal_(0, 0.02)
    path = tmp_path / f"{backbone}_{head}.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": config_to_dict(cfg)}}, path)
    return path, module


def test_synthetic_dataset_is_deterministic_coco_and_noisier_when_occluded(tmp_path):
    cfg = SyntheticConfig(num_images=60, seed=3)
    a = write_dataset(tmp_path / "a", cfg)
    b = write_dataset(tmp_path / "b", cfg)
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert da["annotations"] == db["annotations"] and "GENERATED" in da["info"]["description"]
    assert (tmp_path / "a/train/train_000007.jpg").read_bytes() == (tmp_path / "b/train/train_000007.jpg").read_bytes()
    inst = load_coco_instances(a, tmp_path / "a/train")
    assert len(inst) >= 60
    err = {1: [], 2: []}
    for ann in da["annotations"]:
        kp = np.array(ann["keypoints"]).reshape(17, 3)
        true = np.array(ann["true_keypoints"]).reshape(17, 2)
        scale = (true.max(0) - true.min(0)).max() / 100
        for k in range(17):
            if kp[k, 2] > 0:
                err[int(kp[k, 2])].append(np.linalg.norm(kp[k, :2] - true[k]) / scale)
    assert len(err[1]) > 50 and np.mean(err[1]) > 2.5 * np.mean(err[2])  # occluded labels are noisier
    assert any(np.array(x["keypoints"]).reshape(17, 3)[:, 2].min() == 0 for x in da["annotations"])  # truncation
    results = [{"image_id": x["image_id"], "category_id": 1, "score": 1.0,
                "keypoints": x["keypoints"]} for x in da["annotations"] if x["num_keypoints"] > 0]
    assert coco_keypoint_ap(a, results)["AP"] == pytest.approx(1.0)
    assert write_dataset(tmp_path / "a", cfg) == a  # reused, not re-rendered


@pytest.mark.parametrize("head", ["regression", "heatmap"])
def test_onnx_runtime_matches_pytorch(tmp_path, head, fixtures):
    ckpt, module = _checkpoint(tmp_path, head=head, loss="heatmap_mse" if head == "heatmap" else "rle")
    assert main(["export", "--checkpoint", str(ckpt)]) == 0
    onnx_path = ckpt.with_suffix(".onnx")
    from rlepose.inference.export import InferenceGraph
    from rlepose.inference.backends import OnnxBackend

    backend = OnnxBackend(onnx_path)
    graph = InferenceGraph(module.model.eval())
    for batch in (1, 3):  # dynamic batch
        x = torch.randn(batch, 3, 128, 96)
        kp, conf = backend(x)
        with torch.no_grad():
            kp_t, conf_t = graph(x)
        assert kp.shape == kp_t.shape
        assert torch.allclose(kp, kp_t, atol=1e-4) and torch.allclose(conf, conf_t, atol=1e-4)
    image = str(fixtures / "coco/000000000785.jpg")
    boxes = [[280.79, 44.73, 218.7, 346.68]]
    a = PosePredictor.from_checkpoint(ckpt, backend="torch", precision="fp32").predict(image, boxes)[0]
    b = PosePredictor.from_checkpoint(ckpt, backend="onnxruntime", onnx_path=onnx_path).predict(image, boxes)[0]
    assert np.abs(a.keypoints - b.keypoints).max() < 0.05  # pixels
    assert np.abs(a.joint_confidence - b.joint_confidence).max() < 1e-4


def test_python_api_in_three_lines(tmp_path, fixtures):
    ckpt, module = _checkpoint(tmp_path)
    predictor = PosePredictor.from_checkpoint(ckpt)
    people = predictor.predict(fixtures / "coco/000000000785.jpg")
    assert len(people) == 1 and people[0].keypoints.shape == (17, 2) and people[0].bbox == [0, 0, 640, 425]
    assert 0 <= people[0].score <= 1 and people[0].joint_confidence.shape == (17,)
    with pytest.raises(ValueError, match="positive sizes"):
        predictor.predict(np.zeros((50, 50, 3), np.uint8), [[0, 0, 0, 10]])


def test_predict_cli_with_boxes_and_a_broken_image(tmp_path, fixtures):
    ckpt, _ = _checkpoint(tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(fixtures / "coco" / name, folder / name)
    (folder / "000000000001.jpg").write_bytes(b"not an image")
    out = tmp_path / "pred.json"
    code = main(["predict", str(folder), "--checkpoint", str(ckpt), "--boxes",
                 str(fixtures / "coco/test_coco_det_AP_H_56.json"), "--box-score-threshold", "0.5",
                 "--out", str(out), "--render", str(tmp_path / "drawn")])
    assert code == 0
    results = json.loads(out.read_text())
    dets = json.loads((fixtures / "coco/test_coco_det_AP_H_56.json").read_text())
    expected = sum(1 for d in dets if d["image_id"] in (785, 40083) and d["score"] >= 0.5)
    assert len(results) == expected and {r["image_id"] for r in results} == {785, 40083}
    assert len(results[0]["keypoints"]) == 51 and (tmp_path / "drawn/000000000785.jpg").is_file()
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["predict", str(folder), "--checkpoint", str(ckpt), "--boxes", str(tmp_path / "bad.json")]) == 2


def test_mmpose_checkpoint_round_trip_and_independent_forward(tmp_path):
    ckpt, module = _checkpoint(tmp_path, backbone="resnet18")
    ours = module.state_dict()
    theirs = to_mmpose(ours)
    assert "head.fc.weight" in theirs and "head.loss_module.flow_model.s.0.0.weight" in theirs
    back, overrides = from_mmpose(theirs)
    assert overrides == {"num_joints": 17}
    assert back.keys() <= ours.keys() and all(torch.allclose(back[k], ours[k], atol=1e-7) for k in back)
    # MMPose's head by hand: fc on the pooled feature, (K, 4) per joint, coordinates in [0, 1]
    x = torch.randn(2, 3, 128, 96)
    model = module.model.eval()
    with torch.no_grad():
        feat = model.backbone.forward_features(x).mean((2, 3))
        raw = (feat @ theirs["head.fc.weight"].t() + theirs["head.fc.bias"]).reshape(2, 17, 4)
        mu, sigma = model(x)
    assert torch.allclose(mu, raw[..., :2] - 0.5, atol=1e-5) and torch.allclose(sigma, raw[..., 2:].sigmoid(), atol=1e-6)
    src = tmp_path / "mmpose.pth"
    torch.save({"meta": {}, "state_dict": to_mmpose(ours, version=0)}, src)
    converted = load_module(convert_checkpoint(src, tmp_path / "from_mmpose.ckpt", "mmpose", backbone="resnet18"))
    with torch.no_grad():
        assert torch.allclose(converted.model.eval()(x)[0], mu, atol=1e-5)


def _mmpose_mobilenet_v2_names() -> set[str]:
    """MMPose's MobileNetV2 parameter prefixes, written out from its arch settings (mmcv
    ConvModule = conv + bn; blocks with expansion have three of them, t = 1 blocks two)."""
    names = {"backbone.conv1.conv.", "backbone.conv1.bn.", "backbone.conv2.conv.", "backbone.conv2.bn."}
    for i, (t, n) in enumerate([(1, 1), (6, 2), (6, 3), (6, 4), (6, 3), (6, 3), (6, 1)]):
        for j in range(n):
            for m in range(3 if t != 1 else 2):
                names |= {f"backbone.layer{i + 1}.{j}.conv.{m}.conv.", f"backbone.layer{i + 1}.{j}.conv.{m}.bn."}
    return names


def test_mmpose_mobilenet_v2_checkpoint_converts(tmp_path):
    ckpt, module = _checkpoint(tmp_path, backbone="mobilenet_v2")
    theirs = to_mmpose(module.state_dict(), version=0)
    prefixes = {k.rsplit(".", 1)[0] + "." for k in theirs if k.startswith("backbone.")}
    assert prefixes == _mmpose_mobilenet_v2_names()
    assert theirs["backbone.layer2.0.conv.2.conv.weight"].shape == (24, 96, 1, 1)  # the projection
    src = tmp_path / "mmpose_mnv2.pth"
    torch.save({"meta": {}, "state_dict": theirs}, src)
    converted = load_module(convert_checkpoint(src, tmp_path / "mnv2.ckpt", "mmpose"))  # recognized by its names
    assert converted.cfg.model.backbone == "mobilenet_v2"
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        assert torch.allclose(converted.model.eval()(x)[0], module.model.eval()(x)[0], atol=1e-5)


def test_official_checkpoint_round_trip_and_independent_forward(tmp_path):
    ckpt, module = _checkpoint(tmp_path, backbone="resnet18", coord_norm=True)
    ours = module.state_dict()
    theirs = to_official(ours)
    assert {"preact.conv1.weight", "fc_coord.linear.weight", "fc_sigma.linear.bias", "flow.mask"} <= theirs.keys()
    back, overrides = from_official(theirs)
    assert overrides == {"coord_norm": True, "num_joints": 17}
    assert all(torch.equal(back[k], ours[k]) for k in back)
    x = torch.randn(2, 3, 128, 96)
    model = module.model.eval()
    with torch.no_grad():
        feat = model.backbone.forward_features(x).mean((2, 3))
        # the official Linear(norm=True): x·Wᵀ / ‖x‖ + b
        coord = feat @ theirs["fc_coord.linear.weight"].t() / feat.norm(dim=1, keepdim=True) + theirs["fc_coord.linear.bias"]
        mu, _ = model(x)
    assert torch.allclose(mu, coord.reshape(2, 17, 2), atol=1e-5)
    src = tmp_path / "official.pth"
    torch.save({f"module.{k}": v for k, v in theirs.items()}, src)  # DataParallel-saved, as the official code does
    assert main(["convert", str(src), str(tmp_path / "conv.ckpt"), "--from", "official", "--backbone", "resnet18"]) == 0
    converted = load_module(tmp_path / "conv.ckpt")
    assert converted.cfg.model.coord_norm
    with torch.no_grad():
        assert torch.allclose(converted.model.eval()(x)[0], mu, atol=1e-5)


def test_training_from_a_converted_official_checkpoint_keeps_its_flow(tmp_path):
    """init_from loads network and flow; the loss keeps the official form, so the flow is the
    same density of x̄ it was in the official code; a config with another form is refused."""
    from rlepose.training.run import train

    _, module = _checkpoint(tmp_path, backbone="resnet18", coord_norm=True, seed=3)
    theirs = to_official(module.state_dict())
    with torch.no_grad():  # a flow that has learned something: not the initialization
        for key in [k for k in theirs if k.startswith("flow.") and k != "flow.mask"]:
            theirs[key] = theirs[key] + 0.05 * torch.randn_like(theirs[key])
    src = tmp_path / "official.pth"
    torch.save(theirs, src)
    converted = convert_checkpoint(src, tmp_path / "conv.ckpt", "official", backbone="resnet18")
    write_dataset(tmp_path / "data", SyntheticConfig(num_images=6, seed=0), "train")
    write_dataset(tmp_path / "data", SyntheticConfig(num_images=4, seed=1), "val")
    base = {"name": "init", "init_from": str(converted),
            "model": {"backbone": "resnet18", "coord_norm": True},
            "data": {"format": "coco", "root": str(tmp_path / "data"), "train_ann": "train.json",
                     "train_images": "train", "val_ann": "val.json", "val_images": "val", "batch_size": 4,
                     "num_workers": 0},
            "transform": {"input_size": [128, 96]},
            "train": {"epochs": 1, "lr": 0.0, "out_dir": str(tmp_path / "runs")}}
    with pytest.raises(ValueError, match="loss.name='rle'"):
        train(config_from_dict({**base, "loss": {"name": "rle_calibrated"}}), enable_progress_bar=False, logger=False)
    trained, _ = train(config_from_dict({**base, "loss": {"name": "rle"}}), enable_progress_bar=False, logger=False)
    assert type(trained.loss) is RLELoss
    flow = {k[len("flow."):]: v for k, v in theirs.items() if k.startswith("flow.")}
    ours = trained.loss.flow.state_dict()
    assert ours.keys() == flow.keys() and all(torch.equal(ours[k], flow[k]) for k in flow)  # lr 0: unchanged


def test_demo_end_to_end_small(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--train-images", "24", "--val-images", "8", "--epochs", "1",
                 "--compare", "l1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "AP" in out and "conf_oks_pearson" in out and "the same budget and data with l1" in out
    summary = json.loads((tmp_path / "demo/metrics.json").read_text())
    assert 0.0 <= summary["metrics"]["AP"] <= 1.0
    for key in ("checkpoint", "picture"):
        assert (tmp_path / "demo").exists() and __import__("pathlib").Path(summary[key]).is_file()


def test_demo_evaluates_the_shipped_model(tmp_path, capsys):
    """`rlepose demo` without --train: the shipped int8 model (under 5 MB) on held-out images."""
    from rlepose.demo import SHIPPED_MODEL

    assert SHIPPED_MODEL.is_file() and SHIPPED_MODEL.stat().st_size < 5e6
    assert main(["demo", "--out", str(tmp_path / "demo"), "--val-images", "12"]) == 0
    out = capsys.readouterr().out
    assert "The shipped RLE model" in out and "not for photos" in out and "{" not in out
    summary = json.loads((tmp_path / "demo/metrics.json").read_text())
    assert summary["metrics"]["AP"] > 0.3  # 12 images: noisy, but a working model (0.52 on all 300)
    assert __import__("pathlib").Path(summary["picture"]).is_file()
    assert not (tmp_path / "demo/data/train.json").exists()  # only the held-out images are rendered
    assert json.loads((tmp_path / "demo/config.json").read_text())["model"]["backbone"] == "resnet18_0.5"


class _RunsCode:
    """A pickle payload that would create a file when unpickled by a full unpickler."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.path}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _RunsCode(marker)}, evil)
    from rlepose.models.checkpoint import UntrustedCheckpointError, read_checkpoint
    with pytest.raises(UntrustedCheckpointError, match="system.*Nothing from the file was run"):
        read_checkpoint(evil)
    for argv in (["convert", str(evil), str(tmp_path / "out.ckpt"), "--from", "mmpose"],
                 ["export", "--checkpoint", str(evil)]):
        assert main(argv) == 2
        assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()
    assert read_checkpoint(evil, trust=True)["state_dict"]["w"].shape == (2,)  # the explicit opt-in
    assert marker.exists()


def test_mmpose_style_metadata_is_read_inert(tmp_path):
    """Objects of known metadata modules (mmengine's message hub, numpy) become inert stand-ins
    whose code never runs; the tensors load exactly."""
    import numpy as np

    class HistoryBuffer:  # pickled under an mmengine module path, as MMPose checkpoints hold it
        def __init__(self):
            self.data = [1.0, 2.0]

        def __setstate__(self, state):
            raise AssertionError("a foreign __setstate__ ran")
    HistoryBuffer.__module__ = "mmengine.logging.history_buffer"
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    import sys
    import types
    fake = types.ModuleType("mmengine.logging.history_buffer")
    fake.HistoryBuffer = HistoryBuffer
    for name in ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer"):
        sys.modules.setdefault(name, fake if name.endswith("buffer") else types.ModuleType(name))
    try:
        weight = torch.randn(3, 4)
        path = tmp_path / "mmpose.pth"
        torch.save({"meta": {"hub": HistoryBuffer(), "seed": np.int64(3)}, "state_dict": {"head.fc.weight": weight}},
                   path)
    finally:
        for name in ("mmengine.logging.history_buffer", "mmengine.logging", "mmengine"):
            sys.modules.pop(name, None)
    from rlepose.models.checkpoint import InertObject, read_checkpoint
    data = read_checkpoint(path)
    assert torch.equal(data["state_dict"]["head.fc.weight"], weight)
    assert isinstance(data["meta"]["hub"], InertObject) and data["meta"]["hub"].state == {"data": [1.0, 2.0]}
    assert data["meta"]["hub"].qualname == "mmengine.logging.history_buffer.HistoryBuffer"


def test_compact_checkpoint_is_int8_small_and_predicts_like_the_original(tmp_path, fixtures):
    """save_compact: a quarter of the size; every large weight within half a quantization step
    of the original, everything else exact; every loader takes it back as fp32."""
    from rlepose.models.checkpoint import read_checkpoint, save_compact

    ckpt, module = _checkpoint(tmp_path, backbone="resnet18_0.5", head="integral")
    small = save_compact(torch.load(ckpt, weights_only=False), tmp_path / "small.pt")
    assert small.stat().st_size < 0.3 * ckpt.stat().st_size
    full, back = module.state_dict(), read_checkpoint(small)["state_dict"]
    assert back.keys() == full.keys()
    quantized = 0
    for key, w in full.items():
        if w.is_floating_point() and w.dim() >= 2 and w.numel() >= 1024:
            step = w.reshape(len(w), -1).abs().amax(1) / 127
            err = (back[key] - w).reshape(len(w), -1).abs().amax(1)
            assert (err <= step / 2 * (1 + 1e-5)).all() and err.max() > 0, key
            quantized += 1
        else:
            assert torch.equal(back[key], w), key
    assert quantized >= 20  # every convolution of the backbone and head
    image = fixtures / "coco/000000000785.jpg"
    a = PosePredictor.from_checkpoint(ckpt, backend="torch", precision="fp32").predict(image)[0]
    b = PosePredictor.from_checkpoint(small, backend="torch", precision="fp32").predict(image)[0]
    drift = np.abs(a.keypoints - b.keypoints).max()
    assert drift < 0.5, drift  # pixels on the 640×425 image (measured: 0.01)


def test_confidence_colors_span_the_given_range():
    from rlepose.visualize import confidence_color

    assert confidence_color(0.0) == (255, 0, 0) and confidence_color(1.0) == (0, 255, 0)
    assert confidence_color(0.5) == (255, 255, 0)
    assert confidence_color(0.90, 0.9, 0.98) == (255, 0, 0) and confidence_color(0.99, 0.9, 0.98) == (0, 255, 0)
    assert confidence_color(0.75, 0.5, 1.0) == (255, 255, 0)
    assert np.allclose(confidence_color(0.94, 0.9, 0.98), (255, 255, 0), atol=1)  # σ̂ of 6% of the crop: halfway


def test_cli_prints_only_what_rlepose_has_to_say(tmp_path):
    """No Lightning banners, tips or known deprecation notices on a run; --verbose shows them.
    In a fresh process, as a user runs it (Lightning's handlers write to the process's stderr)."""
    import subprocess
    import sys

    def run(*flags):
        done = subprocess.run([sys.executable, "-m", "rlepose.cli", *flags, "demo", "--out", str(tmp_path / "demo"),
                               "--val-images", "4"], capture_output=True, text=True, timeout=300, check=True)
        return done.stdout, done.stderr

    out, err = run()
    assert "The shipped RLE model" in out
    assert not any(noise in out + err for noise in ("GPU available", "TPU available", "Tip:", "LeafSpec"))
    assert "Validation" not in out and "it/s]" not in out  # progress bars go to stderr
    assert "GPU available" in "".join(run("--verbose"))


def test_inference_loads_a_model_without_lightning(tmp_path):
    """`load_pose_model` and `PosePredictor` come without Lightning and without building a loss."""
    import subprocess
    import sys

    ckpt, model = _checkpoint(tmp_path)
    code = ("import sys, torch; from rlepose import load_pose_model, PosePredictor; "
            f"m = load_pose_model({str(ckpt)!r}); "
            "assert 'lightning' not in sys.modules, 'lightning imported'; "
            "assert not any(k.startswith('loss') for k in m.model.state_dict()); print(m.input_size)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
