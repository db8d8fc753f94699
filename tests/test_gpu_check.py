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
            {"precision": "bf16", "compile": True, "batch_size": 4, "regions_per_s": 45.0, "peak_memory_gb": 1.26}
        ],
        "whole_slide_feed": {"error": "OSError: disk full"},
        "stages": {"training": {"exit_code": 1, "seconds": 17.2, "tail": "boom"}},
        "tests": {"counts": {"passed": 2, "failed": 1}, "failed": ["tests/b.py::t"], "exit_code": 1, "seconds": 30},
        "seconds": 123.4,
    }  # fmt: skip
    table = markdown(result)
    assert table.startswith("GPU check on Test GPU (80.0 GB), Test CPU (AVX512, native bf16), 16 threads, torch 2.x")
    assert "CUDA 13.0, TF32 matmul False, TF32 cuDNN True" in table
    assert "| bf16 | True | 4 | 45.00 | 1.3 |" in table and "regions/s (4096 px)" in table
    assert "- fp32 max abs diff vs CPU: 0.0007653" in table
    assert "- training: exit 1, 17 s" in table
    assert "- tests with HIPT_TEST_DEVICE=cuda: 2 passed, 1 failed, exit 1, 30 s" in table
    assert "  - FAILED tests/b.py::t" in table
    assert "- section whole_slide_feed FAILED: OSError: disk full" in table
    assert "SMOKE" not in table and markdown(result | {"smoke": True}).startswith("CPU SMOKE RUN (not a GPU check)")
