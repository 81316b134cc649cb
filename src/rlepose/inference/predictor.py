"""Top-down pose estimation on whole images, as a Python API.

>>> from rlepose import PosePredictor
>>> predictor = PosePredictor.from_pretrained("rle-res50-coco")      # doctest: +SKIP
>>> people = predictor("photo.jpg")        # people found by YOLOX-s  # doctest: +SKIP
>>> people = predictor("photo.jpg", boxes=[[10, 20, 100, 200]])  # your boxes  # doctest: +SKIP
>>> people[0].keypoints, people[0].joint_confidence, people[0].score  # doctest: +SKIP

Backends (``backend=``, :mod:`rlepose.inference.backends`): ``onnxruntime`` runs the exported
graph (exported and cached on first use), ``torch`` the model eagerly; ``auto`` chooses.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch import Tensor

from rlepose.data.io import read_image
from rlepose.data.keypoints import KeypointSpec
from rlepose.data.transforms import crop_boxes, crop_to_image, crops_to_array, crops_to_tensor
from rlepose.evaluation.coco import expected_oks, rescore
from rlepose.models.one_stage import OneStageConfig
from rlepose.inference.backends import OnnxBackend, TorchBackend
from rlepose.inference.flip import with_flip
from rlepose.inference.one_stage import ONE_STAGE_OUTPUTS, decode_people, people_to_image
from rlepose.inference.precision import PrecisionChoice, resolve_precision
from rlepose.inference.results import PoseResult

__all__ = ["PoseResult", "PosePredictor", "OneStagePredictor", "sigma_scale"]

log = logging.getLogger(__name__)


def sigma_scale(config, joint_scale=None) -> np.ndarray | None:
    """The Laplace scale of a coordinate's error per unit of σ̂, per joint (K,), for a model of
    ``config``: its Q's (:func:`rlepose.losses.laplace_scale_per_sigma`; 1 when its loss has
    none but its head gives σ̂, e.g. a model trained with L1), times ``joint_scale`` (K,), a
    fitted calibration (``rlepose calibrate``), when given. None for heatmap models (no σ̂)."""
    from rlepose.losses import laplace_scale_per_sigma

    if (config.task == "topdown" and config.model.head == "heatmap") or (config.task == "rcnn" and config.rcnn.head == "heatmap"):
        return None
    c = laplace_scale_per_sigma(config.loss.name, config.loss.q) or 1.0
    scale = np.full(config.model.num_joints, c)
    return scale * np.asarray(joint_scale, float) if joint_scale is not None else scale


class PosePredictor:
    """Top-down inference on whole images: crop each box, run the model with the flip test in
    the same batch, map back to image pixels, score each person as in evaluation.
    :meth:`from_checkpoint` and :meth:`from_onnx` give a
    :class:`OneStagePredictor` for a one-stage model."""

    #: whether people must be found first (boxes or a detector); a one-stage model finds them itself
    needs_boxes = True
    #: what runs and why (set by :meth:`from_checkpoint` and :meth:`from_onnx`; None when built directly)
    precision: PrecisionChoice | None = None

    def __init__(self, backend, spec: KeypointSpec, input_size: tuple[int, int], flip_test: bool = True,
                 batch_size: int = 32, backend_name: str = "custom", detector="yolox-s",
                 sigma_scale: float | np.ndarray | None = 1.0) -> None:
        self.backend, self.spec, self.input_size = backend, spec, tuple(input_size)
        self._detector = detector  # a name (built on first use), a callable, or None
        self.backend_name = backend_name
        self.flip_test = flip_test and bool(spec.flip_pairs)
        self.batch_size = batch_size
        self._perm = spec.flip_permutation()
        # the Laplace scale of a coordinate's error per σ̂, per joint (K,) (:func:`sigma_scale`);
        # None: the model has no σ̂ (heatmaps), so no PoseResult.sigma and no expected OKS
        self.sigma_scale = None if sigma_scale is None else np.broadcast_to(
            np.asarray(sigma_scale, float), (len(spec.joints),)).copy()

    @classmethod
    def from_pretrained(cls, name: str, flip_test: bool = True, backend: str = "auto",
                        detector="yolox-s", precision: str = "auto") -> "PosePredictor":
        """A published model by name (``rlepose models`` lists them), downloaded, checked and
        converted on first use and cached under ``$RLEPOSE_HOME`` (see :mod:`rlepose.hub`);
        ``backend``, ``precision``: as in :meth:`from_checkpoint`."""
        from rlepose.hub import pretrained_checkpoint

        return cls.from_checkpoint(pretrained_checkpoint(name), flip_test=flip_test, backend=backend,
                                   detector=detector, precision=precision)

    @classmethod
    def from_checkpoint(cls, path: str | Path, flip_test: bool = True, backend: str = "auto",
                        onnx_path: str | Path | None = None, trust: bool = False, device: str | None = None,
                        precision: str = "auto", optimize: bool = True, compile: bool = False,
                        detector="yolox-s", box_threshold: float = 0.3,
                        calibration: str | Path | None = None) -> "PosePredictor":
        """From a training checkpoint. ``precision`` and ``backend``: ``auto`` runs the fastest the
        machine has (:func:`rlepose.inference.precision.resolve_precision`: fp16 on a CUDA GPU,
        bf16 on a CPU with AMX/AVX512-BF16, else fp32 under ONNX Runtime); ``fp32``, ``bf16``,
        ``fp16`` or ``int8`` ask for one. The ONNX graph (fp32, or int8 quantized with
        ``calibration`` crops: :func:`rlepose.inference.quantize.calibration_crops`) is ``onnx_path`` or
        exported on first use and cached (:func:`rlepose.inference.export.cached_onnx`).
        ``device``, ``optimize``, ``compile``: the ``torch`` backend's (see :class:`TorchBackend`).
        ``detector``: finds people when no boxes are given (a name for
        :func:`rlepose.inference.detectors.build_detector`, fetched on first use; a callable
        image → (boxes, scores); or None for the whole image). The checkpoint runs no code when
        read unless ``trust`` (see ``read_checkpoint``). ``box_threshold``: a one-stage model's
        lowest person probability (:class:`OneStagePredictor`)."""
        choice = resolve_precision(precision, backend, device)
        if choice.backend == "onnxruntime":
            from rlepose.inference.export import cached_onnx

            graph = cached_onnx(path, onnx_path, trust=trust, precision=choice.precision, calibration=calibration)
            predictor = cls.from_onnx(graph, flip_test, detector=detector, box_threshold=box_threshold)
        else:
            from rlepose.inference.loading import load_pose_model

            loaded = load_pose_model(path, trust=trust)
            runner = TorchBackend(loaded.model, loaded.input_size, device=choice.device, optimize=optimize,
                                  precision=choice.precision, compile=compile)
            predictor = cls._for_model(runner, loaded.spec, loaded.input_size, loaded.config, "torch", flip_test,
                                       detector, box_threshold, loaded.joint_scale)
        predictor.precision = choice
        return predictor

    @classmethod
    def from_onnx(cls, path: str | Path, flip_test: bool = True, detector="yolox-s",
                  box_threshold: float = 0.3) -> "PosePredictor":
        """From a graph written by ``rlepose export`` (fp32) or quantized by
        :func:`rlepose.inference.quantize.quantize_onnx` (int8), run by ONNX Runtime."""
        from rlepose.config import config_from_dict

        backend = OnnxBackend(path)
        meta = backend.metadata
        predictor = cls._for_model(backend, KeypointSpec.from_dict(meta["keypoints"]), meta["input_size"],
                                   config_from_dict(meta.get("config", {})), "onnxruntime", flip_test, detector,
                                   box_threshold, (meta.get("sigma_calibration") or {}).get("joint_scale"))
        precision = meta.get("precision", "fp32")
        predictor.precision = PrecisionChoice(precision, "onnxruntime", "cpu", f"the graph's ({Path(path).name})")
        return predictor

    @classmethod
    def _for_model(cls, runner, spec: KeypointSpec, input_size, config, backend_name: str, flip_test: bool,
                   detector, box_threshold: float, joint_scale=None) -> "PosePredictor":
        """The predictor for ``config``'s task around ``runner``: this class for a top-down model,
        :class:`OneStagePredictor` for a one-stage one; ``joint_scale``: a fitted σ̂ calibration."""
        if config.task in ("one_stage", "rcnn"):
            return OneStagePredictor(runner, spec, input_size, config.one_stage, backend_name=backend_name,
                                     box_threshold=box_threshold, sigma_scale=sigma_scale(config, joint_scale))
        return cls(runner, spec, input_size, flip_test, backend_name=backend_name, detector=detector,
                   sigma_scale=sigma_scale(config, joint_scale))

    @property
    def detector(self):
        """The person detector (built on first use from its name), or None."""
        if isinstance(self._detector, str):
            from rlepose.inference.detectors import build_detector

            self._detector = build_detector(self._detector)
        return self._detector

    def describe(self) -> str:
        """One line saying what runs and why, e.g. for the CLI's summary: backend, device,
        precision (with the reason ``auto`` chose it), input size, flip test."""
        where = getattr(self.backend, "device", None)
        choice = self.precision
        precision = choice.precision if choice else getattr(self.backend, "precision", "fp32")
        why = f" ({choice.reason})" if choice else ""
        return (f"backend {self.backend_name}" + (f" on {where}" if where is not None else "")
                + f" in {precision}{why}, input {self.input_size[1]}×{self.input_size[0]}, "
                f"flip test {'on' if self.flip_test else 'off'}")

    def _backend_outputs(self, images) -> dict[str, Tensor]:
        keypoints, joint_confidence = self.backend(images)
        return {"keypoints": keypoints, "joint_confidence": joint_confidence}

    def _run(self, images: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crops (N, 3, H, W) → keypoints (N, K, D), joint confidences (N, K); with the flip
        test the mirrored crops go through in the same batch as the originals."""
        kps, confs = [], []
        step = max(1, self.batch_size // 2) if self.flip_test else self.batch_size
        for i in range(0, len(images), step):
            chunk = images[i : i + step]
            if self.flip_test:
                out = with_flip(self._backend_outputs, chunk, self._perm)
            else:
                out = self._backend_outputs(chunk)
            kps.append(out["keypoints"].float().numpy())
            confs.append(out["joint_confidence"].float().numpy())
        return np.concatenate(kps), np.concatenate(confs)

    def predict_many(self, images: list[np.ndarray], boxes: list, box_scores: list | None = None) -> list[list[PoseResult]]:
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
        matrices = np.concatenate(matrices)
        keypoints = crop_to_image(kps, matrices, self.input_size)
        boxes_all, scores_all = np.concatenate(all_boxes), np.concatenate(all_scores)
        scale_px = [None] * len(boxes_all)
        if self.sigma_scale is not None:
            # the crop's size in image pixels (an unrotated crop: its matrix scales by output / size)
            crop_px = np.array(self.input_size[::-1], float) / np.stack([matrices[:, 0, 0], matrices[:, 1, 1]], 1)
            sigma = np.repeat((1 - joint_conf)[..., None], 2, -1)  # σ̂ averaged over the coordinates
            scale_px = sigma * crop_px[:, None, :] * self.sigma_scale[:, None]
        believed = self._expected_oks(scale_px, boxes_all)
        out: list[list[PoseResult]] = [[] for _ in images]
        for owner, box, kp, c, s, e, b in zip(owners, boxes_all, keypoints, joint_conf, scores_all, believed, scale_px):
            out[owner].append(PoseResult(box.tolist(), kp, c, float(rescore(c, s)), float(s), e, b))
        return out

    def _expected_oks(self, scale_px, boxes: np.ndarray) -> list:
        """Each person's expected OKS from the Laplace scales ``scale_px`` (M, K, 2) pixels and
        boxes (M, 4) x, y, w, h (None each without σ̂ or OKS constants)."""
        if self.sigma_scale is None or not self.spec.sigmas or not len(boxes):
            return [None] * len(boxes)
        return expected_oks(np.asarray(scale_px), boxes[:, 2] * boxes[:, 3], np.asarray(self.spec.sigmas, float)).tolist()

    def predict(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[PoseResult]:
        """Persons in ``image`` (an RGB uint8 array or a path) inside ``boxes`` (M, 4) as
        (x, y, w, h) pixels; None → the whole image as one box (use ``predictor(image)`` to
        detect people). Returns a :class:`PoseResult` per box."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        return self.predict_many([image], [boxes], [box_scores])[0]

    def __call__(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[PoseResult]:
        """Like :meth:`predict`, but without ``boxes`` the detector finds the people (an empty
        list when it finds none). Raises :class:`rlepose.inference.detectors.NoDetectorError` when no
        detector is set or available."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        if boxes is None:
            if self.detector is None:
                from rlepose.inference.detectors import NoDetectorError

                raise NoDetectorError("no person detector: give boxes, or build the predictor with detector='hog', "
                                      "'yolox-s' or a callable")
            boxes, box_scores = self.detector(image)
            if len(boxes) == 0:
                return []
        return self.predict(image, boxes, box_scores)


class OneStagePredictor(PosePredictor):
    """:class:`PosePredictor` for a one-stage model: every person of an image from one pass over
    the whole (letterboxed) image; no detector and no boxes. Results are :class:`PoseResult`\\ s
    with the predicted box, the rescored ``score``, the person probability as ``box_score`` and
    the expected OKS from σ̂ (the predicted box's area as the object's). People whose probability
    is below ``box_threshold`` are left out (the role of a detector's box threshold; evaluation
    keeps down to ``cfg.score_threshold``). No flip test."""

    def __init__(self, backend, spec, input_size: tuple[int, int], cfg: OneStageConfig = OneStageConfig(),
                 batch_size: int = 8, backend_name: str = "custom", box_threshold: float = 0.3,
                 sigma_scale: float | np.ndarray | None = 1.0) -> None:
        super().__init__(backend, spec, input_size, flip_test=False, batch_size=batch_size, backend_name=backend_name,
                         detector=None, sigma_scale=sigma_scale)
        self.cfg = cfg
        self.box_threshold = box_threshold

    needs_boxes = False

    def describe(self) -> str:
        return super().describe().replace(", flip test off", "") + ", one-stage (no detector)"

    def dense(self, images: list[np.ndarray]) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """The model's dense outputs (one dict per image, :data:`ONE_STAGE_OUTPUTS`) and the
        letterbox matrices (N, 2, 3) of RGB ``images``."""
        crops, matrices = [], []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
            h, w = image.shape[:2]
            c, m = crop_boxes(image, np.array([[0.0, 0.0, w, h]]), self.input_size, padding=1.0)
            crops.append(c)
            matrices.append(m)
        crops_all = np.concatenate(crops)
        to_batch = crops_to_array if getattr(self.backend, "takes_numpy", False) else crops_to_tensor
        per_image: list[dict] = []
        for i in range(0, len(crops_all), self.batch_size):
            outs = self.backend(to_batch(crops_all[i : i + self.batch_size]))
            arrays = [o.float().numpy() for o in outs]
            per_image += [{k: a[j] for k, a in zip(ONE_STAGE_OUTPUTS, arrays)} for j in range(len(arrays[0]))]
        return per_image, np.concatenate(matrices)

    def predict_many(self, images: list[np.ndarray], boxes=None, box_scores=None) -> list[list[PoseResult]]:
        """Every person in each of ``images``; ``boxes`` must be None (or a list of Nones)."""
        if boxes is not None and any(b is not None for b in boxes):
            raise ValueError("a one-stage model finds the people itself: give no boxes")
        dense, matrices = self.dense(images)
        results = []
        for out, matrix in zip(dense, matrices):
            p = people_to_image(decode_people(out, self.cfg, self.spec.sigmas), matrix)
            keep = p["box_score"] >= self.box_threshold
            p = {k: v[keep] for k, v in p.items()}
            xywh = np.concatenate([p["boxes"][:, :2], p["boxes"][:, 2:] - p["boxes"][:, :2]], 1)
            scale_px = (p["sigma"] * self.sigma_scale[:, None] if self.sigma_scale is not None
                        else [None] * len(xywh))
            believed = self._expected_oks(scale_px, xywh)
            results.append([PoseResult(box.tolist(), kp, c, float(s), float(bs), e, b)
                            for box, kp, c, s, bs, e, b in zip(xywh, p["keypoints"], p["joint_confidence"],
                                                               p["score"], p["box_score"], believed, scale_px)])
        return results

    def predict(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[PoseResult]:
        """Every person in ``image`` (an RGB uint8 array or a path)."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        return self.predict_many([image], None if boxes is None else [boxes])[0]

    def __call__(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[PoseResult]:
        return self.predict(image, boxes)
