"""Import checkpoints of the paper's official code and of MMPose's RLE models (ResNet +
regression head) into rlepose checkpoints that ``rlepose eval``, ``predict`` and ``export`` load.

Official RLE (``RegressFlow``): ``preact.*`` (a ResNet with torchvision names), ``fc_coord.linear``
(K·2 rows, applied to the L2-normalized pooled feature), ``fc_sigma.linear`` (K·2 rows),
``flow.{mask, s.*, t.*}``; coordinates u/W − 0.5 as ours.
MMPose (1.x ``RLEHead`` / 0.x ``DeepposeRegressionHead``): ``backbone.*`` (torchvision names for
ResNets; MMPose's own for MobileNetV2, mapped to torchvision's and recognized automatically),
``head.fc`` or ``keypoint_head.fc`` with K·4 rows interleaved per joint (x, y, σx logit, σy
logit), coordinates u/W in [0, 1] (so µ̂ rows get −0.5 on their bias), and the flow under
``head.loss_module.flow_model`` or ``keypoint_head.loss.flow_model`` (its ``loc``/``cov``
buffers, the N(0, I) prior, are dropped).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from rlepose.models.checkpoint import extract_state_dict, read_checkpoint, save_atomic
from rlepose.config import ExperimentConfig, config_to_dict, config_from_dict

__all__ = ["FLOW_PREFIX", "from_official", "to_official", "from_mmpose", "to_mmpose", "convert_checkpoint"]

FLOW_PREFIX = "loss.flow."


def _interleaved_rows(k: int) -> tuple[list[int], list[int]]:
    """Rows of a (K·4)-row interleaved FC that hold µ̂ (x, y per joint) and σ̂ logits."""
    mu = [4 * j + d for j in range(k) for d in (0, 1)]
    return mu, [4 * j + 2 + d for j in range(k) for d in (0, 1)]


def from_official(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict]:
    """Official RegressFlow state dict → (our state dict, model-config overrides)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("preact."):
            out["model.backbone." + key[len("preact."):]] = value
        elif key.startswith("flow."):
            out[FLOW_PREFIX + key[len("flow."):]] = value
    coord_w, sigma_w = sd["fc_coord.linear.weight"], sd["fc_sigma.linear.weight"]
    out["model.head.fc.weight"] = torch.cat([coord_w, sigma_w])
    out["model.head.fc.bias"] = torch.cat([sd["fc_coord.linear.bias"], sd["fc_sigma.linear.bias"]])
    return out, {"coord_norm": True, "num_joints": coord_w.shape[0] // 2}


def to_official(ours: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`from_official` (for tests and for sharing weights back)."""
    sd = {}
    for key, value in ours.items():
        if key.startswith("model.backbone."):
            sd["preact." + key[len("model.backbone."):]] = value
        elif key.startswith(FLOW_PREFIX):
            sd["flow." + key[len(FLOW_PREFIX):]] = value
    w, b = ours["model.head.fc.weight"], ours["model.head.fc.bias"]
    half = w.shape[0] // 2
    sd.update({"fc_coord.linear.weight": w[:half], "fc_coord.linear.bias": b[:half],
               "fc_sigma.linear.weight": w[half:], "fc_sigma.linear.bias": b[half:]})
    return sd


def from_mmpose(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict]:
    """MMPose RLE state dict (1.x or 0.x names) → (our state dict, model-config overrides)."""
    head = "head." if "head.fc.weight" in sd else "keypoint_head."
    if head + "fc.weight" not in sd:
        raise ValueError("no MMPose regression head found (expected head.fc.weight or keypoint_head.fc.weight)")
    flow = next((p for p in (head + "loss_module.flow_model.", head + "loss.flow_model.")
                 if any(k.startswith(p) for k in sd)), None)
    backbone = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    overrides: dict = {}
    if "conv1.conv.weight" in backbone and "layer1.0.conv.0.conv.weight" in backbone:  # MMPose's MobileNetV2
        from rlepose.models.mobilenet import mmpose_to_torchvision_names

        backbone = mmpose_to_torchvision_names(backbone)
        overrides["backbone"] = "mobilenet_v2"
    out = {"model.backbone." + k: v for k, v in backbone.items()}
    if flow:
        out.update({FLOW_PREFIX + k[len(flow):]: v for k, v in sd.items()
                    if k.startswith(flow) and k[len(flow):] not in ("loc", "cov")})
    w, b = sd[head + "fc.weight"], sd[head + "fc.bias"]
    k = w.shape[0] // 4
    mu, sig = _interleaved_rows(k)
    out["model.head.fc.weight"] = torch.cat([w[mu], w[sig]])
    out["model.head.fc.bias"] = torch.cat([b[mu] - 0.5, b[sig]])
    return out, {"num_joints": k, **overrides}


def to_mmpose(ours: dict[str, Tensor], version: int = 1) -> dict[str, Tensor]:
    """Inverse of :func:`from_mmpose` in MMPose ``version`` 1 (``head.``) or 0 (``keypoint_head.``) names."""
    head, loss = ("head.", "head.loss_module.flow_model.") if version == 1 else ("keypoint_head.", "keypoint_head.loss.flow_model.")
    sd = {k[len("model.backbone."):]: v for k, v in ours.items() if k.startswith("model.backbone.")}
    if "features.0.0.weight" in sd:  # MobileNetV2: MMPose names its layers its own way
        from rlepose.models.mobilenet import torchvision_to_mmpose_names

        sd = torchvision_to_mmpose_names(sd)
    sd = {"backbone." + k: v for k, v in sd.items()}
    sd.update({loss + k[len(FLOW_PREFIX):]: v for k, v in ours.items() if k.startswith(FLOW_PREFIX)})
    w, b = ours["model.head.fc.weight"], ours["model.head.fc.bias"]
    k = w.shape[0] // 4
    mu, sig = _interleaved_rows(k)
    weight, bias = torch.empty_like(w), torch.empty_like(b)
    weight[mu], weight[sig] = w[: 2 * k], w[2 * k:]
    bias[mu], bias[sig] = b[: 2 * k] + 0.5, b[2 * k:]
    sd[head + "fc.weight"], sd[head + "fc.bias"] = weight, bias
    if loss + "mask" in sd:
        sd[loss + "loc"], sd[loss + "cov"] = torch.zeros(2), torch.eye(2)
    return sd


def convert_checkpoint(source: str | Path, dest: str | Path, kind: str, backbone: str = "resnet50",
                       base: ExperimentConfig | None = None, trust: bool = False) -> Path:
    """Read a foreign checkpoint, write an rlepose checkpoint ({"state_dict", "hyper_parameters"})
    that :func:`rlepose.training.run.load_module` loads (missing keys are reported by loading).
    The source runs no code when read unless ``trust`` (see ``read_checkpoint``)."""
    sd = extract_state_dict(read_checkpoint(source, trust=trust))
    if kind == "official":
        state, overrides = from_official(sd)
    elif kind == "mmpose":
        state, overrides = from_mmpose(sd)
    else:
        raise ValueError(f"unknown checkpoint kind {kind!r}: official or mmpose")
    config = config_to_dict(base or ExperimentConfig())
    config["model"].update(backbone=overrides.pop("backbone", backbone), head="regression", dim=2, **overrides)
    # the imported flow is a density of x̄ under its source's loss: keep that loss (RealNVP, unit base)
    config["loss"].update(name="rle" if kind == "official" else "rle_mmpose", flow_base_std=1.0, flow_zero_init=False)
    config_from_dict(config)  # validate
    return save_atomic({"state_dict": state, "hyper_parameters": {"config": config}}, dest)
