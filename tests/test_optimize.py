"""Inference rewrites: BatchNorm folding and channels-last give the plain model's outputs and
leave the training model untouched."""
import pytest
import torch
from torch import nn

from rlepose.models import ModelConfig, build_pose_model
from rlepose.models.optimize import fold_batchnorm, optimize_for_inference, to_channels_last


def _randomize_bn(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("backbone,head", [("resnet18", "regression"), ("resnet50", "regression"),
                                           ("resnet18", "integral"), ("resnet18", "heatmap"), ("hrnet_w32", "integral")])
def test_folded_channels_last_model_matches_the_plain_model(backbone, head):
    torch.manual_seed(0)
    model = build_pose_model(ModelConfig(backbone, head))
    _randomize_bn(model)
    model.eval()
    x = torch.randn(3, 3, 64, 64)  # HRNet needs sides divisible by 32
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, x[:2])
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fast.folded_pairs == n_bn  # every BatchNorm in these nets follows a convolution
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    with torch.inference_mode():
        ref, out = model.inference(x), fast.inference(to_channels_last(x))
    for key in ref:  # µ̂ of an untrained ResNet-50 reaches ~10: compare relative to that
        assert torch.allclose(ref[key], out[key], atol=1e-4 * max(1.0, ref[key].abs().max().item())), key
    # the model passed in is unchanged: same parameters and statistics, same mode
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_folding_by_hand_on_a_conv_bn_pair():
    """w' = w·γ/√(var+ε), b' = β + (b − mean)·γ/√(var+ε), checked against the formula."""
    conv, bn = nn.Conv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3)
    _randomize_bn(nn.Sequential(bn))
    net = nn.Sequential(conv, bn, nn.ReLU())
    folded = fold_batchnorm(net, torch.randn(2, 2, 8, 8))
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(folded[0].weight, conv.weight * scale[:, None, None, None])
    assert torch.allclose(folded[0].bias, bn.bias + (conv.bias - bn.running_mean) * scale)
    assert isinstance(folded[1], nn.Identity)


def test_folding_that_would_change_outputs_is_refused():
    """A BatchNorm whose input is also used elsewhere cannot be folded; the check catches it."""

    class Tricky(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    net = Tricky()
    _randomize_bn(net)
    with pytest.raises(RuntimeError, match="changed the outputs"):
        fold_batchnorm(net, torch.randn(2, 2, 4, 4))


# --- the predictor's fast path -------------------------------------------------------------

import numpy as np  # noqa: E402

from rlepose.inference.predictor import PosePredictor  # noqa: E402
from rlepose.inference.backends import TorchBackend, choose_backend
from rlepose.inference.export import cached_onnx
from rlepose.data.keypoints import COCO_KEYPOINTS  # noqa: E402
from rlepose.data.transforms import TopDownTransform, TransformConfig, crop_boxes, crops_to_array, crops_to_tensor  # noqa: E402
from rlepose.data.transforms import crop_to_image  # noqa: E402
from rlepose.inference.flip import predict_crops
from rlepose.config import config_from_dict, config_to_dict  # noqa: E402
from rlepose.training.module import PoseModule  # noqa: E402


def _checkpoint(tmp_path, head="regression"):
    torch.manual_seed(0)
    cfg = config_from_dict({"name": "t", "model": {"backbone": "resnet18", "head": head},
                            "loss": {"name": "heatmap_mse" if head == "heatmap" else "rle"},
                            "transform": {"input_size": [64, 48]}})
    module = PoseModule.from_config(cfg)
    _randomize_bn(module.model)
    if head != "heatmap":
        with torch.no_grad():
            module.model.head.fc.weight.normal_(0, 0.02)
    path = tmp_path / f"{head}.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": config_to_dict(cfg)}}, path)
    return path, module.model.eval()


def _image_and_boxes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    return image, np.array([[10.0, 5.0, 40.0, 90.0], [70.5, 20.25, 60.0, 80.0], [-10.0, 50.0, 50.0, 100.0]])


