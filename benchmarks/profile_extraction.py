"""Where the time of one extraction batch goes: torch.profiler over ViT-S/16 + ViT4K-XS on real H&E regions.

    python3 benchmarks/profile_extraction.py [--device cuda] [--region-size 4096] [--batch-size 4]
        [--precision bf16] [--batches 3] [--output benchmarks/results/profile_extraction.json]

The encoder labels its phases (``hipt.h2d_copy``; ``hipt.embed_pixels``, the folded token embedding of
:mod:`source.models.pixel_embedding`, or on the reference path ``hipt.patchify`` and ``hipt.normalise``;
``hipt.vit_patch``, ``hipt.vit_region``, ``hipt.d2h_copy``; the extractor ``hipt.feature_write``); this script
also labels the layers inside each ViT (``vit_patch.attention``, ``vit_patch.mlp``, ``vit_patch.layer_norm``,
``vit_patch.embed`` on the reference path, and the same for ViT_region) with forward hooks. Each label's time is
its total (children included) per batch: device time on a GPU, CPU time on the CPU, and its share of the batch's
wall time. The ten costliest operators (self time) follow.
It also counts the model's FLOPs per region (``torch.utils.flop_counter``), from which the GPU check derives the MFU.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = (
    "hipt.h2d_copy",
    "hipt.patchify",
    "hipt.normalise",
    "hipt.embed_pixels",
    "hipt.vit_patch",
    "vit_patch.embed",
    "vit_patch.layer_norm",
    "vit_patch.attention",
    "vit_patch.mlp",
    "hipt.vit_region",
    "vit_region.embed",
    "vit_region.layer_norm",
    "vit_region.attention",
    "vit_region.mlp",
    "hipt.d2h_copy",
    "hipt.feature_write",
)
"""The labels reported, in pipeline order."""


def layer_kind(module) -> str | None:
    """``attention``, ``mlp``, ``layer_norm`` or None (a module not labelled)."""
    from torch import nn

    from source.models.layers import Attention

    if isinstance(module, Attention):
        return "attention"
    if isinstance(module, nn.LayerNorm):
        return "layer_norm"
    return "mlp" if type(module).__name__ == "Mlp" else None


def label_layers(encoder) -> list:
    """Wrap every attention, MLP, layer norm and token embedding of both ViTs in a profiler label; returns the hook
    handles (remove them to stop)."""
    from torch.profiler import record_function

    def enter(module, args) -> None:
        module._profile_label = record_function(module._profile_name)
        module._profile_label.__enter__()

    def leave(module, args, output) -> None:
        module._profile_label.__exit__(None, None, None)

    handles = []
    for stage in ("vit_patch", "vit_region"):
        vit = getattr(encoder, stage, None)
        labelled = [] if vit is None else [(m, layer_kind(m)) for m in vit.modules()]
        embed = getattr(vit, "token_embed", None)
        labelled += [(embed, "embed")] if embed is not None else []
        for module, kind in labelled:
            if kind is not None:
                module._profile_name = f"{stage}.{kind}"
                handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def flops_per_region(encoder, region) -> float:
    """The model's floating-point operations for one region: matmuls and attention, as torch counts them (attention
    through SDPA's math backend while counting: the fused CPU kernel is not counted)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        encoder(region[:1])
    return float(counter.get_total_flops())


def one_batch(encoder, pixels) -> None:
    """What the extractor does to a batch: encode, copy the features to the host, serialise them."""
    import torch
    from torch.profiler import record_function

    features = encoder(pixels).global_
    with record_function("hipt.d2h_copy"):
        features = features.cpu()
    with record_function("hipt.feature_write"):
        torch.save(features, io.BytesIO())


def profile(device: str, region_size: int, batch_size: int, precision: str, batches: int, region=None) -> dict:
    """Profile ``batches`` batches after one warm-up; returns the per-label table, the top operators and FLOPs.

    ``region``: ``(1, 3, S, S)`` uint8 (default: the demo slide's H&E tiled to ``region_size``)."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from benchmarks.gpu_common import hipt_encoder, real_region, synchronize
    from benchmarks.hardware import machine

    if region is None:
        _, region = real_region(region_size)
    pixels = region.repeat(batch_size, 1, 1, 1)
    if device == "cuda":
        pixels = pixels.pin_memory()
    encoder = hipt_encoder(device, precision)
    flops = flops_per_region(encoder, region)
    label_layers(encoder.model)
    with torch.inference_mode():
        one_batch(encoder, pixels)  # warm-up
        synchronize(device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        start = time.perf_counter()
        with torch_profile(activities=activities) as profiler:
            for _ in range(batches):
                one_batch(encoder, pixels)
            synchronize(device)
        wall = (time.perf_counter() - start) / batches
    events = profiler.key_averages()
    on_device = device == "cuda"

    def milliseconds(event) -> float:
        total = event.device_time_total if on_device else event.cpu_time_total
        return total / 1e3 / batches

    by_name = {event.key: event for event in events}
    rows = [
        {"label": name, "ms_per_batch": milliseconds(by_name[name]), "share": milliseconds(by_name[name]) / 1e3 / wall}
        for name in PHASES
        if name in by_name
    ]
    self_time = (lambda e: e.self_device_time_total) if on_device else (lambda e: e.self_cpu_time_total)
    operators = sorted((e for e in events if not e.key.startswith(("hipt.", "vit_"))), key=self_time, reverse=True)
    top = [{"operator": e.key, "self_ms_per_batch": self_time(e) / 1e3 / batches} for e in operators[:10]]
    return {
        "hardware": machine(torch.device(device)),
        "device": device,
        "region_size": region_size,
        "batch_size": batch_size,
        "precision": precision,
        "batches": batches,
        "wall_ms_per_batch": wall * 1e3,
        "regions_per_s": batch_size / wall,
        "flops_per_region": flops,
        "time": "device" if on_device else "cpu",
        "phases": rows,
        "top_operators": top,
    }


def markdown(result: dict) -> str:
    """The profile as a markdown table (labels, then operators)."""
    lines = [
        f"{result['batch_size']} x {result['region_size']}-px regions, {result['precision']}, {result['device']}: "
        f"{result['wall_ms_per_batch']:.0f} ms per batch ({result['regions_per_s']:.2f} regions/s), "
        f"{result['flops_per_region'] / 1e12:.2f} TFLOP per region; {result['time']} time per label:",
        "",
        "| label | ms / batch | share of wall time |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{r['label']}` | {r['ms_per_batch']:.1f} | {100 * r['share']:.1f}% |" for r in result["phases"]]
    lines += ["", "| operator (self time) | ms / batch |", "|---|---:|"]
    lines += [f"| `{r['operator']}` | {r['self_ms_per_batch']:.1f} |" for r in result["top_operators"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--region-size", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "profile_extraction.json")
    args = parser.parse_args()
    result = profile(args.device, args.region_size, args.batch_size, args.precision, args.batches)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
