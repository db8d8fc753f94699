"""Pick devices from a config string; nothing else in the project names ``cuda`` directly."""

from __future__ import annotations

import logging

import torch

from source.errors import ConfigError


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when a GPU is visible, else ``cpu``; ``cuda`` -> ``cuda:<local_rank>``.

    Raises:
        ConfigError: a CUDA device is asked for but none (or not that one) is visible.
    """
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={spec} but no CUDA GPU is visible: use device=auto or device=cpu")
    device = torch.device(f"cuda:{local_rank}") if spec == "cuda" else torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device={spec} (rank-local GPU {device.index}) but only {torch.cuda.device_count()} GPU(s) are visible"
        )
    return device


def resolve_split_devices(spec: str, local_rank: int = 0) -> tuple[torch.device, torch.device]:
    """Two GPUs per process for ``split_across_gpus``: ``cuda:2k`` (ViT_patch) and ``cuda:2k+1`` (ViT_region).

    Raises:
        ConfigError: no GPU, or fewer than ``2 * (local_rank + 1)`` GPUs.
    """
    if spec == "cpu" or not torch.cuda.is_available():
        raise ConfigError("split_across_gpus: true needs two CUDA GPUs per process; set split_across_gpus=false")
    needed = 2 * (local_rank + 1)
    if torch.cuda.device_count() < needed:
        raise ConfigError(
            f"split_across_gpus: true needs GPUs {needed - 2} and {needed - 1} for local rank {local_rank} but "
            f"{torch.cuda.device_count()} are visible; set split_across_gpus=false or launch fewer processes"
        )
    return torch.device(f"cuda:{needed - 2}"), torch.device(f"cuda:{needed - 1}")


def usable_workers(requested: int) -> int:
    """``requested`` DataLoader workers, capped at the CPUs this process may use, shared by the node's
    processes (torchrun's ``LOCAL_WORLD_SIZE``). More workers than CPUs only adds contention (and
    PyTorch's warning); a cap is logged.
    """
    import os

    processes_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = max(1, cpus // max(1, processes_per_node))
    if requested > limit:
        logging.getLogger(__name__).info(
            "num_workers %d capped at %d: the CPUs available to this process", requested, limit
        )
        return limit
    return requested


def rng_state() -> dict:
    """The random state to save for an exact resume: CPU and, once CUDA is in use, every CUDA device's."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state) -> None:
    """Restore :func:`rng_state` (or a bare CPU state saved by earlier versions)."""
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
