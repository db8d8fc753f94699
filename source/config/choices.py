"""The choice fields of the configs as enums: OmegaConf refuses any other value with the list of valid ones.

Members are named as their values and compare equal to them (``Optimizer.adam == "adam"``), so code
reads them like the strings they replace; ``str()`` and f-strings give the bare value.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A config choice: a ``str`` whose ``str()`` / ``format()`` is its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Optimizer(Choice):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Scheduler(Choice):
    step = "step"
    cosine = "cosine"
    reduce_on_plateau = "reduce_on_plateau"


class MinMax(Choice):
    min = "min"
    max = "max"


class CheckpointChoice(Choice):
    best = "best"
    latest = "latest"


class PosEmbed(Choice):
    sinusoidal = "sinusoidal"
    learned = "learned"


class AggMethod(Choice):
    concat = "concat"
    self_att = "self_att"


class KnnMetric(Choice):
    accuracy = "accuracy"
    balanced_accuracy = "balanced_accuracy"
    auc = "auc"
