"""Static-shape replay of an inference function on a GPU: CUDA graphs per batch bucket.

A ResNet-50 at batch 1 launches a few hundred kernels; on a fast GPU launching them costs more
than running them. A CUDA graph records the launches once and replays them in one call, but only
for the shapes it was recorded with. :class:`BucketedGraphs` therefore pads every batch to the
next of a few fixed sizes (1, 2, 4, …, 256 by default), records one graph per size on first use,
and replays it; larger batches go through in chunks of the largest size. Padding rows are zeros
and are dropped from the outputs: every model served here treats the samples of a batch
independently in evaluation mode (BatchNorm uses its running statistics, or is folded).

On a CPU (or with ``capture=False``) the same padding and chunking run without graphs, which
is how the tests check them where no GPU exists.
"""
from __future__ import annotations

import bisect
from typing import Callable

import torch
from torch import Tensor

__all__ = ["DEFAULT_BUCKETS", "BucketedGraphs"]

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class BucketedGraphs:
    """``fn`` ((B, …) tensor → tensor or tuple of tensors, B along the first axis of each) on
    batches padded to the next of ``buckets``.

    ``capture``: record and replay a CUDA graph per bucket (None: when the inputs are on a CUDA
    device). ``warmup``: untimed calls before recording (cuDNN chooses its algorithms there, with
    ``cudnn.benchmark`` on while this object records). Outputs are new tensors on ``fn``'s device,
    valid after later calls (the graph's own output buffers are reused by the next replay).
    """

    def __init__(self, fn: Callable[[Tensor], Tensor | tuple[Tensor, ...]], buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                 capture: bool | None = None, warmup: int = 3) -> None:
        if not buckets or any(b < 1 for b in buckets):
            raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
        self.fn, self.buckets, self.capture, self.warmup = fn, tuple(sorted(set(buckets))), capture, warmup
        self.graphs: dict[tuple, tuple] = {}  # (bucket, sample shape, dtype, device) → (graph, input, outputs)

    def bucket(self, n: int) -> int:
        """The batch size a batch of ``n`` (1 ≤ n ≤ the largest bucket) is padded to."""
        return self.buckets[bisect.bisect_left(self.buckets, n)]

    def __call__(self, x: Tensor) -> tuple[Tensor, ...]:
        largest = self.buckets[-1]
        if len(x) > largest:
            parts = [self(x[i:i + largest]) for i in range(0, len(x), largest)]
            return tuple(torch.cat(p) for p in zip(*parts))
        n = len(x)
        size = self.bucket(max(n, 1))
        padded = x if size == n else torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))])
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            padded = padded.contiguous(memory_format=torch.channels_last)  # cat may give the default layout
        capture = self.capture if self.capture is not None else x.is_cuda
        out = self._replay(padded) if capture else _as_tuple(self.fn(padded))
        return tuple(o[:n].clone() if capture else o[:n] for o in out)

    def _replay(self, x: Tensor) -> tuple[Tensor, ...]:
        key = (len(x), tuple(x.shape[1:]), x.dtype, x.device, x.is_contiguous(memory_format=torch.channels_last))
        if key not in self.graphs:
            self.graphs[key] = self._record(x)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _record(self, x: Tensor) -> tuple:
        static_in = x.clone()  # keeps x's memory format
        stream = torch.cuda.Stream(device=x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.backends.cudnn.flags(enabled=True, benchmark=True):
            with torch.cuda.stream(stream):  # warm-up off the default stream, as recording requires
                for _ in range(self.warmup):
                    self.fn(static_in)
            torch.cuda.current_stream(x.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = _as_tuple(self.fn(static_in))
        return graph, static_in, static_out


def _as_tuple(out) -> tuple[Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