def test_batch_crops_equal_the_training_transform_in_eval_mode():
    image, boxes = _image_and_boxes()
    transform = TopDownTransform(TransformConfig(input_size=(64, 48)), COCO_KEYPOINTS, train=False)
    crops, matrices = crop_boxes(image, boxes, (64, 48))
    x = crops_to_tensor(crops)
    for i, box in enumerate(boxes):
        ref = transform(image, box)
        assert np.allclose(matrices[i], ref["matrix"].numpy())
        assert torch.allclose(x[i], ref["image"], atol=1e-5)
    assert np.array_equal(crops_to_array(crops), x.numpy()) and crops_to_array(crops).flags.c_contiguous


def test_onnxruntime_predictor_gets_numpy_batches_and_agrees_with_torch(tmp_path):
    """The ONNX Runtime path never builds its batch with torch ops (their OpenMP threads would
    spin on the cores ONNX Runtime needs); its people equal the torch path's."""
    pytest.importorskip("onnxruntime")
    path, _ = _checkpoint(tmp_path)
    image, boxes = _image_and_boxes()
    ort_predictor = PosePredictor.from_checkpoint(path, backend="onnxruntime")
    seen = []
    backend = ort_predictor.backend
    ort_predictor.backend = lambda x: seen.append(type(x)) or backend(x)
    ort_predictor.backend.takes_numpy = True
    fast = ort_predictor.predict(image, boxes)
    assert seen == [np.ndarray]
    ref = PosePredictor.from_checkpoint(path, backend="torch", precision="fp32").predict(image, boxes)
    for a, b in zip(fast, ref):
        assert np.abs(a.keypoints - b.keypoints).max() < 1e-2
        assert np.abs(a.joint_confidence - b.joint_confidence).max() < 1e-4


@pytest.mark.parametrize("head", ["regression", "heatmap"])
def test_fast_predictor_agrees_with_the_plain_two_pass_flip_test(tmp_path, head):
    """Folded, channels-last, flip in one batch: the plain model's keypoints to 1e-4
    (normalized coordinates) and its confidences."""
    path, model = _checkpoint(tmp_path, head)
    image, boxes = _image_and_boxes()
    crops, matrices = crop_boxes(image, boxes, (64, 48))
    ref = predict_crops(model, crops_to_tensor(crops), COCO_KEYPOINTS.flip_permutation())
    predictor = PosePredictor.from_checkpoint(path, backend="torch", precision="fp32")
    assert predictor.backend.model.folded_pairs > 0
    kp, conf = predictor._run(crops_to_tensor(crops))
    assert np.abs(kp - ref["keypoints"].numpy()).max() < 1e-4
    assert np.abs(conf - ref["joint_confidence"].numpy()).max() < 1e-4
    people = predictor.predict(image, boxes)
    pixels = crop_to_image(ref["keypoints"].numpy(), matrices, (64, 48))
    assert np.abs(np.stack([p.keypoints for p in people]) - pixels).max() < 1e-2


def test_crops_of_several_images_are_batched_together(tmp_path):
    path, _ = _checkpoint(tmp_path)
    predictor = PosePredictor.from_checkpoint(path, backend="torch")
    calls = []
    backend = predictor.backend
    predictor.backend = lambda x: calls.append(len(x)) or backend(x)
    image, boxes = _image_and_boxes()
    frames = [image, image[:, ::-1].copy(), image]
    together = predictor.predict_many(frames, [boxes, boxes[:1], None])
    assert calls == [2 * (3 + 1 + 1)]  # one forward pass: 5 crops and their mirrors
    for frame, b, people in zip(frames, [boxes, boxes[:1], None], together):
        alone = predictor.predict(frame, b)
        assert len(alone) == len(people)
        for a, p in zip(alone, people):
            assert np.allclose(a.keypoints, p.keypoints, atol=1e-3)


