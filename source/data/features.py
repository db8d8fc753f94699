"""Slide feature files written by extract_features.py, checked once and served as bags for training.

``features_dir/<slide_id>.pt`` holds ``(M, 192)`` (level global) or ``(M, n*n, 384)`` (level local);
``<slide_id>.h5`` of CLAM / TRIDENT (``features`` ``(N, D)``) is read as N instances of a level-global bag.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from source.data.h5_features import read_h5_features
from source.errors import UserError
from source.io import safe_join

logger = logging.getLogger(__name__)


OUTLIER_RATIO = 1e4
"""A file whose largest value is this many times the cohort's median feature scale is refused."""


class FeatureFileError(UserError, ValueError):
    """A feature file does not fit the chosen level, or holds NaN / inf."""


def check_features(tensor: torch.Tensor, level: str, dim: int, path: Path) -> None:
    """Raise :class:`FeatureFileError` unless ``tensor`` is ``(M, dim)`` (global) or ``(M, n*n, dim)`` (local),
    finite."""
    if not isinstance(tensor, torch.Tensor):
        raise FeatureFileError(f"{path} holds a {type(tensor).__name__}, not a tensor")
    shape = tuple(tensor.shape)
    if level == "global":
        layout = tensor.dim() == 2 and shape[0] > 0
        expected, key = f"(M, {dim})", "model.embed_dim_region"
    else:
        layout = tensor.dim() == 3 and shape[0] > 0 and math.isqrt(shape[1]) ** 2 == shape[1]
        expected, key = f"(M, n*n, {dim})", "model.embed_dim_patch"
    if not layout or shape[-1] != dim:
        # the level's layout with another width: most likely another encoder's features, read at their own width
        fix = f", or if these are another encoder's features set {key}={shape[-1]}" if layout else ""
        raise FeatureFileError(
            f"{path} has shape {shape} but level {level} needs {expected}; check level and features_dir{fix}"
        )
    if not torch.isfinite(tensor).all():
        raise FeatureFileError(f"{path} holds NaN or inf values; extract this slide again")


