"""precision: auto follows the hardware; an emulated explicit choice is warned; runs record the resolved value."""

import logging

import pytest
import torch

import source.precision as precision
from source.precision import resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture
def hardware(monkeypatch):
    """Pretend hardware: set ``cpu_bf16``, ``cpu_fp16``, ``cuda_bf16``."""
    state = {"cpu_bf16": False, "cpu_fp16": False, "cuda_bf16": False}
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: state["cpu_bf16"])
    monkeypatch.setattr(precision, "cpu_has_native_fp16", lambda: state["cpu_fp16"])
    monkeypatch.setattr(precision, "cuda_has_bf16", lambda device: state["cuda_bf16"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    return state


@pytest.mark.parametrize(
    "device, cpu_bf16, cuda_bf16, expected",
    [
        (CPU, False, False, "fp32"),
        (CPU, True, False, "bf16"),
        (CUDA, False, True, "bf16"),
        (CUDA, False, False, "fp16"),
    ],
)
def test_auto_resolves_to_what_the_device_runs_natively(hardware, caplog, device, cpu_bf16, cuda_bf16, expected):
    hardware.update(cpu_bf16=cpu_bf16, cuda_bf16=cuda_bf16)
    with caplog.at_level(logging.INFO):
        assert resolve_precision("auto", device) == expected
    assert f"precision auto -> {expected}" in caplog.text


def test_explicit_emulated_precision_is_warned_but_kept(hardware, caplog):
    assert resolve_precision("bf16", CPU, "speed.precision") == "bf16"
    assert "speed.precision=bf16 on a CPU without native bf16" in caplog.text and "several times slower" in caplog.text
    caplog.clear()
    hardware["cpu_bf16"] = True
    assert resolve_precision("bf16", CPU) == "bf16" and not caplog.text
    assert resolve_precision("fp16", CUDA) == "fp16" and resolve_precision("fp32", CPU) == "fp32" and not caplog.text


def test_a_run_saves_the_resolved_precision(hardware, tmp_path, region_dir):
    expected = {"cpu": "fp32", "cuda": "fp16"}  # the pretend hardware has neither native CPU bf16 nor CUDA bf16
    from omegaconf import OmegaConf

    from source.engines.extraction_job import run_extraction_job
    from tests.helpers import TEST_DEVICE, extraction_config

    values = dict(
        region_dir=str(region_dir),
        output_dir=str(tmp_path),
        run_id="r",
        region_size=1024,
        num_workers=0,
        precision="auto",
        vit_patch_arch="vit_tiny",
        pretrain_vit_patch=None,
        pretrain_vit_region=None,
        device=TEST_DEVICE,
        slide_list=None,
    )
    assert run_extraction_job(extraction_config(**values)) == 0
    assert OmegaConf.load(tmp_path / "feature_extraction" / "r" / "config.yaml").precision == expected[TEST_DEVICE]


def test_gpu_check_refuses_clearly_without_a_gpu(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO, subprocess_environment

    environment = subprocess_environment() | {"CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert result.returncode == 2 and "gpu-check needs a CUDA GPU" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing is written"
