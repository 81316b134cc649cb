"""rlepose: regression-based human pose estimation with Residual Log-likelihood Estimation (RLE).

>>> import torch, rlepose
>>> loss = rlepose.RLELoss(dim=2)                  # the published recipe; owns its RealNVP flow
>>> model = rlepose.build_pose_model(rlepose.ModelConfig("resnet18", "regression"))
>>> mu, sigma = model(torch.zeros(2, 3, 256, 192))   # (N, K, 2) each, normalized crop units
>>> loss(mu, sigma, torch.zeros_like(mu)).dim()
0
"""
from rlepose.flows import RealNVP, ZukoDensity
from rlepose.losses import (CalibratedRLELoss, DLELoss, GaussianNLLLoss, L1Loss, L2Loss, LaplaceNLLLoss,
                            MMPoseRLELoss, PaperRLELoss, RLELoss, build_loss)
from rlepose.models.pose_model import ModelConfig, TopDownPoseModel, build_pose_model

__version__ = "0.1.0"
__all__ = ["RealNVP", "ZukoDensity", "RLELoss", "PaperRLELoss", "MMPoseRLELoss", "CalibratedRLELoss", "DLELoss",
           "L1Loss", "L2Loss", "LaplaceNLLLoss", "GaussianNLLLoss", "build_loss", "ModelConfig", "TopDownPoseModel",
           "build_pose_model", "PosePredictor", "PoseResult", "load_pose_model", "__version__"]


def __getattr__(name: str):
    # the inference API needs OpenCV (the [train] extra); imported when first asked for
    if name in ("PosePredictor", "PoseResult", "load_pose_model"):
        import rlepose.inference as inference

        return getattr(inference, name)
    raise AttributeError(f"module 'rlepose' has no attribute {name!r}")