class FeatureBank:
    """Feature files of one ``features_dir``: validated, optionally kept in memory.

    Args:
        features_dir: the ``features/slide/`` folder of an extraction run.
        level: ``global`` or ``local``.
        dim: feature width (192 global, 384 local).
        cache: keep tensors in memory after the first read (sensible for global features).
        tissue: level local: append each patch's tissue fraction (extraction's ``features/tissue/<slide_id>.pt``,
            beside ``features_dir``) as a last channel: ``(M, n*n, dim + 1)`` (``mask_background``).
    """

    def __init__(
        self, features_dir: str | Path, level: str, dim: int, cache: bool = True, tissue: bool = False
    ) -> None:
        self.features_dir = Path(features_dir)
        self.level = level
        self.dim = dim
        self.cache = cache
        self.tissue = tissue
        self._memory: dict[str, torch.Tensor] = {}
        self.sizes: dict[str, int] = {}
        self.scales: dict[str, tuple[float, float]] = {}
        """Per validated slide: the mean and the largest absolute value of its features."""

    def path(self, slide_id: str) -> Path:
        """``features_dir/<slide_id>.pt``, or ``<slide_id>.h5`` (CLAM / TRIDENT layout) when only that one exists
        (slide ids cannot leave the folder)."""
        path = safe_join(self.features_dir, slide_id, ".pt")
        h5 = path.with_suffix(".h5")
        return h5 if not path.is_file() and h5.is_file() else path

    def load(self, slide_id: str) -> torch.Tensor:
        """The slide's float32 features."""
        if slide_id in self._memory:
            return self._memory[slide_id]
        path = self.path(slide_id)
        try:
            if path.suffix == ".h5":
                tensor = read_h5_features(path)
            else:
                tensor = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
            raise FeatureFileError(
                f"{path} cannot be read ({str(error).splitlines()[0]}): extract this slide again"
            ) from error
        if not isinstance(tensor, torch.Tensor):
            raise FeatureFileError(f"{path} holds a {type(tensor).__name__}, not a tensor")
        tensor = tensor.float()
        if self.tissue:
            check_features(tensor, self.level, self.dim, path)
            tensor = torch.cat([tensor, self.tissue_of(slide_id, tensor.shape[:2]).unsqueeze(-1)], dim=-1)
        if self.cache:
            self._memory[slide_id] = tensor
        return tensor

    def tissue_path(self, slide_id: str) -> Path:
        """``<features_dir>/../tissue/<slide_id>.pt``, where extraction writes the tissue fractions."""
        return safe_join(self.features_dir.parent / "tissue", slide_id, ".pt")

    def tissue_of(self, slide_id: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The slide's ``(M, n*n)`` tissue fractions, checked against its features' ``shape[:2]``.

        Raises:
            FeatureFileError: no tissue file, or one of another shape.
        """
        path = self.tissue_path(slide_id)
        if not path.is_file():
            raise FeatureFileError(
                f"{path} is missing: mask_background needs the tissue fraction of every patch, which "
                "extract_features.py writes to features/tissue/ (extract again with this version, or set "
                "model.mask_background=false)"
            )
        tissue = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(tissue, torch.Tensor) or tuple(tissue.shape) != tuple(shape):
            found = tuple(tissue.shape) if isinstance(tissue, torch.Tensor) else type(tissue).__name__
            raise FeatureFileError(f"{path} has shape {found}, but its features need {tuple(shape)}")
        return tissue.float()

    def validate(self, slide_ids: Sequence[str]) -> list[str]:
        """Check every present file (shape, finiteness); return the slide ids whose file is missing.

        Raises:
            FeatureFileError: a file with the wrong shape or non-finite values.
        """
        missing = []
        for slide_id in slide_ids:
            path = self.path(slide_id)
            if not path.is_file():
                missing.append(slide_id)
                continue
            tensor = self.load(slide_id)
            tensor = tensor[..., :-1] if self.tissue else tensor  # the features without the tissue channel
            check_features(tensor, self.level, self.dim, path)
            self.sizes[slide_id] = tensor.shape[0]
            magnitude = tensor.abs()
            self.scales[slide_id] = (float(magnitude.mean()), float(magnitude.max()))
        return missing

    def check_scales(self, ratio: float = OUTLIER_RATIO) -> None:
        """Refuse feature files whose largest value is ``ratio`` times the cohort's median feature scale (finite, but
        of another model or corrupted: a float32 model overflows on them), naming the files.

        Raises:
            FeatureFileError: the files, their largest value and the cohort's median scale.
        """
        if not self.scales:
            return
        median = float(np.median([mean for mean, _ in self.scales.values()]))
        outliers = sorted(s for s, (_, peak) in self.scales.items() if peak > ratio * max(median, 1e-12))
        if outliers:
            listed = ", ".join(f"{self.path(s)} (max |value| {self.scales[s][1]:.3g})" for s in outliers[:5])
            more = f" and {len(outliers) - 5} more" if len(outliers) > 5 else ""
            raise FeatureFileError(
                f"feature values far outside the cohort's scale (median mean |value| {median:.3g}, limit {ratio:g} "
                f"times that): {listed}{more}. Extract these slides again with the cohort's encoder"
            )


class EncodedBank(FeatureBank):
    """Features of another bank passed once through a fixed encoder, then kept in memory.

    Used for level-local training with a frozen ViT_region: each slide's ``(M, n*n, 384)`` is encoded
    to ``(M, 192)`` once instead of every epoch (the encoder is in eval mode, so the result is the same).

    Args:
        source: the bank of patch features.
        encoder: maps ``(M, n*n, 384)`` to ``(M, D)`` (e.g. ``LocalGlobalHIPT.region_features``).
        device: where the encoder runs.
    """

    def __init__(self, source: FeatureBank, encoder, device: torch.device) -> None:
        super().__init__(source.features_dir, source.level, source.dim, cache=True)
        self.source = source
        self.encoder = encoder
        self.device = device

    def load(self, slide_id: str) -> torch.Tensor:
        if slide_id not in self._memory:
            with torch.no_grad():  # not inference_mode: the result feeds a graph that trains the aggregator
                self._memory[slide_id] = self.encoder(self.source.load(slide_id).to(self.device)).float().cpu()
        return self._memory[slide_id]


@dataclass
class Bag:
    """One training item: the features, its targets and its row in the split table."""

    features: torch.Tensor | list[torch.Tensor]
    targets: dict[str, torch.Tensor]
    index: int


class BagDataset(Dataset):
    """Items of a split: a slide (``mode='slide'``), all regions of a patient's slides (``'concat'``),
    or the list of a patient's slides (``'slides'``).

    Args:
        slide_ids: the slide ids of each item.
        targets: per-item target arrays, e.g. ``{'label': (N,)}`` or ``{'bin': (N,), 'censorship': (N,)}``.
        bank: where features come from.
        mode: ``slide``, ``concat`` or ``slides``.
        max_regions: in ``concat`` mode, keep at most this many regions (a seeded random subset, in order).
        seed: seed of that subset (combined with the epoch and item index).
    """

    def __init__(
        self,
        slide_ids: Sequence[Sequence[str]],
        targets: Mapping[str, np.ndarray],
        bank: FeatureBank,
        mode: str = "slide",
        max_regions: Optional[int] = None,
        seed: int = 0,
    ) -> None:
        if mode not in {"slide", "concat", "slides"}:
            raise ValueError(f"unknown bag mode '{mode}'")
        self.slide_ids = [list(ids) for ids in slide_ids]
        self.targets = {name: np.asarray(values) for name, values in targets.items()}
        self.bank = bank
        self.mode = mode
        self.max_regions = max_regions
        self.seed = seed
        self.epoch = 0
        self.flatten = False
        """Serve a level-local slide ``(M, n*n, D)`` as a flat bag of patches ``(M * n * n, D)`` (MIL aggregators)."""
        self.max_instances: Optional[int] = None
        """At most this many instances per bag (a seeded subset, new each epoch; training only)."""

    def __len__(self) -> int:
        return len(self.slide_ids)

    def largest_bag(self) -> int:
        """Most regions any item feeds the aggregator at once (from the sizes :meth:`FeatureBank.validate` recorded)."""
        sizes = [[self.bank.sizes.get(s, 0) for s in ids] for ids in self.slide_ids]
        if self.mode == "concat":
            return max((min(sum(item), self.max_regions or sum(item)) for item in sizes), default=0)
        return max((max(item) for item in sizes), default=0)

    def __getitem__(self, index: int) -> Bag:
        slides = [self.bank.load(slide_id) for slide_id in self.slide_ids[index]]
        if self.mode == "slide":
            features: torch.Tensor | list[torch.Tensor] = slides[0]
        elif self.mode == "slides":
            features = slides
        else:
            features = self._subset(torch.cat(slides), self.max_regions, index)
        if self.flatten and isinstance(features, torch.Tensor) and features.dim() == 3:
            features = features.reshape(-1, features.shape[-1])
        if isinstance(features, torch.Tensor):
            features = self._subset(features, self.max_instances, index)
        targets = {name: torch.as_tensor(values[index]) for name, values in self.targets.items()}
        return Bag(features, targets, index)

    def _subset(self, features: torch.Tensor, limit: Optional[int], index: int) -> torch.Tensor:
        """At most ``limit`` rows of ``features``, a random subset seeded by (seed, epoch, item), in their order."""
        if limit is None or len(features) <= limit:
            return features
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + index)
        keep = torch.randperm(len(features), generator=generator)[:limit].sort().values
        return features[keep]


@dataclass
class Split:
    """One split's items.

    Attributes:
        name: ``train``, ``tune``, ``test`` or a user's name for an inference csv.
        dataset: the bags.
        frame: one row per item (input columns + target columns), aligned with ``dataset``.
        sample_weights: per-item weights for class-balanced sampling (training only).
    """

    name: str
    dataset: BagDataset
    frame: pd.DataFrame
    sample_weights: Optional[np.ndarray] = None


def shape_bags(splits: Mapping[str, Split], flatten: bool, max_instances: Optional[int] = None) -> None:
    """Serve every split's level-local slides as flat patch bags (``flatten``); cap the training split's bags at
    ``max_instances`` (evaluation always sees whole bags)."""
    for name, split in splits.items():
        split.dataset.flatten = flatten
        split.dataset.max_instances = max_instances if name == "train" else None
