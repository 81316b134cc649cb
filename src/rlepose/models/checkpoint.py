"""Loading weights a user has on disk (torchvision, timm, MMPose, the official RLE code, ours).

Every checkpoint file is read by :func:`read_checkpoint`, which runs no code from the file:
``torch.load(weights_only=True)`` first; then, for files whose metadata holds objects of other
frameworks (MMPose/mmengine's message hub, numpy scalars), a restricted unpickler that builds
inert stand-ins for those objects from a short list of known metadata modules and refuses any
other global (``os.system``, ``builtins.exec``, …) before anything is called.
"""
from __future__ import annotations

import logging
import os
import pickle
import struct
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["INERT_MODULES", "UntrustedCheckpointError", "UnreadableCheckpointError", "InertObject",
           "save_atomic", "read_checkpoint", "COMPACT_FORMAT", "save_compact", "expand_compact",
           "LoadReport", "extract_state_dict", "load_pretrained", "load_backbone"]

log = logging.getLogger(__name__)

# Modules whose objects appear in the metadata of checkpoints people share (MMPose 1.x/0.x via
# mmengine/mmcv, numpy scalars and arrays, argparse namespaces). Their objects are replaced by
# inert stand-ins: no constructor, __setstate__ or function of theirs runs.
INERT_MODULES = ("mmengine", "mmcv", "mmpose", "mmdet", "numpy", "argparse", "pathlib", "datetime")


class UntrustedCheckpointError(ValueError):
    """A checkpoint file asks to run code when loaded; nothing from it was run."""


class UnreadableCheckpointError(ValueError):
    """A checkpoint file is empty, cut short, or not a ``torch.save`` file."""


def _unreadable(path: Path, exc: BaseException) -> UnreadableCheckpointError:
    size = path.stat().st_size
    what = "is empty" if size == 0 else "is cut short or not a PyTorch checkpoint (torch.save) file"
    return UnreadableCheckpointError(f"cannot read checkpoint {path}: it {what} ({size} bytes; "
                                     f"{type(exc).__name__}: {str(exc)[:120]})")


class InertObject:
    """Stands in for an object of a foreign class in a checkpoint's metadata; it records the
    pickled arguments and state and runs none of the class's code."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.qualname}>"


def _allowed_globals() -> dict[str, Any]:
    try:  # the allow-list of torch's own weights_only unpickler (private, present since torch 2.1)
        from torch._weights_only_unpickler import _get_allowed_globals

        return dict(_get_allowed_globals())
    except (ImportError, AttributeError):
        import collections

        return {"collections.OrderedDict": collections.OrderedDict,
                "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
                "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter}


def _inert_pickle_module(seen: set[str]) -> types.SimpleNamespace:
    """A ``pickle_module`` for ``torch.load`` whose Unpickler resolves only torch's safe globals
    and inert stand-ins for :data:`INERT_MODULES`; anything else raises before it is called."""
    allowed = _allowed_globals()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            qualname = f"{module}.{name}"
            if qualname in allowed:
                return allowed[qualname]
            if module.split(".")[0] in INERT_MODULES:
                seen.add(qualname)
                return type(name, (InertObject,), {"qualname": qualname})
            raise UntrustedCheckpointError(qualname)

    def load(file, **kwargs):
        return Unpickler(file, **kwargs).load()

    return types.SimpleNamespace(Unpickler=Unpickler, load=load, __name__="rlepose_inert_pickle")


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary name beside ``path``, then rename over it: a crash or kill
    mid-write never leaves a truncated file where a good one was (or a half file in a cache)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | Path, trust: bool = False, expand: bool = True) -> Any:
    """Load a ``torch.save``-d file without running code from it (see the module docstring).

    A file written by :func:`save_compact` comes back as a checkpoint with fp32 weights (as it is
    stored with ``expand=False``).

    Args:
        trust: unpickle everything, which can run code the file contains; only for files whose
            origin you trust (``--trust-checkpoint``). A warning says so.
    Raises:
        FileNotFoundError: no such file.
        UntrustedCheckpointError: the file names a global outside torch's tensors and the known
            metadata modules (a pickle that would run code); nothing from it was run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # what a file that is empty, truncated or not a checkpoint raises inside torch.load
    broken = (EOFError, RuntimeError, KeyError, IndexError, struct.error, UnicodeDecodeError, OverflowError)
    if trust:
        log.warning("unpickling %s fully (trusted): a malicious file could run code", path)
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
            return expand_compact(data) if expand else data
        except broken as exc:
            raise _unreadable(path, exc) from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return expand_compact(data) if expand else data
    except pickle.UnpicklingError:
        pass  # foreign metadata objects, or worse: look closer without running anything
    except broken as exc:
        raise _unreadable(path, exc) from None
    seen: set[str] = set()
    try:
        data = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_inert_pickle_module(seen))
    except UntrustedCheckpointError as exc:
        raise UntrustedCheckpointError(
            f"refusing to load {path}: it asks to call or build {exc.args[0]}, which would run code when "
            "unpickled, and it is not a tensor or a known metadata type. Nothing from the file was run. "
            "If you trust its origin, pass --trust-checkpoint (Python: trust=True).") from None
    except (*broken, pickle.UnpicklingError) as exc:
        raise _unreadable(path, exc) from None
    if seen:
        log.info("%s: metadata objects read as inert stand-ins, not run: %s", path, ", ".join(sorted(seen)))
    return data


