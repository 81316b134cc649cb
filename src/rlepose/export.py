"""Deployment: the inference graph (backbone + head, no flow) to ONNX, and an ONNX Runtime backend.

The exported graph maps normalized crops ``images`` (N, 3, H, W), dynamic N, to ``keypoints``
(N, K, D) in normalized crop coordinates and ``joint_confidence`` (N, K) (``1 − mean_d σ̂``; the
heatmap peak for heatmap heads). What a predictor needs besides (input size, keypoint set) is
stored in the model's metadata under ``rlepose``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rlepose.models.pose_model import TopDownPoseModel


class InferenceGraph(nn.Module):
    """``images → (keypoints, joint_confidence)`` for every head type."""

    def __init__(self, model: TopDownPoseModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.inference(images)
        return out["keypoints"], out["joint_confidence"]


def export_onnx(model: TopDownPoseModel, path: str | Path, input_size: tuple[int, int], metadata: dict,
                opset: int = 17) -> Path:
    """Write the inference graph of ``model`` to ``path`` with dynamic batch and ``metadata``."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = InferenceGraph(model).eval()
    dummy = torch.zeros(2, 3, *input_size)
    axes = {"images": {0: "batch"}, "keypoints": {0: "batch"}, "joint_confidence": {0: "batch"}}
    with warnings.catch_warnings():
        # The exporter warns about constant folding of slices and about gathers with negative
        # indices; the heatmap decoder's indices are never negative.
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(graph, (dummy,), str(path), input_names=["images"],
                          output_names=["keypoints", "joint_confidence"], dynamic_axes=axes, opset_version=opset,
                          dynamo=False)
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


class OnnxBackend:
    """ONNX Runtime session with the same call as the PyTorch path: (N, 3, H, W) float32 →
    (keypoints, joint_confidence) as tensors."""

    def __init__(self, path: str | Path, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        self.session = ort.InferenceSession(str(path), providers=providers or ort.get_available_providers())
        meta = self.session.get_modelmeta().custom_metadata_map
        if "rlepose" not in meta:
            raise ValueError(f"{path} was not exported by rlepose (no 'rlepose' metadata)")
        self.metadata = json.loads(meta["rlepose"])

    takes_numpy = True  # PosePredictor hands it NumPy batches (see PosePredictor.predict_many)

    def __call__(self, images: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        if isinstance(images, Tensor):
            images = images.detach().cpu().numpy()
        x = np.ascontiguousarray(images, dtype=np.float32)
        kp, conf = self.session.run(None, {"images": x})
        return torch.from_numpy(kp), torch.from_numpy(conf)
