"""Seconds per slide of exact region contributions (leave one out), 50 regions, random weights.

    python3 benchmarks/contributions.py [--regions 50] [--repeats 3]

Every slide model on a level-global bag (50 x 192), batched (masked forwards, 64 occluded bags per forward) where
the model allows it, and one forward per removal otherwise (TransMIL); HIPT and ABMIL also one forward per removal,
for the ratio; level-local HIPT (50 regions of 16 x 16 patches of 384, ViT_region encoding each region once), and
its patch contributions (every one of the 12,800 patches masked inside ViT_region, 64 masked copies per forward).
Medians of --repeats. Prints a Markdown table and writes benchmarks/results/contributions.json.
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

from benchmarks.hardware import describe, machine
from source.explain.contributions import leave_one_out, patch_contributions
from source.models.factory import build_slide_model
from source.models.settings import EncoderSettings, HiptOptions, SlideModelSettings
from source.models.slide_model import SlideModel
from source.models.slide_registry import AGGREGATORS


class OneByOne(SlideModel):
    """The same model, its masked forward not declared: leave-one-out runs one forward per removal."""

    def __init__(self, model: SlideModel) -> None:
        super().__init__()
        self.model = model

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.model(bag), None


def seconds(model: torch.nn.Module, bag: torch.Tensor, repeats: int) -> float:
    output = lambda logits: torch.softmax(logits, dim=-1)[:, 0]  # noqa: E731
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        leave_one_out(model, bag, output, batch_size=64)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    region_bag = torch.randn(args.regions, 192)
    rows = []
    for name in AGGREGATORS:
        model = build_slide_model(SlideModelSettings(aggregator=name), 2).eval()
        rows.append({"model": name, "input": "global", "mode": "as run", "s": seconds(model, region_bag, args.repeats)})
        if name in ("hipt", "abmil"):
            sequential = seconds(OneByOne(model), region_bag, args.repeats)
            rows.append({"model": name, "input": "global", "mode": "one forward per removal", "s": sequential})
    local = SlideModelSettings(
        level="local", options=HiptOptions(vit_region=EncoderSettings(level="local", warn_random=False))
    )
    model = build_slide_model(local, 2).eval()
    grids = torch.randn(args.regions, 256, 384)
    rows.append({"model": "hipt", "input": "local (16 x 16 x 384)", "mode": "as run", "s": seconds(model, grids, 1)})
    started = time.perf_counter()
    patch_contributions(model, grids, lambda logits: torch.softmax(logits, dim=-1)[:, 0], batch_size=64)
    patches = time.perf_counter() - started
    rows.append({"model": "hipt", "input": "local, every patch", "mode": "patches (ViT_region masks)", "s": patches})
    facts = machine()
    print(f"\n{describe(facts)}; {args.regions} regions, median of {args.repeats}\n")
    print("| model | input | removals | seconds per slide |\n|---|---|---|---:|")
    for row in rows:
        mode = "batched (masked)" if row["mode"] == "as run" and row["model"] != "transmil" else row["mode"]
        mode = "one forward per removal" if row["model"] == "transmil" else mode
        mode = row["mode"] if row["mode"].startswith("patches") else mode
        print(f"| {row['model']} | {row['input']} | {mode} | {row['s']:.3f} |")
    out = ROOT / "benchmarks" / "results" / "contributions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": facts, "regions": args.regions, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
