"""Helpers shared by the DINO job tests: the per-epoch log, and a run killed after an epoch then resumed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import torch

from source.engines import pretrain as pretrain_module
from tests.helpers import TEST_DEVICE

FAST_PATCH = {
    "model.arch": "vit_tiny",
    "model.out_dim": 128,
    "model.teacher_temp": 0.04,
    "model.warmup_teacher_temp_epochs": 1,
    "training.nepochs": 3,
    "training.warmup_epochs": 1,
    "training.batch_size_per_gpu": 8,
    "aug.global_crops_size": 64,
    "aug.local_crops_size": 32,
    "aug.local_crops_number": 2,
    "speed.num_workers": 0,
    "optim.lr": 0.05,
    "early_stopping.save_every": 2,
    "device": TEST_DEVICE,
}
"""Patch-stage settings small enough for CPU tests (vit_tiny, 64 / 32-px crops)."""


def on_cpu(settings: dict) -> dict:
    """``settings`` on the CPU: multi-process (gloo) runs compare with a single process on the same device,
    and one GPU cannot hold a process per rank."""
    return settings | {"device": "cpu"}


def log(run_dir: Path) -> list[dict]:
    """The records of ``log.jsonl`` (one per epoch)."""
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def assert_killed_run_resumes(
    run: Callable[..., tuple[int, Path]], tmp_path: Path, monkeypatch, kill_after: int
) -> None:
    """``run(root, **overrides) -> (code, run_dir)`` killed after saving ``latest`` at epoch ``kill_after`` (0-based),
    then resumed, gives the losses and teacher of an uninterrupted run."""
    code, full = run(tmp_path / "a")
    assert code == 0
    original = pretrain_module.DinoTrainer.save

    def killed(self, name, epoch):
        original(self, name, epoch)
        if name == "latest" and epoch == kill_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_module.DinoTrainer, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(pretrain_module.DinoTrainer, "save", original)
    code, resumed = run(tmp_path / "b", resume=True)
    assert code == 0
    assert [r["loss"] for r in log(resumed)] == pytest.approx([r["loss"] for r in log(full)], rel=1e-6)
    a, b = (torch.load(p / "latest.pt", weights_only=True)["teacher"] for p in (full, resumed))
    for key in a:
        torch.testing.assert_close(a[key], b[key])
