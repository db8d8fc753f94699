"""The slide-level tasks by kind (``train/<kind>.py``, a checkpoint's ``task.kind``) and the training config schema
each one gets: the shared :class:`~source.config.training.TrainingConfig` with the task's own keys."""

from __future__ import annotations

import dataclasses
import functools
import typing

from source.config.training import SHARED_RESUME_KEYS, TrainingConfig
from source.tasks.base import Task
from source.tasks.classification import ClassificationTask
from source.tasks.regression import RegressionTask
from source.tasks.survival import SurvivalTask

TASKS: dict[str, type[Task]] = {task.kind: task for task in (ClassificationTask, SurvivalTask, RegressionTask)}


def task_class(kind: str) -> type[Task]:
    """The task class of ``kind``.

    Raises:
        ValueError: an unknown kind (the message lists the known ones).
    """
    if kind not in TASKS:
        raise ValueError(f"unknown task '{kind}'; known tasks: {sorted(TASKS)}")
    return TASKS[kind]


@functools.cache
def training_schema(kind: str) -> type:
    """The schema of a ``kind`` training config: :class:`TrainingConfig`, then the task's keys (a key it shares with
    the base, e.g. ``label_name``, keeps its place and takes the task's default), then its ``model`` block."""
    task = task_class(kind)
    hints = typing.get_type_hints(task.keys)
    fields = [(known.name, hints[known.name], _default_of(known)) for known in dataclasses.fields(task.keys)]
    fields.append(("model", task.model_keys, dataclasses.field(default_factory=task.model_keys)))
    namespace = {"__doc__": f"Every key of a {kind} training config.", "__module__": __name__}
    return dataclasses.make_dataclass(f"{kind.title()}Config", fields, bases=(TrainingConfig,), namespace=namespace)


def resume_keys(kind: str) -> tuple[str, ...]:
    """Keys that must not change when a ``kind`` training run is resumed (``nepochs`` may grow: training continues)."""
    return SHARED_RESUME_KEYS + task_class(kind).resume_keys


def _default_of(known: dataclasses.Field) -> dataclasses.Field:
    if known.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=known.default_factory)
    return dataclasses.field(default=known.default)


TRAINING_SCHEMAS: dict[str, type] = {kind: training_schema(kind) for kind in TASKS}
"""The training config schema of each task kind."""
