"""Slide-level HIPT models: GlobalHIPT on region features, LocalGlobalHIPT on patch features, and a
patient-level model that pools several slides (``agg_method: self_att``).

Every model takes one bag and returns logits ``(C,)`` (C = num_classes, or nbins hazards for survival);
``forward_with_attention`` also returns the attention over the bag's items.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from source.models.aggregators import GatedAttentionPooling, SlideAggregator
from source.models.hipt import features_to_grid
from source.models.slide_model import SlideModel
from source.models.vit import VisionTransformer


class GlobalHIPT(SlideModel):
    """Region features ``(M, 192)`` -> slide aggregator -> linear head.

    Args:
        num_outputs: logits per slide.
        dim: region feature width.
        dropout: dropout of the aggregator.
        pos_embed: None, ``sinusoidal`` or ``learned`` encoding of the region order.
        max_len: positions the encoding covers.
    """

    masked_forward = True

    def __init__(
        self,
        num_outputs: int,
        dim: int = 192,
        dropout: float = 0.25,
        pos_embed: Optional[str] = None,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        self.aggregator = SlideAggregator(dim, dropout=dropout, pos_embed=pos_embed, max_len=max_len)
        self.classifier = nn.Linear(dim, num_outputs)

    def region_features(self, bag: torch.Tensor) -> torch.Tensor:
        """The ``(M, 192)`` region features the aggregator reads (identity here)."""
        return bag

    def embed(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slide embedding ``(D,)`` and attention over regions ``(M,)``."""
        return self.aggregator(self.region_features(bag))

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(C,)`` and attention over regions ``(M,)``."""
        embedding, attention = self.embed(bag)
        return self.classifier(embedding), attention

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        """Args: bag ``(M, 192)``. Returns logits ``(C,)``."""
        return self.forward_with_attention(bag)[0]

    @property
    def masking_is_exact(self) -> bool:
        """Whether :meth:`forward_masked` equals removing regions (not with a positional encoding)."""
        return self.aggregator.masking_is_exact

    def forward_masked(self, bags: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` of B copies of a bag ``(B, M, ...)``, each without the regions where ``keep`` ``(B, M)`` is
        False."""
        if bags.stride(0) == 0:  # B copies of one bag (an expanded view): encode its regions once
            regions = self.region_features(bags[0]).unsqueeze(0).expand(len(bags), -1, -1)
        else:
            regions = self.region_features(bags.reshape(-1, *bags.shape[2:])).reshape(*bags.shape[:2], -1)
        embedding, _ = self.aggregator.forward_masked(regions, keep)
        return self.classifier(embedding)


class LocalGlobalHIPT(GlobalHIPT):
    """Patch features ``(M, n*n, 384)`` -> ViT_region -> ``(M, 192)`` -> slide aggregator -> head.

    Args:
        vit_region: the ViT4K-XS (loaded by the caller, e.g. from ``vit4k_xs_dino.pth``).
        freeze_vit_region: keep ViT_region's weights fixed (and in eval mode).
        freeze_pos_embed: keep ViT_region's pos-embed fixed even when the rest is fine-tuned.
    """

    def __init__(
        self,
        vit_region: VisionTransformer,
        num_outputs: int,
        dropout: float = 0.25,
        pos_embed: Optional[str] = None,
        max_len: int = 512,
        freeze_vit_region: bool = True,
        freeze_pos_embed: bool = True,
    ) -> None:
        super().__init__(num_outputs, vit_region.embed_dim, dropout, pos_embed, max_len)
        self.vit_region = vit_region
        self.freeze_vit_region = freeze_vit_region
        for parameter in vit_region.parameters():
            parameter.requires_grad = not freeze_vit_region
        if freeze_pos_embed:
            vit_region.pos_embed.requires_grad = False

    def train(self, mode: bool = True) -> "LocalGlobalHIPT":
        super().train(mode)
        if self.freeze_vit_region:
            self.vit_region.eval()
        return self

    def region_features(self, bag: torch.Tensor) -> torch.Tensor:
        """Args: bag ``(M, n*n, 384)`` patch features, or ``(M, 192)`` already encoded by this (frozen)
        ViT_region. Returns ``(M, 192)`` (without an autograd graph when frozen)."""
        if bag.dim() == 2:
            return bag
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_vit_region):
            return self.vit_region(features_to_grid(bag))


class PatientHIPT(SlideModel):
    """Several slides of one patient: each slide embedded by ``slide_model``, then gated attention over slides.

    Args:
        slide_model: a GlobalHIPT or LocalGlobalHIPT whose aggregator embeds each slide (its head is unused).
        num_outputs: logits per patient.
        dropout: dropout of the slide-level pooling.
    """

    def __init__(self, slide_model: GlobalHIPT, num_outputs: int, dropout: float = 0.25) -> None:
        super().__init__()
        self.slide_model = slide_model
        dim = slide_model.classifier.in_features
        self.pool = GatedAttentionPooling(dim, dim, dropout)
        self.classifier = nn.Linear(dim, num_outputs)

    def forward_with_attention(self, bag: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: bag, one ``(M_s, ...)`` tensor per slide. Returns logits ``(C,)`` and attention over slides
        ``(S,)``."""
        slides = torch.stack([self.slide_model.embed(slide)[0] for slide in bag])
        pooled, attention = self.pool(slides)
        return self.classifier(pooled), attention

    def forward(self, bag: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``(C,)``."""
        return self.forward_with_attention(bag)[0]
