"""What the GPU check's modules share (benchmarks/gpu_check.py, gpu_feed.py, embedding.py, profile_extraction.py):
its settings, device timing, the encoders it times and a real H&E region. Imports nothing of benchmarks/."""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class CheckSettings:
    """What the check runs: the device, region side, regions per measurement, batch sizes, workers."""

    device: str
    region_size: int
    regions: int
    batch_sizes: tuple[int, ...]
    compile_batch_sizes: tuple[int, ...]
    workers: tuple[int, ...]
    patches: int
    budget_s: float
    smoke: bool
    feed_regions: int = 504
    feed_slides: int = 4
    uni: bool = True
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def seconds_left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(function: Callable[[], object], device: str, repeats: int = 3) -> float:
    """Median seconds of ``function()`` after one warm-up call (device synchronised)."""
    function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hipt_encoder(device: str, precision: str = "fp32"):
    """HIPT's ViT-S/16 + ViT4K-XS with seeded random weights, accelerated on ``device`` at ``precision``."""
    import torch

    from source.models.accelerator import Accelerated
    from source.models.hipt import HIPTEncoder
    from source.models.vit import vit4k_xs, vit_small

    torch.manual_seed(0)
    encoder = HIPTEncoder(vit_small().eval(), vit4k_xs().eval(), precision=precision)
    return Accelerated(encoder, torch.device(device))


def uni_encoder(device: str):
    """UNI's architecture (ViT-L/16 at 224 px, timm) under ViT4K-XS over its 1024-wide grids, random weights, bf16."""
    import torch

    from source.models.accelerator import Accelerated
    from source.models.factory import build_hipt_encoder
    from source.models.settings import EncoderSettings

    torch.manual_seed(0)
    settings = EncoderSettings(patch_arch="uni", precision="bf16", warn_random=False)
    return Accelerated(build_hipt_encoder(settings), torch.device(device))


def real_region(size: int):
    """A ``(1, 3, size, size)`` uint8 region of real H&E: the demo slide tiled."""
    import numpy as np
    import torch

    from source.data.demo_slide import fetch_demo_slide, read_slide_level0

    slide = fetch_demo_slide(ROOT / "demo")
    he = read_slide_level0(slide)
    tiled = np.tile(he, (-(-size // he.shape[0]), -(-size // he.shape[1]), 1))[:size, :size]
    return slide, torch.from_numpy(np.ascontiguousarray(tiled)).permute(2, 0, 1).unsqueeze(0)
