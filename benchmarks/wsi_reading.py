"""Whole-slide reading: regions/s read and decoded per worker, and extraction from wsi_csv vs region_dir.

    python3 benchmarks/wsi_reading.py [--region-size 4096] [--reads 6] [--regions 4] [--repeats 3] [--precision bf16]

Reading rows (one process = one DataLoader worker; medians of --repeats over --reads regions):
    TIFF 0.5 um/px          a 12288 x 8192 JPEG-compressed pyramidal TIFF of real H&E (the demo slide tiled),
                            read at level 0 through hs2p's OpenSlide reader, and its tifffile reader
                            (imagecodecs; what tiling.reader=auto picks for TIFF-family files)
    TIFF 0.25 um/px no 2x   the same pixels labelled 0.25 um/px with no 2x level: twice the side is read at
                            level 0 and area-downsampled (cv2.INTER_AREA)
    demo .svs               CMU-1-Small-Region.svs (2220 x 2967, JPEG): a 4096-px read covers the whole slide
                            and pads the rest with white (both readers)
    JPEG file               the same TIFF region saved as a q90 JPEG and decoded with PIL (region_dir input)
End to end: extract_features' loop (1 worker, real ViT-S/16 + ViT4K-XS) over the same --regions regions,
read from the TIFF (wsi_csv) and from their JPEG files (region_dir). Prints a Markdown table, writes
benchmarks/results/wsi_reading.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hardware import describe, machine
from source.data.demo_slide import fetch_demo_slide, read_slide_level0
from source.data.regions import Region, read_region
from source.data.slides import SlidePlan, plan_slides
from source.engines.extract import Extractor
from source.engines.feature_store import FeatureStore
from source.models.hipt import HIPTEncoder
from source.models.vit import vit4k_xs, vit_small
from source.wsi.raw_tiles import decode_regions
from source.wsi.reader import WholeSlideRegions
from source.wsi.tiling import PyramidRead


def read_scaled(source, points, scale: int, index: int):
    """Read region ``index`` of ``points`` with its corner scaled to level 0."""
    x, y = points[index]
    return source.read(Region(x * scale, y * scale))


def write_slide(path: Path, pixels: np.ndarray, spacing: float, downsamples: tuple[int, ...]) -> Path:
    """A tiled JPEG pyramid (256-px tiles, q90), as scanners write them."""
    import cv2

    with tifffile.TiffWriter(path) as writer:
        for index, factor in enumerate(downsamples):
            level = (
                pixels
                if factor == 1
                else cv2.resize(
                    pixels, (pixels.shape[1] // factor, pixels.shape[0] // factor), interpolation=cv2.INTER_AREA
                )
            )
            per_cm = 1e4 / (spacing * factor)
            writer.write(
                level,
                tile=(256, 256),
                compression="jpeg",
                compressionargs={"level": 90},
                photometric="rgb",
                subfiletype=0 if index == 0 else 1,
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
            )
    return path


def read_rate(read, count: int, repeats: int) -> float:
    """Median regions/s of ``read(i)`` for ``i`` in ``range(count)``."""
    read(0)  # warm-up: open the slide, fill caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            read(i)
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def end_to_end_rates(encoder, plans: dict, scratch: Path, size: int, repeats: int) -> dict[str, float]:
    """Median regions/s of extracting each named list of plans, ``repeats`` times (1 worker, batch 1)."""
    rates: dict[str, list[float]] = {}
    for repeat in range(repeats):
        for name, plan in plans.items():
            store = FeatureStore(scratch / f"{name[:3]}{repeat}")
            extractor = Extractor(encoder, store, "global", size, batch_size=1, num_workers=1, show_progress=False)
            start = time.perf_counter()
            extractor.run(plan)
            regions = sum(len(p.regions) for p in plan)
            rates.setdefault(name, []).append(regions / (time.perf_counter() - start))
            print(f"end to end {name}: {rates[name][-1]:.4f} regions/s", flush=True)
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--region-size", type=int, default=4096)
    parser.add_argument("--reads", type=int, default=6, help="regions per reading measurement")
    parser.add_argument("--regions", type=int, default=4, help="regions per end-to-end run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "wsi_reading.json")
    args = parser.parse_args()
    size = args.region_size
    demo = fetch_demo_slide(ROOT / "demo")
    he = read_slide_level0(demo)
    mosaic = np.ascontiguousarray(
        np.tile(he, (-(-3 * size // he.shape[0]), -(-3 * size // he.shape[1]), 1))[: 3 * size, : 3 * size]
    )  # tissue everywhere, 3 x 3 regions
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        half = write_slide(scratch / "half.tif", mosaic, 0.5, (1, 4, 16))
        quarter = write_slide(scratch / "quarter.tif", mosaic, 0.25, (1, 4, 16))
        corners = [((i % 3) * size, (i // 3 % 3) * size) for i in range(max(args.reads, args.regions))]
        sources = {
            "TIFF 0.5 um/px, openslide": WholeSlideRegions(
                "half", PyramidRead(half, "openslide", 0.5, 0, size, size, size)
            ),
            "TIFF 0.5 um/px, tifffile (reader: auto)": WholeSlideRegions(
                "half", PyramidRead(half, "tifffile", 0.5, 0, size, size, size)
            ),
            "TIFF 0.25 um/px no 2x, openslide + INTER_AREA": WholeSlideRegions(
                "quarter", PyramidRead(quarter, "openslide", 0.25, 0, 2 * size, 2 * size, size)
            ),
            "TIFF 0.25 um/px no 2x, tifffile + INTER_AREA": WholeSlideRegions(
                "quarter", PyramidRead(quarter, "tifffile", 0.25, 0, 2 * size, 2 * size, size)
            ),
            "demo .svs (2220 x 2967, padded), openslide": WholeSlideRegions(
                "demo", PyramidRead(demo, "openslide", 0.499, 0, size, size, size)
            ),
            "demo .svs (2220 x 2967, padded), tifffile": WholeSlideRegions(
                "demo", PyramidRead(demo, "tifffile", 0.499, 0, size, size, size)
            ),
        }
        half_corners = [(x // 2, y // 2) for x, y in corners]  # the quarter slide's regions cover 2x the level-0 px
        for name, source in sources.items():
            points = half_corners if "0.25" in name else corners if "TIFF" in name else [(0, 0)] * len(corners)
            scale = 2 if "0.25" in name else 1
            rate = read_rate(functools.partial(read_scaled, source, points, scale), args.reads, args.repeats)
            rows[name] = {"regions_per_s": rate}
            print(f"{name:>42}: {rate:.2f} regions/s", flush=True)
        raw = WholeSlideRegions("half", PyramidRead(half, "tifffile", 0.5, 0, size, size, size))
        on_cpu = torch.device("cpu")
        for name, read in (
            ("TIFF 0.5 um/px, compressed tiles only (jpeg_decode: device, the worker's part)", raw.read_raw),
            (
                "TIFF 0.5 um/px, compressed tiles decoded by torchvision on the CPU",
                lambda region: decode_regions([raw.read_raw(region)], on_cpu),
            ),
        ):
            rate = read_rate(lambda i, read=read: read(Region(*corners[i])), args.reads, args.repeats)
            rows[name] = {"regions_per_s": rate}
            print(f"{name:>42}: {rate:.2f} regions/s", flush=True)
        jpeg_root = scratch / "regions"
        images = jpeg_root / "half" / "imgs"
        images.mkdir(parents=True)
        for x, y in corners:
            Image.fromarray(sources["TIFF 0.5 um/px, openslide"].read(Region(x, y))).save(
                images / f"{x}_{y}.jpg", quality=90
            )
        files = sorted(images.iterdir())
        rate = read_rate(lambda i: read_region(files[i], size), args.reads, args.repeats)
        rows["JPEG file (region_dir)"] = {"regions_per_s": rate}
        print(f"{'JPEG file (region_dir)':>42}: {rate:.2f} regions/s", flush=True)

        end_to_end = {}
        if not args.skip_end_to_end:
            torch.manual_seed(0)
            encoder = HIPTEncoder(vit_small().eval(), vit4k_xs().eval(), precision=args.precision)
            chosen = corners[: args.regions]
            plans = {
                "wsi_csv, reader auto (tifffile)": [
                    SlidePlan(
                        "half",
                        [Region(x, y) for x, y in chosen],
                        source=sources["TIFF 0.5 um/px, tifffile (reader: auto)"],
                    )
                ],
                "wsi_csv, reader openslide": [
                    SlidePlan("half", [Region(x, y) for x, y in chosen], source=sources["TIFF 0.5 um/px, openslide"])
                ],
                "region_dir (JPEG files)": [
                    SlidePlan(p.slide_id, [r for r in p.regions if (r.x, r.y) in chosen])
                    for p in plan_slides(jpeg_root, ["half"], "jpg")
                ],
            }
            end_to_end = end_to_end_rates(encoder, plans, scratch, size, args.repeats)

    result = {
        "machine": machine(),
        "region_size": size,
        "repeats": args.repeats,
        "reading_per_worker": rows,
        "end_to_end_regions_per_s": end_to_end,
        "precision": args.precision,
    }
    tiff_rate = rows["TIFF 0.5 um/px, tifffile (reader: auto)"]["regions_per_s"]
    result["workers_for_40_regions_per_s"] = {name: 40 / row["regions_per_s"] for name, row in rows.items()}
    if end_to_end:
        result["wsi_over_region_dir"] = {
            name: value / end_to_end["region_dir (JPEG files)"]
            for name, value in end_to_end.items()
            if name.startswith("wsi_csv")
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\n{size}-px regions, median of {args.repeats}; {describe(result['machine'])}\n")
    print("| read per worker | regions/s | workers for 40 regions/s |\n|---|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['regions_per_s']:.2f} | {40 / row['regions_per_s']:.1f} |")
    if end_to_end:
        print(f"\n| end to end ({args.precision}, 1 worker) | regions/s |\n|---|---:|")
        for name, value in end_to_end.items():
            print(f"| {name} | {value:.4f} |")
        for name, ratio in result["wsi_over_region_dir"].items():
            print(f"- {name} / region_dir: {ratio:.3f} (target >= 0.9)")
    print(
        "- TIFF read with tifffile vs JPEG file decoding: "
        f"{tiff_rate / rows['JPEG file (region_dir)']['regions_per_s']:.2f}x"
    )
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
