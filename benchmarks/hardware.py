"""What a benchmark ran on: CPU model and PyTorch CPU capability, native bf16, threads, GPU, torch."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Optional

import torch


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine(device: Optional[torch.device] = None) -> dict:
    """The hardware facts every benchmark records; GPU name and memory when ``device`` is CUDA."""
    facts = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16_cpu": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if device is not None and device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        facts |= {"gpu": torch.cuda.get_device_name(device), "gpu_memory_gb": round(properties.total_memory / 1e9, 1)}
    return facts


def describe(facts: dict) -> str:
    """One line for a table's caption, e.g. ``Intel Xeon (AVX512, native bf16), 2 threads, torch 2.14.1``."""
    gpu = f"{facts['gpu']} ({facts['gpu_memory_gb']} GB), " if "gpu" in facts else ""
    bf16 = "native bf16" if facts["native_bf16_cpu"] else "no native bf16"
    return (
        f"{gpu}{facts['cpu']} ({facts['cpu_capability']}, {bf16}), {facts['threads']} threads, torch {facts['torch']}"
    )
