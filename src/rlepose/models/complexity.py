"""Parameter and FLOP accounting with PyTorch's own ``torch.utils.flop_counter``.

Convention: ``torch.utils.flop_counter`` counts 2 FLOPs per multiply-add. Papers in this area
(ResNet, HRNet, SimpleBaseline, RLE) print multiply-adds and call them "FLOPs", so we report
``macs`` = FLOPs / 2 beside ``flops``; compare ``macs`` with the papers' "GFLOPs". Only
convolutions, matrix products and similar ops are counted (BN, activations, pooling and
softmax are not), as in the usual counters.

Transposed convolutions are where counters disagree. PyTorch counts ``Cin·Cout·k²`` per
*input* pixel, the true work; the counter behind SimpleBaseline's and RLE's tables evidently
counted per *output* pixel, 4× more for a stride-2 deconvolution (that is how a ResNet-50
SimpleBaseline reaches the paper's 9.7 GFLOPs: 4.0 backbone + 5.6 head, vs. 5.4 in total by
PyTorch's rule). ``deconv="output"`` reproduces the papers' rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

__all__ = ["Complexity", "count_params", "complexity"]


@dataclass(frozen=True)
class Complexity:
    params: int
    flops: int
    head_params: int | None = None
    head_flops: int | None = None

    @property
    def macs(self) -> int:
        return self.flops // 2

    @property
    def head_macs(self) -> int | None:
        return None if self.head_flops is None else self.head_flops // 2


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_flops_deconv_on_output(x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                                 *args, out_shape=None, **kwargs) -> int:
    # transposed=False makes conv_flop_count use the output's spatial size in every case.
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


def complexity(model: nn.Module, input_shape: tuple[int, ...], deconv: str = "input") -> Complexity:
    """Parameters and FLOPs of one forward pass on zeros of ``input_shape`` (batch included,
    e.g. (1, 3, 256, 192)). For a model with ``.head`` the head's share is given separately.
    ``deconv``: ``"input"`` (PyTorch's rule) or ``"output"`` (the papers' rule), see above."""
    if deconv not in ("input", "output"):
        raise ValueError("deconv must be 'input' or 'output'")
    was_training = model.training
    model.eval()
    ref = next(model.parameters())
    mapping = {}
    if deconv == "output":
        aten = torch.ops.aten
        mapping = {aten.convolution: _conv_flops_deconv_on_output, aten._convolution: _conv_flops_deconv_on_output}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape, dtype=ref.dtype, device=ref.device))
    finally:
        model.train(was_training)
    head = getattr(model, "head", None)
    head_flops = None
    if head is not None:
        per_module = counter.get_flop_counts()
        head_name = next(name for name, m in model.named_modules() if m is head)
        key = f"{type(model).__name__}.{head_name}"
        head_flops = int(sum(per_module.get(key, {}).values()))
    return Complexity(count_params(model), int(counter.get_total_flops()),
                      count_params(head) if head is not None else None, head_flops)
