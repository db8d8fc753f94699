"""Which precision to compute in: ``auto`` picks what the hardware runs fast; a slow explicit choice is warned.

On a CUDA device ``auto`` is bf16 where the GPU supports it (Ampere and later), else fp16. On a CPU it
is bf16 only where PyTorch reports native bf16 (AVX512-BF16 or AMX), else fp32: without native
support a bf16 matrix product is emulated and runs several times slower than fp32 (7.6x measured on
a 2-core AVX2 AMD EPYC for extraction). fp32 is always the exact reference computation.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

SLOW_ON_CPU_FACTOR = 7.6
"""bf16 / fp32 extraction time measured on a CPU without native bf16 (AVX2 AMD EPYC, 2 cores)."""


def cpu_has_native_bf16() -> bool:
    """True when PyTorch's CPU kernels run bf16 natively (oneDNN: AVX512-BF16 or AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_has_native_fp16() -> bool:
    """True when PyTorch's CPU kernels run fp16 natively (oneDNN: AVX512-FP16 or AMX-FP16)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", None)
    return bool(check()) if check is not None else False


def cuda_has_bf16(device: torch.device) -> bool:
    """True when the CUDA device computes bf16 natively."""
    return bool(torch.cuda.is_bf16_supported()) if device.type == "cuda" else False


def resolve_precision(requested: str, device: torch.device, key: str = "precision") -> str:
    """The precision to run: ``requested``, or for ``auto`` the fastest one the device runs natively.

    Logs the choice and why; warns (and still runs) when an explicit bf16 / fp16 is emulated on this CPU.

    Args:
        requested: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: where the model runs.
        key: the config key, named in messages.

    Returns:
        ``fp32``, ``bf16`` or ``fp16``.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if requested == "auto":
        if device.type == "cuda":
            resolved = "bf16" if cuda_has_bf16(device) else "fp16"
            why = f"{torch.cuda.get_device_name(device)} {'supports' if resolved == 'bf16' else 'lacks'} bf16"
        elif cpu_has_native_bf16():
            resolved, why = "bf16", f"this CPU ({capability}) runs bf16 natively"
        else:
            resolved, why = "fp32", f"this CPU ({capability}) has no native bf16: bf16 would be several times slower"
        logger.info("%s auto -> %s: %s", key, resolved, why)
        return resolved
    native = {"bf16": cpu_has_native_bf16, "fp16": cpu_has_native_fp16}
    if device.type == "cpu" and requested in native and not native[requested]():
        logger.warning(
            "%s=%s on a CPU without native %s (PyTorch reports %s): it is emulated and runs several times slower "
            "than fp32 (%.1fx slower measured on an AVX2 CPU). Use %s=fp32, or %s=auto to pick the fastest precision "
            "of the machine.",
            key,
            requested,
            requested,
            capability,
            SLOW_ON_CPU_FACTOR,
            key,
            key,
        )
    return requested
