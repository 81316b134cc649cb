"""Runners of a pose model's inference graph, with one call: normalized crops (N, 3, H, W) →
the model's ``inference_outputs`` as CPU tensors: for a top-down model ``(keypoints (N, K, D)
normalized, joint_confidence (N, K))``, for a one-stage model its dense outputs
(:meth:`rlepose.models.one_stage.OneStagePoseModel.inference`).

* :class:`TorchBackend`: eager PyTorch, BatchNorm folded, channels-last, ``inference_mode``, and
  ``autocast`` when asked (fp16 on a GPU; bf16 on a GPU or a CPU with AVX512-BF16/AMX);
* :class:`OnnxBackend`: the exported graph under ONNX Runtime;
* :func:`choose_backend`: ``auto`` picks ``torch`` on a CUDA GPU or for a precision other than
  fp32, else ``onnxruntime`` when it is installed, else ``torch``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rlepose.inference.cuda_graphs import BucketedGraphs
from rlepose.inference.precision import BACKENDS, resolve_precision

__all__ = ["BACKENDS", "choose_backend", "cast_autocast_weights", "TorchBackend", "OnnxBackend"]

def choose_backend(backend: str = "auto", device: str | None = None, precision: str = "fp32") -> str:
    """The backend that runs ``precision`` when ``backend`` is asked for
    (:func:`rlepose.inference.precision.resolve_precision`)."""
    return resolve_precision(precision, backend, device).backend


def cast_autocast_weights(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Store the weights and biases of convolutions and linear layers in ``dtype``, in place.
    Autocast would cast exactly these to ``dtype`` on every call (its cast cache lasts one
    context); cast once, the results are the same bit for bit and a call skips reading and
    writing every weight (ResNet-50: 24M of them)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            for name in ("weight", "bias"):
                p = getattr(m, name)
                if p is not None:
                    setattr(m, name, nn.Parameter(p.detach().to(dtype), requires_grad=False))
    return model


class TorchBackend:
    """Eager PyTorch inference: (N, 3, H, W) normalized crops → the model's
    ``inference_outputs`` (e.g. keypoints (N, K, D) normalized, joint_confidence (N, K)) as
    float32 tensors on the CPU.

    The model is rewritten for inference by :func:`rlepose.models.optimize.optimize_for_inference`
    (the one passed in is untouched). ``precision`` ``"fp16"``/``"bf16"`` runs under
    ``torch.autocast`` with the convolution and linear weights stored in that type (GPUs; bf16
    also on CPUs with AVX512-BF16/AMX); ``compile`` wraps the model in ``torch.compile``.
    ``cuda_graphs``: replay CUDA graphs recorded per batch bucket
    (:class:`rlepose.inference.cuda_graphs.BucketedGraphs`); None → on a CUDA device unless
    ``compile``.
    """

    def __init__(self, model, input_size: tuple[int, int], device: str | torch.device = "cpu",
                 optimize: bool = True, precision: str = "fp32", compile: bool = False,
                 cuda_graphs: bool | None = None) -> None:
        from rlepose.models.optimize import optimize_for_inference

        if precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16 on the torch backend, got {precision!r}")
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        probe = torch.zeros(2, 3, *input_size, device=self.device)
        self.channels_last = optimize
        self.model = optimize_for_inference(model, probe) if optimize else model
        self.precision = precision
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        if self.dtype is not None:
            if not optimize:
                self.model = copy.deepcopy(model)
            cast_autocast_weights(self.model, self.dtype)
        self.outputs = tuple(model.inference_outputs)
        inference = torch.compile(self.model.inference) if compile else self.model.inference
        self.cuda_graphs = (self.device.type == "cuda" and not compile) if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and self.device.type != "cuda":
            raise ValueError("cuda_graphs needs a CUDA device")

        def forward(images: Tensor) -> tuple[Tensor, ...]:
            # the weights are cast once above, so autocast's per-call cache is not needed (and
            # must be off while a CUDA graph records)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None, cache_enabled=False):
                out = inference(images)
            return tuple(out[k] for k in self.outputs)

        self._forward = BucketedGraphs(forward, capture=True) if self.cuda_graphs else forward

    def __call__(self, images: Tensor) -> tuple[Tensor, ...]:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self._forward(images)
        return tuple(o.float().cpu() for o in out)


class OnnxBackend:
    """ONNX Runtime session with the same call as the PyTorch path: (N, 3, H, W) float32 → the
    graph's outputs (e.g. keypoints, joint_confidence) as tensors."""

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

    def __call__(self, images: Tensor | np.ndarray) -> tuple[Tensor, ...]:
        if isinstance(images, Tensor):
            images = images.detach().cpu().numpy()
        x = np.ascontiguousarray(images, dtype=np.float32)
        return tuple(torch.from_numpy(o) for o in self.session.run(None, {"images": x}))
