"""A small Python API for trained models::

    from rlepose.api import PosePredictor
    predictor = PosePredictor.from_pretrained("rle-res50-coco")   # or .from_checkpoint("last.ckpt")
    people = predictor("photo.jpg")          # people found by the detector (YOLOX-s by default)
    people = predictor("photo.jpg", boxes=[[x, y, w, h]])   # or your own boxes; an RGB array works too
    people[0]["keypoints"], people[0]["joint_confidence"], people[0]["bbox"], people[0]["score"]

Backends (``backend=``): ``onnxruntime`` runs the exported inference graph (exported and cached
beside the checkpoint on first use); ``torch`` runs the model eagerly with BatchNorm folded,
channels-last memory and ``inference_mode`` (and ``autocast`` when asked: fp16 on a GPU, bf16 on
a GPU or a CPU with AVX512-BF16/AMX); ``auto``, the default, picks ``torch`` on a CUDA GPU or when
a precision other than fp32 is asked, else ``onnxruntime`` when it is installed, else ``torch``.
"""
from __future__ import annotations

import copy
import importlib.util
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rlepose.data.datasets import read_image
from rlepose.data.keypoints import KeypointSpec
from rlepose.data.transforms import crop_boxes, crops_to_array, crops_to_tensor
from rlepose.evaluation.coco import rescore
from rlepose.inference import crop_to_image, merge_flip

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnxruntime")


