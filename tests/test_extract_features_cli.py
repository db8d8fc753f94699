"""extract_features.py as users run it: Hydra command line, exit codes, kill + resume, torchrun with gloo."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from tests.helpers import REPO

TINY = ["vit_patch_arch=vit_tiny", "pretrain_vit_patch=null", "pretrain_vit_region=null", "region_size=1024"]


def command(*args):
    return [sys.executable, str(REPO / "extract_features.py"), "--config-name", "default", *args]


def environment():
    return os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture
def many_slides(demo_regions_1024, tmp_path):
    """Five slides of three demo regions each."""
    regions = sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())
    root = tmp_path / "regions"
    for index in range(5):
        folder = root / f"slide_{index}" / "imgs"
        folder.mkdir(parents=True)
        for path in regions[index % 4 : index % 4 + 3]:
            shutil.copy(path, folder / path.name)
    return root


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["regionsize=1024"], 1, "regionsize"),
        (["level=regional"], 1, "level"),
        (["region_size=1000"], 2, "region_size (1000) must be a multiple of patch_size"),
        ([], 2, "give exactly one input, region_dir or wsi_csv"),
        (["pretrain_vit_patch=/no/such/vit.pth"], 2, "checkpoint '/no/such/vit.pth' does not exist"),
    ],
)
def test_bad_config_is_one_clear_error_before_any_work(tmp_path, many_slides, args, code, message):
    region_dir = [] if "give exactly one input" in message else [f"region_dir={many_slides}"]
    result = subprocess.run(
        command(*region_dir, f"output_dir={tmp_path / 'out'}", *args),
        capture_output=True,
        text=True,
        env=environment(),
        cwd=tmp_path,
    )
    assert result.returncode == code, result.stderr[-2000:]
    assert message in result.stderr
    assert not list(tmp_path.glob("out/**/features/slide/*.pt"))
    assert not (tmp_path / "outputs").exists()


def compare_runs(first, second):
    names = sorted(p.name for p in (first / "features" / "slide").iterdir())
    assert names == sorted(p.name for p in (second / "features" / "slide").iterdir())
    assert not any(name.startswith(".") for name in names)
    for name in names:
        torch.testing.assert_close(
            torch.load(first / "features" / "slide" / name, weights_only=True),
            torch.load(second / "features" / "slide" / name, weights_only=True),
            atol=1e-5,
            rtol=1e-5,
        )
    for table in ("slides.csv", "regions.csv"):
        a = pd.read_csv(first / table).replace(str(first), "", regex=True)
        b = pd.read_csv(second / table).replace(str(second), "", regex=True)
        pd.testing.assert_frame_equal(a, b)


def test_killed_run_resumes_to_the_same_files(tmp_path, many_slides):
    base = [f"region_dir={many_slides}", *TINY, "num_workers=0"]
    reference = subprocess.run(
        command(*base, f"output_dir={tmp_path / 'a'}", "run_id=full"), env=environment(), capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr[-2000:]

    killed_dir = tmp_path / "b" / "feature_extraction" / "killed"
    process = subprocess.Popen(
        command(*base, f"output_dir={tmp_path / 'b'}", "run_id=killed"),
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed_dir / "features" / "slide").glob("*.pt")):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = list((killed_dir / "features" / "slide").glob("*.pt"))
    assert 1 <= len(finished) < 5, "the run was not killed part-way"
    assert not (killed_dir / "slides.csv").exists()

    resumed = subprocess.run(
        command(*base, f"output_dir={tmp_path / 'b'}", "run_id=killed", "resume=true"),
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(finished)} slide(s) already done" in resumed.stderr
    compare_runs(tmp_path / "a" / "feature_extraction" / "full", killed_dir)


def test_two_process_gloo_run_writes_each_slide_once(tmp_path, many_slides):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(REPO / "extract_features.py"),
            "--config-name",
            "default",
            f"region_dir={many_slides}",
            f"output_dir={tmp_path}",
            "run_id=ddp",
            "device=cpu",
            "num_workers=0",
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "feature_extraction" / "ddp"
    writes = {}
    for log in ("log.txt", "log.rank1.txt"):
        for line in (run_dir / log).read_text().splitlines():
            if " regions -> " in line:
                slide_id = line.split("slide ", 1)[1].split(":", 1)[0]
                writes.setdefault(slide_id, []).append(log)
    assert sorted(writes) == [f"slide_{i}" for i in range(5)]
    assert all(len(ranks) == 1 for ranks in writes.values()), writes
    assert {ranks[0] for ranks in writes.values()} == {"log.txt", "log.rank1.txt"}
    slides = pd.read_csv(run_dir / "slides.csv")
    assert slides.slide_id.tolist() == [f"slide_{i}" for i in range(5)] and set(slides.status) == {"success"}
    assert len(pd.read_csv(run_dir / "regions.csv")) == 15
