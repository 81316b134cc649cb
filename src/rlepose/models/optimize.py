"""Inference-only rewrites of a trained model: BatchNorm folded into the convolution before it,
and the channels-last memory format.

Both return a *new* module and leave the one passed in untouched, so the training model (its
BatchNorm statistics and parameters) is never changed; keep the original to go back. Folding
is checked on a probe batch when it is done: the folded model must give the same outputs.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "optimize_for_inference", "to_channels_last"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _conv_bn_pairs(model: nn.Module, probe: Tensor) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) for every BatchNorm whose input is exactly the output of a
    convolution in one forward pass of ``probe`` (found by forward hooks, so any architecture
    works: plain attributes, Sequentials, branches)."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[nn.Module, Tensor]] = {}  # the tensor is held so its id is never reused
    calls: dict[nn.Module, int] = {}
    pairs: list[tuple[str, str]] = []

    def hook(module, inputs, output):
        calls[module] = calls.get(module, 0) + 1
        if isinstance(module, _CONVS):
            produced[id(output)] = (module, output)
        elif isinstance(module, _NORMS) and id(inputs[0]) in produced:
            pairs.append((names[produced[id(inputs[0])][0]], names[module]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONVS + _NORMS)]
    try:
        with torch.no_grad():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    # a module called twice (shared weights) cannot be folded safely
    return [(c, b) for c, b in pairs if calls[model.get_submodule(c)] == 1 and calls[model.get_submodule(b)] == 1]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _relative_diff(a, b) -> float:
    """Largest |a − b| relative to max(1, largest |a|), over a tensor or a tuple of them."""
    if isinstance(a, Tensor):
        if a.numel() == 0:
            return 0.0
        return ((a.float() - b.float()).abs().max() / a.float().abs().max().clamp(min=1.0)).item()
    if isinstance(a, dict):
        return max(_relative_diff(a[k], b[k]) for k in a)
    return max(_relative_diff(x, y) for x, y in zip(a, b))


def fold_batchnorm(model: nn.Module, probe: Tensor, atol: float = 1e-4) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm that directly follows a
    convolution folded into it (w' = w·γ/√(var+ε), b' = β + (b − mean)·γ/√(var+ε)) and
    replaced by an identity. ``probe``: an input batch in the model's units (e.g. (N, 3, H, W)
    normalized crops) used to find the pairs and to check the result; raises ``RuntimeError``
    if the folded model's outputs differ from the original's by more than ``atol`` (relative to
    the outputs' magnitude where it exceeds 1: float32 rounding grows with it)."""
    original = model
    was_training = original.training
    original.eval()
    try:
        folded = copy.deepcopy(original)
        pairs = _conv_bn_pairs(folded, probe)
        for conv_name, bn_name in pairs:
            conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
            _set(folded, conv_name, fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.modules.conv._ConvTransposeNd)))
            _set(folded, bn_name, nn.Identity())
        with torch.no_grad():
            diff = _relative_diff(original(probe), folded(probe))
    finally:
        original.train(was_training)
    if diff > atol:
        raise RuntimeError(f"folding BatchNorm changed the outputs by {diff:.2e} (> {atol:.0e}, relative); "
                           "use the unfolded model")
    folded.folded_pairs = len(pairs)
    return folded


def optimize_for_inference(model: nn.Module, probe: Tensor, fold_bn: bool = True,
                           channels_last: bool = True) -> nn.Module:
    """The model as the eager inference path runs it: BatchNorm folded (see :func:`fold_batchnorm`)
    and weights in the channels-last memory format (feed it channels-last inputs too: see
    :func:`to_channels_last`). A new module in eval mode; ``model`` is unchanged."""
    out = fold_batchnorm(model, probe) if fold_bn else copy.deepcopy(model).eval()
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out.eval()


def to_channels_last(images: Tensor) -> Tensor:
    """(N, C, H, W) in the channels-last layout (a no-op for other ranks)."""
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images
