"""rlepose: regression-based pose estimation with Residual Log-likelihood Estimation (RLE)."""
from rlepose.flows import RealNVP, ZukoDensity
from rlepose.losses import (DLELoss, GaussianNLLLoss, L1Loss, L2Loss, LaplaceNLLLoss, RLELoss,
                            build_loss)

__version__ = "0.1.0"
__all__ = ["RealNVP", "ZukoDensity", "RLELoss", "DLELoss", "L1Loss", "L2Loss", "LaplaceNLLLoss",
           "GaussianNLLLoss", "build_loss", "__version__"]
