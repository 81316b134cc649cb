"""Person detection: OpenCV HOG on the real fixture photos, the YOLOX ONNX path on tiny graphs
this test builds with MMPose's inputs and outputs, fetching by name, and the CLI's choices."""
import io
import json
import zipfile

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from rlepose import hub
from rlepose.cli import main
from rlepose.inference.detectors import HOGDetector, NoDetectorError, YOLOXDetector, box_iou_xywh, build_detector, nms

from test_hub import _Server

onnxruntime = pytest.importorskip("onnxruntime")


def test_nms_and_iou_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # box 1 overlaps box 3 (the best) with IoU 81/119 = 0.68: gone at 0.5, kept at 0.7
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.7).tolist() == [3, 1, 2]
    assert box_iou_xywh([[0, 0, 10, 10]], [[1, 1, 10, 10], [10, 0, 5, 5]]) == pytest.approx(np.array([[81 / 119, 0.0]]))


@pytest.mark.skipif(not hasattr(cv2, "HOGDescriptor"), reason="this OpenCV has no HOGDescriptor")
def test_hog_recall_on_the_fixture_photos(fixtures):
    """People at least 128 px tall in the COCO fixtures: HOG (2× upscaled) finds 2 of 10 at
    IoU ≥ 0.5, as measured when the detector was added (README)."""
    gt = json.loads((fixtures / "coco/test_coco.json").read_text())
    detector = build_detector("hog")
    found = {}
    for img in gt["images"]:
        boxes = [a["bbox"] for a in gt["annotations"] if a["image_id"] == img["id"] and a["bbox"][3] >= 128]
        if not boxes:
            continue
        image = cv2.cvtColor(cv2.imread(str(fixtures / "coco" / img["file_name"])), cv2.COLOR_BGR2RGB)
        det, scores = detector(image)
        assert det.shape[1:] == (4,) and ((0.5 < scores) & (scores < 1)).all()
        iou = box_iou_xywh(boxes, det) if len(det) else np.zeros((len(boxes), 1))
        found[img["id"]] = (int((iou.max(1) >= 0.5).sum()), len(boxes))
    assert found == {785: (0, 1), 40083: (0, 2), 196141: (1, 2), 197388: (1, 5)}


class _NmsGraph(nn.Module):
    """Like MMPose's end2end.onnx: dets (1, N, 5) in letterboxed pixels and labels (1, N). One
    person box whose score is the mean of input channel 0 (blue, in BGR) / 255, one box of
    another class."""

    def forward(self, x):
        score = x[:, 0].mean() / 255
        dets = torch.stack([torch.stack([torch.tensor(8.0), torch.tensor(8.0), torch.tensor(24.0), torch.tensor(40.0), score]),
                            torch.tensor([0.0, 0.0, 4.0, 4.0, 0.99])])[None]
        return dets, torch.tensor([[0, 3]])


class _RawGraph(nn.Module):
    """Raw YOLOX head outputs (1, A, 6) for one class on the stride-8/16/32 grids of a 64×64 input:
    anchor (gx 2, gy 3) of stride 8 says box centre (2.5, 3.5)·8, size 2·8, score 0.9·1; its
    neighbour (gx 3) a shifted box with score 0.5 that NMS must remove."""

    def forward(self, x):
        a = 8 * 8 + 4 * 4 + 2 * 2
        out = torch.zeros(1, a, 6) + x.mean() * 0  # depends on the input, so it is a real graph
        out[0, :, 4] = 0.0
        i, j = 3 * 8 + 2, 3 * 8 + 3
        out[0, i] = torch.tensor([0.5, 0.5, np.log(2.0), np.log(2.0), 0.9, 1.0])
        out[0, j] = torch.tensor([-0.3, 0.5, np.log(2.0), np.log(2.0), 0.5, 1.0])
        return out


def _export(module, path, names):
    import warnings

    from rlepose.inference.export import torchscript_onnx_export

    with warnings.catch_warnings():  # the fake graphs' constant outputs are constants on purpose
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torchscript_onnx_export(module, (torch.zeros(1, 3, 64, 64),), path, input_names=["input"], output_names=names,
                                opset_version=17)
    return path


