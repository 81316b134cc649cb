"""Inference: from a trained checkpoint (or an exported ONNX graph) to poses on photos and videos.

* :mod:`~rlepose.inference.loading` — :func:`load_pose_model`: the network alone, no Lightning, no loss;
* :mod:`~rlepose.inference.predictor` — :class:`PosePredictor` (top-down) and :class:`OneStagePredictor`;
* :mod:`~rlepose.inference.results` — :class:`PoseResult`, one person;
* :mod:`~rlepose.inference.precision` — what ``precision="auto"`` runs; :mod:`~rlepose.inference.quantize` — int8 graphs;
* :mod:`~rlepose.inference.backends` — PyTorch and ONNX Runtime runners;
* :mod:`~rlepose.inference.flip` — the flip test;
* :mod:`~rlepose.inference.detectors` — person detectors (YOLOX on ONNX Runtime, HOG);
* :mod:`~rlepose.inference.export` — ONNX export of the inference graph;
* :mod:`~rlepose.inference.media` — folders, videos and cameras in, COCO JSON and drawings out.
"""
from rlepose.inference.loading import LoadedPoseModel, load_pose_model
from rlepose.inference.predictor import OneStagePredictor, PosePredictor
from rlepose.inference.results import PoseResult

__all__ = ["LoadedPoseModel", "load_pose_model", "PosePredictor", "OneStagePredictor", "PoseResult"]
