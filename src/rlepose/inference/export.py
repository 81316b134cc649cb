"""Deployment: the inference graph (backbone + head, no flow) to ONNX, and an ONNX Runtime backend.

The exported graph maps normalized crops ``images`` (N, 3, H, W), dynamic N, to ``keypoints``
(N, K, D) in normalized crop coordinates and ``joint_confidence`` (N, K) (``1 − mean_d σ̂``; the
heatmap peak for heatmap heads); a one-stage model's graph maps whole letterboxed images to its
dense outputs (scores, boxes, keypoints, joint_confidence, sigma per location, input pixels),
from which :func:`rlepose.inference.one_stage.decode_people` picks the people. What a predictor needs besides (input size, keypoint set) is
stored in the model's metadata under ``rlepose``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from rlepose.models.one_stage import OneStagePoseModel
from rlepose.models.pose_model import TopDownPoseModel
from rlepose.models.rcnn import RCNNPoseModel

__all__ = ["InferenceGraph", "torchscript_onnx_export", "export_onnx", "read_onnx_metadata", "cached_onnx", "export_checkpoint"]


class InferenceGraph(nn.Module):
    """``images →`` the model's ``inference_outputs``: ``(keypoints, joint_confidence)`` for
    every top-down head, the dense outputs for a one-stage model."""

    def __init__(self, model: TopDownPoseModel | OneStagePoseModel | RCNNPoseModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model.inference(images)
        return tuple(out[k] for k in self.model.inference_outputs)


def torchscript_onnx_export(module: nn.Module, args: tuple, path: str | Path, **kwargs) -> None:
    """``torch.onnx.export`` with the TorchScript exporter, chosen on purpose: PyTorch's newer one
    needs onnxscript, and these graphs are tested against ONNX Runtime. Its deprecation notice is
    expected and left out, as are its notes on constant folding of slices, on gathers with
    negative indices (the heatmap decoder's indices are never negative) and the tracer's note on
    GroupNorm's check of its input size (the batch axis stays dynamic; the check is PyTorch's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*TorchScript-based ONNX")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.functional")
        torch.onnx.export(module, args, str(path), dynamo=False, **kwargs)


def export_onnx(model: TopDownPoseModel | OneStagePoseModel | RCNNPoseModel, path: str | Path, input_size: tuple[int, int],
                metadata: dict, opset: int = 17) -> Path:
    """Write the inference graph of ``model`` to ``path`` with dynamic batch and ``metadata``;
    its outputs are named as ``model.inference_outputs``."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = InferenceGraph(model).eval()
    dummy = torch.zeros(2, 3, *input_size)
    outputs = list(model.inference_outputs)
    axes = {name: {0: "batch"} for name in ["images", *outputs]}
    torchscript_onnx_export(graph, (dummy,), path, input_names=["images"], output_names=outputs,
                            dynamic_axes=axes, opset_version=opset)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "rlepose", json.dumps(metadata)
    onnx.save(proto, str(path))
    return path


def read_onnx_metadata(path: str | Path) -> dict:
    """The ``rlepose`` metadata of an exported model ({} when it has none or is unreadable)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # a truncated or foreign file is simply not a usable cache entry
        return {}
    meta = {p.key: p.value for p in proto.metadata_props}
    return json.loads(meta["rlepose"]) if "rlepose" in meta else {}


