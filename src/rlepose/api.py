"""A small Python API for trained models::

    from rlepose.api import PosePredictor
    predictor = PosePredictor.from_checkpoint("runs/coco_res50_rle/checkpoints/last.ckpt")
    people = predictor.predict("image.jpg", boxes=[[x, y, w, h]])   # or an RGB array; no boxes: whole image
    people[0]["keypoints"], people[0]["joint_confidence"], people[0]["score"]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlepose.data.datasets import read_image
from rlepose.data.keypoints import KeypointSpec
from rlepose.data.transforms import TopDownTransform, TransformConfig
from rlepose.evaluation.coco import rescore
from rlepose.inference import crop_to_image, merge_flip


class PosePredictor:
    """Top-down inference on whole images: crop each box, run the model (PyTorch or ONNX
    Runtime), flip test, map back to image pixels, score each person as in evaluation."""

    def __init__(self, backend, spec: KeypointSpec, input_size: tuple[int, int], flip_test: bool = True,
                 batch_size: int = 32) -> None:
        self.backend, self.spec, self.input_size = backend, spec, tuple(input_size)
        self.flip_test = flip_test and bool(spec.flip_pairs)
        self.batch_size = batch_size
        self.transform = TopDownTransform(TransformConfig(input_size=self.input_size), spec, train=False)

    @classmethod
    def from_pretrained(cls, name: str, flip_test: bool = True) -> "PosePredictor":
        """A published model by name (``rlepose models`` lists them), downloaded, checked and
        converted on first use and cached under ``$RLEPOSE_HOME`` (see :mod:`rlepose.hub`)."""
        from rlepose.hub import pretrained_checkpoint

        return cls.from_checkpoint(pretrained_checkpoint(name), flip_test=flip_test)

    @classmethod
    def from_checkpoint(cls, path: str | Path, flip_test: bool = True, backend: str = "torch",
                        onnx_path: str | Path | None = None, trust: bool = False) -> "PosePredictor":
        """From a training checkpoint (``backend="torch"``), or its exported ONNX model
        (``backend="onnxruntime"``, ``onnx_path`` defaulting to the checkpoint with .onnx).
        The checkpoint runs no code when read unless ``trust`` (see ``read_checkpoint``)."""
        if backend == "onnxruntime":
            return cls.from_onnx(onnx_path or Path(path).with_suffix(".onnx"), flip_test)
        from rlepose.training.run import keypoint_spec, load_module

        module = load_module(path, trust=trust)
        if module.cfg.task != "topdown":
            raise ValueError("PosePredictor works with top-down image models, not lifting checkpoints")
        model = module.model.eval()

        @torch.no_grad()
        def run(images):
            out = model.inference(images)
            return out["keypoints"], out["joint_confidence"]

        return cls(run, keypoint_spec(module.cfg), module.cfg.transform.input_size, flip_test)

    @classmethod
    def from_onnx(cls, path: str | Path, flip_test: bool = True) -> "PosePredictor":
        from rlepose.export import OnnxBackend

        backend = OnnxBackend(path)
        meta = backend.metadata
        return cls(backend, KeypointSpec.from_dict(meta["keypoints"]), meta["input_size"], flip_test)

    def predict(self, image: np.ndarray | str | Path, boxes=None, box_scores=None) -> list[dict]:
        """Persons in ``image`` (an RGB uint8 array or a path). ``boxes`` (M, 4) as (x, y, w, h)
        pixels; None → the whole image as one box. Returns per box: ``bbox``, ``keypoints``
        (K, 2) image pixels, ``joint_confidence`` (K,), ``score`` (box score × mean joint
        confidence above 0.2), ``box_score``."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        h, w = image.shape[:2]
        boxes = np.array([[0.0, 0.0, w, h]]) if boxes is None or len(boxes) == 0 else np.asarray(boxes, float)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or (boxes[:, 2:] <= 0).any():
            raise ValueError(f"boxes must be (M, 4) as (x, y, w, h) with positive sizes, got {boxes.tolist()}")
        scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, float)
        samples = [self.transform(image, box) for box in boxes]
        images = torch.stack([s["image"] for s in samples])
        matrices = np.stack([s["matrix"].numpy() for s in samples])
        kps, confs = [], []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i : i + self.batch_size]
            kp, conf = self.backend(chunk)
            if self.flip_test:
                kp_f, conf_f = self.backend(chunk.flip(-1))
                kp, conf = merge_flip(kp, conf, kp_f, conf_f, self.spec.flip_permutation(), chunk.shape[-1])
            kps.append(kp.float().numpy())
            confs.append(conf.float().numpy())
        keypoints = crop_to_image(np.concatenate(kps), matrices, self.input_size)
        joint_conf = np.concatenate(confs)
        return [{"bbox": box.tolist(), "keypoints": kp, "joint_confidence": c, "score": rescore(c, s), "box_score": float(s)}
                for box, kp, c, s in zip(boxes, keypoints, joint_conf, scores)]
