"""Runs that share machines and disks: weight fingerprints, one job per run folder, orphan temporaries, values a model
cannot use, failed writes, and errors that say what to do."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from source.data.features import FeatureFileError
from source.data.labels import LabelTableError
from source.engines.extraction_job import run_extraction_job
from source.engines.training_job import run_training_job
from source.errors import ConfigError, TrainingDivergedError
from source.io import OutputWriteError, atomic_torch_save
from source.models.vit import vit_tiny
from source.runs.lock import LOCK_FILE, RunLock
from tests.helpers import REPO, extraction_config, official_checkpoint, subprocess_environment
from tests.training_data import classification_data, job_config, survival_data

TINY = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None, "num_workers": 0}


def extraction(tmp_path, region_dir, **values):
    base = {"region_dir": str(region_dir), "output_dir": str(tmp_path / "out"), "run_id": "r", "region_size": 1024}
    base["slide_list"] = None
    cfg = extraction_config(**(base | TINY | values))
    return cfg, tmp_path / "out" / "feature_extraction" / "r"


def only_subset(region_dir):
    import shutil

    shutil.rmtree(region_dir / "CMU-1-Small-Region")  # 3 regions: quick
    return region_dir


def test_resume_refuses_weights_whose_content_changed_and_another_seed_for_random_weights(tmp_path, region_dir):
    region_dir = only_subset(region_dir)
    weights = tmp_path / "vit_patch.pth"
    torch.manual_seed(0)
    torch.save(official_checkpoint(vit_tiny()), weights)
    cfg, run_dir = extraction(tmp_path, region_dir, level="local", pretrain_vit_patch=str(weights))
    assert run_extraction_job(cfg) == 0
    torch.manual_seed(1)
    torch.save(official_checkpoint(vit_tiny()), weights)  # the same path, new weights (a DINO run's latest.pt)
    resumed, _ = extraction(tmp_path, region_dir, level="local", pretrain_vit_patch=str(weights), resume=True)
    with pytest.raises(ConfigError, match="the weights of pretrain_vit_patch .* are not those this run started with"):
        run_extraction_job(resumed)
    random_cfg, _ = extraction(tmp_path / "b", region_dir, level="local")
    assert run_extraction_job(random_cfg) == 0
    other_seed, _ = extraction(tmp_path / "b", region_dir, level="local", seed=5, resume=True)
    with pytest.raises(ConfigError, match="seed was 0 when this run started with random weights, but is 5 now"):
        run_extraction_job(other_seed)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_one_job_per_run_folder_and_dead_or_silent_holders_are_taken_over(tmp_path, region_dir, caplog):
    region_dir = only_subset(region_dir)
    cfg, run_dir = extraction(tmp_path, region_dir)
    with RunLock(run_dir):  # another job (this process) holds the folder
        with pytest.raises(ConfigError, match=r"is in use by another job \(host .*, pid %d" % os.getpid()):
            run_extraction_job(cfg)
    assert not (run_dir / LOCK_FILE).exists()  # released by its holder
    (run_dir / LOCK_FILE).write_text(f'{{"host": "{os.uname().nodename}", "pid": {dead_pid()}, "started": "x"}}')
    assert run_extraction_job(cfg) == 0
    assert "its process" in caplog.text and "is gone" in caplog.text
    (run_dir / LOCK_FILE).write_text('{"host": "another-node", "pid": 1, "started": "x"}')
    old = time.time() - 3600
    os.utime(run_dir / LOCK_FILE, (old, old))
    assert run_extraction_job(extraction(tmp_path, region_dir, resume=True)[0]) == 0
    assert "heartbeat stopped" in caplog.text and not (run_dir / LOCK_FILE).exists()


def test_orphan_temporaries_are_removed_when_a_run_resumes(tmp_path, region_dir):
    region_dir = only_subset(region_dir)
    cfg, run_dir = extraction(tmp_path, region_dir)
    assert run_extraction_job(cfg) == 0
    orphan = run_dir / "features" / "slide" / ".subset.pt.k2j3h4.tmp"
    orphan.write_bytes(b"half a checkpoint")
    old = time.time() - 60
    os.utime(orphan, (old, old))
    assert run_extraction_job(extraction(tmp_path, region_dir, resume=True)[0]) == 0
    assert not orphan.exists()


def test_values_a_model_cannot_use_are_refused_naming_the_file_or_rows(tmp_path):
    paths = classification_data(tmp_path / "c", n_slides=20, regions=3)
    torch.save(torch.randn(3, 192) * 1e30, paths["features_dir"] / "slide_003.pt")  # finite, but absurd
    with pytest.raises(FeatureFileError, match=r"slide_003.pt \(max \|value\|"):
        run_training_job(job_config("classification", tmp_path, paths, nepochs=1), "classification", multi=False)
    survival = survival_data(tmp_path / "s", n_patients=20, regions=3)
    frame = pd.read_csv(survival["train"])
    frame.loc[2, "survival_months"] = np.inf
    frame.to_csv(survival["train"], index=False)
    with pytest.raises(LabelTableError, match=r"survival_months must be a finite number > 0; row\(s\) 4"):
        run_training_job(job_config("survival", tmp_path, survival, nepochs=1), "survival", multi=False)


def test_tune_splits_that_cannot_be_scored_are_an_error_before_training(tmp_path):
    survival = survival_data(tmp_path / "s", n_patients=20, regions=3)
    tune = pd.read_csv(survival["tune"]).assign(censorship=1)
    tune.to_csv(survival["tune"], index=False)
    with pytest.raises(LabelTableError, match="every patient of the tune split is censored"):
        run_training_job(job_config("survival", tmp_path, survival, nepochs=1), "survival", multi=False)
    paths = classification_data(tmp_path / "c", n_slides=20, regions=3)
    pd.read_csv(paths["tune"]).assign(label=0).to_csv(paths["tune"], index=False)
    with pytest.raises(LabelTableError, match="the tune split has a single class"):
        run_training_job(job_config("classification", tmp_path, paths, nepochs=1), "classification", multi=False)


def test_a_non_finite_loss_stops_the_run_naming_the_epoch_and_the_slide(tmp_path, monkeypatch):
    from source.tasks.classification import ClassificationTask

    paths = classification_data(tmp_path / "c", n_slides=20, regions=3)
    original = ClassificationTask.loss

    def poisoned(self, logits, targets, training):
        loss = original(self, logits, targets, training)
        return loss * float("nan") if training else loss

    monkeypatch.setattr(ClassificationTask, "loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"the training loss is nan at epoch 1, on slide_\d+"):
        run_training_job(job_config("classification", tmp_path, paths, nepochs=2), "classification", multi=False)


def test_failed_writes_are_one_line_naming_the_path_and_leave_nothing_partial(tmp_path, monkeypatch, region_dir):
    target = tmp_path / "features" / "x.pt"

    def disk_full(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputWriteError, match=r"cannot write .*x.pt: the write failed: disk full"):
        atomic_torch_save({"a": 1}, target)
    assert list(target.parent.iterdir()) == []  # neither the final name nor a temporary
    monkeypatch.undo()

    def no_space(source, destination):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OutputWriteError, match=r"x.pt: no space left on device \(ENOSPC\)"):
        atomic_torch_save({"a": 1}, target)
    monkeypatch.undo()
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    cfg, _ = extraction(tmp_path, only_subset(region_dir), output_dir=str(blocked))
    with pytest.raises(ConfigError, match="is not writable"):
        run_extraction_job(cfg)


def test_a_non_ascii_unquoted_value_is_told_to_be_quoted(tmp_path):
    command = [sys.executable, str(REPO / "extract_features.py"), "--config-name", "default", "region_dir=/data/Bücher"]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_environment(), cwd=tmp_path)
    assert result.returncode == 2
    assert "must be quoted for Hydra: \"region_dir='/data/Bücher'\"" in result.stderr
