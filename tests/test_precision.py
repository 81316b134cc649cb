"""Inference precision: what ``auto`` picks, int8 graphs (quantized by ONNX Runtime, calibrated,
cached), and the CUDA-graph runner's padding to batch buckets (run without graphs on the CPU)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rlepose.cli import main
from rlepose.data.transforms import crop_boxes, crops_to_array
from rlepose.inference.cuda_graphs import BucketedGraphs
from rlepose.inference.precision import PRECISIONS, cpu_bf16_feature, resolve_precision
from rlepose.inference.predictor import PosePredictor

AMX = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n"
AVX2 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma\n"


def test_bf16_arithmetic_is_read_from_the_processor_flags():
    assert cpu_bf16_feature(AMX) == "AMX-BF16"
    assert cpu_bf16_feature(AVX512_BF16) == "AVX512-BF16"
    assert cpu_bf16_feature(AVX2) is None and cpu_bf16_feature("") is None
    # this machine: the same answer as its own flags line says
    path = Path("/proc/cpuinfo")
    if path.is_file():
        flags = next((line.split(":", 1)[1].split() for line in path.read_text().splitlines()
                      if line.startswith("flags")), [])
        expected = "AMX-BF16" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else None
        assert cpu_bf16_feature() == expected


@pytest.mark.parametrize("asked, backend, device, feature, expected", [
    ("auto", "auto", "cuda", None, ("fp16", "torch", "cuda")),
    ("auto", "auto", "cuda:1", None, ("fp16", "torch", "cuda:1")),
    ("auto", "auto", "cpu", "AMX-BF16", ("bf16", "torch", "cpu")),
    ("auto", "torch", "cpu", "AVX512-BF16", ("bf16", "torch", "cpu")),
    ("auto", "auto", "cpu", None, ("fp32", "onnxruntime", "cpu")),
    ("auto", "torch", "cpu", None, ("fp32", "torch", "cpu")),
    ("auto", "onnxruntime", "cpu", "AMX-BF16", ("fp32", "onnxruntime", "cpu")),
    ("fp32", "auto", "cpu", "AMX-BF16", ("fp32", "onnxruntime", "cpu")),
    ("fp32", "auto", "cuda", None, ("fp32", "torch", "cuda")),
    ("bf16", "auto", "cpu", None, ("bf16", "torch", "cpu")),
    ("fp16", "auto", "cuda", None, ("fp16", "torch", "cuda")),
    ("int8", "auto", "cpu", None, ("int8", "onnxruntime", "cpu")),
    ("int8", "onnxruntime", None, "AMX-BF16", ("int8", "onnxruntime", "cpu")),
])
def test_auto_picks_the_fastest_precision_the_hardware_has(asked, backend, device, feature, expected):
    pytest.importorskip("onnxruntime")
    choice = resolve_precision(asked, backend, device, bf16_feature=feature)
    assert (choice.precision, choice.backend, choice.device) == expected
    assert choice.reason.startswith("auto" if asked == "auto" else "asked")
    if expected[0] == "bf16" and asked == "auto":
        assert feature in choice.reason


@pytest.mark.parametrize("asked, backend, device, message", [
    ("int8", "torch", "cpu", "ONNX Runtime"), ("int8", "auto", "cuda", "ONNX Runtime"),
    ("bf16", "onnxruntime", "cpu", "torch backend"), ("fp64", "auto", "cpu", "unknown precision"),
    ("fp32", "tensorrt", "cpu", "unknown backend")])
def test_combinations_that_cannot_run_are_refused(asked, backend, device, message):
    with pytest.raises(ValueError, match=message):
        resolve_precision(asked, backend, device)


def test_the_cli_offers_every_precision(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    assert "{" + ",".join(PRECISIONS) + "}" in text


# -- the default predictor, and int8 on the shipped model -------------------------------------


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """40 embedded held-out images with their true boxes."""
    from rlepose.data.synthetic import write_splits

    data = tmp_path_factory.mktemp("data")
    write_splits(data, 0, 40)
    ann = json.loads((data / "val.json").read_text())
    images = [(i["id"], cv2.cvtColor(cv2.imread(str(data / "val" / i["file_name"])), cv2.COLOR_BGR2RGB))
              for i in ann["images"]]
    boxes = {i["id"]: [a["bbox"] for a in ann["annotations"] if a["image_id"] == i["id"]] for i in ann["images"]}
    return data, images, boxes


def _ap(predictor, heldout) -> tuple[float, np.ndarray]:
    from rlepose.evaluation.coco import coco_keypoint_ap

    data, images, boxes = heldout
    results, keypoints = [], []
    for image_id, image in images:
        people = predictor.predict(image, boxes[image_id])
        results += [p.to_coco(image_id) for p in people]
        keypoints += [p.keypoints for p in people]
    return coco_keypoint_ap(data / "val.json", results)["AP"], np.stack(keypoints)


def test_the_default_predictor_runs_what_auto_chose_and_says_why():
    from rlepose.hub import SHIPPED_PATH

    predictor = PosePredictor.from_checkpoint(SHIPPED_PATH, detector=None)
    expected = resolve_precision()
    assert predictor.precision == expected
    assert predictor.backend_name == expected.backend
    assert f"in {expected.precision} ({expected.reason})" in predictor.describe()


def test_int8_graph_is_quantized_cached_and_keeps_the_shipped_models_accuracy(heldout, tmp_path):
    """Static int8 (ONNX Runtime, calibrated on rendered crops that are neither training nor
    held-out images): integer convolutions in the graph, the same people as fp32 to a few pixels,
    COCO AP by pycocotools within 0.02 of fp32 on 40 held-out images (the benchmark measures 300),
    the graph cached under RLEPOSE_HOME and reused; bf16 (torch) likewise."""
    pytest.importorskip("onnxruntime")
    import onnx

    from rlepose.hub import SHIPPED_PATH, home
    from rlepose.inference.export import cached_onnx, read_onnx_metadata

    fp32 = PosePredictor.from_checkpoint(SHIPPED_PATH, precision="fp32", detector=None)
    int8 = PosePredictor.from_checkpoint(SHIPPED_PATH, precision="int8", detector=None)
    assert int8.backend_name == "onnxruntime" and "in int8" in int8.describe()
    graphs = sorted((home() / "onnx").glob("*-int8-*.onnx"))
    assert len(graphs) == 1 and read_onnx_metadata(graphs[0])["precision"] == "int8"
    proto = onnx.load(str(graphs[0]))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 20  # every convolution of the backbone and head
    stamp = graphs[0].stat().st_mtime_ns
    assert cached_onnx(SHIPPED_PATH, precision="int8") == graphs[0] and graphs[0].stat().st_mtime_ns == stamp

    ap32, kp32 = _ap(fp32, heldout)
    ap8, kp8 = _ap(int8, heldout)
    apbf, kpbf = _ap(PosePredictor.from_checkpoint(SHIPPED_PATH, precision="bf16", detector=None), heldout)
    assert abs(ap8 - ap32) < 0.02 and abs(apbf - ap32) < 0.02, (ap32, ap8, apbf)
    assert np.median(np.abs(kp8 - kp32)) < 0.5 and np.median(np.abs(kpbf - kp32)) < 0.5  # pixels of 256×256 images
    assert np.abs(kp8 - kp32).max() > 0  # it did run something else


def test_calibration_crops_come_from_a_folder_a_coco_file_or_the_renderer(heldout, tmp_path):
    from rlepose.inference.quantize import EMBEDDED_CALIBRATION_SEED, calibration_crops, calibration_key

    data, images, boxes = heldout
    embedded = calibration_crops(None, (64, 48), count=10)
    assert embedded.shape == (10, 3, 64, 48) and embedded.dtype == np.float32
    from rlepose.data.synthetic import SyntheticConfig, render_image

    rng = np.random.default_rng(EMBEDDED_CALIBRATION_SEED)
    image, people = render_image(rng, SyntheticConfig(seed=EMBEDDED_CALIBRATION_SEED))
    first = crops_to_array(crop_boxes(image, np.array([p["bbox"] for p in people]), (64, 48))[0])
    assert np.array_equal(embedded[:len(first)], first)

    from_coco = calibration_crops(data / "val.json", (64, 48), count=5)
    image_id, image = images[0]
    expected = crops_to_array(crop_boxes(image, np.array(boxes[image_id]), (64, 48))[0])
    assert np.allclose(from_coco[:len(expected)], expected)

    folder = tmp_path / "people"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    whole = calibration_crops(folder, (64, 48))
    assert np.allclose(whole, crops_to_array(crop_boxes(image, np.array([[0, 0, 256, 256]]), (64, 48))[0]))
    letterbox = calibration_crops(folder, (64, 64), whole_images=True)
    assert np.allclose(letterbox, crops_to_array(crop_boxes(image, np.array([[0, 0, 256, 256]]), (64, 64),
                                                                   padding=1.0)[0]))
    assert calibration_key(None, 128) == "embedded128" and calibration_key(folder, 128) != calibration_key(data, 128)
    with pytest.raises(FileNotFoundError, match="not found"):
        calibration_crops(tmp_path / "missing", (64, 48))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        calibration_crops(tmp_path / "empty", (64, 48))


def test_cli_exports_and_predicts_in_int8(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from rlepose.hub import SHIPPED_ONE_STAGE_PATH, SHIPPED_PATH
    from rlepose.inference.export import read_onnx_metadata

    out = tmp_path / "m.int8.onnx"
    assert main(["export", "--checkpoint", str(SHIPPED_PATH), "--precision", "int8", "--out", str(out)]) == 0
    meta = read_onnx_metadata(out)
    assert meta["precision"] == "int8" and meta["int8_calibration"] == "embedded128" and meta["input_size"] == [96, 72]
    from rlepose.data.synthetic import SyntheticConfig, render_image

    image, people = render_image(np.random.default_rng(7), SyntheticConfig())  # two people
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    capsys.readouterr()
    assert main(["predict", str(photo), "--checkpoint", str(SHIPPED_ONE_STAGE_PATH), "--precision", "int8",
                 "--out", str(tmp_path / "p.json")]) == 0
    assert "in int8 (asked for)" in capsys.readouterr().out
    found = json.loads((tmp_path / "p.json").read_text())
    # the one-stage graph was calibrated on whole letterboxed images: every person fp32 is sure of
    # is found in int8 too, at the same place and about the same score
    fp32 = [p for p in PosePredictor.from_checkpoint(SHIPPED_ONE_STAGE_PATH, precision="fp32")(image)
            if p.box_score >= 0.5]
    assert len(fp32) == 2
    for person in fp32:
        assert any(np.abs(np.array(f["bbox"]) - person.bbox).max() < 6 and abs(f["score"] - person.score) < 0.05
                   for f in found)
    with pytest.raises(ValueError, match="holds a int8 graph"):
        PosePredictor.from_checkpoint(SHIPPED_PATH, precision="fp32", onnx_path=out)


# -- CUDA graphs: padding to batch buckets ----------------------------------------------------


def test_batches_are_padded_to_buckets_and_cut_back():
    seen = []

    def fn(x):
        seen.append(len(x))
        return x * 2, x.sum(dim=(1, 2))

    runner = BucketedGraphs(fn, buckets=(1, 2, 4, 8), capture=False)
    assert [runner.bucket(n) for n in (1, 2, 3, 4, 5, 8)] == [1, 2, 4, 4, 8, 8]
    x = torch.randn(19, 3, 2)
    doubled, sums = runner(x)
    assert seen == [8, 8, 4]  # 8 + 8 + 3 padded to 4
    assert torch.equal(doubled, x * 2) and torch.allclose(sums, x.sum(dim=(1, 2)))
    seen.clear()
    three, _ = runner(torch.ones(3, 5, 1))
    assert seen == [4] and torch.equal(three, torch.full((3, 5, 1), 2.0))
    with pytest.raises(ValueError, match="positive"):
        BucketedGraphs(fn, buckets=(0, 4))
    # the padded batch keeps the channels-last layout the backend feeds (what a graph records)
    layouts = []
    keeps = BucketedGraphs(lambda x: layouts.append(x.is_contiguous(memory_format=torch.channels_last)) or x,
                           buckets=(4,), capture=False)
    keeps(torch.randn(3, 3, 8, 6).contiguous(memory_format=torch.channels_last))
    assert layouts == [True]


def test_cuda_graphs_need_a_cuda_device(tmp_path):
    from rlepose.inference.backends import TorchBackend
    from rlepose.models import ModelConfig, build_pose_model

    model = build_pose_model(ModelConfig("resnet18", "regression"))
    with pytest.raises(ValueError, match="CUDA device"):
        TorchBackend(model, (64, 48), cuda_graphs=True)
    backend = TorchBackend(model, (64, 48))
    assert not backend.cuda_graphs  # off on the CPU, on by default on a GPU
