"""Pose models: backbones (ResNet, HRNet), heads (regression, integral, heatmap), the top-down
model, the 2-D→3-D lifting network, weight loading and cost accounting."""
from rlepose.models.checkpoint import LoadReport, extract_state_dict, load_backbone, load_pretrained
from rlepose.models.complexity import Complexity, complexity, count_params
from rlepose.models.heads import (HeatmapHead, IntegralHead, RegressionHead, decode_heatmaps,
                                  gaussian_heatmaps, heatmap_mse_loss, soft_argmax)
from rlepose.models.hrnet import HRNet, hrnet
from rlepose.models.lifting import LiftingNet
from rlepose.models.pose_model import ModelConfig, TopDownPoseModel, build_backbone, build_pose_model
from rlepose.models.resnet import ResNet, resnet

__all__ = ["LoadReport", "extract_state_dict", "load_backbone", "load_pretrained", "Complexity", "complexity", "count_params",
           "HeatmapHead", "IntegralHead", "RegressionHead", "decode_heatmaps", "gaussian_heatmaps",
           "heatmap_mse_loss", "soft_argmax", "HRNet", "hrnet", "LiftingNet", "ModelConfig",
           "TopDownPoseModel", "build_backbone", "build_pose_model", "ResNet", "resnet"]
