"""extract_features.py as users run it: Hydra command line, exit codes, kill + resume, torchrun with gloo."""

import shutil
import subprocess

import pandas as pd
import pytest

from tests.helpers import (
    assert_killed_run_resumes,
    extraction_command,
    run_on_two_c10d_nodes,
    run_two_process_extraction,
    slides_written_per_log,
    subprocess_environment,
)

TINY = ["vit_patch_arch=vit_tiny", "pretrain_vit_patch=null", "pretrain_vit_region=null", "region_size=1024"]


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
        (["regionsize=1024"], 2, "unknown config key 'regionsize'; did you mean region_size?"),
        (["+regionsize=1024"], 2, "unknown config key 'regionsize'; did you mean region_size?"),
        (["level=regional"], 2, "level: Invalid value 'regional', expected one of [global, local]"),
        (["region_size=1000"], 2, "region_size (1000) must be a multiple of patch_size"),
        ([], 2, "give exactly one input, region_dir or wsi_csv"),
        (["pretrain_vit_patch=/no/such/vit.pth"], 2, "checkpoint '/no/such/vit.pth' does not exist"),
    ],
)
def test_bad_config_is_one_clear_error_before_any_work(tmp_path, many_slides, args, code, message):
    region_dir = [] if "give exactly one input" in message else [f"region_dir={many_slides}"]
    result = subprocess.run(
        extraction_command(*region_dir, f"output_dir={tmp_path / 'out'}", *args),
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        cwd=tmp_path,
    )
    assert result.returncode == code, result.stderr[-2000:]
    assert message in result.stderr
    assert not list(tmp_path.glob("out/*/*")), "no (empty) run folder is left behind"
    assert not (tmp_path / "outputs").exists()


def test_killed_run_resumes_to_the_same_files(tmp_path, many_slides):
    assert_killed_run_resumes([f"region_dir={many_slides}", *TINY, "num_workers=0"], tmp_path, slides=5)


def test_two_process_gloo_run_writes_each_slide_once(tmp_path, many_slides):
    run_dir = run_two_process_extraction(tmp_path, f"region_dir={many_slides}", *TINY)
    writes = slides_written_per_log(run_dir)
    assert sorted(writes) == [f"slide_{i}" for i in range(5)]
    assert all(len(ranks) == 1 for ranks in writes.values()), writes
    assert {ranks[0] for ranks in writes.values()} == {"log.txt", "log.rank1.txt"}
    slides = pd.read_csv(run_dir / "slides.csv")
    assert slides.slide_id.tolist() == [f"slide_{i}" for i in range(5)] and set(slides.status) == {"success"}
    assert len(pd.read_csv(run_dir / "regions.csv")) == 15


def test_two_nodes_with_c10d_rendezvous_write_each_slide_once(tmp_path, many_slides):
    """Two 'nodes' of one process each on localhost, joined by torchrun's c10d rendezvous (as a Slurm job would be)."""
    arguments = [f"region_dir={many_slides}", f"output_dir={tmp_path}", "run_id=nodes", "device=cpu", "num_workers=0"]
    run_on_two_c10d_nodes(extraction_command(*arguments, *TINY)[1:])
    run_dir = tmp_path / "feature_extraction" / "nodes"
    writes = slides_written_per_log(run_dir)
    assert sorted(writes) == [f"slide_{i}" for i in range(5)] and all(len(logs) == 1 for logs in writes.values())
    assert {logs[0] for logs in writes.values()} == {"log.txt", "log.rank1.txt"}
    assert pd.read_csv(run_dir / "slides.csv").status.tolist() == ["success"] * 5
