"""ViT_patch's token embedding from raw pixels (normalisation folded in) against patchify -> normalise -> embed.

    python3 benchmarks/embedding.py [--device cpu] [--region-size 4096] [--repeats 3] [--skip-model]
        [--output benchmarks/results/embedding.json]

Same weights, the same real H&E region (the demo slide tiled), uint8 pixels already on the device. Rows:
    embedding      the token embedding of one region alone: the reference (patchify, float, /255, -mean, /std,
                   16-px convolution, 256 patches at a time) vs the folded one (one matrix product over the uint8
                   region's 16-px cells), fp32 and bf16
    model          the whole encoder (ViT-S/16 + ViT4K-XS, global features) of one region, both ways, fp32 and bf16
Medians of --repeats after a warm-up; the features of the two paths are compared (fp32 max abs difference, bf16 min
cosine). The GPU check runs the same comparison on its GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_seconds(function: Callable[[], object], device, repeats: int) -> float:
    import torch

    def once() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


def compare(device_name: str, region, repeats: int = 3, model: bool = True) -> dict:
    """Both embedding paths on ``region`` ``(1, 3, S, S)`` uint8: seconds per region and feature agreement."""
    import torch

    from benchmarks.gpu_common import hipt_encoder
    from source.models.hipt import patchify
    from source.models.pixel_embedding import embed_region_patches, folded_embedding, input_coding

    device = torch.device(device_name)
    encoder = hipt_encoder(device_name)
    model = encoder.model
    pixels = region.to(device)
    proj = model.vit_patch.token_embed.proj

    def reference_embedding() -> None:
        patches = patchify(pixels, model.patch_size)
        for start in range(0, patches.shape[0], model.patch_batch_size):
            model.vit_patch.token_embed(model.normalize(patches[start : start + model.patch_batch_size]))

    def folded() -> None:
        weight, bias = folded_embedding(proj, model.mean, model.std, input_coding(pixels.dtype))
        embed_region_patches(pixels, weight, bias, model.patch_size, proj.kernel_size[0])

    def embedding() -> None:  # the path ``model.fused_embedding`` selects, as in the encoder
        with encoder.autocast(device):
            folded() if model.fused_embedding else reference_embedding()

    stages = {"embedding": embedding} | ({"model": lambda: encoder(pixels).global_} if model else {})
    rows = []
    for precision in ("fp32", "bf16"):
        encoder.precision = precision
        for stage, function in stages.items():
            seconds = {}
            for fused in (False, True):
                model.fused_embedding = fused
                seconds["folded" if fused else "reference"] = _median_seconds(function, device, repeats)
            rows.append(
                {
                    "stage": stage,
                    "precision": precision,
                    "reference_s": seconds["reference"],
                    "folded_s": seconds["folded"],
                    "speedup": seconds["reference"] / seconds["folded"],
                }
            )
            print(f"{stage} {precision}: {rows[-1]['reference_s']:.4f} s -> {rows[-1]['folded_s']:.4f} s", flush=True)
    return {"rows": rows, "agreement": _agreement(encoder, pixels)}


def _agreement(encoder, pixels) -> dict:
    """fp32: max abs difference of the global features of the two paths; bf16 folded vs fp32 reference: min cosine."""
    import torch

    features = {}
    with torch.inference_mode():
        for precision, fused in (("fp32", False), ("fp32", True), ("bf16", True)):
            encoder.precision, encoder.model.fused_embedding = precision, fused
            features[precision, fused] = encoder(pixels).global_.float().cpu()
    reference = features["fp32", False]
    return {
        "fp32 max abs diff (folded vs reference)": float((features["fp32", True] - reference).abs().max()),
        "fp32 max abs feature": float(reference.abs().max()),
        "bf16 folded vs fp32 reference: min cosine": float(
            torch.nn.functional.cosine_similarity(features["bf16", True], reference).min()
        ),
    }


def markdown(result: dict) -> str:
    lines = ["| stage | precision | reference (s) | folded (s) | speed-up |", "|---|---|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(
            f"| {row['stage']} | {row['precision']} | {row['reference_s']:.4f} | {row['folded_s']:.4f} | "
            f"{row['speedup']:.2f}x |"
        )
    lines += ["", *(f"- {name}: {value:.6g}" for name, value in result["agreement"].items())]
    return "\n".join(lines)


def main() -> int:
    import torch

    from benchmarks.gpu_common import real_region
    from benchmarks.hardware import describe, machine

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--region-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-model", action="store_true", help="time the embedding stage only")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "embedding.json")
    args = parser.parse_args()
    _, region = real_region(args.region_size)
    result = compare(args.device, region, args.repeats, model=not args.skip_model)
    result["machine"] = machine(torch.device(args.device))
    result |= {"region_size": args.region_size, "repeats": args.repeats}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}, one {args.region_size}-px region, median of {args.repeats}\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
