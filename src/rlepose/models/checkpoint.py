"""Loading weights a user has on disk (torchvision, timm, MMPose, the official RLE code, ours)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

_WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "net")
_PREFIXES = ("module.", "model.")


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        def short(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(f"missing (kept at init): {short(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected (not loaded): {short(self.unexpected)}")
        if self.ignored:
            lines.append(f"ignored by request: {short(self.ignored)}")
        return "; ".join(lines)


def extract_state_dict(checkpoint: Mapping) -> dict[str, Tensor]:
    """Unwrap ``{"state_dict": …}``, ``{"model": …}`` (Lightning, MMPose, DETR-style) and strip
    ``module.`` (DataParallel/DDP) and ``model.`` (LightningModule attribute) prefixes when
    every key has them."""
    sd = checkpoint
    while not all(isinstance(v, Tensor) for v in sd.values()):
        key = next((k for k in _WRAPPERS if isinstance(sd.get(k), Mapping)), None)
        if key is None:
            raise ValueError(f"no state dict found in checkpoint with keys {sorted(sd)[:10]}")
        sd = sd[key]
    sd = dict(sd)
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_pretrained(model: nn.Module, source: str | Path | Mapping, prefix: str = "",
                    ignore: tuple[str, ...] = (), strict: bool = False) -> LoadReport:
    """Load weights into ``model`` and say what happened.

    Args:
        source: a path to a ``torch.save``-d checkpoint, or an already loaded one.
        prefix: take only keys under this prefix, stripped (e.g. ``"backbone."`` to load an
            MMPose pose model's backbone into a bare backbone).
        ignore: key prefixes to skip (e.g. ``("fc.",)`` for an ImageNet classifier).
        strict: raise if anything is missing or unexpected.
    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a tensor's shape differs from the model's (message names the key), or,
            with ``strict``, keys are missing or unexpected.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        source = torch.load(path, map_location="cpu", weights_only=False)
    sd = extract_state_dict(source)
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise ValueError(f"no keys under prefix {prefix!r} in the checkpoint")
    report = LoadReport()
    report.ignored = sorted(k for k in sd if k.startswith(ignore)) if ignore else []
    sd = {k: v for k, v in sd.items() if k not in report.ignored}
    own = model.state_dict()
    for key, value in sd.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(f"shape mismatch for {key!r}: checkpoint {tuple(value.shape)}, "
                             f"model {tuple(own[key].shape)}")
    report.missing = sorted(k for k in own if k not in sd)
    report.unexpected = sorted(k for k in sd if k not in own)
    report.loaded = sorted(k for k in sd if k in own)
    if strict and (report.missing or report.unexpected):
        raise ValueError(f"strict load failed: {report}")
    model.load_state_dict({k: sd[k] for k in report.loaded}, strict=False)
    log.info("load_pretrained: %s", report)
    return report
