"""Extraction throughput: this project's encoder vs a naive HIPT_4K-style baseline, and end to end.

    python3 benchmarks/extraction.py [--regions 2] [--repeats 3] [--region-size 4096] [--compile]

Rows (same weights, same real H&E region from the demo slide, one process):
    baseline fp32   one region per forward, 256-patch mini-batches, eager attention that materialises
                    the N x N matrix, fp32 -- what the original HIPT_4K code does
    ours fp32       batched regions, torch SDPA attention
    ours bf16       the same under bf16 autocast
    end to end      extract_features' loop (decode in a worker + model + atomic writes) vs model-only
Prints a Markdown table and writes JSON to benchmarks/results/extraction.json. Medians of --repeats.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
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
from source.data.slides import plan_slides
from source.engines.extract import Extractor
from source.engines.feature_store import FeatureStore
from source.models.accelerator import Accelerated
from source.models.hipt import HIPTEncoder
from source.models.layers import Attention
from source.models.vit import vit4k_xs, vit_small


def real_region(size: int) -> np.ndarray:
    """The demo slide (CMU-1-Small-Region, H&E) placed in a white ``size`` x ``size`` region."""
    slide = read_slide_level0(fetch_demo_slide(ROOT / "demo"))
    region = np.full((size, size, 3), 255, dtype=np.uint8)
    tiles_y, tiles_x = -(-size // slide.shape[0]), -(-size // slide.shape[1])
    mosaic = np.tile(slide, (tiles_y, tiles_x, 1))  # tissue everywhere, as in a tissue-filtered region
    region[:] = mosaic[:size, :size]
    return region


class EagerAttention:
    """Context manager: make every Attention materialise its weights (the original code's attention)."""

    def __enter__(self):
        self.fast = Attention.forward
        Attention.forward = lambda module, x: Attention.forward_with_weights(module, x)[0]

    def __exit__(self, *exc):
        Attention.forward = self.fast


def baseline_forward(encoder: HIPTEncoder, region: torch.Tensor) -> torch.Tensor:
    """HIPT_4K-style: one region ``(1, 3, R, R)`` float in [0, 1], unfold, 256-patch mini-batches, fp32."""
    x = (region - 0.5) / 0.5
    patches = x.unfold(2, 256, 256).unfold(3, 256, 256)  # (1, 3, n, n, 256, 256)
    n = patches.shape[2]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * n, 3, 256, 256)
    features = torch.cat([encoder.vit_patch(patches[i : i + 256]) for i in range(0, n * n, 256)])
    grid = features.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
    return encoder.vit_region(grid)


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def end_to_end_times(encoder: Accelerated, regions: int, region_size: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` extractions of ``regions`` JPEG region files (decoding, loading, encoding, writing)."""
    with tempfile.TemporaryDirectory() as scratch:
        images = Path(scratch) / "regions" / "bench" / "imgs"
        images.mkdir(parents=True)
        for i in range(regions):
            Image.fromarray(real_region(region_size)).save(images / f"{i * region_size}_0.jpg", quality=90)
        plans = plan_slides(Path(scratch) / "regions", ["bench"], "jpg")
        times = []
        for repeat in range(repeats):
            store = FeatureStore(Path(scratch) / f"run{repeat}")
            extractor = Extractor(
                encoder, store, "global", region_size, batch_size=1, num_workers=1, show_progress=False
            )
            start = time.perf_counter()
            extractor.run(plans)
            times.append(time.perf_counter() - start)
            shutil.rmtree(Path(scratch) / f"run{repeat}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=2, help="regions per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per row (median reported)")
    parser.add_argument("--region-size", type=int, default=4096)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd encoders")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "extraction.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    encoder = Accelerated(HIPTEncoder(vit_small().eval(), vit4k_xs().eval()), device)
    pixels = torch.from_numpy(real_region(args.region_size)).permute(2, 0, 1)
    batch = pixels.unsqueeze(0).repeat(args.regions, 1, 1, 1)
    patches_per_region = (args.region_size // 256) ** 2
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows, features = {}, {}

    def measure(name, function):
        def run():
            with torch.inference_mode():
                out = function()
            sync()
            return out

        run()  # warm-up (and compilation)
        seconds, out = timed(run, args.repeats)
        rows[name] = {
            "seconds": seconds,
            "regions_per_s": args.regions / seconds,
            "patches_per_s": args.regions * patches_per_region / seconds,
        }
        features[name] = out.float().cpu()
        print(f"{name:>14}: {rows[name]['regions_per_s']:.4f} regions/s", flush=True)

    with EagerAttention():
        measure(
            "baseline fp32",
            lambda: torch.cat([baseline_forward(encoder.model, (r[None].to(device).float() / 255)) for r in batch]),
        )
    for precision in ("fp32", "bf16"):
        encoder.precision = precision
        measure(f"ours {precision}", lambda: encoder(batch).global_)
    encoder.precision = "bf16"
    model_only = rows["ours bf16"]["regions_per_s"]
    times = end_to_end_times(encoder, args.regions, args.region_size, args.repeats)
    end_to_end = args.regions / statistics.median(times)
    rows["end to end bf16"] = {
        "seconds": statistics.median(times),
        "regions_per_s": end_to_end,
        "patches_per_s": end_to_end * patches_per_region,
    }
    if args.compile:
        encoder.compile()
        for precision in ("fp32", "bf16"):
            encoder.precision = precision
            measure(f"compiled {precision}", lambda: encoder(batch).global_)

    reference = features["baseline fp32"]
    cosine = lambda name: torch.nn.functional.cosine_similarity(features[name], reference).min().item()  # noqa: E731
    result = {
        "machine": machine(device) | {"device": str(device)},
        "region_size": args.region_size,
        "regions": args.regions,
        "repeats": args.repeats,
        "rows": rows,
        "ratios": {
            "ours fp32 / baseline": rows["ours fp32"]["regions_per_s"] / rows["baseline fp32"]["regions_per_s"],
            "ours bf16 / ours fp32": rows["ours bf16"]["regions_per_s"] / rows["ours fp32"]["regions_per_s"],
            "end to end / model only (bf16)": end_to_end / model_only,
        },
        "feature_agreement": {
            "ours fp32 vs baseline: max abs diff": (features["ours fp32"] - reference).abs().max().item(),
            "ours bf16 vs baseline: min cosine": cosine("ours bf16"),
        },
        "peak_rss_mb": {
            "main process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "largest worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        },
    }
    if args.compile:
        result["ratios"]["compiled fp32 / baseline"] = (
            rows["compiled fp32"]["regions_per_s"] / rows["baseline fp32"]["regions_per_s"]
        )
        result["ratios"]["compiled bf16 / ours fp32"] = (
            rows["compiled bf16"]["regions_per_s"] / rows["ours fp32"]["regions_per_s"]
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(
        f"\n{args.regions} regions of {args.region_size} px, median of {args.repeats}, {device}; "
        f"{describe(result['machine'])}\n"
    )
    print("| row | regions/s | patches/s | s per run |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['regions_per_s']:.4f} | {row['patches_per_s']:.1f} | {row['seconds']:.1f} |")
    print()
    for name, value in {**result["ratios"], **result["feature_agreement"]}.items():
        print(f"- {name}: {value:.6g}")
    print(
        f"- peak RSS: {result['peak_rss_mb']['main process']:.0f} MB (main), "
        f"{result['peak_rss_mb']['largest worker']:.0f} MB (worker)"
    )
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
