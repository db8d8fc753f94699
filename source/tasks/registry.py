"""The slide-level tasks by kind (``train/<kind>.py``, a checkpoint's ``task.kind``)."""

from __future__ import annotations

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
