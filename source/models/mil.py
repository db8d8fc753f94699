"""Flat multiple-instance-learning slide models: ABMIL, DSMIL, mean and max pooling.

Every model reads one bag of instance features ``(N, D)`` (regions ``(M, 192)``, or a flat bag of patches
``(M * n * n, D)``) and returns logits ``(C,)``; ``forward_with_attention`` (of
:class:`~source.models.slide_model.SlideModel`) also returns one attention score per instance ``(N,)`` where the model
has them, else None.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from source.models.aggregators import GatedAttentionPooling, masked_softmax
from source.models.slide_model import SlideModel


def instance_embedding(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The first layer every MIL baseline puts on its instances: Linear -> ReLU -> Dropout."""
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
        self.embed = instance_embedding(in_dim, hidden, dropout)
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
        self.embed = instance_embedding(in_dim, hidden, dropout)
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
    """Dual-stream MIL (Li et al., 2021): an instance classifier finds each output's critical instance; attention of
    every instance to it (cosine-free dot product of learned queries, softmax over the bag) pools the bag, a 1-D
    convolution over the pooled vectors scores it, and the logits are the mean of the max-instance and bag scores.

    Attention ``(N,)`` is that of the predicted output (argmax of the logits).
    """

    masked_forward = True

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.embed = instance_embedding(in_dim, hidden, dropout)
        self.instance_classifier = nn.Linear(hidden, num_outputs)
        self.query = nn.Sequential(
            nn.Linear(hidden, hidden // 2), nn.ReLU(), nn.Linear(hidden // 2, hidden // 2), nn.Tanh()
        )
        self.value = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden))
        self.bag_classifier = nn.Conv1d(num_outputs, num_outputs, kernel_size=hidden)

    def scores(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Instance scores ``(N, C)``, bag scores ``(C,)`` and attention ``(N, C)``."""
        embedded = self.embed(bag)
        instance_scores = self.instance_classifier(embedded)
        queries = self.query(embedded)
        critical = queries[instance_scores.argmax(dim=0)]  # (C, Dq): the top-scoring instance of each output
        attention = torch.softmax(queries @ critical.T / math.sqrt(queries.shape[1]), dim=0)
        pooled = attention.T @ self.value(embedded)  # (C, hidden)
        bag_scores = self.bag_classifier(pooled.unsqueeze(0)).flatten()
        return instance_scores, bag_scores, attention

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        instance_scores, bag_scores, attention = self.scores(bag)
        logits = 0.5 * (instance_scores.max(dim=0).values + bag_scores)
        return logits, attention[:, int(logits.argmax())]

    def forward_masked(self, bags: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(bags)  # (B, N, H)
        mask = keep.unsqueeze(-1)
        instance_scores = self.instance_classifier(embedded).masked_fill(~mask, float("-inf"))  # (B, N, C)
        queries = self.query(embedded)
        critical = torch.gather(
            queries, 1, instance_scores.argmax(dim=1).unsqueeze(-1).expand(-1, -1, queries.shape[-1])
        )  # (B, C, Dq)
        similarity = queries @ critical.transpose(1, 2) / math.sqrt(queries.shape[-1])  # (B, N, C)
        attention = masked_softmax(similarity, mask.expand_as(similarity), dim=1)
        pooled = attention.transpose(1, 2) @ self.value(embedded)  # (B, C, H)
        bag_scores = self.bag_classifier(pooled).squeeze(-1)
        return 0.5 * (instance_scores.max(dim=1).values + bag_scores)
