"""Regression losses as negative log-likelihoods (paper §3, Table 7).

Start with :mod:`rlepose.losses.rle` (RLE and DLE, next to §3 of the paper). The other published
forms are in :mod:`~rlepose.losses.published`, rlepose's calibrated variant in
:mod:`~rlepose.losses.calibrated`, the baselines in :mod:`~rlepose.losses.baselines`. The losses
with a flow run as one compiled graph in training (:mod:`~rlepose.losses.compiled`; ``compile=False``
runs them eagerly).

Config names (``loss.name``) and what they build, :func:`build_loss`:

========================  ===============================================================
``rle``                   :class:`RLELoss` (the official code's recipe; the paper configs)
``rle_paper``             :class:`PaperRLELoss` (Eq. 8 as printed)
``rle_mmpose``            :class:`MMPoseRLELoss`
``rle_calibrated``        :class:`CalibratedRLELoss` (rlepose's variant, opt-in)
``dle``                   :class:`DLELoss`
``l1`` ``l2``             :class:`L1Loss`, :class:`L2Loss`
``laplace_nll``           :class:`LaplaceNLLLoss`
``gaussian_nll``          :class:`GaussianNLLLoss`
========================  ===============================================================
"""
from __future__ import annotations

from rlepose.losses.base import JointLoss, log_q, sample_q
from rlepose.losses.baselines import GaussianNLLLoss, L1Loss, L2Loss, LaplaceNLLLoss
from rlepose.losses.calibrated import FLAT_START_STD, CalibratedRLELoss
from rlepose.losses.compiled import CompileFallbackWarning
from rlepose.losses.published import MMPoseRLELoss, PaperRLELoss
from rlepose.losses.rle import DLELoss, FlowLoss, RLELoss

__all__ = ["JointLoss", "FlowLoss", "RLELoss", "PaperRLELoss", "MMPoseRLELoss", "CalibratedRLELoss", "DLELoss",
           "L1Loss", "L2Loss", "LaplaceNLLLoss", "GaussianNLLLoss", "LOSSES", "LOSS_NAMES", "FLOW_LOSSES",
           "FLAT_START_STD", "CompileFallbackWarning", "build_loss", "log_q", "sample_q", "laplace_scale_per_sigma"]

LOSSES: dict[str, type[JointLoss]] = {
    "rle": RLELoss, "rle_paper": PaperRLELoss, "rle_mmpose": MMPoseRLELoss, "rle_calibrated": CalibratedRLELoss,
    "dle": DLELoss, "l1": L1Loss, "l2": L2Loss, "laplace_nll": LaplaceNLLLoss, "gaussian_nll": GaussianNLLLoss}
LOSS_NAMES = tuple(LOSSES)
#: the names whose loss has a Q and a flow (RLE in every form)
FLOW_LOSSES = ("rle", "rle_paper", "rle_mmpose", "rle_calibrated")


def build_loss(name: str, dim: int = 2, **kwargs) -> JointLoss:
    """The loss of config name ``name`` (table above) for D = ``dim``; keyword arguments go to
    its class (``q``, ``flow``, ``beta``, ``reduction``).

    >>> build_loss("rle", dim=3).q
    'laplace'
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSS_NAMES)}")
    cls = LOSSES[name]
    return cls(dim=dim, **kwargs) if issubclass(cls, FlowLoss) else cls(**kwargs)


def laplace_scale_per_sigma(name: str, q: str = "laplace") -> float | None:
    """c such that the error density a model trained with loss ``name`` (and ``q``) puts on each
    coordinate has the spread of a Laplace density of scale b = c·σ̂ (σ̂ as the model outputs it):
    √2 for the official form ``rle`` (its Q is a Laplace on √2·σ̂), 1 for the forms with a Laplace
    Q of scale σ̂ (``rle_mmpose``, ``rle_paper``, ``rle_calibrated``, ``laplace_nll``; and ``dle``,
    whose σ̂ is its flow's scale), 1/√2 for a Gaussian Q of standard deviation σ̂ (the same
    variance, 2b² = σ̂²). None for losses without σ̂ (``l1``, ``l2``, heatmaps). What the expected
    OKS and the video filters turn σ̂ into; a fitted calibration (``rlepose calibrate``) scales it further."""
    import math

    if name not in LOSSES or name in ("l1", "l2"):
        return None
    if name == "gaussian_nll" or q == "gaussian":
        return 1 / math.sqrt(2)
    return math.sqrt(2) if name == "rle" else 1.0
