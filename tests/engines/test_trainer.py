"""The generic loop: gradient accumulation, schedulers, early stopping."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from source.data.features import BagDataset, FeatureBank, Split
from source.engines.optim import build_optimizer, build_scheduler
from source.engines.train import Trainer, TrainerSettings
from source.models.slide import GlobalHIPT
from source.tasks.classification import ClassificationTask


class MemoryBank(FeatureBank):
    def __init__(self, bags):
        super().__init__(".", "global", 192)
        self._memory = bags


def make_split(n=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    bags = {f"s{i}": torch.randn(3 + i % 3, 192, generator=generator) for i in range(n)}
    labels = np.arange(n) % 2
    frame = pd.DataFrame({"slide_id": list(bags), "label_index": labels})
    dataset = BagDataset([[s] for s in bags], {"label": labels}, MemoryBank(bags), "slide")
    return Split("train", dataset, frame, np.ones(n))


class ConstantMetricTask(ClassificationTask):
    """A task whose tune metric never improves after the first evaluation."""

    higher_is_better = {"score": True, "loss": False}

    def metrics(self, predictions):
        return {"score": 0.5}


def trainer_for(tmp_path, model, settings, optimizer_name="sgd", lr=0.1, scheduler=None, task=None, **scheduler_args):
    optimizer = build_optimizer(model.parameters(), optimizer_name, lr, 0.0, momentum=0.0)
    sched = build_scheduler(
        optimizer, scheduler, settings.nepochs, mode="max" if settings.maximize else "min", **scheduler_args
    )
    return Trainer(model, task or ClassificationTask(2), optimizer, sched, settings, tmp_path, torch.device("cpu"))


def test_gradient_accumulation_steps_on_full_and_last_partial_groups(tmp_path):
    torch.manual_seed(0)
    model = GlobalHIPT(2, dropout=0.0)
    reference = copy.deepcopy(model)
    split = make_split(5)
    settings = TrainerSettings(nepochs=1, accumulation=3, seed=4, show_progress=False)
    trainer = trainer_for(tmp_path, model, settings, lr=0.1)
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 100.0)  # stale gradients must be zeroed at epoch start
    trainer.train_epoch(split, epoch=0)

    order = torch.randperm(5, generator=torch.Generator().manual_seed(4 * 7919)).tolist()
    task = ClassificationTask(2)
    for group in (order[:3], order[3:]):
        reference.zero_grad()
        for index in group:
            bag = split.dataset[index]
            (task.loss(reference(bag.features), bag.targets, True) / len(group)).backward()
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter -= 0.1 * parameter.grad
    for (name, got), (_, expected) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5, msg=name)


def learning_rates(trainer, split, tune):
    trainer.fit(split, tune)
    history = pd.DataFrame(trainer.history)
    return history[history.split == "train"].lr.tolist()


def test_step_scheduler(tmp_path):
    settings = TrainerSettings(nepochs=4, show_progress=False)
    trainer = trainer_for(tmp_path, GlobalHIPT(2), settings, lr=0.1, scheduler="step", step_size=2, gamma=0.5)
    assert learning_rates(trainer, make_split(), make_split(4, 1)) == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_cosine_scheduler(tmp_path):
    settings = TrainerSettings(nepochs=4, show_progress=False)
    trainer = trainer_for(tmp_path, GlobalHIPT(2), settings, lr=0.1, scheduler="cosine", eta_min=0.0)
    expected = [0.1 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    assert learning_rates(trainer, make_split(), make_split(4, 1)) == pytest.approx(expected)


def test_reduce_on_plateau_is_fed_the_tracked_tune_metric(tmp_path):
    settings = TrainerSettings(nepochs=4, tracking="score", maximize=True, show_progress=False)
    trainer = trainer_for(
        tmp_path,
        GlobalHIPT(2),
        settings,
        lr=0.1,
        scheduler="reduce_on_plateau",
        factor=0.5,
        patience=0,
        task=ConstantMetricTask(2),
    )
    assert learning_rates(trainer, make_split(), make_split(4, 1)) == pytest.approx([0.1, 0.1, 0.05, 0.025])


def test_early_stopping_waits_for_patience_and_min_epoch(tmp_path):
    split, tune = make_split(), make_split(4, 1)
    settings = TrainerSettings(
        nepochs=20, tracking="score", maximize=True, patience=2, min_epoch=0, early_stopping=True, show_progress=False
    )
    trainer = trainer_for(tmp_path / "a", GlobalHIPT(2), settings, task=ConstantMetricTask(2))
    trainer.fit(split, tune)
    assert max(row["epoch"] for row in trainer.history) == 3 and trainer.stopped_early
    assert torch.load(tmp_path / "a" / "best.pt", weights_only=True)["epoch"] == 0
    settings.min_epoch = 6
    trainer = trainer_for(tmp_path / "b", GlobalHIPT(2), settings, task=ConstantMetricTask(2))
    trainer.fit(split, tune)
    assert max(row["epoch"] for row in trainer.history) == 6
    settings.early_stopping = False
    trainer = trainer_for(tmp_path / "c", GlobalHIPT(2), settings, task=ConstantMetricTask(2))
    trainer.settings.nepochs = 8
    trainer.fit(split, tune)
    assert max(row["epoch"] for row in trainer.history) == 8


def test_tune_every(tmp_path):
    settings = TrainerSettings(nepochs=5, tune_every=2, show_progress=False)
    trainer = trainer_for(tmp_path, GlobalHIPT(2), settings)
    trainer.fit(make_split(), make_split(4, 1))
    assert [row["epoch"] for row in trainer.history if row["split"] == "tune"] == [2, 4, 5]
