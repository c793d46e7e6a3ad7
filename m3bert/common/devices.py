"""Devices and dtypes by name, as configs and command lines give them, and whether bf16 is native here."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str | torch.device | None, key: str = "device") -> torch.device:
    """``auto`` (or None) picks CUDA when present, else the CPU; asking for CUDA where there is none is an error
    naming the config ``key``."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key}={name} but CUDA is not available here; use {key}=cpu or auto")
    return device


def resolve_dtype(
    dtype: str | torch.dtype, device: torch.device | str | None = None, key: str = "dtype"
) -> torch.dtype:
    """A dtype by name; ``auto`` is bfloat16 where ``device`` computes it natively (:func:`native_bf16`), else
    float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"{key} must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


# CPU feature flags (Linux /proc/cpuinfo names) that mean bf16 dot products in hardware: AVX512-BF16 and AMX on
# x86, the Armv8.6 BF16 extension on Arm. Without one, torch emulates bf16 matmuls in fp32 and runs them slower.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def native_bf16(device: torch.device | str | None = None) -> bool:
    """Whether bf16 matmuls run natively on ``device`` (default: the CPU): a GPU that supports bf16, or a CPU
    with bf16 instructions."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """From the CPU's own feature flags. torch's ``get_cpu_capability()`` is not enough: it answers ``AVX512`` on
    CPUs with AVX512-BF16 too."""
    return bool(cpu_flags() & set(BF16_CPU_FLAGS)) or _torch_reports_amx()


def cpu_capability() -> str:
    """What the CPU computes natively, as a run record keeps it: torch's vector capability in lower case
    (``avx2``, ``avx512``, ``default``, ...) plus the bf16 flag where bf16 is native (``avx512+avx512_bf16``), the
    difference that makes ``precision=auto`` pick bf16 here and fp32 elsewhere."""
    capability = torch.backends.cpu.get_cpu_capability().lower()
    native = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags()]
    if not native and _torch_reports_amx():
        native = ["amx_bf16"]
    return f"{capability}+{native[0]}" if native else capability


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The feature flags of the first CPU listed (x86 ``flags``, Arm ``Features``); empty where unknown."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _torch_reports_amx() -> bool:
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so absent in some versions
    return bool(probe and probe()) and platform.machine().lower() in ("x86_64", "amd64")
