"""torchrun-aware helpers: the environment decides (``WORLD_SIZE > 1``), never the GPU count."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

COLLECTIVE_TIMEOUT = datetime.timedelta(hours=24)
"""Ranks may finish their shards hours apart; torchrun stops every rank if one fails."""


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that logs to the console and merges outputs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when running under torchrun with more than one process."""
        return self.world_size > 1


def context_from_env() -> DistributedContext:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set by torchrun (defaults: a single process)."""
    return DistributedContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when launched by torchrun: NCCL for CUDA devices, gloo otherwise."""
    context = context_from_env()
    if context.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return context


def shutdown() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value: T, context: DistributedContext) -> T:
    """Rank 0's ``value`` on every rank."""
    if not context.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: T, context: DistributedContext) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def balanced_shards(weights: Sequence[int], world_size: int) -> list[list[int]]:
    """Split item indices over ranks so that each rank gets about the same total weight.

    Greedy longest-first assignment; deterministic, every index in exactly one shard, each shard
    in ascending order.

    Args:
        weights: a cost per item (e.g. regions per slide).
        world_size: number of ranks.

    Returns:
        ``world_size`` lists of item indices.
    """
    loads = [0] * world_size
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        target = min(range(world_size), key=lambda r: (loads[r], r))
        shards[target].append(index)
        loads[target] += max(weights[index], 1)
    return [sorted(shard) for shard in shards]
