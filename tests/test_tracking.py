"""The wandb sink: idle when off (no import, no network), and when on given the run's settings and its plain config."""

from __future__ import annotations

import os
import sys
import types

from source.config.common import WandbConfig
from source.tracking import Tracker


def fake_wandb(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    class Run:
        name, url = "run", None

        def __init__(self):
            self.logged, self.finished = [], False

        def log(self, metrics, step=None):
            self.logged.append((metrics, step))

        def finish(self):
            self.finished = True

    def init(**kwargs):
        calls.append(kwargs)
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return calls


def test_an_enabled_tracker_starts_a_run_with_the_block_s_settings_and_logs(monkeypatch, tmp_path):
    calls = fake_wandb(monkeypatch)
    settings = WandbConfig(enable=True, project="p", username="u", tags=["a", "b"], group="g")
    tracker = Tracker(settings, tmp_path, "default-name", {"seed": 3, "optim": {"lr": 0.1}})
    assert calls == [
        {
            "project": "p",
            "entity": "u",
            "name": "default-name",
            "tags": ["a", "b"],
            "group": "g",
            "dir": str(tmp_path),
            "config": {"seed": 3, "optim": {"lr": 0.1}},
        }
    ]
    run = tracker._run
    tracker.log({"loss": 1.0}, step=2)
    tracker.finish()
    assert run.logged == [({"loss": 1.0}, 2)] and run.finished and not tracker.enabled


def test_a_disabled_or_inactive_tracker_never_starts_wandb(monkeypatch, tmp_path):
    calls = fake_wandb(monkeypatch)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert not Tracker(WandbConfig(), tmp_path, "x", {}).enabled
    assert not Tracker(WandbConfig(enable=True), tmp_path, "x", {}, active=False).enabled
    assert calls == [] and os.environ["WANDB_MODE"] == "disabled"
