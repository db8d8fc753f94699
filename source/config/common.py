"""What several config schemas share: the choice enums and the optional Weights & Biases block.

Choice fields are enums, so OmegaConf refuses any other value with the list of valid ones. Members are
named as their values and compare equal to them (``Optimizer.adam == "adam"``), so code reads them like
the strings they replace; ``str()`` and f-strings give the bare value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


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


class RegressionLoss(Choice):
    mse = "mse"
    l1 = "l1"
    huber = "huber"


class KnnMetric(Choice):
    accuracy = "accuracy"
    balanced_accuracy = "balanced_accuracy"
    auc = "auc"


Level = Enum("Level", {"global": "global", "local": "local"}, type=str)
"""What a slide's feature file holds: ``global`` [M, 192] (ViT_patch + ViT_region) or ``local``
[M, n*n, 384] (ViT_patch only). (Functional form because ``global`` is a Python keyword.)"""


class Precision(str, Enum):
    """Autocast precision of the encoders (features are always saved as float32); ``auto`` is resolved
    for the device at start (:func:`source.precision.resolve_precision`) and saved resolved."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class WandbConfig:
    """Optional Weights & Biases logging; off by default and never touched when off."""

    enable: bool = False
    project: str = "hipt"
    username: Optional[str] = None
    exp_name: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    dir: Optional[str] = None
    group: Optional[str] = None
