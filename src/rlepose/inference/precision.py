"""Which precision and runtime inference uses: ``auto`` picks the fastest the hardware has.

=========  =============================================================  ==============
precision  runs                                                           backend
=========  =============================================================  ==============
fp32       the exported graph (CPU) or the eager model (CUDA)             onnxruntime / torch
bf16       the eager model under ``torch.autocast`` (bfloat16)            torch
fp16       the eager model under ``torch.autocast`` (float16; GPUs)       torch
int8       a statically quantized ONNX graph (:mod:`rlepose.inference.quantize`)  onnxruntime
auto       fp16 on a CUDA device; bf16 on a CPU whose instruction set has bfloat16 arithmetic
           (AMX-BF16 or AVX512-BF16, read from the processor's flags, never guessed); fp32
           elsewhere (ONNX Runtime when installed)
=========  =============================================================  ==============

``auto`` never picks int8 (its accuracy depends on the calibration crops): ask for it. The
accuracy of each precision on the shipped model is measured by ``benchmarks/precision.py``.
"""
from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "BACKENDS", "PrecisionChoice", "cpu_bf16_feature", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
BACKENDS = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class PrecisionChoice:
    """What runs: ``precision`` (fp32, bf16, fp16 or int8) on ``backend`` (torch or
    onnxruntime) on ``device`` (cpu, cuda, cuda:1, …); ``reason``: why, for the run's summary."""

    precision: str
    backend: str
    device: str
    reason: str


def cpu_bf16_feature(cpuinfo: str | None = None) -> str | None:
    """The bfloat16 arithmetic this x86 CPU has, as named in its flags: ``"AMX-BF16"``,
    ``"AVX512-BF16"``, or None (none, not an x86 Linux machine, or flags unreadable).

    ``cpuinfo``: the text of ``/proc/cpuinfo`` (read when None). Without these instructions
    oneDNN emulates bfloat16 and it is slower than fp32, so a CPU that does not say it has them is
    treated as not having them.
    """
    if cpuinfo is None:
        if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
            return None
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
            break  # every core lists the same flags
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def _onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_precision(precision: str = "auto", backend: str = "auto", device: str | None = None,
                      bf16_feature: str | None | bool = True) -> PrecisionChoice:
    """The precision, backend and device that run, from what was asked (see the module table).

    ``device``: None → ``cuda`` when a CUDA GPU is visible, else ``cpu``. ``bf16_feature``:
    :func:`cpu_bf16_feature`'s answer (True: ask it). Raises ``ValueError`` for a name it does
    not know or a combination that cannot run (bf16/fp16 under ONNX Runtime, int8 on the torch
    backend or a GPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    if precision == "int8":
        if backend == "torch" or cuda:
            raise ValueError("int8 runs a quantized ONNX graph under ONNX Runtime on the CPU: "
                             "use backend onnxruntime (or auto) and no CUDA device")
        return PrecisionChoice("int8", "onnxruntime", "cpu", "asked for")
    if precision in ("bf16", "fp16"):
        if backend == "onnxruntime":
            raise ValueError(f"precision {precision!r} needs the torch backend: the ONNX graph runs in fp32 or int8")
        return PrecisionChoice(precision, "torch", device, "asked for")
    if precision == "auto" and backend != "onnxruntime":
        if cuda:
            return PrecisionChoice("fp16", "torch", device, "auto: CUDA device")
        feature = cpu_bf16_feature() if bf16_feature is True else bf16_feature
        if feature:
            return PrecisionChoice("bf16", "torch", device, f"auto: this CPU has {feature}")
    reason = "asked for" if precision == "fp32" else (
        "auto: ONNX Runtime runs fp32" if backend == "onnxruntime" else "auto: no bfloat16 arithmetic on this CPU")
    if backend == "auto":
        backend = "torch" if cuda or not _onnxruntime_installed() else "onnxruntime"
    return PrecisionChoice("fp32", backend, device if backend == "torch" else "cpu", reason)
