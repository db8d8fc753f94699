"""The one registry of slide-level models (aggregators): every name ``model.aggregator`` accepts.

Each entry names its class or builder as ``module:function`` so that names are known without importing torch
(config checks run before any model is built). Every model reads one bag and returns logits ``(C,)``;
``forward_with_attention`` also returns one attention score per instance where ``attention`` is True.

Adding a slide model is one entry here (and its class); configs, training, inference, heatmaps and the
registry test pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AggregatorSpec:
    """One registered slide model.

    Attributes:
        name: the name ``model.aggregator`` takes.
        builder: ``module:function`` (or a class) called with ``(in_dim, num_outputs, hidden=, dropout=, ...)``;
            ``hipt`` is built by :func:`source.models.factory.build_slide_model` itself.
        attention: whether it gives one attention score per instance (drawn by the slide-level heatmaps).
        description: one line for listings and errors.
        options: fixed keyword arguments of the builder.
        uses_clam_keys: the builder also takes ``k_sample``, ``instance_loss_weight`` and ``subtyping``.
    """

    name: str
    builder: str
    attention: bool
    description: str
    options: tuple[tuple[str, Any], ...] = ()
    uses_clam_keys: bool = False


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
        uses_clam_keys=True,
    ),
    AggregatorSpec(
        "clam_mb",
        "source.models.clam:CLAM",
        True,
        "CLAM, one attention branch per output",
        (("multi_branch", True),),
        uses_clam_keys=True,
    ),
    AggregatorSpec("transmil", "source.models.transmil:TransMIL", False, "TransMIL: Nystrom attention + PPEG"),
    AggregatorSpec("dsmil", "source.models.mil:DSMIL", True, "dual-stream MIL (Li et al., 2021)"),
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
