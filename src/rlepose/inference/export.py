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

__all__ = ["InferenceGraph", "torchscript_onnx_export", "export_onnx", "read_onnx_metadata", "cached_onnx", "export_checkpoint"]


class InferenceGraph(nn.Module):
    """``images →`` the model's ``inference_outputs``: ``(keypoints, joint_confidence)`` for
    every top-down head, the dense outputs for a one-stage model."""

    def __init__(self, model: TopDownPoseModel | OneStagePoseModel) -> None:
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


def export_onnx(model: TopDownPoseModel | OneStagePoseModel, path: str | Path, input_size: tuple[int, int],
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


def cached_onnx(checkpoint: str | Path, onnx_path: str | Path | None = None, trust: bool = False) -> Path:
    """The ONNX inference graph of ``checkpoint``, exported on first use.

    Without ``onnx_path`` the graph lives under ``$RLEPOSE_HOME/onnx/``, named by the sha256 of
    the checkpoint's bytes: a changed checkpoint gets a new graph, and nothing is written beside
    the checkpoint (which may be inside an installed package). ``onnx_path``: a graph the user
    chose; used as it is when it exists, exported there when it does not, never overwritten."""
    checkpoint = Path(checkpoint)
    if onnx_path is not None:
        onnx_path = Path(onnx_path)
        return onnx_path if onnx_path.is_file() else export_checkpoint(checkpoint, onnx_path, trust=trust)
    from rlepose.hub import home

    digest = checkpoint_digest(checkpoint)
    path = home() / "onnx" / f"{checkpoint.stem}-{digest[:16]}.onnx"
    if path.is_file() and read_onnx_metadata(path).get("sha256") == digest:
        return path
    return export_checkpoint(checkpoint, path, trust=trust, extra_metadata={"sha256": digest})


def export_checkpoint(checkpoint: str | Path, out: str | Path | None = None, trust: bool = False,
                      extra_metadata: dict | None = None) -> Path:
    """``rlepose export``: a checkpoint's inference graph to ONNX with what a predictor needs in
    its metadata (input size, keypoint set, config; and ``extra_metadata``), written to a
    temporary name and renamed."""
    from dataclasses import asdict

    from rlepose.config import config_to_dict
    from rlepose.inference.loading import load_pose_model

    loaded = load_pose_model(checkpoint, trust=trust)
    meta = {"input_size": list(loaded.input_size), "keypoints": asdict(loaded.spec),
            "config": config_to_dict(loaded.config), **(extra_metadata or {})}
    out = Path(out) if out else Path(checkpoint).with_suffix(".onnx")
    tmp = out.with_name(out.name + ".part")
    export_onnx(loaded.model, tmp, loaded.input_size, meta)
    tmp.replace(out)
    return out
