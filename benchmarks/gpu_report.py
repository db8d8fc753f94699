"""The GPU check's report: its Markdown tables, and the test outcomes read from pytest's output."""

from __future__ import annotations

import re


def read_test_outcomes(output: str) -> tuple[dict[str, int], list[str]]:
    """Counts of passed / failed / error tests in ``pytest -v`` output (with or without pytest-xdist), read
    from the per-test lines so that output cut short still counts, and the failed tests' ids."""
    progress = r"^(?:\[gw\d+\] \[\s*\d+%\] (PASSED|FAILED|ERROR) |\S+::\S+ (PASSED|FAILED|ERROR)\b)"
    outcomes = ["".join(match) for match in re.findall(progress, output, re.MULTILINE)]
    counts = {word.lower(): outcomes.count(word) for word in ("PASSED", "FAILED", "ERROR")}
    failed = re.findall(r"^\[gw\d+\] \[\s*\d+%\] (?:FAILED|ERROR) (\S+)|^(\S+::\S+) (?:FAILED|ERROR)\b", output, re.M)
    return counts, sorted({xdist or plain for xdist, plain in failed})


def markdown(result: dict) -> str:
    """The check's tables: extraction throughput, whole-slide feed, stages and tests."""
    from benchmarks.hardware import describe

    facts = result.get("hardware", {})
    title = "CPU SMOKE RUN (not a GPU check)" if result["smoke"] else "GPU check"
    lines = [f"{title} on {describe(facts) if 'cpu' in facts else 'unknown hardware'}", ""]
    if "cuda" in facts:
        lines += [f"CUDA {facts['cuda']}, TF32 matmul {facts['tf32_matmul']}, TF32 cuDNN {facts['tf32_cudnn']}", ""]
    lines += extraction_lines(result.get("extraction", []), result["region_size"])
    lines += feed_lines(result.get("whole_slide_feed", {}))
    lines += [f"- {name}: {value:.6g}" for name, value in result.get("correctness", {}).items() if name != "error"]
    lines += stage_lines(result.get("stages", {}))
    tests = result.get("tests", {})
    if "counts" in tests:
        counts = ", ".join(f"{count} {word}" for word, count in tests["counts"].items())
        lines.append(f"- tests with HIPT_TEST_DEVICE={result['device']}: {counts}, exit {tests['exit_code']}, "
                     f"{tests['seconds']:.0f} s")  # fmt: skip
        lines += [f"  - FAILED {name}" for name in tests["failed"]]
    errors = [name for name, value in result.items() if isinstance(value, dict) and "error" in value]
    lines += [f"- section {name} FAILED: {result[name]['error']}" for name in errors]
    lines.append(f"- total {result.get('seconds', 0):.0f} s")
    return "\n".join(lines) + "\n"


def extraction_lines(rows: list, size: int) -> list[str]:
    if not isinstance(rows, list) or not rows:
        return []
    lines = [
        f"| precision | compile | batch | regions/s ({size} px) | peak GPU memory (GB) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        memory = "-" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f}"
        lines.append(f"| {r['precision']} | {r['compile']} | {r['batch_size']} | {r['regions_per_s']:.2f} | {memory} |")
    return [*lines, ""]


def feed_lines(feed: dict) -> list[str]:
    if "extraction" not in feed:
        return []
    lines = [
        f"One worker reads and decodes {feed['read_per_worker_regions_per_s']:.2f} regions/s from a JPEG TIFF; "
        f"the GPU encodes {feed['gpu_bf16_regions_per_s'] or 0:.2f} regions/s in bf16, so about "
        f"{feed['workers_to_feed_gpu'] or 0:.1f} workers keep it busy.",
        "",
        "| DataLoader workers | whole-slide extraction, bf16 (regions/s) |",
        "|---:|---:|",
        *(f"| {row['workers']} | {row['regions_per_s']:.2f} |" for row in feed["extraction"]),
    ]
    return [*lines, ""]


def stage_lines(stages_result: dict) -> list[str]:
    lines = [""]
    encoders = stages_result.get("patch_encoder_rows", {})
    if encoders:
        lines += ["| patch encoder, precision | patches/s |", "|---|---:|"]
        lines += [f"| {name} | {row['patches_per_s']:.0f} |" for name, row in encoders.items()]
        lines.append("")
    for name, stage in stages_result.items():
        if name != "patch_encoder_rows" and isinstance(stage, dict) and "exit_code" in stage:
            lines.append(f"- {name}: exit {stage['exit_code']}, {stage['seconds']:.0f} s")
    return lines