def test_yolox_graph_with_nms_letterbox_and_bgr(tmp_path):
    detector = YOLOXDetector(_export(_NmsGraph(), tmp_path / "e2e.onnx", ["dets", "labels"]), score_threshold=0.3)
    assert detector.input_size == (64, 64)
    image = np.zeros((128, 64, 3), np.uint8)
    image[..., 2] = 255  # pure blue in RGB
    boxes, scores = detector(image)
    # ratio 0.5: the image fills the left 32 columns of the 64×64 canvas, 114 elsewhere
    assert scores == pytest.approx([(255 + 114) / 2 / 255], abs=1e-5)
    assert boxes == pytest.approx(np.array([[16.0, 16.0, 32.0, 64.0]]))  # the other class is dropped
    image[..., 2] = 0
    assert len(detector(image)[0]) == 0  # score 114/2/255 = 0.22 < 0.3


def test_yolox_raw_outputs_are_decoded_and_suppressed(tmp_path):
    detector = YOLOXDetector(_export(_RawGraph(), tmp_path / "raw.onnx", ["output"]), score_threshold=0.3)
    boxes, scores = detector(np.zeros((64, 64, 3), np.uint8))
    assert scores == pytest.approx([0.9])
    assert boxes == pytest.approx(np.array([[12.0, 20.0, 16.0, 16.0]]))


def test_detector_by_name_downloads_unzips_and_caches(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path / "home"))
    onnx_bytes = _export(_NmsGraph(), tmp_path / "e2e.onnx", ["dets", "labels"]).read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("yolox/end2end.onnx", onnx_bytes)
        z.writestr("yolox/deploy.json", "{}")
    good = buffer.getvalue()
    with _Server({"/good.zip": good, "/cut.zip": good}, cut=("/cut.zip",)) as server:
        monkeypatch.setitem(hub.DETECTORS, "yolox-s", hub.PretrainedDetector("yolox-s", server.url + "/good.zip", (64, 64)))
        path = hub.detector_onnx("yolox-s", progress=False)
        assert path == tmp_path / "home/detectors/yolox-s.onnx" and path.read_bytes() == onnx_bytes
        assert isinstance(build_detector("yolox-s"), YOLOXDetector)
        assert server.requests == ["/good.zip"]  # the second use is a cache hit
        assert main(["models"]) == 0
        listed = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("yolox-")]
        assert {row[0]: row[-1] for row in listed} == {"yolox-tiny": "no", "yolox-s": "yes", "yolox-m": "no",
                                                       "yolox-l": "no", "yolox-x": "no"}
        monkeypatch.setitem(hub.DETECTORS, "yolox-m", hub.PretrainedDetector("yolox-m", server.url + "/cut.zip", (64, 64)))
        with pytest.raises(hub.DownloadError, match="cut"):
            hub.detector_onnx("yolox-m", progress=False)
        assert not hub.detector_path(hub.DETECTORS["yolox-m"]).exists()
        assert not list((tmp_path / "home").rglob("*.part"))


def test_predict_cli_detector_choices(tmp_path, fixtures, monkeypatch, capsys):
    from test_deploy import _checkpoint

    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path / "home"))
    ckpt, _ = _checkpoint(tmp_path)
    image = str(fixtures / "coco/000000196141.jpg")
    out = tmp_path / "p.json"
    # offline (nothing listens on port 1): a clear message, no silent whole-image box
    monkeypatch.setitem(hub.DETECTORS, "yolox-s", hub.PretrainedDetector("yolox-s", "http://127.0.0.1:1/y.zip", (640, 640)))
    assert main(["predict", image, "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--detector hog" in err and "--whole-image" in err and not out.exists()
    assert main(["predict", image, "--checkpoint", str(ckpt), "--out", str(out), "--whole-image"]) == 0
    assert [r["bbox"] for r in json.loads(out.read_text())] == [[0, 0, 640, 429]]
    if hasattr(cv2, "HOGDescriptor"):
        assert main(["predict", image, "--checkpoint", str(ckpt), "--out", str(out), "--detector", "hog"]) == 0
        assert len(json.loads(out.read_text())) == 2  # HOG's two boxes on this photo (2× upscaled)
    with pytest.raises(ValueError, match="unknown detector"):
        build_detector("nope")
    with pytest.raises(NoDetectorError, match="hog"):
        build_detector("yolox-s")


def test_hog_without_opencv_support_says_what_to_do(monkeypatch):
    monkeypatch.delattr(cv2, "HOGDescriptor", raising=False)
    with pytest.raises(NoDetectorError, match="opencv-python-headless<5"):
        HOGDetector()
