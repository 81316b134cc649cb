"""int8 inference: a pose model's exported ONNX graph statically quantized by ONNX Runtime.

Weights are int8, one symmetric scale per output channel; activations uint8 with one scale per
tensor, their ranges measured on calibration crops (``calibration_crops``). The graph is in the
QDQ form (QuantizeLinear/DequantizeLinear pairs around each quantized operator), which ONNX
Runtime fuses into integer convolutions and matrix products (VNNI or AMX instructions where the
CPU has them). Only convolutions, matrix products and pooling are quantized: the decoding
after the head (sigmoid of σ̂, the integral head's soft-argmax) stays in float32.

``PosePredictor.from_checkpoint(ckpt, precision="int8")``, ``rlepose predict --precision int8``
and ``rlepose export --precision int8`` quantize on first use
(:func:`rlepose.inference.export.cached_onnx`) and cache the graph.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from rlepose.data.io import read_image
from rlepose.data.transforms import crop_boxes, crops_to_array

__all__ = ["EMBEDDED_CALIBRATION_SEED", "IMAGE_SUFFIXES", "calibration_crops", "calibration_key", "quantize_onnx"]

#: the embedded data's calibration images are rendered from this seed: neither a training split
#: (``seed``) nor a held-out one (``seed + 10 000``) of `rlepose demo` and the embedded configs
EMBEDDED_CALIBRATION_SEED = 20_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
QUANTIZED_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm", "MaxPool", "GlobalAveragePool", "AveragePool", "Add", "Relu"]


def _images_and_boxes(source: Path) -> list[tuple[Path, np.ndarray]]:
    """(image path, boxes (M, 4) x, y, w, h) from a folder (each whole image one box) or a COCO
    JSON (its annotations' boxes; images beside the JSON or in the folder named as its stem)."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
        return [(p, None) for p in files]
    if source.suffix.lower() != ".json":
        raise ValueError(f"calibration data must be a folder of images or a COCO JSON, got {source}")
    ann = json.loads(source.read_text())
    boxes: dict = {}
    for a in ann.get("annotations", []):
        if not a.get("iscrowd", 0) and a.get("bbox") and a["bbox"][2] > 1 and a["bbox"][3] > 1:
            boxes.setdefault(a["image_id"], []).append(a["bbox"])
    out = []
    for img in ann.get("images", []):
        if img["id"] not in boxes:
            continue
        for folder in (source.parent, source.parent / source.stem):
            if (folder / img["file_name"]).is_file():
                out.append((folder / img["file_name"], np.asarray(boxes[img["id"]], float)))
                break
        else:
            raise FileNotFoundError(f"{img['file_name']} (in {source.name}) is neither in {source.parent} "
                                    f"nor in {source.parent / source.stem}")
    if not out:
        raise ValueError(f"{source} has no person boxes to calibrate on")
    return out


def calibration_crops(source: str | Path | None, input_size: tuple[int, int], count: int = 128,
                      whole_images: bool = False) -> np.ndarray:
    """Up to ``count`` normalized crops (N, 3, H, W) float32 to measure activation ranges on.

    ``source``: None → people in images of the embedded renderer from
    :data:`EMBEDDED_CALIBRATION_SEED` (held out from its training and test images); a folder →
    each image in it as one person box (crops of people); a COCO JSON → the boxes of its
    annotations. Crops are made as inference makes them (:func:`rlepose.data.transforms.crop_boxes`);
    ``whole_images``: each image letterboxed whole instead, as a one-stage model sees it."""
    crops = []

    def crop(image: np.ndarray, boxes: np.ndarray | None) -> np.ndarray:
        if whole_images or boxes is None:
            whole = np.array([[0.0, 0.0, image.shape[1], image.shape[0]]])
            return crop_boxes(image, whole, input_size, padding=1.0 if whole_images else 1.25)[0]
        return crop_boxes(image, boxes, input_size)[0]

    if source is None:
        from rlepose.data.synthetic import SyntheticConfig, render_image

        cfg = SyntheticConfig(seed=EMBEDDED_CALIBRATION_SEED)
        rng = np.random.default_rng(cfg.seed)
        while sum(len(c) for c in crops) < count:
            image, people = render_image(rng, cfg)
            crops.append(crop(image, np.array([p["bbox"] for p in people])))
    else:
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"calibration data not found: {source}")
        for path, boxes in _images_and_boxes(source):
            crops.append(crop(read_image(path), boxes))
            if sum(len(c) for c in crops) >= count:
                break
    return crops_to_array(np.concatenate(crops)[:count])


def calibration_key(source: str | Path | None, count: int) -> str:
    """A short name of the calibration data, for cached graph names: ``embedded`` or a digest
    of the source's path, its files' names and sizes (a changed folder gets a new graph)."""
    if source is None:
        return f"embedded{count}"
    source = Path(source).resolve()
    files = sorted(source.rglob("*")) if source.is_dir() else [source]
    digest = hashlib.sha256(str(source).encode())
    for f in files:
        if f.is_file():
            digest.update(f"{f.name}:{f.stat().st_size};".encode())
    return f"{digest.hexdigest()[:12]}-{count}"


class _Reader:
    """ONNX Runtime's calibration-data reader over crops (N, 3, H, W), in batches."""

    def __init__(self, crops: np.ndarray, batch: int = 16) -> None:
        self.batches = iter([{"images": crops[i:i + batch]} for i in range(0, len(crops), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, crops: np.ndarray,
                  extra_metadata: dict | None = None) -> Path:
    """Quantize the fp32 inference graph ``fp32_path`` (written by
    :func:`rlepose.inference.export.export_onnx`) to int8 at ``out_path``, calibrated on ``crops``
    (N, 3, H, W) float32 normalized (see :func:`calibration_crops`). The ``rlepose`` metadata is
    carried over, with ``precision: int8``, the number of crops and ``extra_metadata``."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    props = {p.key: p.value for p in onnx.load(str(fp32_path), load_external_data=False).metadata_props}
    meta = json.loads(props.get("rlepose", "{}"))
    if not meta:
        raise ValueError(f"{fp32_path} was not exported by rlepose (no 'rlepose' metadata)")
    if meta.get("precision", "fp32") != "fp32":
        raise ValueError(f"{fp32_path} is already quantized ({meta['precision']})")
    if len(crops) == 0:
        raise ValueError("no calibration crops")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    reader = type("Reader", (_Reader, CalibrationDataReader), {})(np.ascontiguousarray(crops, np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        part = out_path.with_name(out_path.name + ".part")
        quantize_static(str(prepared), str(part), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTIZED_OPS, calibrate_method=CalibrationMethod.MinMax)
    proto = onnx.load(str(part))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key = "rlepose"
    entry.value = json.dumps({**meta, "precision": "int8", "calibration_crops": int(len(crops)),
                              **(extra_metadata or {})})
    onnx.save(proto, str(part))
    part.replace(out_path)
    return out_path
