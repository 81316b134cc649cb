"""A loss's arithmetic as one compiled graph: what keeps RLE's flow cheap per training step.

Run eagerly, a flow loss is hundreds of small operators (six couplings, each an s and a t
network, forward and backward), each a dispatch on the CPU and a kernel launch on a GPU.
:func:`compiled_value` runs :meth:`rlepose.losses.base.JointLoss.value` through
``torch.compile`` instead: the element-wise work fuses into a few kernels and what is left is
the flow's matrix products (``benchmarks/train_speed.py`` measures both paths against them).

* **One graph for every batch.** The batch and joint dimensions are marked dynamic from the
  first call, so that changing N (an epoch's last batch, the one-stage model's positives) or K
  compiles nothing new. Inductor adds one more graph where N·K crosses 4096 (its float sums of
  more terms use a cascade summation). Losses of one class share their graphs; a call with a
  dimension under 2 (it would be specialized) runs eagerly.
* **Eager where compiling gains nothing or cannot work**: no gradient wanted (evaluation), a
  device other than a CPU or a CUDA GPU, a Python that TorchDynamo does not support, no C++
  compiler for the CPU, no Triton for CUDA, or a compilation that fails: one
  :class:`CompileFallbackWarning` per reason, then the eager loss, never an error.
* **Opt-out**: ``compile=False`` on a loss (``loss.compile: false`` in a config), or
  ``RLEPOSE_COMPILE_LOSS=0`` in the environment for every loss left at its default.

The first call compiles (seconds to tens of seconds on a CPU); PyTorch's on-disk caches
(``TORCHINDUCTOR_CACHE_DIR``) make later processes' first calls shorter.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from typing import Callable, Protocol

import torch
from torch import Tensor

__all__ = ["ENV_VAR", "CompileFallbackWarning", "compile_by_default", "compile_unavailable_reason",
           "compiled_value"]

#: the environment variable that switches the default off (``0``, ``false``, ``no``, ``off``)
ENV_VAR = "RLEPOSE_COMPILE_LOSS"

log = logging.getLogger(__name__)
_failed: dict[str, str] = {}  # device type → why compiling failed there (this process)
_warned: set[str] = set()
_announced: set[tuple[type, str]] = set()


class LossWithValue(Protocol):
    """What this module runs: a loss with ``value(mu, sigma, target, weight)`` (every
    :class:`rlepose.losses.base.JointLoss`, which imports this module, not the other way round)."""

    def value(self, mu: Tensor, sigma: Tensor, target: Tensor, weight: Tensor) -> Tensor: ...


class CompileFallbackWarning(UserWarning):
    """A loss that would run compiled runs eagerly (same values, slower); the message says why."""


def compile_by_default() -> bool:
    """Whether losses left at ``compile=None`` compile: yes unless :data:`ENV_VAR` says no."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=None)
def compile_unavailable_reason(device_type: str) -> str | None:
    """Why a loss cannot be compiled for ``device_type`` here, or None where it can."""
    if device_type not in ("cpu", "cuda"):
        return f"losses compile on the CPU and on CUDA only, not on {device_type!r}"
    if not torch._dynamo.is_dynamo_supported():
        return "TorchDynamo does not support this Python or platform"
    if device_type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except ImportError:
            return None  # another PyTorch layout: let the compilation itself tell
        except Exception as err:  # InvalidCxxCompiler and the like
            return f"no C++ compiler for TorchInductor ({type(err).__name__}: {err}; set CXX to one)"
    else:
        from torch.utils._triton import has_triton

        if not has_triton():
            return "Triton is not installed or does not support this GPU"
    return None


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"rlepose runs the loss eagerly (same values, slower): {reason}. Pass compile=False "
                      f"(loss.compile: false in a config) or set {ENV_VAR}=0 to choose that without this "
                      "warning.", CompileFallbackWarning, stacklevel=4)


def _call_value(loss: LossWithValue, mu: Tensor, sigma: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    return loss.value(mu, sigma, target, weight)


@functools.lru_cache(maxsize=1)
def _compiled() -> Callable:
    # one compiled function for every loss: TorchDynamo guards on the loss's class and settings,
    # so losses of one class share graphs; the loss is an argument, so nothing holds a loss
    return torch.compile(_call_value)


def _is_compiling() -> bool:
    """Whether TorchDynamo is tracing this call (a caller compiled the loss itself)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling
    return is_compiling()


#: settings in force during the compiled call (attribute, value): AOTAutograd compiles the
#: backward graph with the forward, so that a failure to compile it lands in compiled_value too;
#: TorchDynamo keeps up to 64 graphs of the one compiled function (every loss class, N·K regime and
#: warm-up state of a process that trains many losses; its default of 8 would send the rest to
#: eager). Settings this PyTorch lacks are left out.
_SETTINGS = (("torch._functorch.config", "force_non_lazy_backward_lowering", True),
             ("torch._dynamo.config", "recompile_limit", 64))


@functools.lru_cache(maxsize=1)
def _setting_targets() -> tuple:
    import importlib

    return tuple((importlib.import_module(m), name, value) for m, name, value in _SETTINGS
                 if hasattr(importlib.import_module(m), name))


@contextlib.contextmanager
def _compile_settings():
    """:data:`_SETTINGS` for the duration (set and restored directly: a few µs per call; a limit
    already set higher is kept)."""
    saved = [(config, name, getattr(config, name)) for config, name, _ in _setting_targets()]
    for (config, name, value), (_, _, old) in zip(_setting_targets(), saved):
        setattr(config, name, value if isinstance(value, bool) else max(value, old))
    try:
        yield
    finally:
        for config, name, old in reversed(saved):
            setattr(config, name, old)


def compiled_value(loss: LossWithValue, mu: Tensor, sigma: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """``loss.value(mu, sigma, target, weight)`` through the compiled graph, or eagerly where
    that cannot work (module docstring). Inputs: (N, K, D) and ``weight`` (N, K) or (N, K, D)."""
    if _is_compiling() or min(mu.shape[:2]) < 2:
        return loss.value(mu, sigma, target, weight)
    device = mu.device.type
    reason = _failed.get(device) or compile_unavailable_reason(device)
    if reason is not None:
        _warn_once(reason)
        return loss.value(mu, sigma, target, weight)
    if (type(loss), device) not in _announced:
        _announced.add((type(loss), device))
        log.info("compiling %s on %s into one graph (first call: up to a minute on a small CPU, seconds with "
                 "a warm compile cache; compile=False or %s=0 runs it eagerly)", type(loss).__name__, device, ENV_VAR)
    try:
        for t in (mu, sigma, target, weight):
            torch._dynamo.maybe_mark_dynamic(t, 0)
            torch._dynamo.maybe_mark_dynamic(t, 1)
        with _compile_settings():
            return _compiled()(loss, mu, sigma, target, weight)
    except Exception as err:
        value = loss.value(mu, sigma, target, weight)  # an error of the inputs raises here, as eagerly
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        _failed[device] = f"compiling it failed on {device} ({type(err).__name__}: {message[:300]})"
        _warn_once(_failed[device])
        return value
