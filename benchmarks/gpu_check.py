"""The GPU check (make gpu-check): correctness and throughput of every stage on one CUDA GPU, in about 8 minutes.

    python3 benchmarks/gpu_check.py [--regions 8] [--budget-s 480] [--output benchmarks/results]

Sections, each recorded on its own (one that fails is reported and the others still run):
1. hardware: GPU name and memory, CUDA, torch, the CPU, TF32 settings;
2. correctness: ViT-S/16 + ViT4K-XS features of a real 4096-px H&E region on the GPU in fp32 against the
   CPU (max abs difference) and in bf16 (min cosine);
3. extraction throughput on 4096-px regions: fp32, bf16 and bf16 + torch.compile at several batch sizes
   (regions/s, peak GPU memory), pixels sent from the host with every forward; also the reference token embedding
   (patchify + normalise), compiled encoders with the pixels already on the GPU (the model alone), and CUDA graphs
   (compile mode reduce-overhead);
4. profile: where a bf16 batch's time goes (benchmarks/profile_extraction.py: copies, normalisation, patchify,
   attention, MLP, layer norms, ViT_region, feature writes) and the model path's MFU against the GPU's dense bf16
   peak; UNI (ViT-L/16) under ViT4K-XS is in the throughput rows; the folded token embedding against the reference
   one (benchmarks/embedding.py);
   cohort feed: a steady state of at least 500 4096-px regions from several JPEG pyramidal TIFFs, extracted end
   to end with 2 / 4 / 8 DataLoader workers, JPEG decoded in the workers or on the GPU (nvJPEG), against the
   model-only rate of the same encoder (bf16, not compiled); once without the host/device overlap; and one worker's
   read-and-decode rate;
5. stages as users run them: extract_features.py from a whole-slide image under torchrun (1 process,
   NCCL, precision auto), one epoch of slide-level training, 2 epochs of DINO patch pretraining, and the
   patch-encoder benchmark (ViT-S/16, ViT-B/16, ViT-L/16);
6. the tests that exercise devices and precision, run with HIPT_TEST_DEVICE=cuda (pytest-xdist when
   installed), within what is left of --budget-s.
Writes gpu_check.json (after every section, so a killed run keeps what it measured) and gpu_check.md
under --output. Without a CUDA GPU it stops at once with exit code 2: it never skips silently.
--cpu-smoke runs every section on the CPU at toy sizes, to check this script itself; it is no GPU check
and its table says so. Exit code: 0 when every section and test passed, else 1.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.embedding import compare as compare_embeddings
from benchmarks.gpu_common import CheckSettings, hipt_encoder, real_region, timed, uni_encoder
from benchmarks.gpu_feed import cohort_feed, model_profile
from benchmarks.gpu_report import markdown, read_test_outcomes

DEVICE_TESTS = [
    "tests/test_precision.py",
    "tests/test_devices.py",
    "tests/engines/test_training_job.py",
    "tests/pretraining/test_pretraining_job.py",
    "tests/heatmaps/test_heatmap_job.py",
    "tests/models/test_timm_encoders.py",
    "tests/wsi/test_wsi_heatmaps.py",
    "tests/test_extract_features_cli.py",
]
"""Test files whose jobs run on ``HIPT_TEST_DEVICE`` (or on ``device=auto``, the GPU when there is one)."""

SMOKE_TESTS = ["tests/test_precision.py", "tests/test_devices.py"]


def require_gpu() -> None:
    """Exit with code 2 and a message when no CUDA GPU is visible."""
    import torch

    if not torch.cuda.is_available():
        print(
            "ERROR gpu-check needs a CUDA GPU, and none is visible (torch.cuda.is_available() is False). Run it on a "
            "GPU machine; make test covers the CPU (python3 benchmarks/gpu_check.py --cpu-smoke only checks this "
            "script).",
            file=sys.stderr,
        )
        sys.exit(2)


def hardware(settings: CheckSettings) -> dict:
    """The GPU, CUDA, the CPU and the TF32 switches the fp32 numbers depend on."""
    import torch

    from benchmarks.hardware import machine

    facts = machine(torch.device(settings.device)) | {"cpus": os.cpu_count()}
    if settings.device == "cuda":
        facts |= {
            "cuda": torch.version.cuda,
            "gpu_bf16": bool(torch.cuda.is_bf16_supported()),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        }
    return facts


def correctness(settings: CheckSettings, region) -> dict:
    """Global features on the device (fp32, bf16) against the CPU in fp32, on one real region."""
    import torch

    with torch.inference_mode():
        reference = hipt_encoder("cpu")(region).global_
        encoder = hipt_encoder(settings.device)
        on_device = encoder(region).global_.cpu()
        encoder.precision = "bf16"
        on_device_bf16 = encoder(region).global_.float().cpu()
    return {
        "fp32 max abs diff vs CPU": float((on_device - reference).abs().max()),
        "fp32 max abs feature": float(reference.abs().max()),
        "bf16 min cosine vs CPU": float(torch.nn.functional.cosine_similarity(on_device_bf16, reference).min()),
    }


def peak_memory_gb(device: str) -> Optional[float]:
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None


def throughput_variants(settings: CheckSettings) -> list[tuple[str, Optional[str], bool, tuple[str, ...], tuple]]:
    """What the throughput section measures: (precision, compile mode, folded embedding, where the pixels start,
    batch sizes). Pixels start on the host (sent with every forward, as in extraction) and, for the compiled encoder,
    also already on the device (the model alone); the reference embedding and CUDA graphs are measured once each."""
    one = settings.compile_batch_sizes[-1:]
    variants = [
        ("fp32", None, True, ("host",), settings.batch_sizes),
        ("bf16", None, True, ("host",), settings.batch_sizes),
        ("bf16", None, False, ("host",), one),
        ("bf16", "default", True, ("host", "device"), settings.compile_batch_sizes),
        ("bf16", "reduce-overhead", True, ("host", "device"), one),
    ]
    return variants + ([("uni bf16", None, True, ("host",), settings.compile_batch_sizes)] if settings.uni else [])


def throughput(settings: CheckSettings, region) -> list[dict]:
    """regions/s and peak memory of each of :func:`throughput_variants` at its batch sizes."""
    import torch

    rows = []
    for precision, mode, fused, placements, batch_sizes in throughput_variants(settings):
        encoder = (
            uni_encoder(settings.device) if precision.startswith("uni") else hipt_encoder(settings.device, precision)
        )
        encoder.model.fused_embedding = fused
        if mode is not None:
            encoder.compile(mode)
        for pixels_on, batch in ((where, batch) for where in placements for batch in batch_sizes):
            pixels = region.repeat(batch, 1, 1, 1)
            pixels = pixels.to(settings.device) if pixels_on == "device" else pixels
            forwards = max(1, settings.regions // batch)
            if settings.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode():
                seconds = timed(functools.partial(encode_repeatedly, encoder, pixels, forwards), settings.device)
            rows.append(
                {
                    "precision": precision,
                    "compile": mode or False,
                    "embedding": "folded" if encoder.model.embeds_pixels else "reference",
                    "pixels_from": pixels_on,
                    "batch_size": batch,
                    "regions_per_s": forwards * batch / seconds,
                    "peak_memory_gb": peak_memory_gb(settings.device),
                }
            )
            print(
                f"{precision} compile={mode} {rows[-1]['embedding']} embedding, pixels from the {pixels_on}, "
                f"batch={batch}: {rows[-1]['regions_per_s']:.2f} regions/s",
                flush=True,
            )
        del encoder
    return rows


def encode_repeatedly(encoder, pixels, times: int) -> list:
    """``times`` forwards of ``pixels`` (``(B, 3, S, S)`` uint8 on the CPU, moved by the encoder)."""
    return [encoder(pixels) for _ in range(times)]


def run(command: list[str], cwd: Path, timeout: float, env: Optional[dict] = None, log: Optional[Path] = None) -> dict:
    """Run a command; its exit code (124 on timeout), seconds and the end of its output (all of it in ``log``)."""
    start = time.perf_counter()
    path = os.pathsep.join(part for part in (str(ROOT), os.environ.get("PYTHONPATH", "")) if part)
    environment = os.environ | {"PYTHONPATH": path} | (env or {})
    process = subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:  # end its children too (DataLoader workers, pytest-xdist, torchrun's)
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        code, output = 124, f"{output}\ntimed out after {timeout:.0f} s"
    if log is not None:
        log.write_text(output)
    return {"exit_code": code, "seconds": time.perf_counter() - start, "tail": output[-3000:]}


def stage_commands(settings: CheckSettings, scratch: Path, slide: Path) -> dict[str, list[str]]:
    """Each stage as its users launch it, on the device."""
    from PIL import Image

    from source.data.demo_slide import read_slide_level0
    from tests.training_data import classification_data

    (scratch / "slides.csv").write_text(f"slide_id,image_path\ndemo,{slide}\n")
    data = classification_data(scratch / "data", n_slides=60, regions=8)
    patches = scratch / "patches"
    patches.mkdir()
    pixels = read_slide_level0(slide)
    for index in range(32):
        y, x = 256 * (index // 8), 256 * (index % 8)
        Image.fromarray(pixels[y : y + 256, x : x + 256]).save(patches / f"{index}.png")
    python, out, device = sys.executable, scratch / "out", f"device={settings.device}"
    return {
        "torchrun extraction from a slide (1 process, NCCL on a GPU, precision auto)": [
            python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
            str(ROOT / "extract_features.py"), "--config-name", "default", f"wsi_csv={scratch / 'slides.csv'}",
            "region_size=1024", "precision=auto", device, "pretrain_vit_patch=null", "pretrain_vit_region=null",
            f"output_dir={out}", "run_id=torchrun",
        ],
        "slide-level classification training, 1 epoch": [
            python, str(ROOT / "train" / "classification.py"), "--config-name", "single",
            f"features_dir={data['features_dir']}", f"data.train_csv={data['train']}", f"data.tune_csv={data['tune']}",
            "nepochs=1", device, f"output_dir={out}",
        ],
        "DINO patch pretraining, 2 epochs of 32 patches": [
            python, str(ROOT / "pretrain" / "dino_patch.py"), "--config-name", "patch", f"data_dir={patches}",
            "training.nepochs=2", "training.warmup_epochs=1", "training.batch_size_per_gpu=16", "speed.precision=auto",
            device, f"output_dir={out}",
        ],
        "patch encoders (ViT-S/16, ViT-B/16, ViT-L/16), fp32 / bf16": [
            python, str(ROOT / "benchmarks" / "patch_encoders.py"), "--patches", str(settings.patches),
            "--device", settings.device, "--output", str(scratch / "patch_encoders.json"),
        ],
    }  # fmt: skip


def stages(settings: CheckSettings, scratch: Path, slide: Path) -> dict:
    """Run each stage (at most 3 minutes each); the patch-encoder rows are read from its JSON."""
    results = {}
    for name, command in stage_commands(settings, scratch, slide).items():
        results[name] = run(command, scratch, timeout=max(30.0, min(180.0, settings.seconds_left() - 60)))
        print(f"{name}: exit {results[name]['exit_code']}, {results[name]['seconds']:.0f} s", flush=True)
    encoders = scratch / "patch_encoders.json"
    if encoders.exists():
        results["patch_encoder_rows"] = json.loads(encoders.read_text())["rows"]
    return results


def device_tests(settings: CheckSettings, log: Path) -> dict:
    """The device tests with ``HIPT_TEST_DEVICE`` = the device, in what is left of the budget; the whole
    pytest output goes to ``log``, and the counts are read per test, so a run cut short still counts."""
    import importlib.util

    files = SMOKE_TESTS if settings.smoke else DEVICE_TESTS
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *files]
    command += ["-k", "not gloo and not c10d"]  # multi-process runs are CPU (gloo) tests: make test has them
    if importlib.util.find_spec("xdist") is not None and not settings.smoke:
        command += ["-n", str(max(2, min(12, (os.cpu_count() or 2) - 4)))]
    timeout = max(60.0, settings.seconds_left())
    result = run(command, ROOT, timeout, env={"HIPT_TEST_DEVICE": settings.device}, log=log)
    result["counts"], result["failed"] = read_test_outcomes(log.read_text())
    result["files"] = files
    return result


def section(result: dict, name: str, output: Path, function: Callable[[], object]) -> bool:
    """Record ``function()`` (or its error) as ``result[name]`` and save the JSON; True when it succeeded."""
    try:
        result[name] = function()
        ok = True
    except Exception as error:  # one broken section must not hide the others' numbers
        result[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
        print(f"FAILED section {name}: {error}", file=sys.stderr, flush=True)
        ok = False
    save(result, output / "gpu_check.json")
    return ok


def save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(result, indent=2, default=str))
    temporary.replace(path)


def settings_from(args: argparse.Namespace) -> CheckSettings:
    if args.cpu_smoke:
        return CheckSettings("cpu", 512, 1, (1, 2), (1,), (0, 2), 2, args.budget_s, True, 18, 2, False)
    cpus = os.cpu_count() or 2
    workers = tuple(sorted({w for w in (2, 4, 8) if w < cpus}))
    return CheckSettings(
        "cuda", 4096, args.regions, (1, 2, 4, 8), (1, 4), workers, 512, args.budget_s, False, args.feed_regions
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=8, help="4096-px regions per throughput measurement")
    parser.add_argument(
        "--budget-s", type=float, default=480.0, help="seconds for the whole check (tests get the rest)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--feed-regions", type=int, default=504, help="regions of the steady-state cohort feed")
    parser.add_argument("--cpu-smoke", action="store_true", help="check this script on the CPU at toy sizes")
    args = parser.parse_args()
    if not args.cpu_smoke:
        require_gpu()
    settings = settings_from(args)
    slide, region = real_region(settings.region_size)
    result: dict = {"smoke": settings.smoke, "device": settings.device, "region_size": settings.region_size}
    ok = section(result, "hardware", args.output, lambda: hardware(settings))
    ok &= section(result, "correctness", args.output, lambda: correctness(settings, region))
    ok &= section(result, "extraction", args.output, lambda: throughput(settings, region))
    rows = result["extraction"] if isinstance(result["extraction"], list) else []
    same_as_feed = {"precision": "bf16", "compile": False, "embedding": "folded", "pixels_from": "host"}
    rates = [r["regions_per_s"] for r in rows if all(r.get(key) == value for key, value in same_as_feed.items())]
    ok &= section(result, "profile", args.output, lambda: model_profile(settings, result["extraction"]))
    ok &= section(result, "embedding", args.output, lambda: compare_embeddings(settings.device, region))
    with tempfile.TemporaryDirectory() as scratch:
        ok &= section(
            result,
            "cohort_feed",
            args.output,
            lambda: cohort_feed(settings, region, Path(scratch), max(rates, default=None)),
        )
        ok &= section(result, "stages", args.output, lambda: stages(settings, Path(scratch), slide))
    ok &= section(result, "tests", args.output, lambda: device_tests(settings, args.output / "tests_log.txt"))
    result["seconds"] = time.perf_counter() - settings.started
    save(result, args.output / "gpu_check.json")
    table = markdown(result)
    (args.output / "gpu_check.md").write_text(table)
    failures = [name for name, stage in result.get("stages", {}).items() if stage_failed(stage)]
    failures += ["tests"] if result["tests"].get("exit_code", 1) != 0 else []
    for name in failures:
        details = result["stages"].get(name) or result["tests"]
        tail = details.get("tail") or details.get("error")
        print(f"FAILED {name}:\n{tail}", file=sys.stderr)
    print(table)
    return 0 if ok and not failures else 1


def stage_failed(stage: object) -> bool:
    return isinstance(stage, dict) and stage.get("exit_code", 0) != 0


if __name__ == "__main__":
    sys.exit(main())
