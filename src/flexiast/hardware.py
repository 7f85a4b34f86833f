"""What this machine computes fast, and the numeric precision a run uses on it.

Every place that picks a precision (``train.precision``, ``flexiast evaluate`` and
``predict``, the demo, the benchmarks) takes ``auto`` by default, resolved per device by
:func:`resolve_precision`:

* a CUDA device: bf16 autocast where the GPU computes bf16 natively (compute capability
  8.0 and up, or ROCm), otherwise fp16 autocast with a ``GradScaler`` (loss scaling);
* a CPU: bf16 autocast where oneDNN reports native bf16 instructions (AVX512-BF16 or
  AMX; ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``), fp32 otherwise.

Why it matters: on a CPU without native bf16 (AVX2 only, most laptops and cloud CPUs)
oneDNN emulates bf16 and a bf16 matrix product runs tens of times slower than fp32
(about 50x for a 1024 x 768 x 2304 product on an AVX2 EPYC); on one with AVX512-BF16 or
AMX it runs 2-4x faster than fp32. So no recipe hard-codes bf16 for speed.

An explicit ``fp32`` runs anywhere. An explicit ``bf16`` on a CPU that emulates it runs,
with one warning that gives the slowdown measured on the spot. ``fp16`` on a CPU, and
``bf16`` on a GPU that lacks it, are refused with the setting and the device named.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .constants import PRECISIONS

__all__ = ["PRECISIONS", "Precision", "HardwareError", "resolve_precision", "native_bf16", "cpu_capability",
           "device_capability", "describe_capability", "select_device"]

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_warned_emulated: set[str] = set()


class HardwareError(ValueError):
    """A precision or device this machine cannot run, or an unknown one; the message names the setting."""


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` is fp32, bf16 or fp16; ``requested`` what was asked
    (``auto`` or the same); ``reason`` says why, in words, for logs and summaries."""

    name: str
    requested: str
    device: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain fp32."""
        return _DTYPES[self.name]

    @property
    def scaler(self) -> bool:
        """Whether gradients need loss scaling (fp16 only: its exponent range is narrow)."""
        return self.name == "fp16"

    def autocast(self):
        """A fresh autocast context for this precision (a null context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively (not by emulation)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        if torch.version.hip:
            return True
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(index).major >= 8
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False


def cpu_capability() -> dict:
    """The CPU as a run and a benchmark should describe it: name, ATen's ISA level, native
    bf16 (oneDNN's answer), AMX, cores and torch's intra-op threads."""
    flags = _cpu_flags()
    return {"name": _cpu_name(), "isa": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16("cpu"),
            "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags, "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "capped": {k: os.environ[k] for k in
                                                           ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
                                                           if k in os.environ}}


def device_capability(device: torch.device | str) -> dict:
    """:func:`cpu_capability` for a CPU; name, compute capability and native bf16 for a GPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return {"device": "cpu", **cpu_capability()}
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {"device": "cuda", "name": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "native_bf16": native_bf16(device), "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda or torch.version.hip}


def describe_capability(cap: dict) -> str:
    """One line: ``AMD EPYC, ISA AVX2, bf16 emulated, 2 cores, 2 threads``."""
    if cap.get("device") == "cuda":
        return (f"{cap['name']} (compute capability {cap['compute_capability']}, "
                f"bf16 {'native' if cap['native_bf16'] else 'not native'}, {cap['memory_gib']} GiB)")
    bf16 = "native bf16" + (" (AMX)" if cap["amx"] else " (AVX512-BF16)" if cap["avx512_bf16"] else "") \
        if cap["native_bf16"] else "bf16 emulated (no native bf16)"
    capped = f", capped by {' '.join(f'{k}={v}' for k, v in cap['capped'].items())}" if cap.get("capped") else ""
    return f"{cap['name']}, ISA {cap['isa']}, {bf16}, {cap['cores']} cores, {cap['threads']} threads{capped}"


def _emulation_slowdown() -> float:
    """How much slower a bf16 matrix product is than fp32 here (best of 3, 384^3)."""
    a = torch.randn(384, 384)

    def best(x):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - start)
        return min(times)

    return best(a.bfloat16()) / max(best(a), 1e-9)


def resolve_precision(requested: str, device: torch.device | str, *, setting: str = "precision") -> Precision:
    """The precision to run ``requested`` (auto, fp32, bf16, fp16) with on ``device``.

    Raises :class:`HardwareError` naming ``setting`` and the device for an unknown value,
    fp16 on a CPU, and bf16 on a GPU without it. Warns once per process when bf16 is asked
    for on a CPU that emulates it.
    """
    device = torch.device(device)
    kind = device.type
    if requested not in PRECISIONS:
        raise HardwareError(f"{setting}: {requested!r} is not one of {', '.join(PRECISIONS)}")
    if kind not in ("cpu", "cuda"):
        if requested in ("auto", "fp32"):
            return Precision("fp32", requested, kind, f"{kind}: fp32, no mixed precision for this device kind")
        raise HardwareError(f"{setting}: {requested} is supported on cpu and cuda, not on {device}")
    native = native_bf16(device)
    where = describe_capability(device_capability(device))
    if requested == "auto":
        if native:
            return Precision("bf16", "auto", kind, f"auto: {where}")
        if kind == "cuda":
            return Precision("fp16", "auto", kind, f"auto: {where}; fp16 with loss scaling")
        return Precision("fp32", "auto", kind, f"auto: {where}")
    if requested == "fp16" and kind == "cpu":
        raise HardwareError(f"{setting}: fp16 needs a GPU; the device is {device} ({where}); "
                             "use auto, fp32 or bf16")
    if requested == "bf16" and not native:
        if kind == "cuda":
            raise HardwareError(f"{setting}: bf16 is not supported natively by {where}; use auto (fp16 with "
                                 "loss scaling) or fp32")
        if kind not in _warned_emulated:
            _warned_emulated.add(kind)
            warnings.warn(f"{setting}: bf16 on {where}: oneDNN emulates it, and a bf16 matrix product measured "
                          f"{_emulation_slowdown():.0f}x slower than fp32 here; use auto or fp32 for speed",
                          RuntimeWarning, stacklevel=2)
        return Precision("bf16", "bf16", kind, f"asked for; emulated on {where}")
    return Precision(requested, requested, kind, f"asked for, on {where}")


def select_device(kind: str = "auto", *, setting: str = "device", local_rank: int = 0) -> torch.device:
    """``auto`` (the GPU of this rank if one is visible, else the CPU), ``cpu``, ``cuda`` or
    ``cuda:N``; a GPU that is not there is refused naming ``setting``."""
    if kind == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(kind)
    except RuntimeError:
        raise HardwareError(f"{setting}: {kind!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HardwareError(f"{setting}: {kind} requested but no GPU is visible")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
