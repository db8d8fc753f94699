"""Heatmap cost on CPU: seconds per region and peak memory for all heads of a 4096-px region, and for a slide.

    python3 benchmarks/heatmaps.py [--region-size 4096] [--slide-regions 20] [--slide-region-size 1024]

Each scenario runs in its own process (so its peak RSS is its own) with the real ViT-S/16 + ViT4K-XS
(random weights: the cost does not depend on them), all 6 x 6 heads, default drawing settings
(downscale 4, downsample 32, per-region PNGs on) on tiles of the demo slide (CMU-1-Small-Region, H&E).
Prints a Markdown table and writes benchmarks/results/heatmaps.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hardware import describe, machine
from source.data.demo_slide import fetch_demo_slide, read_slide_level0
from source.data.regions import list_regions
from source.heatmaps.attention import AttentionReader
from source.heatmaps.settings import RenderSettings
from source.heatmaps.slide_render import SlideRenderer
from source.models.hipt import HIPTEncoder
from source.models.vit import vit4k_xs, vit_small


def write_regions(folder: Path, count: int, size: int) -> None:
    """``count`` tissue regions of ``size`` px tiled from the demo slide, on a grid."""
    slide = read_slide_level0(fetch_demo_slide(ROOT / "demo"))
    mosaic = np.tile(slide, (-(-size // slide.shape[0]) + 1, -(-size // slide.shape[1]) + 1, 1))
    images = folder / "bench" / "imgs"
    images.mkdir(parents=True)
    columns = int(np.ceil(np.sqrt(count)))
    for index in range(count):
        offset = (index * 97) % 500
        tile = mosaic[offset : offset + size, offset : offset + size]
        Image.fromarray(np.ascontiguousarray(tile)).save(
            images / f"{(index % columns) * size}_{(index // columns) * size}.jpg", quality=90
        )


def scenario(count: int, size: int) -> dict:
    """Draw one slide of ``count`` regions of ``size`` px in this process; return timings and peak RSS."""
    torch.manual_seed(0)
    reader = AttentionReader(HIPTEncoder(vit_small().eval(), vit4k_xs().eval(), patch_batch_size=64))
    renderer = SlideRenderer(reader, RenderSettings(region_size=size, all_heads=True, downsample=32))
    with tempfile.TemporaryDirectory() as scratch:
        write_regions(Path(scratch) / "regions", count, size)
        regions = list_regions(Path(scratch) / "regions", "bench", "jpg")
        start = time.perf_counter()
        renderer.render("bench", regions, Path(scratch) / "out", show_progress=False)
        seconds = time.perf_counter() - start
        pngs = len(list((Path(scratch) / "out").rglob("*.png")))
    return {
        "regions": count,
        "region_size": size,
        "seconds": seconds,
        "seconds_per_region": seconds / count,
        "pngs": pngs,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--region-size", type=int, default=4096)
    parser.add_argument("--slide-regions", type=int, default=20)
    parser.add_argument("--slide-region-size", type=int, default=1024)
    parser.add_argument("--scenario", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "heatmaps.json")
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(scenario(*args.scenario)))
        return
    rows = {}
    for name, count, size in (
        ("one region", 1, args.region_size),
        ("one slide", args.slide_regions, args.slide_region_size),
    ):
        command = [sys.executable, __file__, "--scenario", str(count), str(size)]
        rows[name] = json.loads(
            subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        )
        print(
            f"{name}: {rows[name]['seconds_per_region']:.1f} s/region, peak RSS {rows[name]['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    result = {"machine": machine(), "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}")
    print(
        "\n| scenario | regions | region px | s per region | total s | PNGs | peak RSS (MB) "
        "|\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for name, row in rows.items():
        cells = [
            name,
            row["regions"],
            row["region_size"],
            f"{row['seconds_per_region']:.1f}",
            f"{row['seconds']:.0f}",
            row["pngs"],
        ]
        print("| " + " | ".join(map(str, cells)) + f" | {row['peak_rss_mb']:.0f} |")
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
