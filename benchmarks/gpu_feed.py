"""The GPU check's steady-state measurements: the cohort feed (end to end from JPEG pyramidal TIFFs, by worker count
and JPEG decoding) and the model path's profile with its MFU against the GPU's dense bf16 peak."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from benchmarks.gpu_common import CheckSettings

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4, "GH200": 989.4}
PEAK_BF16_TFLOPS |= {"A100": 312.0, "L40S": 362.0, "B200": 2250.0}
"""Dense bf16 tensor-core peaks (NVIDIA's data sheets, without sparsity), matched by substring of the GPU's name,
most specific first (``NVIDIA H100 80GB HBM3`` is the SXM part); the MFU of an unknown GPU is not reported."""


def peak_bf16_flops(gpu_name: str) -> Optional[float]:
    """The dense bf16 peak of a GPU in FLOP/s, or None when it is not in :data:`PEAK_BF16_TFLOPS`."""
    for key, tflops in sorted(PEAK_BF16_TFLOPS.items(), key=lambda item: -len(item[0])):
        if key.lower() in gpu_name.lower():
            return tflops * 1e12
    return None


def cohort_feed(settings: "CheckSettings", region, scratch: Path, model_rate: Optional[float]) -> dict:
    """A cohort-like steady state: ``feed_regions`` regions from ``feed_slides`` JPEG pyramidal TIFFs (each a 3 x 3
    mosaic of real tissue, shifted per slide; each slide's regions listed several times, every read decoded anew),
    extracted end to end in bf16 with each worker count, decoding JPEG in the workers (``cpu``) or in batches on the
    device (``device``), against the model-only rate; once more without the host/device overlap of
    :class:`~source.engines.device_feed.DeviceFeed` (blocking copies); and one worker's read-and-decode rate."""
    import numpy as np

    from benchmarks.wsi_reading import read_rate, read_scaled, write_slide
    from source.data.regions import Region
    from source.data.slides import SlidePlan
    from source.engines.extract import Extractor
    from source.engines.feature_store import FeatureStore
    from source.wsi.reader import WholeSlideRegions
    from source.wsi.tiling import PyramidRead

    size = settings.region_size
    tissue = np.ascontiguousarray(np.tile(region[0].permute(1, 2, 0).numpy(), (3, 3, 1)))
    corners = [(x * size, y * size) for y in range(3) for x in range(3)]
    paths = [
        write_slide(scratch / f"slide{i}.tif", np.ascontiguousarray(np.roll(tissue, 97 * i, axis=(0, 1))), 0.5, (1, 4))
        for i in range(settings.feed_slides)
    ]

    def source(index: int) -> WholeSlideRegions:
        return WholeSlideRegions(f"s{index}", PyramidRead(paths[index], "tifffile", 0.5, 0, size, size, size))

    per_worker = read_rate(functools.partial(read_scaled, source(0), corners, 1), len(corners), 2)
    repeats = -(-settings.feed_regions // (len(corners) * len(paths)))
    from benchmarks.gpu_common import hipt_encoder

    encoder = hipt_encoder(settings.device, "bf16")
    rows = []
    runs = [(decode, workers, True) for decode in ("cpu", "device") for workers in settings.workers]
    runs.append(("device", 4 if 4 in settings.workers else settings.workers[-1], False))
    for decode, workers, overlap in runs:
        plans = [
            SlidePlan(f"s{i}", [Region(x, y) for x, y in corners * repeats], source=source(i))
            for i in range(len(paths))
        ]
        store = FeatureStore(scratch / f"{decode}{workers}{overlap}")
        extractor = Extractor(
            encoder,
            store,
            "global",
            size,
            4,
            workers,
            show_progress=False,
            decode_on_device=decode == "device",
            overlap=overlap,
        )
        start = time.perf_counter()
        outcomes = extractor.run(plans)
        seconds = time.perf_counter() - start
        count = sum(len(plan.regions) for plan in plans)
        rows.append(
            {
                "decode": decode,
                "workers": workers,
                "overlap": overlap,
                "regions": count,
                "regions_per_s": count / seconds,
                "of_model_rate": count / seconds / model_rate if model_rate else None,
                "failed_slides": [o.slide_id for o in outcomes if o.status != "success"],
            }
        )
        print(
            f"cohort feed, {decode} decoding, {workers} workers, overlap {overlap}: "
            f"{rows[-1]['regions_per_s']:.2f} regions/s"
        )
    return {
        "slides": len(paths),
        "read_per_worker_regions_per_s": per_worker,
        "model_bf16_regions_per_s": model_rate,
        "workers_to_feed_model": model_rate / per_worker if model_rate else None,
        "extraction": rows,
    }


def model_profile(settings: "CheckSettings", extraction: object) -> dict:
    """Where a batch's time goes (:mod:`benchmarks.profile_extraction`), and the model path's MFU: FLOPs per region
    times the best bf16 rate of the throughput section, over the GPU's dense bf16 peak."""
    import torch

    from benchmarks.profile_extraction import profile

    batch = 1 if settings.smoke else 4
    result = profile(settings.device, settings.region_size, batch, "bf16", 1 if settings.smoke else 3)
    rows = extraction if isinstance(extraction, list) else []
    best = max((r["regions_per_s"] for r in rows if r.get("precision") == "bf16"), default=None)
    peak = peak_bf16_flops(torch.cuda.get_device_name()) if settings.device == "cuda" else None
    result["best_bf16_regions_per_s"] = best
    result["peak_bf16_flops"] = peak
    result["mfu"] = result["flops_per_region"] * best / peak if best and peak else None
    return result
