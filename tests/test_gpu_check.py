"""The GPU check's report: test outcomes read from pytest's output, and its Markdown table."""

from benchmarks.gpu_report import markdown, read_test_outcomes

XDIST_OUTPUT = """\
tests/a.py::test_one
[gw0] [ 25%] PASSED tests/a.py::test_one
[gw1] [ 50%] FAILED tests/b.py::test_two[cuda]
[gw0] [ 75%] ERROR tests/c.py::test_three
[gw1] [100%] PASSED tests/b.py::test_four
FAILED tests/b.py::test_two[cuda] - AssertionError: cuda:0 != cpu
"""

PLAIN_OUTPUT = """\
tests/a.py::test_one PASSED                                   [ 33%]
tests/a.py::test_two FAILED                                   [ 66%]
tests/a.py::test_three PASSED
timed out after 300 s
"""


def test_outcomes_are_counted_per_test_with_and_without_xdist():
    counts, failed = read_test_outcomes(XDIST_OUTPUT)
    assert counts == {"passed": 2, "failed": 1, "error": 1}  # the summary's FAILED line is not counted again
    assert failed == ["tests/b.py::test_two[cuda]", "tests/c.py::test_three"]
    counts, failed = read_test_outcomes(PLAIN_OUTPUT)  # cut short: no summary line at all
    assert counts == {"passed": 2, "failed": 1, "error": 0} and failed == ["tests/a.py::test_two"]


def test_markdown_names_the_hardware_tables_and_every_failure():
    result = {
        "smoke": False,
        "device": "cuda",
        "region_size": 4096,
        "hardware": {
            "cpu": "Test CPU", "cpu_capability": "AVX512", "native_bf16_cpu": True, "threads": 16, "torch": "2.x",
            "gpu": "Test GPU", "gpu_memory_gb": 80.0, "cuda": "13.0", "tf32_matmul": False, "tf32_cudnn": True,
        },
        "correctness": {"fp32 max abs diff vs CPU": 0.0007653},
        "extraction": [
            {"precision": "bf16", "compile": True, "batch_size": 4, "regions_per_s": 45.0, "peak_memory_gb": 1.26},
            {"precision": "bf16", "compile": "reduce-overhead", "embedding": "folded", "pixels_from": "device",
             "batch_size": 4, "regions_per_s": 61.5, "peak_memory_gb": 1.5},
        ],
        "whole_slide_feed": {"error": "OSError: disk full"},
        "stages": {"training": {"exit_code": 1, "seconds": 17.2, "tail": "boom"}},
        "tests": {"counts": {"passed": 2, "failed": 1}, "failed": ["tests/b.py::t"], "exit_code": 1, "seconds": 30},
        "seconds": 123.4,
    }  # fmt: skip
    table = markdown(result)
    assert table.startswith("GPU check on Test GPU (80.0 GB), Test CPU (AVX512, native bf16), 16 threads, torch 2.x")
    assert "CUDA 13.0, TF32 matmul False, TF32 cuDNN True" in table
    assert "| bf16 | True | reference | host | 4 | 45.00 | 1.3 |" in table and "regions/s (4096 px)" in table
    assert "| bf16 | reduce-overhead | folded | device | 4 | 61.50 | 1.5 |" in table
    assert "- fp32 max abs diff vs CPU: 0.0007653" in table
    assert "- training: exit 1, 17 s" in table
    assert "- tests with HIPT_TEST_DEVICE=cuda: 2 passed, 1 failed, exit 1, 30 s" in table
    assert "  - FAILED tests/b.py::t" in table
    assert "- section whole_slide_feed FAILED: OSError: disk full" in table
    assert "SMOKE" not in table and markdown(result | {"smoke": True}).startswith("CPU SMOKE RUN (not a GPU check)")


def test_the_gpu_peaks_are_matched_most_specific_first():
    from benchmarks.gpu_feed import peak_bf16_flops

    assert peak_bf16_flops("NVIDIA H200") == 989.4e12
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989.4e12  # the SXM part
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("Some Future GPU") is None


def vit_flops(depth: int, dim: int, tokens: int, embed: int) -> float:
    """Multiply-adds x 2 of a pre-norm ViT: qkv, projection and a 4x MLP per token, QK^T and AV per token pair,
    and the token embedding (``embed`` input numbers per token)."""
    per_block = 2 * tokens * 12 * dim * dim + 2 * 2 * tokens * tokens * dim
    return depth * per_block + 2 * (tokens - 1) * embed * dim


def test_the_profile_labels_every_phase_and_counts_the_flops_of_both_vits(he_pixels):
    import torch

    from benchmarks.profile_extraction import PHASES, markdown, profile

    region = torch.from_numpy(he_pixels[:512, :512].copy()).permute(2, 0, 1).unsqueeze(0)
    result = profile("cpu", 512, 1, "fp32", 1, region=region)
    labels = {row["label"]: row for row in result["phases"]}
    for name in ("hipt.vit_patch", "vit_patch.attention", "vit_patch.mlp", "hipt.vit_region", "hipt.feature_write"):
        assert name in labels and labels[name]["ms_per_batch"] > 0
    assert set(labels) <= set(PHASES)
    assert labels["hipt.vit_patch"]["ms_per_batch"] > labels["vit_patch.attention"]["ms_per_batch"]
    expected = 4 * vit_flops(12, 384, 257, 16 * 16 * 3) + vit_flops(6, 192, 5, 384)  # 4 patches, then their grid
    assert abs(result["flops_per_region"] - expected) / expected < 0.02
    assert "| `vit_patch.mlp` |" in markdown(result)


def test_the_cohort_feed_runs_every_decoding_and_worker_count(he_pixels, tmp_path):
    import torch

    from benchmarks.gpu_common import CheckSettings
    from benchmarks.gpu_feed import cohort_feed
    from benchmarks.gpu_report import feed_lines

    settings = CheckSettings("cpu", 256, 1, (1,), (1,), (0,), 2, 60.0, True, feed_regions=18, feed_slides=2)
    region = torch.from_numpy(he_pixels[:256, :256].copy()).permute(2, 0, 1).unsqueeze(0)
    feed = cohort_feed(settings, region, tmp_path, model_rate=100.0)
    rows = feed["extraction"]
    runs = [(r["decode"], r["workers"], r["overlap"], r["regions"]) for r in rows]
    assert runs == [("cpu", 0, True, 18), ("device", 0, True, 18), ("device", 0, False, 18)]
    assert all(r["regions_per_s"] > 0 and not r["failed_slides"] for r in rows)
    assert feed["slides"] == 2 and len(list(tmp_path.glob("slide*.tif"))) == 2
    table = "\n".join(feed_lines(feed))
    assert "18 regions from 2 JPEG pyramidal TIFFs" in table and "| device | 0 | no |" in table