def checkpoint_digest(path: Path) -> str:
    """The sha256 of a checkpoint's bytes (hex), which names its cached graph."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_onnx(checkpoint: str | Path, onnx_path: str | Path | None = None, trust: bool = False,
                precision: str = "fp32", calibration: str | Path | None = None, calibration_count: int = 128) -> Path:
    """The ONNX inference graph of ``checkpoint``, exported (and for ``precision="int8"``
    quantized, :mod:`rlepose.inference.quantize`) on first use.

    Without ``onnx_path`` the graph lives under ``$RLEPOSE_HOME/onnx/``, named by the sha256 of
    the checkpoint's bytes (and, for int8, by the calibration data: ``calibration``, a folder of
    person crops or a COCO JSON, None for the embedded renderer's calibration images): a changed
    checkpoint gets a new graph, and nothing is written beside the checkpoint (which may be inside
    an installed package). ``onnx_path``: a graph the user chose; used as it is when it exists
    (it must hold ``precision``), exported there when it does not, never overwritten."""
    if precision not in ("fp32", "int8"):
        raise ValueError(f"ONNX graphs are fp32 or int8, not {precision!r}")
    checkpoint = Path(checkpoint)
    if onnx_path is not None and Path(onnx_path).is_file():
        held = read_onnx_metadata(onnx_path).get("precision", "fp32")
        if held != precision:
            raise ValueError(f"{onnx_path} holds a {held} graph, not {precision}")
        return Path(onnx_path)
    from rlepose.hub import home

    digest = checkpoint_digest(checkpoint)
    cached = home() / "onnx" / f"{checkpoint.stem}-{digest[:16]}.onnx"
    if precision == "fp32":
        if onnx_path is not None:
            return export_checkpoint(checkpoint, onnx_path, trust=trust)
        if cached.is_file() and read_onnx_metadata(cached).get("sha256") == digest:
            return cached
        return export_checkpoint(checkpoint, cached, trust=trust, extra_metadata={"sha256": digest})
    from rlepose.inference.quantize import calibration_key

    key = calibration_key(calibration, calibration_count)
    out = Path(onnx_path) if onnx_path is not None else cached.with_name(f"{cached.stem}-int8-{key}.onnx")
    if out.is_file() and read_onnx_metadata(out).get("int8_calibration") == key:
        return out
    return export_checkpoint(checkpoint, out, trust=trust, extra_metadata={"sha256": digest, "int8_calibration": key},
                             precision="int8", calibration=calibration, calibration_count=calibration_count)


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, trust: bool = False,
                      extra_metadata: dict | None = None, precision: str = "fp32",
                      calibration: str | Path | None = None, calibration_count: int = 128) -> Path:
    """``rlepose export``: a checkpoint's inference graph to ONNX with what a predictor needs in
    its metadata (input size, keypoint set, config; and ``extra_metadata``), written to a
    temporary name and renamed. ``precision="int8"``: quantized after export
    (:func:`rlepose.inference.quantize.quantize_onnx`) with crops from ``calibration``
    (:func:`rlepose.inference.quantize.calibration_crops`; None: the embedded renderer's)."""
    import tempfile
    from dataclasses import asdict

    from rlepose.config import config_to_dict
    from rlepose.inference.loading import load_pose_model

    if precision not in ("fp32", "int8"):
        raise ValueError(f"ONNX graphs are fp32 or int8, not {precision!r}")
    loaded = load_pose_model(checkpoint, trust=trust)
    meta = {"input_size": list(loaded.input_size), "keypoints": asdict(loaded.spec),
            "config": config_to_dict(loaded.config), **(extra_metadata or {})}
    if loaded.sigma_calibration is not None:
        meta["sigma_calibration"] = loaded.sigma_calibration
    out = Path(out) if out else Path(checkpoint).with_suffix(".onnx" if precision == "fp32" else ".int8.onnx")
    if precision == "fp32":
        tmp = out.with_name(out.name + ".part")
        export_onnx(loaded.model, tmp, loaded.input_size, meta)
        tmp.replace(out)
        return out
    from rlepose.inference.quantize import calibration_crops, calibration_key, quantize_onnx

    meta.setdefault("int8_calibration", calibration_key(calibration, calibration_count))
    crops = calibration_crops(calibration, loaded.input_size, calibration_count,
                              whole_images=loaded.config.task in ("one_stage", "rcnn"))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(loaded.model, Path(tmp) / "fp32.onnx", loaded.input_size, meta)
        return quantize_onnx(fp32, out, crops)
