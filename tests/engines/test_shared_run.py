"""Shared runs (``shared_run: true``): independent jobs on one run folder, each slide claimed by one job, a dead job's
claims taken over, and complete tables from whichever job ends last."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from source.engines.extraction_job import run_extraction_job
from source.errors import ConfigError
from source.runs.claims import CLAIMS_DIR, live_claims
from source.runs.lock import LOCK_FILE, RunLock
from source.runs.owned import STALE_AFTER_S, Heartbeat, OwnedFile, job_identity
from source.runs.shared import SharedRun, work_through
from tests.engines.test_run_safety import dead_pid
from tests.helpers import compare_runs, extraction_command, extraction_config, subprocess_environment

TINY = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None, "num_workers": 0}
TINY_ARGS = [f"{key}={'null' if value is None else value}" for key, value in TINY.items()]
SLIDES = 6


@pytest.fixture
def cohort(region_dir: Path) -> Path:
    """A region_dir of 6 slides of 3 regions each (cut from the demo slide's 1024-px regions)."""
    images = sorted((region_dir / "CMU-1-Small-Region" / "imgs").iterdir())
    root = region_dir.parent / "cohort"
    for index in range(SLIDES):
        folder = root / f"slide_{index}" / "imgs"
        folder.mkdir(parents=True)
        for image in images[index % 2 * 3 : index % 2 * 3 + 3]:
            shutil.copy(image, folder / image.name)
    return root


def shared_args(cohort: Path, output: Path, run_id: str = "shared") -> list[str]:
    args = [f"region_dir={cohort}", f"output_dir={output}", f"run_id={run_id}", "region_size=1024", *TINY_ARGS]
    return extraction_command(*args, "shared_run=true")


def reference_run(cohort: Path, output: Path) -> Path:
    """The same extraction as one ordinary job."""
    values = {"region_dir": str(cohort), "output_dir": str(output), "run_id": "alone", "region_size": 1024}
    cfg = extraction_config(**(values | TINY | {"slide_list": None}))
    assert run_extraction_job(cfg) == 0
    return output / "feature_extraction" / "alone"


def encodings_per_slide(run_dir: Path) -> dict[str, int]:
    """How many times the jobs' logs report writing each slide's features."""
    counts: dict[str, int] = {}
    for log in (run_dir / "logs").glob("*.txt"):
        for line in log.read_text().splitlines():
            if " regions -> " in line:
                slide = line.split("slide ", 1)[1].split(":", 1)[0]
                counts[slide] = counts.get(slide, 0) + 1
    return counts


def test_three_concurrent_jobs_encode_each_slide_once_and_write_complete_tables(cohort, tmp_path):
    command = shared_args(cohort, tmp_path / "out")
    jobs = [
        subprocess.Popen(command, env=subprocess_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [job.communicate(timeout=600)[1].decode() for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], outputs[0][-2000:]
    run_dir = tmp_path / "out" / "feature_extraction" / "shared"
    assert encodings_per_slide(run_dir) == {f"slide_{i}": 1 for i in range(SLIDES)}
    assert len(list((run_dir / "logs").glob("*.txt"))) == 3  # one log per job, no interleaving
    assert not list((run_dir / CLAIMS_DIR).glob("*.claim"))  # every claim released
    compare_runs(reference_run(cohort, tmp_path / "ref"), run_dir)
    records = [json.loads((run_dir / CLAIMS_DIR / f"slide_{i}.json").read_text()) for i in range(SLIDES)]
    assert {r["status"] for r in records} == {"success"}
    # a job that finds nothing left rebuilds the tables, encoding nothing
    (run_dir / "slides.csv").unlink()
    late = subprocess.run(command, env=subprocess_environment(), capture_output=True, text=True, timeout=600)
    assert late.returncode == 0, late.stderr[-2000:]
    assert "this job processed 0 slide(s)" in late.stderr
    assert pd.read_csv(run_dir / "slides.csv").slide_id.tolist() == [f"slide_{i}" for i in range(SLIDES)]


def test_a_killed_job_s_claim_is_taken_over_and_the_features_match_an_uninterrupted_run(cohort, tmp_path):
    command = shared_args(cohort, tmp_path / "out")
    run_dir = tmp_path / "out" / "feature_extraction" / "shared"
    claims = run_dir / CLAIMS_DIR
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    killed = subprocess.Popen(command, env=subprocess_environment(), **quiet)
    deadline = time.time() + 300
    while time.time() < deadline and not list(claims.glob("slide_2.claim")):  # two slides done, the third under way
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    orphaned = [p.stem for p in claims.glob("*.claim") if not (claims / f"{p.stem}.json").exists()]
    assert orphaned == ["slide_2"], "the job was not killed mid-slide"
    assert json.loads((claims / "slide_2.claim").read_text())["pid"] == killed.pid
    assert not (run_dir / "slides.csv").exists()
    survivor = subprocess.run(command, env=subprocess_environment(), capture_output=True, text=True, timeout=600)
    assert survivor.returncode == 0, survivor.stderr[-2000:]
    assert f"its process {killed.pid} on this host is gone" in survivor.stderr
    assert encodings_per_slide(run_dir) == {f"slide_{i}": 1 for i in range(SLIDES)}
    compare_runs(reference_run(cohort, tmp_path / "ref"), run_dir)


def test_claims_are_exclusive_and_stale_claims_are_taken_over(tmp_path, caplog):
    run_dir = tmp_path / "run"
    first, second = SharedRun(run_dir), SharedRun(run_dir)
    second.owner = second.owner | {"pid": os.getppid(), "token": "other"}  # another live job on this host
    beat = Heartbeat(3600)
    try:
        with first.claim("a", beat) as held:
            assert held
            with second.claim("a", beat) as also:
                assert not also
            assert [slide for slide, _ in live_claims(run_dir)] == ["a"]
        with second.claim("a", beat) as held:  # released by the first job
            assert held
        claim = run_dir / CLAIMS_DIR / "b.claim"
        claim.write_text(json.dumps({"host": os.uname().nodename, "pid": dead_pid(), "started": "x"}))
        with first.claim("b", beat) as held:
            assert held
        assert "is gone" in caplog.text
        claim.write_text(json.dumps({"host": "another-node", "pid": 1, "started": "x"}))
        assert live_claims(run_dir) == [("b", {"host": "another-node", "pid": 1, "started": "x"})]
        old = time.time() - 3600
        os.utime(claim, (old, old))
        assert live_claims(run_dir) == []
        with first.claim("b", beat) as held:
            assert held
        assert "heartbeat stopped" in caplog.text
    finally:
        beat.stop()


class KilledWhileWriting(BaseException):
    """Stands for SIGKILL arriving while a job writes its claim."""


def test_a_job_killed_while_writing_its_claim_leaves_no_claim_and_a_claim_is_never_half_written(tmp_path, monkeypatch):
    claim_path = tmp_path / "a.claim"
    owner = job_identity()
    seen_at_creation = []
    real_link = os.link

    def link_and_look(source, target):
        real_link(source, target)
        seen_at_creation.append(json.loads(Path(target).read_text()))  # what a reader sees the instant it exists

    monkeypatch.setattr(os, "link", link_and_look)
    assert OwnedFile(claim_path, owner, STALE_AFTER_S, 30.0).acquire() is None
    assert seen_at_creation == [owner]
    assert json.loads(claim_path.read_text()) == owner
    assert not OwnedFile(claim_path, owner | {"token": "other"}, STALE_AFTER_S, 30.0)._try_create(claim_path, owner)
    claim_path.unlink()

    def killed(*args, **kwargs):
        raise KilledWhileWriting

    monkeypatch.setattr(json, "dump", killed)
    monkeypatch.setattr(json, "dumps", killed)
    with pytest.raises(KilledWhileWriting):
        OwnedFile(claim_path, owner, STALE_AFTER_S, 30.0).acquire()
    assert list(tmp_path.iterdir()) == []  # no empty claim that would hold the slide for a heartbeat period


def test_without_hard_links_a_claim_is_still_created_exclusively(tmp_path, monkeypatch):
    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    owner = job_identity()
    first = OwnedFile(tmp_path / "a.claim", owner, STALE_AFTER_S, 30.0)
    assert first.acquire() is None and first.held()
    assert not first._try_create(tmp_path / "a.claim", owner | {"token": "other"})
    assert [p.name for p in tmp_path.iterdir()] == ["a.claim"]


def test_failed_slides_are_recorded_once_and_the_exit_code_says_so(tmp_path):
    shared = SharedRun(tmp_path / "run")
    calls = []

    def process(slide_id):
        calls.append(slide_id)
        return {"slide_id": slide_id, "status": "failed" if slide_id == "bad" else "success"}

    mine, progress = work_through(shared, ["ok", "bad"], process)
    assert [r["status"] for r in mine] == ["success", "failed"] and progress.done == ["ok", "bad"]
    again, _ = work_through(shared, ["ok", "bad"], process)
    assert again == [] and calls == ["ok", "bad"]  # a recorded slide is not processed again


def test_shared_and_exclusive_jobs_refuse_each_other(cohort, tmp_path):
    values = {"region_dir": str(cohort), "output_dir": str(tmp_path), "run_id": "r", "region_size": 1024}
    cfg = extraction_config(**(values | TINY | {"slide_list": None, "shared_run": True}))
    run_dir = tmp_path / "feature_extraction" / "r"
    with RunLock(run_dir):
        with pytest.raises(ConfigError, match="held by a job that does not share it"):
            run_extraction_job(cfg)
    other = SharedRun(run_dir)
    other.owner = other.owner | {"pid": os.getppid(), "token": "other"}
    beat = Heartbeat(3600)
    try:
        with other.claim("slide_0", beat):
            with pytest.raises(ConfigError, match=r"shared by running jobs .* 'slide_0'"):
                with RunLock(run_dir):
                    pass
    finally:
        beat.stop()
    assert not (run_dir / LOCK_FILE).exists()
    no_id = extraction_config(**(values | TINY | {"slide_list": None, "shared_run": True, "run_id": None}))
    with pytest.raises(ConfigError, match="shared_run: true needs run_id"):
        run_extraction_job(no_id)


def test_shared_heatmap_jobs_leave_a_slide_claimed_by_another_job_and_the_last_job_writes_slides_csv(
    region_dir, tmp_path
):
    from source.engines.heatmap_job import run_heatmap_job
    from tests.heatmaps.test_heatmap_job import TINY as HEATMAP_TINY
    from tests.heatmaps.test_heatmap_job import heatmap_config

    values = {"region_dir": str(region_dir), "region_size": 1024, "output_dir": str(tmp_path), "run_id": "r"}
    values |= {"shared_run": True, "heads": [0], "save_region_maps": False, "device": "cpu"}
    run_dir = tmp_path / "heatmaps" / "r"
    other = SharedRun(run_dir)
    other.owner = other.owner | {"pid": os.getppid(), "token": "other"}  # another live job, drawing "subset"
    beat = Heartbeat(3600)
    try:
        with other.claim("subset", beat):
            assert run_heatmap_job(heatmap_config(**values, **HEATMAP_TINY)) == 0
            assert (run_dir / "CMU-1-Small-Region" / "attention.csv").exists()
            assert not (run_dir / "subset").exists() and not (run_dir / "slides.csv").exists()
    finally:
        beat.stop()
    assert run_heatmap_job(heatmap_config(**values, **HEATMAP_TINY)) == 0  # the claim is free again: the last job
    assert (run_dir / "subset" / "attention.csv").exists()
    slides = pd.read_csv(run_dir / "slides.csv")
    assert sorted(slides.slide_id) == ["CMU-1-Small-Region", "subset"] and set(slides.status) == {"success"}
    drawn = [line for log in (run_dir / "logs").glob("*.txt") for line in log.read_text().splitlines()]
    assert sum("slide CMU-1-Small-Region: 6 regions ->" in line for line in drawn) == 1


def test_sigterm_releases_the_claim_at_once_and_records_nothing(tmp_path):
    shared = SharedRun(tmp_path / "run")

    def preempted(slide_id):
        os.kill(os.getpid(), signal.SIGTERM)  # Slurm's notice before preemption
        time.sleep(5)
        return {"slide_id": slide_id, "status": "success"}

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_info:
        work_through(shared, ["a"], preempted)
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert not list((tmp_path / "run" / CLAIMS_DIR).iterdir())  # neither a claim nor a record
    assert signal.getsignal(signal.SIGTERM) is before  # the job's own handler is back


def test_the_status_of_a_shared_run_names_failures_live_and_stale_claims(tmp_path, capsys):
    from source.runs.shared import main

    run_dir = tmp_path / "run"
    assert main([str(run_dir)]) == 2 and "not a shared run" in capsys.readouterr().out
    shared = SharedRun(run_dir)
    work_through(
        shared,
        ["a", "b"],
        lambda s: {"slide_id": s, "status": "failed" if s == "b" else "success", "error": "no tissue"},
    )
    beat = Heartbeat(3600)
    try:
        with shared.claim("c", beat):
            (run_dir / CLAIMS_DIR / "d.claim").write_text(json.dumps({"host": os.uname().nodename, "pid": dead_pid()}))
            assert main([str(run_dir)]) == 0
    finally:
        beat.stop()
    status = capsys.readouterr().out
    assert "- recorded: 2 slide(s), 1 failed" in status and "  - b: no tissue" in status
    assert f"- c: in progress; host {os.uname().nodename}, pid {os.getpid()}" in status
    assert "- d: stale, taken over by the next job (its process" in status
    assert "not written yet (the last job writes them)" in status


def shared_config(cohort: Path, output: Path, **overrides):
    values = {"region_dir": str(cohort), "output_dir": str(output), "run_id": "shared", "region_size": 1024}
    return extraction_config(**(values | TINY | {"slide_list": None, "shared_run": True} | overrides))


def test_a_record_whose_files_are_gone_or_truncated_is_processed_again(region_dir, tmp_path, caplog, capsys):
    from source.runs.shared import main

    assert run_extraction_job(shared_config(region_dir, tmp_path / "out")) == 0
    run_dir = tmp_path / "out" / "feature_extraction" / "shared"
    slides = run_dir / "features" / "slide"
    first = {name: torch.load(slides / f"{name}.pt") for name in ("CMU-1-Small-Region", "subset")}
    record = json.loads((run_dir / CLAIMS_DIR / "subset.json").read_text())
    assert record["outputs"] == {
        "features/slide/subset.pt": (slides / "subset.pt").stat().st_size,
        "features/tissue/subset.pt": (run_dir / "features" / "tissue" / "subset.pt").stat().st_size,
    }
    (slides / "CMU-1-Small-Region.pt").unlink()  # a clean-up, a quota, a bad sync
    tissue = run_dir / "features" / "tissue" / "subset.pt"
    first_tissue = torch.load(tissue)
    tissue.write_bytes(tissue.read_bytes()[:100])  # truncated; the slide file is whole
    assert main([str(run_dir)]) == 0
    status = capsys.readouterr().out
    assert "- records whose files are gone: 2 slide(s) (the next job processes them again)" in status
    assert "  - CMU-1-Small-Region: features/slide/CMU-1-Small-Region.pt is missing" in status
    assert "  - subset: features/tissue/subset.pt has 100 bytes, the record says" in status

    caplog.clear()
    assert run_extraction_job(shared_config(region_dir, tmp_path / "out")) == 0
    assert "slide CMU-1-Small-Region was recorded as done by host" in caplog.text
    assert "but features/slide/CMU-1-Small-Region.pt is missing: processing it again" in caplog.text
    assert "features/tissue/subset.pt has 100 bytes, the record says" in caplog.text
    assert "this job processed 2 slide(s)" in caplog.text
    for name, features in first.items():
        assert torch.equal(torch.load(slides / f"{name}.pt"), features)
    assert torch.equal(torch.load(tissue), first_tissue)  # rewritten whole
    table = pd.read_csv(run_dir / "slides.csv")
    assert set(table.status) == {"success"} and all(Path(path).is_file() for path in table.feature_path)
    caplog.clear()
    assert run_extraction_job(shared_config(region_dir, tmp_path / "out")) == 0  # intact now: nothing to do
    assert "this job processed 0 slide(s)" in caplog.text


def test_a_damaged_heatmap_record_is_drawn_again(tmp_path, caplog):
    shared = SharedRun(tmp_path / "run")
    drawn = []

    def draw(slide_id):
        folder = tmp_path / "run" / slide_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "attention.csv").write_text("x\n1\n")
        drawn.append(slide_id)
        return {"slide_id": slide_id, "status": "success", "output_dir": str(folder)}

    def outputs_of(slide_id, outcome):
        return sorted(Path(outcome["output_dir"]).iterdir())

    work_through(shared, ["a", "b"], draw, outputs_of=outputs_of)
    (tmp_path / "run" / "b" / "attention.csv").write_text("x\n")  # resized
    work_through(shared, ["a", "b"], draw, outputs_of=outputs_of)
    assert drawn == ["a", "b", "b"]
    assert "b/attention.csv has 2 bytes, the record says 4" in caplog.text
    assert shared.records(["a"]) == [{"slide_id": "a", "status": "success", "output_dir": str(tmp_path / "run" / "a")}]


def test_a_record_may_not_name_files_outside_its_run_folder(tmp_path):
    shared = SharedRun(tmp_path / "run")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    with pytest.raises(ValueError, match="not inside its run folder"):
        shared.finish("a", {"status": "success"}, [outside])
    (tmp_path / "run" / CLAIMS_DIR).mkdir(parents=True)
    shared.record_path("a").write_text(json.dumps({"status": "success", "outputs": {"../outside.txt": 7}}))
    assert shared.damage(shared.record("a")) == ["../outside.txt is outside the run folder"]
    work_through(shared, ["a"], lambda s: {"slide_id": s, "status": "success"})
    assert outside.read_text() == "keep me"  # an edited record never deletes a file outside the run


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_terminated_job_logs_the_signal_the_slide_and_its_summary(tmp_path, caplog, signum):
    caplog.set_level("INFO")
    shared = SharedRun(tmp_path / "run")

    def preempted(slide_id):
        if slide_id == "b":
            os.kill(os.getpid(), signum)
            time.sleep(5)
        return {"slide_id": slide_id, "status": "success"}

    with pytest.raises((SystemExit, KeyboardInterrupt)):
        work_through(shared, ["a", "b", "c"], preempted)
    name = signal.Signals(signum).name
    assert f"terminated by signal {int(signum)} ({name}) during slide b; claim released" in caplog.text
    assert "this job processed 1 slide(s) in" in caplog.text
    assert "before it was terminated; the run has 1/3 done, 0 being processed by other jobs" in caplog.text
    assert not list((tmp_path / "run" / CLAIMS_DIR).glob("*.claim"))


def test_a_preempted_extraction_job_says_so_in_its_log(cohort, tmp_path):
    command = shared_args(cohort, tmp_path / "out")
    run_dir = tmp_path / "out" / "feature_extraction" / "shared"
    job = subprocess.Popen(command, env=subprocess_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not list((run_dir / CLAIMS_DIR).glob("slide_1.claim")):
        time.sleep(0.01)
    job.send_signal(signal.SIGTERM)  # Slurm's notice before preemption
    stderr = job.communicate(timeout=60)[1].decode()
    assert job.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    (log,) = (run_dir / "logs").glob("*.txt")
    text = log.read_text()
    assert "terminated by signal 15 (SIGTERM) during slide slide_1; claim released" in text
    assert "this job processed 1 slide(s) in" in text and "before it was terminated" in text
    assert not list((run_dir / CLAIMS_DIR).glob("*.claim"))


def test_a_terminated_exclusive_job_says_so_in_its_log_and_releases_its_lock(cohort, tmp_path):
    args = [f"region_dir={cohort}", f"output_dir={tmp_path / 'out'}", "run_id=alone", "region_size=1024", *TINY_ARGS]
    run_dir = tmp_path / "out" / "feature_extraction" / "alone"
    job = subprocess.Popen(extraction_command(*args), env=subprocess_environment(), stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "features" / "slide" / "slide_0.pt").exists():
        time.sleep(0.01)
    job.send_signal(signal.SIGTERM)
    stderr = job.communicate(timeout=60)[1].decode()
    assert job.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    text = (run_dir / "log.txt").read_text()
    assert "terminated by signal 15 (SIGTERM); the run lock is released: rerun with resume=true run_id=alone" in text
    assert not (run_dir / LOCK_FILE).exists()
