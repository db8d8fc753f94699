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
    lines += profile_lines(result.get("profile", {}))
    lines += embedding_lines(result.get("embedding", {}))
    lines += feed_lines(result.get("cohort_feed", {}))
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
        f"| precision | compile | embedding | pixels from | batch | regions/s ({size} px) | peak GPU memory (GB) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        memory = "-" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f}"
        lines.append(
            f"| {r['precision']} | {r['compile']} | {r.get('embedding', 'reference')} | {r.get('pixels_from', 'host')} "
            f"| {r['batch_size']} | {r['regions_per_s']:.2f} | {memory} |"
        )
    return [*lines, ""]


def feed_lines(feed: dict) -> list[str]:
    if "extraction" not in feed:
        return []
    model = feed.get("model_bf16_regions_per_s")
    lines = [
        f"Cohort feed: {feed['extraction'][0]['regions']} regions from {feed['slides']} JPEG pyramidal TIFFs, end to "
        f"end in bf16. One worker reads and decodes {feed['read_per_worker_regions_per_s']:.2f} regions/s on the CPU; "
        f"the model alone encodes {model or 0:.2f} regions/s, so about {feed['workers_to_feed_model'] or 0:.1f} "
        "CPU-decoding workers keep it busy.",
        "",
        "| JPEG decoding | DataLoader workers | host/device overlap | regions/s | of the model-only rate |",
        "|---|---:|---|---:|---:|",
    ]
    for row in feed["extraction"]:
        share = "-" if row["of_model_rate"] is None else f"{100 * row['of_model_rate']:.0f}%"
        failed = f" ({len(row['failed_slides'])} slides FAILED)" if row["failed_slides"] else ""
        overlap = "yes" if row.get("overlap", False) else "no"
        lines.append(
            f"| {row['decode']} | {row['workers']} | {overlap} | {row['regions_per_s']:.2f}{failed} | {share} |"
        )
    return [*lines, ""]


def profile_lines(profile: dict) -> list[str]:
    if "phases" not in profile:
        return []
    from benchmarks.profile_extraction import markdown as profile_markdown

    mfu = profile.get("mfu")
    lines = [
        f"Model path: {profile['flops_per_region'] / 1e12:.2f} TFLOP per region; best bf16 rate "
        f"{profile.get('best_bf16_regions_per_s') or 0:.2f} regions/s; MFU "
        + (f"{100 * mfu:.1f}% of the dense bf16 peak." if mfu else "not known (no peak for this device)."),
        "",
        profile_markdown(profile),
    ]
    return lines


def embedding_lines(embedding: dict) -> list[str]:
    if "rows" not in embedding:
        return []
    from benchmarks.embedding import markdown as embedding_markdown

    return ["Token embedding from raw pixels (folded) against patchify + normalise (reference), per region:", "",
            embedding_markdown(embedding), ""]  # fmt: skip


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
