"""Person detectors behind one interface: ``detector(image RGB uint8 (H, W, 3)) → (boxes (M, 4)
as (x, y, w, h) pixels, scores (M,))``.

* :class:`YOLOXDetector` — a YOLOX person detector exported to ONNX (MMPose publishes them for
  its RTMPose SDK, trained on Human-Art), run on ONNX Runtime: letterbox to the model's input
  (top-left, padded with 114), BGR pixel values 0–255, then either the graph's own NMS output
  ``dets`` (1, N, 5) = (x1, y1, x2, y2, score) or raw YOLOX head outputs (1, A, 5 + C) decoded on
  the stride-8/16/32 grids and filtered by score and NMS here.
* :class:`HOGDetector` — OpenCV's HOG + linear SVM people detector, offline and weak (it wants
  upright people at least 128 px tall, and misses many).
* :func:`build_detector` — by name: ``yolox-tiny``, ``yolox-s``, ``yolox-m``, ``yolox-l``,
  ``yolox-x`` (downloaded on first use, see :mod:`rlepose.hub`), ``hog``, or a path to an
  ``.onnx`` YOLOX file.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["NoDetectorError", "nms", "box_iou_xywh", "YOLOXDetector", "HOGDetector", "build_detector"]


class NoDetectorError(RuntimeError):
    """No person detector can run; the message says how to get one."""


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        lt = np.maximum(boxes_xyxy[i, :2], boxes_xyxy[rest, :2])
        rb = np.minimum(boxes_xyxy[i, 2:], boxes_xyxy[rest, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=int)


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes given as (x, y, w, h)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    return inter / np.maximum(a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter, 1e-12)


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    out = np.asarray(boxes, float).reshape(-1, 4).copy()
    out[:, 2:] -= out[:, :2]
    return out


class YOLOXDetector:
    """A YOLOX ONNX person detector. ``score_threshold`` keeps boxes scoring at least that;
    ``nms_threshold`` is the IoU above which raw outputs are suppressed (graphs with their own
    NMS are taken as they are); ``person_class``: the class index of a person in multi-class
    graphs (0 in COCO's order)."""

    def __init__(self, path: str | Path, score_threshold: float = 0.3, nms_threshold: float = 0.45,
                 person_class: int = 0, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"detector model not found: {path}")
        self.session = ort.InferenceSession(str(path), providers=providers or ort.get_available_providers())
        shape = self.session.get_inputs()[0].shape
        if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]):
            raise ValueError(f"{path}: expected a fixed (1, 3, H, W) input, got {shape}")
        self.input_name = self.session.get_inputs()[0].name
        self.input_size = (int(shape[2]), int(shape[3]))
        self.score_threshold, self.nms_threshold, self.person_class = score_threshold, nms_threshold, person_class

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """RGB image → (1, 3, H, W) float32 BGR input (pixel values, padding 114 right and
        below), and the resize ratio (model pixels per image pixel)."""
        h, w = self.input_size
        ratio = min(h / image.shape[0], w / image.shape[1])
        size = (max(1, int(image.shape[1] * ratio)), max(1, int(image.shape[0] * ratio)))
        canvas = np.full((h, w, 3), 114, np.uint8)
        canvas[: size[1], : size[0]] = cv2.resize(image[..., ::-1], size, interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32), ratio

    def decode_raw(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw YOLOX head outputs (A, 5 + C) on the stride-8/16/32 grids → boxes (x1, y1, x2, y2)
        in model pixels and person scores (objectness × class probability)."""
        h, w = self.input_size
        grids, strides = [], []
        for stride in (8, 16, 32):
            ys, xs = np.mgrid[0 : h // stride, 0 : w // stride]
            grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
            strides.append(np.full((grids[-1].shape[0], 1), stride))
        grid, stride = np.concatenate(grids), np.concatenate(strides)
        if len(grid) != len(raw):
            raise ValueError(f"raw YOLOX output has {len(raw)} anchors; a {w}×{h} input gives {len(grid)}")
        centre = (raw[:, :2] + grid) * stride
        size = np.exp(raw[:, 2:4]) * stride
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        return boxes, raw[:, 4] * raw[:, 5 + self.person_class]

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, ratio = self.letterbox(image)
        out = self.session.run(None, {self.input_name: x})
        first = np.asarray(out[0])[0]
        if first.shape[-1] == 5:  # the graph ran NMS: dets (N, 5), labels (N,) when present
            boxes, scores = first[:, :4].astype(float), first[:, 4].astype(float)
            if len(out) > 1:
                labels = np.asarray(out[1]).reshape(-1)
                keep = labels == self.person_class
                boxes, scores = boxes[keep], scores[keep]
            keep = scores >= self.score_threshold
            boxes, scores = boxes[keep], scores[keep]
        else:
            boxes, scores = self.decode_raw(first.astype(float))
            keep = scores >= self.score_threshold
            boxes, scores = boxes[keep], scores[keep]
            kept = nms(boxes, scores, self.nms_threshold)
            boxes, scores = boxes[kept], scores[kept]
        boxes = boxes / ratio
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, image.shape[1])
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, image.shape[0])
        xywh = _xyxy_to_xywh(boxes)
        keep = (xywh[:, 2] > 1) & (xywh[:, 3] > 1)
        return xywh[keep], scores[keep]


class HOGDetector:
    """OpenCV's default HOG people detector (Dalal–Triggs, 64×128 window). ``upscale`` enlarges
    the image first so that smaller people reach the window's 128 px; ``hit_threshold`` is the
    SVM margin a window needs; overlapping windows are merged by NMS at ``nms_threshold``;"""

    def __init__(self, upscale: float = 1.0, hit_threshold: float = 0.0, nms_threshold: float = 0.45,
                 win_stride: int = 8) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise NoDetectorError(f"OpenCV {cv2.__version__} has no HOGDescriptor (OpenCV 5 moved it out of the "
                                  "main package): pip install 'opencv-python-headless<5', or use --detector yolox-s")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.upscale, self.hit_threshold, self.nms_threshold = upscale, hit_threshold, nms_threshold
        self.win_stride = win_stride

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.upscale != 1.0:
            gray = cv2.resize(gray, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        rects, weights = self.hog.detectMultiScale(gray, hitThreshold=self.hit_threshold,
                                                   winStride=(self.win_stride, self.win_stride), padding=(8, 8),
                                                   scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        boxes = np.asarray(rects, float).reshape(-1, 4) / self.upscale
        scores = np.asarray(weights, float).reshape(-1)
        xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1)
        keep = nms(xyxy, scores, self.nms_threshold)
        boxes = boxes[keep]
        # an SVM margin is not a probability: squash it to (0, 1) for the box score
        return boxes, 1.0 / (1.0 + np.exp(-scores[keep]))


def build_detector(name: str, score_threshold: float = 0.3, progress: bool = True):
    """A detector by name: ``hog``; ``yolox-tiny/s/m/l/x`` (fetched by :mod:`rlepose.hub`); or a
    path to a YOLOX ``.onnx``. Raises :class:`NoDetectorError` with what to do when it cannot run."""
    if name == "hog":
        return HOGDetector(upscale=2.0, hit_threshold=0.0)
    if name.endswith(".onnx") or Path(name).is_file():
        return YOLOXDetector(name, score_threshold)
    from rlepose.hub import DETECTORS, DownloadError, detector_onnx

    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}: hog, {', '.join(DETECTORS)}, or a path to a YOLOX .onnx file")
    try:
        import onnxruntime  # noqa: F401
    except ModuleNotFoundError as e:
        raise NoDetectorError(f"--detector {name} runs on ONNX Runtime: pip install 'rlepose[export]', "
                              "or use --detector hog, --boxes FILE or --whole-image") from e
    try:
        path = detector_onnx(name, progress=progress)
    except DownloadError as e:
        raise NoDetectorError(f"{e}\nWithout it: --detector hog (OpenCV, weak), --boxes FILE (COCO detection "
                              "results) or --whole-image") from e
    return YOLOXDetector(path, score_threshold)
