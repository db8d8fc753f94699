"""The GPU check (make gpu-check): correctness and throughput of every stage on one CUDA GPU, in a few minutes.

    python3 benchmarks/gpu_check.py [--regions 8] [--output benchmarks/results]

1. correctness on CUDA: ViT-S/16 + ViT4K-XS features on the GPU in fp32 against the CPU (max abs
   difference) and in bf16 (min cosine), on real H&E pixels of the demo slide;
2. extraction throughput on 4096-px regions: fp32, bf16 and bf16 + torch.compile at batch sizes 1, 2, 4
   (regions/s, peak GPU memory);
3. extract_features.py from a whole-slide image under torchrun (1 process, NCCL), precision auto;
4. one epoch of slide-level classification training and 2 epochs of DINO patch pretraining on the GPU.
Writes gpu_check.json and gpu_check.md (a Markdown table) under --output. Without a CUDA GPU it stops
at once with exit code 2: it never skips silently.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def encode_repeatedly(encoder, pixels, times: int) -> list:
    """``times`` forwards of ``pixels`` (one timed measurement)."""
    return [encoder(pixels) for _ in range(times)]


def require_gpu() -> None:
    """Exit with code 2 and a message when no CUDA GPU is visible."""
    import torch

    if not torch.cuda.is_available():
        print(
            "ERROR gpu-check needs a CUDA GPU, and none is visible (torch.cuda.is_available() is False). Run it on a "
            "GPU machine; make test covers the CPU.",
            file=sys.stderr,
        )
        sys.exit(2)


def timed(function, repeats: int = 3) -> float:
    """Median seconds of ``function()`` after one warm-up call (CUDA synchronised)."""
    import statistics

    import torch

    function()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def correctness(region) -> dict:
    """Features on the GPU (fp32, bf16) against the CPU in fp32."""
    import torch

    from source.models.hipt import HIPTEncoder
    from source.models.vit import vit4k_xs, vit_small

    torch.manual_seed(0)
    encoder = HIPTEncoder(vit_small().eval(), vit4k_xs().eval())
    with torch.inference_mode():
        reference = encoder.place(torch.device("cpu"))(region).global_
        encoder.place(torch.device("cuda"))
        gpu = encoder(region).global_.cpu()
        encoder.precision = "bf16"
        gpu_bf16 = encoder(region).global_.float().cpu()
    return {
        "fp32 max abs diff vs CPU": float((gpu - reference).abs().max()),
        "bf16 min cosine vs CPU": float(torch.nn.functional.cosine_similarity(gpu_bf16, reference).min()),
    }


def throughput(region, regions: int) -> list[dict]:
    """regions/s and peak memory for fp32 / bf16 / bf16 + compile at batch sizes 1, 2, 4."""
    import torch

    from source.models.hipt import HIPTEncoder
    from source.models.vit import vit4k_xs, vit_small

    rows = []
    for precision, compiled in (("fp32", False), ("bf16", False), ("bf16", True)):
        encoder = HIPTEncoder(vit_small().eval(), vit4k_xs().eval(), precision=precision).place(torch.device("cuda"))
        if compiled:
            encoder.vit_patch.compile()
            encoder.vit_region.compile()
        for batch in (1, 2, 4):
            pixels = region.repeat(batch, 1, 1, 1)
            torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                seconds = timed(
                    lambda encoder=encoder, pixels=pixels, batch=batch: [
                        encoder(pixels) for _ in range(max(1, regions // batch))
                    ]
                )
            done = max(1, regions // batch) * batch
            rows.append(
                {
                    "precision": precision,
                    "compile": compiled,
                    "batch_size": batch,
                    "regions_per_s": done / seconds,
                    "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
                }
            )
            print(
                f"{precision} compile={compiled} batch={batch}: {rows[-1]['regions_per_s']:.1f} regions/s", flush=True
            )
    return rows


def run(command: list[str], cwd: Path) -> dict:
    """Run a command; its exit code, seconds and the end of its output."""
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)}
    )
    return {
        "exit_code": result.returncode,
        "seconds": time.perf_counter() - start,
        "tail": (result.stdout + result.stderr)[-1500:],
    }


def stages(scratch: Path, slide: Path) -> dict:
    """torchrun NCCL extraction from a slide, one epoch of training, DINO steps: each as its users run it."""
    from tests.training_data import classification_data

    (scratch / "slides.csv").write_text(f"slide_id,image_path\ndemo,{slide}\n")
    results = {
        "torchrun NCCL extraction (wsi_csv, precision auto)": run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=1",
                str(ROOT / "extract_features.py"),
                "--config-name",
                "default",
                f"wsi_csv={scratch / 'slides.csv'}",
                "region_size=1024",
                "precision=auto",
                "device=cuda",
                "pretrain_vit_patch=null",
                "pretrain_vit_region=null",
                f"output_dir={scratch / 'out'}",
                "run_id=nccl",
            ],
            scratch,
        )
    }
    data = classification_data(scratch / "data", n_slides=60, regions=8)
    results["slide-level training, 1 epoch"] = run(
        [
            sys.executable,
            str(ROOT / "train" / "classification.py"),
            "--config-name",
            "single",
            f"features_dir={data['features_dir']}",
            f"data.train_csv={data['train']}",
            f"data.tune_csv={data['tune']}",
            "nepochs=1",
            "device=cuda",
            f"output_dir={scratch / 'out'}",
        ],
        scratch,
    )
    patches = scratch / "patches"
    patches.mkdir()
    from PIL import Image

    from source.data.demo_slide import read_slide_level0

    pixels = read_slide_level0(slide)
    for index in range(32):
        y, x = 256 * (index // 8), 256 * (index % 8)
        Image.fromarray(pixels[y : y + 256, x : x + 256]).save(patches / f"{index}.png")
    results["DINO patch pretraining, 2 epochs"] = run(
        [
            sys.executable,
            str(ROOT / "pretrain" / "dino_patch.py"),
            "--config-name",
            "patch",
            f"data_dir={patches}",
            "training.nepochs=2",
            "training.warmup_epochs=1",
            "training.batch_size_per_gpu=16",
            "speed.precision=auto",
            "device=cuda",
            f"output_dir={scratch / 'out'}",
        ],
        scratch,
    )
    results["patch encoders: ViT-S/16, ViT-B/16, ViT-L/16 (UNI's shape), fp32 / bf16"] = run(
        [sys.executable, str(ROOT / "benchmarks" / "patch_encoders.py"), "--patches", "256", "--device", "cuda",
         "--output", str(scratch / "patch_encoders.json")],
        scratch,
    )  # fmt: skip
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=8, help="4096-px regions per throughput measurement")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    require_gpu()
    import numpy as np
    import torch

    from source.data.demo_slide import fetch_demo_slide, read_slide_level0

    slide = fetch_demo_slide(ROOT / "demo")
    he = read_slide_level0(slide)
    tiled = np.tile(he, (2, 2, 1))[:4096, :4096]
    region = torch.from_numpy(np.ascontiguousarray(tiled)).permute(2, 0, 1).unsqueeze(0)
    started = time.perf_counter()
    properties = torch.cuda.get_device_properties(0)
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gb": properties.total_memory / 1e9,
        "bf16_supported": bool(torch.cuda.is_bf16_supported()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "correctness": correctness(region),
        "extraction_4096px": throughput(region, args.regions),
    }
    with tempfile.TemporaryDirectory() as scratch:
        result["stages"] = stages(Path(scratch), slide)
    result["seconds"] = time.perf_counter() - started
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "gpu_check.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"GPU check on {result['gpu']} ({result['gpu_memory_gb']:.0f} GB, bf16 {result['bf16_supported']}), torch "
        f"{result['torch']}, CUDA {result['cuda']}, {result['seconds']:.0f} s",
        "",
        "| precision | compile | batch | regions/s (4096 px) | peak GPU memory (GB) |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {r['precision']} | {r['compile']} | {r['batch_size']} | {r['regions_per_s']:.1f} | "
            f"{r['peak_memory_gb']:.1f} |"
            for r in result["extraction_4096px"]
        ),
        "",
        *(f"- {name}: {value:.3g}" for name, value in result["correctness"].items()),
        *(f"- {name}: exit {stage['exit_code']}, {stage['seconds']:.0f} s" for name, stage in result["stages"].items()),
    ]
    (args.output / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = [name for name, stage in result["stages"].items() if stage["exit_code"] != 0]
    for name in failed:
        print(f"FAILED {name}:\n{result['stages'][name]['tail']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