def choose_backend(backend: str = "auto", device: str | None = None, precision: str = "fp32") -> str:
    """``auto`` → ``torch`` on a CUDA device (or when ``device`` names one) or for a
    ``precision`` other than fp32 (the ONNX graph runs in fp32 only), ``onnxruntime`` when it is
    installed, ``torch`` otherwise; any other name is checked and returned."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime" and precision != "fp32":
        raise ValueError(f"precision {precision!r} needs the torch backend: the ONNX graph runs in fp32")
    if backend != "auto":
        return backend
    if precision != "fp32" or (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()):
        return "torch"
    return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "torch"


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
    """Eager PyTorch inference: (N, 3, H, W) normalized crops → (keypoints (N, K, D) normalized,
    joint_confidence (N, K)) on the CPU.

    The model is rewritten for inference by :func:`rlepose.models.optimize.optimize_for_inference`
    (the one passed in is untouched). ``precision`` ``"fp16"``/``"bf16"`` runs under
    ``torch.autocast`` (GPU; bf16 also on CPU, where it is fast on AVX512-BF16/AMX processors:
    1.8× fp32 on the development machine's, at 0.3 px of a 96×72 crop); ``compile`` wraps it
    in ``torch.compile``.
    """

    def __init__(self, model, input_size: tuple[int, int], device: str | torch.device = "cpu",
                 optimize: bool = True, precision: str = "fp32", compile: bool = False) -> None:
        from rlepose.models.optimize import optimize_for_inference

        if precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
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
        self._forward = torch.compile(self.model.inference) if compile else self.model.inference

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self._forward(images)
        return out["keypoints"].float().cpu(), out["joint_confidence"].float().cpu()


def _checkpoint_stamp(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cached_onnx(checkpoint: str | Path, onnx_path: str | Path | None = None, trust: bool = False) -> Path:
    """The ONNX inference graph of ``checkpoint``: ``onnx_path`` (default: beside the checkpoint,
    same name with ``.onnx``) when it was exported from this very file (size and modification
    time recorded in its metadata), otherwise exported there now. A checkpoint in a folder that
    cannot be written gets its graph under ``$RLEPOSE_HOME/onnx`` instead."""
    from rlepose.export import read_onnx_metadata
    from rlepose.predict import export_checkpoint

    checkpoint = Path(checkpoint)
    stamp = _checkpoint_stamp(checkpoint)
    candidates = [Path(onnx_path)] if onnx_path else [checkpoint.with_suffix(".onnx")]
    if not onnx_path:
        from rlepose.hub import home

        candidates.append(home() / "onnx" / f"{checkpoint.stem}-{stamp['size']}-{stamp['mtime_ns']}.onnx")
    for path in candidates:
        if path.is_file() and read_onnx_metadata(path).get("source") == stamp:
            return path
    for path in candidates:
        try:
            return export_checkpoint(checkpoint, path, trust=trust, extra_metadata={"source": stamp})
        except PermissionError:
            continue
    raise PermissionError(f"cannot write the ONNX graph of {checkpoint} to any of {[str(c) for c in candidates]}")


class PosePredictor:
    """Top-down inference on whole images: crop each box, run the model with the flip test in
    the same batch, map back to image pixels, score each person as in evaluation."""

    def __init__(self, backend, spec: KeypointSpec, input_size: tuple[int, int], flip_test: bool = True,
                 batch_size: int = 32, backend_name: str = "custom", detector="yolox-s") -> None:
        self.backend, self.spec, self.input_size = backend, spec, tuple(input_size)
        self._detector = detector  # a name (built on first use), a callable, or None
        self.backend_name = backend_name
        self.flip_test = flip_test and bool(spec.flip_pairs)
        self.batch_size = batch_size
        self._perm = spec.flip_permutation()

    @classmethod
    def from_pretrained(cls, name: str, flip_test: bool = True, backend: str = "auto",
                        detector="yolox-s") -> "PosePredictor":
        """A published model by name (``rlepose models`` lists them), downloaded, checked and
        converted on first use and cached under ``$RLEPOSE_HOME`` (see :mod:`rlepose.hub`)."""
        from rlepose.hub import pretrained_checkpoint

        return cls.from_checkpoint(pretrained_checkpoint(name), flip_test=flip_test, backend=backend,
                                   detector=detector)

    @classmethod
    def from_checkpoint(cls, path: str | Path, flip_test: bool = True, backend: str = "auto",
                        onnx_path: str | Path | None = None, trust: bool = False, device: str | None = None,
                        precision: str = "fp32", optimize: bool = True, compile: bool = False,
                        detector="yolox-s") -> "PosePredictor":
        """From a training checkpoint. ``backend``: see the module docstring; with
        ``onnxruntime`` the graph is ``onnx_path`` or exported beside the checkpoint on first use
        (:func:`cached_onnx`). ``device``, ``precision``, ``optimize``, ``compile``: the ``torch``
        backend's (see :class:`TorchBackend`). ``detector``: finds people when no boxes are given
        (a name for :func:`rlepose.detection.build_detector`, fetched on first use; a callable
        image → (boxes, scores); or None for the whole image). The checkpoint runs no code when read unless ``trust``
        (see ``read_checkpoint``)."""
        name = choose_backend(backend, device, precision)
        if name == "onnxruntime":
            return cls.from_onnx(cached_onnx(path, onnx_path, trust=trust), flip_test, detector=detector)
        from rlepose.training.run import keypoint_spec, load_module

        module = load_module(path, trust=trust)
        if module.cfg.task != "topdown":
            raise ValueError("PosePredictor works with top-down image models, not lifting checkpoints")
        input_size = tuple(module.cfg.transform.input_size)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        runner = TorchBackend(module.model, input_size, device=device, optimize=optimize, precision=precision,
                              compile=compile)
        return cls(runner, keypoint_spec(module.cfg), input_size, flip_test, backend_name="torch", detector=detector)

    @classmethod
    def from_onnx(cls, path: str | Path, flip_test: bool = True, detector="yolox-s") -> "PosePredictor":
        from rlepose.export import OnnxBackend

        backend = OnnxBackend(path)
        meta = backend.metadata
        return cls(backend, KeypointSpec.from_dict(meta["keypoints"]), meta["input_size"], flip_test,
                   backend_name="onnxruntime", detector=detector)

    @property
    def detector(self):
        """The person detector (built on first use from its name), or None."""
        if isinstance(self._detector, str):
            from rlepose.detection import build_detector

            self._detector = build_detector(self._detector)
        return self._detector

    def describe(self) -> str:
        """One line saying what runs, e.g. for the CLI."""
        where = getattr(self.backend, "device", None)
        precision = getattr(self.backend, "precision", "fp32")
        return f"backend {self.backend_name}" + (f" on {where}" if where is not None else "") + \
            (f" in {precision}" if precision != "fp32" else "") + \
            f", input {self.input_size[1]}×{self.input_size[0]}, flip test {'on' if self.flip_test else 'off'}"

    def _run(self, images: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crops (N, 3, H, W) → keypoints (N, K, D), joint confidences (N, K); with the flip
        test the mirrored crops go through in the same batch as the originals. A NumPy batch
        (for backends with ``takes_numpy``) is mirrored and joined in NumPy."""
        kps, confs = [], []
        step = max(1, self.batch_size // 2) if self.flip_test else self.batch_size
        for i in range(0, len(images), step):
            chunk = images[i : i + step]
            if self.flip_test:
                if isinstance(chunk, np.ndarray):
                    both = np.concatenate([chunk, chunk[..., ::-1]])
                else:
                    both = torch.cat([chunk, chunk.flip(-1)])
                kp, conf = self.backend(both)
                n = len(chunk)
                kp, conf = merge_flip(kp[:n], conf[:n], kp[n:], conf[n:], self._perm, chunk.shape[-1])
            else:
                kp, conf = self.backend(chunk)
            kps.append(kp.float().numpy())
            confs.append(conf.float().numpy())
        return np.concatenate(kps), np.concatenate(confs)

    def predict_many(self, images: list[np.ndarray], boxes: list, box_scores: list | None = None) -> list[list[dict]]:
        """Several images (e.g. video frames) at once, their crops batched together;
        ``boxes[i]`` and ``box_scores[i]`` as in :meth:`predict`. Returns one list per image."""
        box_scores = box_scores if box_scores is not None else [None] * len(images)
        crops, matrices, owners, all_boxes, all_scores = [], [], [], [], []
        for i, (image, b, s) in enumerate(zip(images, boxes, box_scores)):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
            h, w = image.shape[:2]
            b = np.array([[0.0, 0.0, w, h]]) if b is None or len(b) == 0 else np.asarray(b, float)
            if b.ndim != 2 or b.shape[1] != 4 or (b[:, 2:] <= 0).any() or not np.isfinite(b).all():
                raise ValueError(f"boxes must be (M, 4) as (x, y, w, h) with positive sizes, got {b.tolist()}")
            c, m = crop_boxes(image, b, self.input_size)
            crops.append(c)
            matrices.append(m)
            owners += [i] * len(b)
            all_boxes.append(b)
            all_scores.append(np.ones(len(b)) if s is None else np.asarray(s, float))
        # ONNX Runtime gets arrays made in NumPy: a torch op on the batch would leave torch's
        # OpenMP threads spinning on the cores ONNX Runtime then needs (one person: 88 → 76–81 ms in
        # benchmarks/inference_speed.py)
        to_batch = crops_to_array if getattr(self.backend, "takes_numpy", False) else crops_to_tensor
        kps, joint_conf = self._run(to_batch(np.concatenate(crops)))
        keypoints = crop_to_image(kps, np.concatenate(matrices), self.input_size)
        out: list[list[dict]] = [[] for _ in images]
        for owner, box, kp, c, s in zip(owners, np.concatenate(all_boxes), keypoints, joint_conf,
                                        np.concatenate(all_scores)):
            out[owner].append({"bbox": box.tolist(), "keypoints": kp, "joint_confidence": c,
                               "score": rescore(c, s), "box_score": float(s)})
        return out

    def predict(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[dict]:
        """Persons in ``image`` (an RGB uint8 array or a path) inside ``boxes`` (M, 4) as
        (x, y, w, h) pixels; None → the whole image as one box (use ``predictor(image)`` to
        detect people). Returns per box: ``bbox``, ``keypoints`` (K, 2) image pixels,
        ``joint_confidence`` (K,), ``score`` (box score × mean joint confidence above 0.2),
        ``box_score``."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        return self.predict_many([image], [boxes], [box_scores])[0]

    def __call__(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[dict]:
        """Like :meth:`predict`, but without ``boxes`` the detector finds the people (an empty
        list when it finds none). Raises :class:`rlepose.detection.NoDetectorError` when no
        detector is set or available."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        if boxes is None:
            if self.detector is None:
                from rlepose.detection import NoDetectorError

                raise NoDetectorError("no person detector: give boxes, or build the predictor with detector='hog', "
                                      "'yolox-s' or a callable")
            boxes, box_scores = self.detector(image)
            if len(boxes) == 0:
                return []
        return self.predict(image, boxes, box_scores)