def test_bf16_autocast_stays_close_to_fp32(tmp_path):
    """The autocast path (used on GPUs); bfloat16 autocast also runs on the CPU."""
    _, model = _checkpoint(tmp_path)
    x = torch.randn(4, 3, 64, 48)
    kp32, _ = TorchBackend(model, (64, 48))(x)
    kp16, conf16 = TorchBackend(model, (64, 48), precision="bf16")(x)
    assert kp16.dtype == torch.float32 and conf16.shape == (4, 17)
    assert (kp16 - kp32).abs().max() < 2e-2  # normalized crop units: a fifth of a pixel at 64×48
    with pytest.raises(ValueError, match="precision"):
        TorchBackend(model, (64, 48), precision="int8")


def test_weights_cast_once_give_autocast_results_bit_for_bit(tmp_path):
    """TorchBackend stores conv/linear weights in bf16 once; autocast over the fp32 weights (which
    casts them on every call) gives the very same numbers, and the caller's model keeps fp32."""
    from rlepose.models.optimize import optimize_for_inference

    _, model = _checkpoint(tmp_path)
    x = torch.randn(3, 3, 64, 48)
    for optimize in (True, False):
        reference_model = optimize_for_inference(model, torch.zeros(2, 3, 64, 48)) if optimize else model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            ref = reference_model.inference(x.contiguous(memory_format=torch.channels_last) if optimize else x)
        backend = TorchBackend(model, (64, 48), precision="bf16", optimize=optimize)
        assert backend.model.backbone.conv1.weight.dtype == torch.bfloat16
        kp, conf = backend(x)
        assert torch.equal(kp, ref["keypoints"].float()) and torch.equal(conf, ref["joint_confidence"].float())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_reduced_precision_picks_the_torch_backend(tmp_path):
    """The ONNX graph runs in fp32 or int8: ``auto`` with bf16 takes torch (which then runs in
    bf16), and asking ONNX Runtime for bf16 is an error rather than a silent fp32 run."""
    assert choose_backend("auto", device="cpu", precision="bf16") == "torch"
    with pytest.raises(ValueError, match="torch backend"):
        choose_backend("onnxruntime", precision="bf16")
    path, _ = _checkpoint(tmp_path)
    predictor = PosePredictor.from_checkpoint(path, precision="bf16")
    assert predictor.backend_name == "torch" and predictor.backend.precision == "bf16"
    assert "in bf16 (asked for)" in predictor.describe()
    assert "in fp32 (asked for)" in PosePredictor.from_checkpoint(path, backend="torch", precision="fp32").describe()


def test_auto_backend_exports_once_and_reuses_the_graph(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path / "home"))
    assert choose_backend("auto", device="cpu") == "onnxruntime"
    assert choose_backend("auto", device="cuda:0") == "torch"
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backend("tensorrt")
    path, model = _checkpoint(tmp_path)
    predictor = PosePredictor.from_checkpoint(path, precision="fp32")
    assert predictor.backend_name == "onnxruntime" and "onnxruntime" in predictor.describe()
    onnx_file = cached_onnx(path)  # under RLEPOSE_HOME, named by the checkpoint's content
    assert onnx_file.parent == tmp_path / "home" / "onnx" and not path.with_suffix(".onnx").exists()
    first = onnx_file.stat().st_mtime_ns
    assert cached_onnx(path) == onnx_file and onnx_file.stat().st_mtime_ns == first  # cache hit
    image, boxes = _image_and_boxes()
    a = predictor.predict(image, boxes)
    b = PosePredictor.from_checkpoint(path, backend="torch", precision="fp32").predict(image, boxes)
    assert max(np.abs(x.keypoints - y.keypoints).max() for x, y in zip(a, b)) < 1e-2
    # other weights under the same name: another graph; the first stays for the first weights
    state = torch.load(path, weights_only=True)
    state["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, path)
    cached = cached_onnx(path)
    assert cached != onnx_file and cached.is_file() and onnx_file.stat().st_mtime_ns == first
    # a graph the user chose is used as it is and never overwritten
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(onnx_file.read_bytes())
    assert cached_onnx(path, mine) == mine and mine.read_bytes() == onnx_file.read_bytes()

