"""The one registry of slide-level models (aggregators): every name ``model.aggregator`` accepts.

Each entry names its class or builder as ``module:function`` so that names are known without importing torch
(config checks run before any model is built). Every model reads one bag and returns logits ``(C,)``;
``forward_with_attention`` also returns one attention score per instance where ``attention`` is True.

Adding a slide model is one entry here and its class (a :class:`~source.models.slide_model.SlideModel`); with
options of its own, also their dataclass here (``options``, ``options_key``) and their documented block in
``config/training/base.yaml``: the training schema, its checks, the factory, training, inference, heatmaps and the
registry tests pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class ClamOptions:
    """CLAM's instance-clustering loss (``model.clam``; the builder's keywords).

    Attributes:
        k_sample: instances taken from each end of the attention ranking for the instance loss.
        instance_loss_weight: w of ``(1 - w) * bag loss + w * instance loss`` (classification; 0 = off).
        subtyping: the classes are mutually exclusive subtypes: the other classes' most attended instances are
            negatives of their instance classifiers too. Off by default, as in CLAM's own code (``--subtyping``).
    """

    k_sample: int = 8
    instance_loss_weight: float = 0.0
    subtyping: bool = False

    def problems(self, has_classes: bool) -> list[tuple[str, str]]:
        """``(key, what is wrong)`` for values out of range (keys relative to the block)."""
        found = [("k_sample", f"must be >= 2, got {self.k_sample}")] if self.k_sample < 2 else []
        if not 0 <= self.instance_loss_weight < 1:
            found.append(("instance_loss_weight", f"must be in [0, 1), got {self.instance_loss_weight}"))
        elif self.instance_loss_weight > 0 and not has_classes:
            found.append(("instance_loss_weight", "> 0 needs class labels (classification); set it to 0 for this task"))
        return found


@dataclass
class DsMilOptions:
    """DS-MIL's form (``model.dsmil``; the builder's keywords; see :class:`~source.models.mil.DSMIL`).

    Attributes:
        instance_embedding: False, the reference form of the authors' code: both streams on the instances as they
            come, the bag stream's logits, and the max-instance stream's loss added in training (classification).
            True, this project's earlier form: Linear + ReLU + dropout in front of both streams, the mean of the two
            streams as logits, trained on the task loss of that mean.
    """

    instance_embedding: bool = False

    def problems(self, has_classes: bool) -> list[tuple[str, str]]:
        """``(key, what is wrong)``: none (both forms build for every task)."""
        return []


@dataclass(frozen=True)
class AggregatorSpec:
    """One registered slide model.

    Attributes:
        name: the name ``model.aggregator`` takes.
        builder: ``module:function`` (or a class) called with ``(in_dim, num_outputs, hidden=, dropout=, ...)``;
            ``hipt`` is built by :func:`source.models.factory.build_slide_model` itself.
        attention: whether it gives one attention score per instance (drawn by the slide-level heatmaps).
        description: one line for listings and errors.
        fixed: fixed keyword arguments of the builder.
        options: the dataclass of the options users set (plain, no torch): the config block ``model.<options_key>``,
            passed to the builder as keywords. Aggregators sharing a block share its dataclass.
        options_key: the name of that block under ``model``.
    """

    name: str
    builder: str
    attention: bool
    description: str
    fixed: tuple[tuple[str, Any], ...] = ()
    options: Optional[type] = None
    options_key: Optional[str] = None


AGGREGATORS: dict[str, AggregatorSpec] = {}


def register_aggregator(spec: AggregatorSpec) -> AggregatorSpec:
    """Add ``spec`` to the registry (a name can be registered once)."""
    if spec.name in AGGREGATORS:
        raise ValueError(f"aggregator '{spec.name}' is already registered")
    AGGREGATORS[spec.name] = spec
    return spec


HIPT_AGGREGATOR = "hipt"
SLIDE_HEADS = 3
"""Heads of HIPT's slide transformer: the hipt aggregator takes region widths that are multiples of this."""
for _spec in (
    AggregatorSpec(
        HIPT_AGGREGATOR,
        "source.models.factory:build_slide_model",
        True,
        "HIPT's slide transformer with attention pooling (GlobalHIPT; LocalGlobalHIPT at level local)",
    ),
    AggregatorSpec("abmil", "source.models.mil:ABMIL", True, "gated attention MIL (Ilse et al., 2018)"),
    AggregatorSpec(
        "clam_sb",
        "source.models.clam:CLAM",
        True,
        "CLAM, one attention branch (Lu et al., 2021)",
        (("multi_branch", False),),
        ClamOptions,
        "clam",
    ),
    AggregatorSpec(
        "clam_mb",
        "source.models.clam:CLAM",
        True,
        "CLAM, one attention branch per output",
        (("multi_branch", True),),
        ClamOptions,
        "clam",
    ),
    AggregatorSpec("transmil", "source.models.transmil:TransMIL", False, "TransMIL: Nystrom attention + PPEG"),
    AggregatorSpec(
        "dsmil", "source.models.mil:DSMIL", True, "dual-stream MIL (Li et al., 2021)", (), DsMilOptions, "dsmil"
    ),
    AggregatorSpec("mean", "source.models.mil:PoolingMIL", False, "mean of embedded instances", (("reduce", "mean"),)),
    AggregatorSpec("max", "source.models.mil:PoolingMIL", False, "max of embedded instances", (("reduce", "max"),)),
):
    register_aggregator(_spec)


def aggregator_spec(name: str) -> AggregatorSpec:
    """The entry of ``name``.

    Raises:
        ValueError: an unknown name; the message lists the registered ones.
    """
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator '{name}'; choose one of {list(AGGREGATORS)}")
    return AGGREGATORS[name]


def option_blocks() -> dict[str, type]:
    """``{options_key: options dataclass}`` of every registered aggregator with options, in registry order (the
    ``model.<key>`` blocks of the training schema)."""
    blocks: dict[str, type] = {}
    for spec in AGGREGATORS.values():
        if spec.options_key is not None and spec.options is not None:
            blocks.setdefault(spec.options_key, spec.options)
    return blocks
