"""The bag a trained slide model reads, in one place: the level of the features it reads and their width, each
patch's tissue fraction as a last channel (level-local HIPT masking background), and flat patch bags (a MIL
aggregator at level local). Training, inference, heatmaps and contributions build it from the model's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from source.data.features import FeatureBank
from source.models.settings import SlideModelSettings


@dataclass(frozen=True)
class SlideBag:
    """How one slide model reads a slide.

    Attributes:
        level: ``global`` region features ``(M, dim)`` or ``local`` grids ``(M, n*n, dim)``.
        dim: the feature width of that level.
        tissue_channel: level local: each patch's tissue fraction is appended as a last channel ``(M, n*n, dim + 1)``.
        flat: the grids are read as one flat bag of patches ``(M * n*n, dim)`` (a MIL aggregator at level local).
    """

    level: str
    dim: int
    tissue_channel: bool
    flat: bool

    @classmethod
    def of(cls, settings: SlideModelSettings) -> "SlideBag":
        """The bag of the slide model ``settings`` describe."""
        level = settings.level
        dim = settings.region_dim if level == "global" else settings.patch_dim
        return cls(level, dim, settings.tissue_channel and level == "local", settings.patch_bags)

    def bank(self, features_dir: str | Path, cache: Optional[bool] = None) -> FeatureBank:
        """The feature files of ``features_dir`` at this bag's level and width, with the tissue channel when the model
        reads one; global ones are kept in memory unless ``cache`` says otherwise."""
        cache = self.level == "global" if cache is None else cache
        return FeatureBank(features_dir, self.level, self.dim, cache=cache, tissue=self.tissue_channel)

    def from_encoder(
        self,
        local: torch.Tensor,
        global_: torch.Tensor,
        tissue: Optional[torch.Tensor] = None,
        device: Optional[torch.device] = None,
    ) -> torch.Tensor:
        """The bag of a slide encoded just now (heatmaps).

        Args:
            local: ``(M, n*n, D_patch)`` patch features.
            global_: ``(M, D_region)`` region features.
            tissue: ``(M, n*n)`` tissue fraction of each patch (needed with :attr:`tissue_channel`).
            device: where the bag goes (None: where its features are).

        Raises:
            ValueError: the model reads a tissue channel and ``tissue`` is None.
        """
        bag = global_ if self.level == "global" else local
        bag = bag if device is None else bag.to(device)
        if self.tissue_channel:
            if tissue is None:
                raise ValueError("this slide model masks background patches: give the tissue fraction of every patch")
            bag = torch.cat([bag, tissue.to(device=bag.device, dtype=bag.dtype).unsqueeze(-1)], dim=-1)
        return self.flatten(bag)[0]

    def flatten(self, features: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """A slide's features as the model reads them, and for a flat bag the region of each instance.

        Args:
            features: ``(M, ...)`` as :meth:`bank` loads them.

        Returns:
            ``(M * n*n, D)`` and ``(M * n*n,)`` region indices for a flat bag; else ``features`` and None.
        """
        if not self.flat:
            return features, None
        regions, patches = features.shape[:2]
        return features.reshape(-1, features.shape[-1]), torch.arange(regions).repeat_interleave(patches)
