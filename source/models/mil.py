"""Flat multiple-instance-learning slide models: ABMIL, DSMIL, mean and max pooling.

Every model reads one bag of instance features ``(N, D)`` (regions ``(M, 192)``, or a flat bag of patches
``(M * n * n, D)``) and returns logits ``(C,)``; ``forward_with_attention`` (of
:class:`~source.models.slide_model.SlideModel`) also returns one attention score per instance ``(N,)`` where the model
has them, else None.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from source.models.aggregators import GatedAttentionPooling, masked_softmax
from source.models.slide_model import SlideModel


def embedding_layer(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The instance embedding of the MIL baselines (all but the reference form of DS-MIL): Linear(in_dim, hidden) ->
    ReLU -> Dropout, ``(..., in_dim)`` -> ``(..., hidden)``."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))


class ABMIL(SlideModel):
    """Gated attention MIL (Ilse et al., 2018): ``a = softmax(w^T (tanh(V h) * sigmoid(U h)))``, ``z = sum a h``.

    Args:
        in_dim: instance width D.
        num_outputs: logits C.
        hidden: width of the instance embedding h (the attention branches use ``hidden // 2``).
        dropout: after the embedding and inside the attention branches.
    """

    masked_forward = True

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.embed = embedding_layer(in_dim, hidden, dropout)
        self.pool = GatedAttentionPooling(hidden, max(hidden // 2, 1), dropout)
        self.classifier = nn.Linear(hidden, num_outputs)

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        pooled, attention = self.pool(self.embed(bag))
        return self.classifier(pooled), attention

    def forward_masked(self, bags: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool.forward_masked(self.embed(bags), keep)[0])


class PoolingMIL(SlideModel):
    """Instance embedding, then the mean or the maximum over the bag, then a linear head (no attention).

    Args:
        reduce: ``mean`` or ``max``.
    """

    masked_forward = True

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 256, dropout: float = 0.25, reduce="mean") -> None:
        super().__init__()
        if reduce not in {"mean", "max"}:
            raise ValueError(f"reduce must be mean or max, got '{reduce}'")
        self.reduce = reduce
        self.embed = embedding_layer(in_dim, hidden, dropout)
        self.classifier = nn.Linear(hidden, num_outputs)

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        embedded = self.embed(bag)
        pooled = embedded.mean(0) if self.reduce == "mean" else embedded.max(0).values
        return self.classifier(pooled), None

    def forward_masked(self, bags: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(bags)
        mask = keep.unsqueeze(-1)
        if self.reduce == "mean":
            pooled = (embedded * mask).sum(1) / mask.sum(1)
        else:
            pooled = embedded.masked_fill(~mask, float("-inf")).max(1).values
        return self.classifier(pooled)


class DSMIL(SlideModel):
    """Dual-stream MIL (Li et al., 2021). The max-instance stream scores every instance with a linear classifier and
    keeps each output's top score; the bag stream attends from every instance to each output's critical (top-scoring)
    instance (dot product of learned queries over sqrt of their width, softmax over the bag), pools the values with
    that attention and scores the pooled vectors with a 1-D convolution over their width.

    Two forms, by ``instance_embedding``:

    - False (the reference, as the authors' code, github binli123/dsmil-wsi): both streams read the instances as
      they come; the values are the instances themselves; the logits are the bag stream's; training adds the
      max-instance stream's cross-entropy as an auxiliary loss of weight 0.5 (with a class label only), so a
      classification step minimises ``0.5 * CE(bag scores) + 0.5 * CE(max-instance scores)``.
    - True (this project's earlier form): an instance embedding (Linear(D, hidden) -> ReLU -> Dropout) in front of
      both streams, values through Dropout -> Linear(hidden, hidden), logits the mean of the two streams, trained on
      the task loss of that mean alone.

    Attention ``(N,)`` is that of the predicted output (argmax of the logits).

    Args:
        in_dim: instance width D.
        num_outputs: logits C.
        hidden: the embedding width (True); the queries are ``hidden // 2`` wide in both forms (128 at 256, the
            reference's width).
        dropout: after the embedding and before the value layer (True; the reference form has no dropout).
        instance_embedding: which form.
    """

    masked_forward = True
    auxiliary_loss = True
    max_stream_weight = 0.5
    """The weight w of the max-instance stream's loss in ``(1 - w) * bag loss + w * max-instance loss``."""

    def __init__(
        self, in_dim: int, num_outputs: int, hidden: int = 256, dropout: float = 0.25, instance_embedding: bool = False
    ) -> None:
        super().__init__()
        self.averages_streams = instance_embedding
        width = hidden if instance_embedding else in_dim
        queries = hidden // 2
        self.embed = embedding_layer(in_dim, hidden, dropout) if instance_embedding else nn.Identity()
        self.instance_classifier = nn.Linear(width, num_outputs)
        self.query = nn.Sequential(nn.Linear(width, queries), nn.ReLU(), nn.Linear(queries, queries), nn.Tanh())
        self.value = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(width, width)) if instance_embedding else nn.Identity()
        )
        self.bag_classifier = nn.Conv1d(num_outputs, num_outputs, kernel_size=width)

    def scores(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Instance scores ``(N, C)``, bag scores ``(C,)`` and attention ``(N, C)`` of a bag ``(N, D)``."""
        instances = self.embed(bag)
        instance_scores = self.instance_classifier(instances)
        queries = self.query(instances)
        critical = queries[instance_scores.argmax(dim=0)]  # (C, Dq): the top-scoring instance of each output
        attention = torch.softmax(queries @ critical.T / math.sqrt(queries.shape[1]), dim=0)
        pooled = attention.T @ self.value(instances)  # (C, width)
        bag_scores = self.bag_classifier(pooled.unsqueeze(0)).flatten()
        return instance_scores, bag_scores, attention

    def logits(self, max_scores: torch.Tensor, bag_scores: torch.Tensor) -> torch.Tensor:
        """The bag scores ``(..., C)``, or (``instance_embedding``) their mean with the max-instance scores."""
        return 0.5 * (max_scores + bag_scores) if self.averages_streams else bag_scores

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        instance_scores, bag_scores, attention = self.scores(bag)
        logits = self.logits(instance_scores.max(dim=0).values, bag_scores)
        return logits, attention[:, int(logits.argmax())]

    def forward_train(
        self, bag: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], float]:
        """Logits ``(C,)``, the max-instance stream's cross-entropy against ``targets['label']`` and its weight
        (the reference form with a class label; else None and 0: the task loss of the logits alone)."""
        instance_scores, bag_scores, _ = self.scores(bag)
        max_scores = instance_scores.max(dim=0).values
        logits = self.logits(max_scores, bag_scores)
        if self.averages_streams or "label" not in targets:
            return logits, None, 0.0
        label = targets["label"].long().reshape(1).to(max_scores.device)
        return logits, F.cross_entropy(max_scores.float().unsqueeze(0), label), self.max_stream_weight

    def forward_masked(self, bags: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        instances = self.embed(bags)  # (B, N, width)
        mask = keep.unsqueeze(-1)
        instance_scores = self.instance_classifier(instances).masked_fill(~mask, float("-inf"))  # (B, N, C)
        queries = self.query(instances)
        critical = torch.gather(
            queries, 1, instance_scores.argmax(dim=1).unsqueeze(-1).expand(-1, -1, queries.shape[-1])
        )  # (B, C, Dq)
        similarity = queries @ critical.transpose(1, 2) / math.sqrt(queries.shape[-1])  # (B, N, C)
        attention = masked_softmax(similarity, mask.expand_as(similarity), dim=1)
        pooled = attention.transpose(1, 2) @ self.value(instances)  # (B, C, width)
        bag_scores = self.bag_classifier(pooled).squeeze(-1)
        return self.logits(instance_scores.max(dim=1).values, bag_scores)