COMPACT_FORMAT = "rlepose-int8-weights-v1"
#: what a checkpoint may hold besides its weights and config that inference uses, kept by
#: :func:`save_compact`: the σ̂ calibration of ``rlepose calibrate``
CARRIED = ("sigma_calibration",)


def save_compact(checkpoint: Mapping, path: str | Path, min_numel: int = 1024) -> Path:
    """A small inference copy of an rlepose checkpoint, e.g. to ship a model in a package: every
    floating weight of 2 or more dimensions and at least ``min_numel`` values (convolutions,
    deconvolutions, linear layers) stored as int8 with one fp32 scale per slice along its first
    dimension (symmetric, round to nearest: max |w| ↦ 127), the other tensors as they are; the
    config is kept and the optimizer state dropped. :func:`read_checkpoint` expands it back to a
    checkpoint with fp32 weights, so every loader takes it; each weight is then within half a
    quantization step (max |w| / 254) of the original."""
    packed: dict[str, Any] = {}
    for key, value in checkpoint["state_dict"].items():
        if value.is_floating_point() and value.dim() >= 2 and value.numel() >= min_numel:
            rows = value.detach().float().reshape(value.shape[0], -1)
            scale = rows.abs().amax(1).clamp_min(1e-12) / 127
            q = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
            packed[key] = {"int8": q, "scale": scale}
        else:
            packed[key] = value.detach().clone()
    extra = {k: checkpoint[k] for k in CARRIED if k in checkpoint}
    return save_atomic({"format": COMPACT_FORMAT, "weights": packed,
                        "hyper_parameters": {"config": checkpoint["hyper_parameters"]["config"]}, **extra}, path)


def expand_compact(data: Any) -> Any:
    """A file of :func:`save_compact` as a checkpoint with fp32 ``state_dict``; anything else unchanged."""
    if not (isinstance(data, Mapping) and data.get("format") == COMPACT_FORMAT):
        return data
    state = {}
    for key, value in data["weights"].items():
        if isinstance(value, Mapping):
            q, scale = value["int8"], value["scale"]
            state[key] = (q.float().reshape(q.shape[0], -1) * scale[:, None]).reshape(q.shape)
        else:
            state[key] = value
    return {"state_dict": state, "hyper_parameters": dict(data["hyper_parameters"]), "compact": COMPACT_FORMAT,
            **{k: data[k] for k in CARRIED if k in data}}

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
                    ignore: tuple[str, ...] = (), strict: bool = False, trust: bool = False) -> LoadReport:
    """Load weights into ``model`` and say what happened.

    Args:
        source: a path to a ``torch.save``-d checkpoint, or an already loaded one.
        prefix: take only keys under this prefix, stripped (e.g. ``"backbone."`` to load an
            MMPose pose model's backbone into a bare backbone).
        ignore: key prefixes to skip (e.g. ``("fc.",)`` for an ImageNet classifier).
        strict: raise if anything is missing or unexpected.
        trust: unpickle the file fully (see :func:`read_checkpoint`).
    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a tensor's shape differs from the model's (message names the key), or,
            with ``strict``, keys are missing or unexpected.
    """
    if isinstance(source, (str, Path)):
        source = read_checkpoint(source, trust=trust)
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


# Where a backbone's weights sit in the checkpoints a user may point `pretrained` at: an rlepose
# training checkpoint (LightningModule `model.backbone`), an MMPose pose model (`backbone`), or a
# bare backbone (torchvision / timm ImageNet weights). The official code's `preact` is converted first.
_BACKBONE_PREFIXES = ("model.backbone.", "backbone.")


def load_backbone(backbone: nn.Module, source: str | Path | Mapping, trust: bool = False) -> LoadReport:
    """Load a backbone's weights from any checkpoint that holds one, and refuse one that doesn't.

    The prefix is found from the keys: ``model.backbone.`` (an rlepose checkpoint of any head or
    loss), ``backbone.`` (MMPose, e.g. the heatmap model MMPose starts its "pretrained" RLE
    ResNet-50 from), else none (ImageNet weights; their classifier ``fc.`` is skipped). Heads,
    flows and optimizer states in the file are left out.

    Raises:
        ValueError: no tensor of the file fits the backbone (the wrong file, or another
            architecture), which would otherwise train from scratch without a word.
    """
    if isinstance(source, (str, Path)):
        source = read_checkpoint(source, trust=trust)
    sd = extract_state_dict(source)
    prefix = next((p for p in _BACKBONE_PREFIXES if any(k.startswith(p) for k in sd)), "")
    report = load_pretrained(backbone, sd, prefix=prefix, ignore=("fc.",) if not prefix else ())
    if not report.loaded:
        keys = ", ".join(sorted(sd)[:4])
        raise ValueError(f"no backbone weights found in the checkpoint (none of its {len(sd)} tensors fit "
                         f"{type(backbone).__name__}; its keys start: {keys}, …); a checkpoint of the official "
                         f"code converts with `rlepose convert --from official`")
    return report
