"""DINO pretraining throughput on CPU: ViT-S/16 training steps (fp32, bf16) and augmentation per worker.

    python3 benchmarks/pretraining.py [--batch 8] [--steps 3]

Training rows: the full patch-stage recipe (2 global 224-px + 8 local 96-px crops, out_dim 65536,
AdamW, clipping, EMA teacher) on pre-made crops, so only the model is timed; median of --steps steps
after a warm-up step. Augmentation row: PatchMultiCrop on real 256-px H&E patches (the demo slide) in
one process, i.e. one DataLoader worker. Prints a Markdown table and writes benchmarks/results/pretraining.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hardware import describe, machine
from source.data.demo_slide import fetch_demo_slide, read_slide_level0
from source.models.hipt import PRECISIONS
from source.models.vit import build_vit
from source.pretraining.augment import PatchMultiCrop
from source.pretraining.dino import (
    DINO,
    clip_gradients,
)
from source.pretraining.loss import DINOLoss


def training_rate(batch: int, steps: int, precision: str) -> float:
    """Images per second of DINO steps (student forward/backward, teacher forward, AdamW, EMA)."""
    torch.manual_seed(0)
    dino = DINO(
        build_vit("vit_small", drop_path_rate=0.1),
        build_vit("vit_small"),
        {"out_dim": 65536},
        DINOLoss(65536, 10, 0.04, 0.07, 30, 100),
    )
    optimizer = torch.optim.AdamW(dino.parameter_groups(), lr=1e-4)
    crops = [torch.randn(batch, 3, 224, 224) for _ in range(2)] + [torch.randn(batch, 3, 96, 96) for _ in range(8)]
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=PRECISIONS[precision], enabled=precision != "fp32"):
            loss = dino(crops, epoch=0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(dino.student, 3.0)
        optimizer.step()
        dino.update_teacher(0.996)
        if step:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def augmentation_rate(count: int) -> float:
    """Images per second of the patch multi-crop on real 256-px H&E patches, one process."""
    slide = read_slide_level0(fetch_demo_slide(ROOT / "demo"))
    patches = [Image.fromarray(np.ascontiguousarray(slide[500 + 37 * i : 756 + 37 * i, 600:856])) for i in range(count)]
    augment = PatchMultiCrop()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker runs single-threaded
    start = time.perf_counter()
    for patch in patches:
        augment(patch)
    seconds = time.perf_counter() - start
    torch.set_num_threads(threads)
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--augment-images", type=int, default=64)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "pretraining.json")
    args = parser.parse_args()
    rows = {f"ViT-S/16 DINO step, {p}": training_rate(args.batch, args.steps, p) for p in ("fp32", "bf16")}
    for name, rate in rows.items():
        print(f"{name}: {rate:.2f} images/s", flush=True)
    rows["patch augmentation, 1 worker"] = augmentation_rate(args.augment_images)
    result = {"machine": machine(), "batch": args.batch, "images_per_s": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\nbatch {args.batch}, median of {args.steps} steps; {describe(result['machine'])}\n")
    print("| row | images/s |\n|---|---:|")
    for name, rate in rows.items():
        print(f"| {name} | {rate:.2f} |")
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
