"""Patch-encoder throughput: HIPT's ViT-S/16 against foundation-model-sized timm ViTs, per precision.

    python3 benchmarks/patch_encoders.py [--patches 16] [--repeats 3] [--device cpu|cuda]

Rows: 256-px patches of a real H&E region (the demo slide) through each encoder as extraction runs it
(normalised on the device, resized to the model's input where it needs 224 px), random weights of the
same shapes as the foundation models: ViT-S/16 (HIPT, 384-d), ViT-B/16 (768-d, Phikon-like) and
ViT-L/16 (1024-d, UNI's architecture). Prints a Markdown table with the hardware and writes JSON to
benchmarks/results/patch_encoders.json. Medians of --repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.extraction import real_region
from benchmarks.hardware import describe, machine
from source.models.accelerator import Accelerated
from source.models.factory import build_hipt_encoder
from source.models.hipt import patchify
from source.models.settings import EncoderSettings

ENCODERS = {
    "ViT-S/16 (HIPT, 384-d)": "vit_small",
    "ViT-B/16 (timm, 768-d)": "timm:vit_base_patch16_224",
    "ViT-L/16 (UNI's shape, 1024-d)": "uni",
}


def patches_per_second(encoder, patches: torch.Tensor, repeats: int, sync) -> float:
    """Median patches/s of ``encoder.encode_patches``-equivalent forwards over ``patches`` (after a warm-up)."""
    regions = patches  # (P, 3, 256, 256) uint8, encoded as P one-patch regions
    times = []
    for index in range(repeats + 1):
        start = time.perf_counter()
        with torch.inference_mode():
            encoder.encode_patches(regions)
        sync()
        if index:  # the first run warms up
            times.append(time.perf_counter() - start)
    return len(patches) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "patch_encoders.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    region = torch.from_numpy(real_region(1024)).permute(2, 0, 1).unsqueeze(0)
    patches = patchify(region, 256).repeat(-(-args.patches // 16), 1, 1, 1)[: args.patches]
    rows = {}
    for name, arch in ENCODERS.items():
        torch.manual_seed(0)
        for precision in ("fp32", "bf16"):
            settings = EncoderSettings("local", arch, patch_batch_size=args.patches, precision=precision)
            encoder = Accelerated(build_hipt_encoder(settings), device)
            rate = patches_per_second(encoder, patches, args.repeats, sync)
            rows[f"{name}, {precision}"] = {"patches_per_s": rate, "embed_dim": encoder.model.vit_patch.embed_dim}
            print(f"{name:>32} {precision}: {rate:.1f} patches/s", flush=True)
            del encoder
    result = {"machine": machine(device) | {"device": str(device)}, "patches": args.patches, "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\n{args.patches} patches of 256 px, median of {args.repeats}, {device}; {describe(result['machine'])}\n")
    print("| encoder, precision | patches/s | 4096-px regions/s |\n|---|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['patches_per_s']:.1f} | {row['patches_per_s'] / 256:.3f} |")
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
