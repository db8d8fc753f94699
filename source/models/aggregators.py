"""Slide-level aggregation of region features: positional encoding, transformer, gated attention pooling.

One bag (a slide, or a patient's regions) at a time: region features ``(M, D)`` -> slide embedding ``(D,)``
plus attention weights over the M regions.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from source.models.slide_registry import SLIDE_HEADS


class GatedAttentionPooling(nn.Module):
    """Gated attention-MIL pooling: ``a = w^T (tanh(V h) * sigmoid(U h))``, softmax over the bag.

    Args:
        dim: input width D.
        hidden: width of the two gating branches.
        dropout: dropout inside both branches.
    """

    def __init__(self, dim: int = 192, hidden: int = 192, dropout: float = 0.0) -> None:
        super().__init__()
        self.tanh_branch = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.sigmoid_branch = nn.Sequential(nn.Linear(dim, hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.score = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: features ``(M, D)``. Returns the pooled ``(D,)`` and the softmaxed weights ``(M,)``."""
        scores = self.score(self.tanh_branch(features) * self.sigmoid_branch(features)).squeeze(-1)
        weights = torch.softmax(scores, dim=0)
        return weights @ features, weights

    def forward_masked(self, features: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool each of B bags over its kept items only (the same as pooling the bag without the others).

        Args:
            features: ``(B, M, D)``; keep: ``(B, M)`` bool.

        Returns:
            pooled ``(B, D)`` and weights ``(B, M)`` (0 where not kept).
        """
        scores = self.score(self.tanh_branch(features) * self.sigmoid_branch(features)).squeeze(-1)
        weights = masked_softmax(scores, keep)
        return torch.einsum("bm,bmd->bd", weights, features), weights


def masked_softmax(scores: torch.Tensor, keep: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over the kept entries of ``scores`` along ``dim`` (removed entries get weight 0)."""
    return torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=dim)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine encoding of the position of each region in the bag (``max_len`` positions)."""

    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        frequencies = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * frequencies)
        table[:, 1::2] = torch.cos(position * frequencies[: dim // 2])
        self.register_buffer("table", table, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: ``(M, D)`` with M <= max_len. Returns ``(M, D)``."""
        if features.shape[0] > self.table.shape[0]:
            raise ValueError(
                f"bag of {features.shape[0]} regions exceeds max_len={self.table.shape[0]}; raise "
                "model.slide_pos_embed.max_len"
            )
        return features + self.table[: features.shape[0]]


class LearnedPositionalEncoding(nn.Module):
    """A learned vector per position (``max_len`` positions)."""

    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        self.table = nn.Embedding(max_len, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: ``(M, D)`` with M <= max_len. Returns ``(M, D)``."""
        if features.shape[0] > self.table.num_embeddings:
            raise ValueError(
                f"bag of {features.shape[0]} regions exceeds max_len={self.table.num_embeddings}; raise "
                "model.slide_pos_embed.max_len"
            )
        return features + self.table.weight[: features.shape[0]]


def build_positional_encoding(kind: Optional[str], dim: int, max_len: int) -> nn.Module:
    """``None`` (identity), ``sinusoidal`` or ``learned``."""
    if kind is None:
        return nn.Identity()
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(dim, max_len)
    if kind == "learned":
        return LearnedPositionalEncoding(dim, max_len)
    raise ValueError(f"unknown positional encoding '{kind}'; use null, sinusoidal or learned")


class SlideAggregator(nn.Module):
    """HIPT's slide aggregator: phi -> (positions) -> 2-layer transformer -> gated attention pooling -> rho.

    Args:
        dim: region feature width (192).
        num_layers: transformer layers (2).
        num_heads: transformer heads (:data:`~source.models.slide_registry.SLIDE_HEADS`, 3).
        dropout: dropout everywhere.
        pos_embed: None, ``sinusoidal`` or ``learned`` encoding of the region order.
        max_len: positions the encoding covers.
    """

    def __init__(
        self,
        dim: int = 192,
        num_layers: int = 2,
        num_heads: int = SLIDE_HEADS,
        dropout: float = 0.25,
        pos_embed: Optional[str] = None,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.positions = build_positional_encoding(pos_embed, dim, max_len)
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim_feedforward=dim, dropout=dropout, activation="relu", batch_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.pool = GatedAttentionPooling(dim, dim, dropout)
        self.rho = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: regions ``(M, D)``. Returns the slide embedding ``(D,)`` and attention ``(M,)``."""
        tokens = self.positions(self.phi(regions))
        tokens = self.transformer(tokens.unsqueeze(0)).squeeze(0)
        pooled, attention = self.pool(tokens)
        return self.rho(pooled), attention

    @property
    def masking_is_exact(self) -> bool:
        """Masking a region equals removing it only without a positional encoding (removal shifts the positions)."""
        return isinstance(self.positions, nn.Identity)

    def forward_masked(self, regions: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """B bags ``(B, M, D)`` each aggregated over its kept regions ``keep`` ``(B, M)``: embeddings ``(B, D)`` and
        attention ``(B, M)``; equal to :meth:`forward` on each bag without the removed regions (no positional
        encoding: see :attr:`masking_is_exact`)."""
        tokens = self.positions(self.phi(regions))
        tokens = self.transformer(tokens, src_key_padding_mask=~keep)
        pooled, attention = self.pool.forward_masked(tokens, keep)
        return self.rho(pooled), attention
