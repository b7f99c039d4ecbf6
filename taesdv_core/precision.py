"""What the dtype "auto" means, by device and hardware: one rule for the loader node, the
command line and the live previews.

- CUDA: half precision (the caller may pass the host's own choice, e.g. ComfyUI's VAE dtype).
- CPUs that compute bf16 natively (AMX-BF16 or AVX512-BF16): bf16. oneDNN's bf16 convs run
  there at 2-3x fp32's speed, and the tiny decoders' bf16 frames stay far closer to fp32's
  than the decoders are to the full VAE (README, "dtype auto").
- Every other CPU, MPS, ...: fp32. Without those instructions oneDNN emulates bf16, which is
  slower than fp32.

An explicit "fp32" is always exact fp32, whatever the hardware.
"""
from __future__ import annotations

import functools
import platform

import torch

# CPU flags (Linux /proc/cpuinfo and torch.cpu.get_capabilities() spell them alike) that give native bf16 math
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags() -> set[str]:
    """The CPU's instruction-set flags: from PyTorch's cpuinfo where it has them (any OS),
    else from /proc/cpuinfo (older PyTorch on Linux); empty when neither says."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return {name for name, present in capabilities().items() if present is True}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX-BF16 or AVX512-BF16). Read once per process."""
    return bool(NATIVE_BF16_FLAGS & cpu_flags())


def auto_dtype(device: torch.device | str, accelerator_dtype: torch.dtype = torch.float16) -> torch.dtype:
    """The dtype "auto" stands for on `device`: `accelerator_dtype` on CUDA, bf16 on CPUs
    with native bf16, fp32 elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return accelerator_dtype
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def describe_cpu() -> str:
    """The CPU's model name and whether it computes bf16 natively, for bench tables."""
    name = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    native = sorted(NATIVE_BF16_FLAGS & cpu_flags())
    return f"{name}, {torch.get_num_threads()} threads, " + (
        f"native bf16 ({', '.join(native)})" if native else "no native bf16")
