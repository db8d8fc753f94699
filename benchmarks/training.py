"""Slide-level training throughput on generated features of realistic size (M = 40 regions per slide).

    python3 benchmarks/training.py [--slides 64] [--local-slides 16] [--epochs 3]

Rows: GlobalHIPT on (40, 192) region features and LocalGlobalHIPT on (40, 256, 384) patch features
(ViT_region frozen, as by default, so each slide is encoded once in the first epoch; and fine-tuned),
one training epoch (forward, backward, Adam steps every 8 slides) and one evaluation pass. Medians
over --epochs after a first epoch, reported apart. Prints a Markdown table and
writes benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.hardware import describe, machine
from source.data.features import BagDataset, FeatureBank, Split
from source.engines.evaluate import (
    encode_once,
    predict_split,
)
from source.engines.optim import build_optimizer
from source.engines.train import Trainer, TrainerSettings
from source.models.factory import build_slide_model
from source.models.settings import EncoderSettings, HiptOptions, SlideModelSettings
from source.tasks.classification import ClassificationTask


class InMemoryBank(FeatureBank):
    """Generated features held in memory (the benchmark measures compute, not disk)."""

    def __init__(self, bags: dict[str, torch.Tensor], level: str) -> None:
        super().__init__(".", level, 192 if level == "global" else 384)
        self._memory = bags


def make_split(count: int, shape: tuple[int, ...], level: str) -> Split:
    generator = torch.Generator().manual_seed(0)
    bags = {f"s{i}": torch.randn(*shape, generator=generator) for i in range(count)}
    labels = np.arange(count) % 2
    frame = pd.DataFrame({"slide_id": list(bags), "label_index": labels})
    return Split("train", BagDataset([[s] for s in bags], {"label": labels}, InMemoryBank(bags, level), "slide"), frame)


def measure(name: str, level: str, split: Split, epochs: int, freeze: bool = True) -> dict:
    torch.manual_seed(0)
    hipt = HiptOptions(freeze_vit_region=freeze, vit_region=EncoderSettings(warn_random=False))
    settings = SlideModelSettings(level=level, options=hipt)
    model = build_slide_model(settings, 2)
    split = Split(split.name, copy.copy(split.dataset), split.frame)
    encode_once(model, {"train": split}, torch.device("cpu"))  # frozen ViT_region: encoded in the first epoch only
    optimizer = build_optimizer(model.parameters(), "adam", 2e-4, 1e-5)
    settings = TrainerSettings(nepochs=epochs, accumulation=8, show_progress=False)
    trainer = Trainer(
        model, ClassificationTask(2), optimizer, None, settings, ROOT / "benchmarks" / "results", torch.device("cpu")
    )
    train_times, eval_times = [], []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        trainer.train_epoch(split, epoch)
        train_time = time.perf_counter() - start
        start = time.perf_counter()
        predict_split(model, trainer.task, split, torch.device("cpu"))
        train_times.append(train_time)
        eval_times.append(time.perf_counter() - start)
    slides = len(split.dataset)
    first, train_times, eval_times = (
        train_times[0],
        train_times[1:],
        eval_times[1:],
    )  # the first epoch warms up (and encodes)
    row = {
        "slides": slides,
        "first_epoch_slides_per_s": slides / first,
        "train_slides_per_s": slides / statistics.median(train_times),
        "eval_slides_per_s": slides / statistics.median(eval_times),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    print(
        f"{name}: {row['train_slides_per_s']:.1f} slides/s training ({row['first_epoch_slides_per_s']:.1f} in epoch "
        f"1), {row['eval_slides_per_s']:.1f} slides/s evaluation",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", type=int, default=64)
    parser.add_argument("--local-slides", type=int, default=16)
    parser.add_argument("--regions", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "training.json")
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    rows = {
        "GlobalHIPT (M, 192)": measure(
            "GlobalHIPT", "global", make_split(args.slides, (args.regions, 192), "global"), args.epochs
        ),
    }
    local = make_split(args.local_slides, (args.regions, 256, 384), "local")
    rows["LocalGlobalHIPT (M, 256, 384), ViT_region frozen"] = measure(
        "LocalGlobalHIPT frozen", "local", local, args.epochs
    )
    rows["LocalGlobalHIPT (M, 256, 384), ViT_region fine-tuned"] = measure(
        "LocalGlobalHIPT fine-tuned", "local", local, args.epochs, False
    )
    result = {
        "machine": machine(),
        "regions_per_slide": args.regions,
        "epochs": args.epochs,
        "rows": rows,
    }
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\nM = {args.regions} regions per slide, median of {args.epochs} epochs; {describe(result['machine'])}\n")
    print(
        "| model | training slides/s | first epoch slides/s | evaluation slides/s | trainable parameters "
        "|\n|---|---:|---:|---:|---:|"
    )
    for name, row in rows.items():
        print(
            f"| {name} | {row['train_slides_per_s']:.1f} | {row['first_epoch_slides_per_s']:.1f} | "
            f"{row['eval_slides_per_s']:.1f} | {row['trainable_parameters']:,} |"
        )
    print(f"\nJSON: {args.output}")


if __name__ == "__main__":
    main()
