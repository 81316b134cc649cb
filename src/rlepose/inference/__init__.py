"""Inference: from a trained checkpoint (or an exported ONNX graph) to poses on photos and videos.

* :mod:`~rlepose.inference.loading` — :func:`load_pose_model`: the network alone, no Lightning, no loss;
* :mod:`~rlepose.inference.predictor` — :class:`PosePredictor` and :class:`PoseResult`;
* :mod:`~rlepose.inference.backends` — PyTorch and ONNX Runtime runners;
* :mod:`~rlepose.inference.flip` — the flip test;
* :mod:`~rlepose.inference.detectors` — person detectors (YOLOX on ONNX Runtime, HOG);
* :mod:`~rlepose.inference.export` — ONNX export of the inference graph;
* :mod:`~rlepose.inference.media` — folders, videos and cameras in, COCO JSON and drawings out.
"""
from rlepose.inference.loading import LoadedPoseModel, load_pose_model
from rlepose.inference.predictor import PosePredictor, PoseResult

__all__ = ["LoadedPoseModel", "load_pose_model", "PosePredictor", "PoseResult"]
