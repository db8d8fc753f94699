"""Pretraining inputs: patch images, region feature tensors and labelled downstream sets, checked up front.

Every sample's augmentation draws from a generator seeded by (seed, epoch, index), so a sample looks the
same whichever rank or worker loads it: one process and N processes see identical global batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from source.data.regions import BadInputError
from source.errors import UserError

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


class PretrainingDataError(UserError, ValueError):
    """A pretraining input is unusable; the message names the file or key."""


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample at one epoch."""
    return (seed * 1_000_003 + epoch * 100_003 + index) % (2**63)


def seeded_share(count: int, pct: Optional[float], seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded ``pct`` share of ``count`` samples (at least one); all when ``pct`` is None or 1."""
    if pct is None or pct >= 1:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=max(1, round(pct * count)), replace=False))


def find_images(
    root: str | Path, pct: Optional[float] = None, seed: int = 0, max_bad_fraction: float = 0.01
) -> list[Path]:
    """Image files under ``root`` (recursive, sorted), a seeded ``pct`` share of them, unreadable ones skipped.

    Raises:
        PretrainingDataError: no folder, no images, or more than ``max_bad_fraction`` unreadable.
    """
    root = Path(root)
    if not root.is_dir():
        raise PretrainingDataError(f"data_dir '{root}' is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise PretrainingDataError(f"data_dir '{root}' holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    files = [files[i] for i in seeded_share(len(files), pct, seed)]
    good, bad, sizes = [], [], []
    for path in files:
        try:
            with Image.open(path) as image:
                sizes.append(min(image.size))
                image.verify()
            good.append(path)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            bad.append(path)
    if bad:
        logger.warning(
            "%d of %d images are unreadable and skipped, e.g. %s", len(bad), len(files), [str(p) for p in bad[:3]]
        )
        if len(bad) > max_bad_fraction * len(files):
            raise PretrainingDataError(
                f"{len(bad)} of {len(files)} images in '{root}' are unreadable (more than "
                f"max_bad_fraction={max_bad_fraction}), e.g. {bad[0]}; fix or remove them"
            )
    if sizes and np.median(sizes) > PATCH_SIDE_WARNING:
        logger.warning(
            "the images of data_dir '%s' are about %d px (median shorter side), far larger than the 256-px patches "
            "the patch stage expects: its crops would see a small part of each image at the wrong scale. Give 256-px "
            "patches (regions cut into patches), or use the region stage for region-level pretraining",
            root,
            int(np.median(sizes)),
        )
    return good


PATCH_SIDE_WARNING = 512
"""Patch-stage images whose shorter side is above this (median) are warned about: likely regions, not patches."""


@dataclass(frozen=True)
class RegionRef:
    """One region of the region stage: a ``(n*n, C)`` file, or row ``row`` of a slide's ``(M, n*n, C)`` file."""

    path: Path
    row: Optional[int] = None


def find_region_tensors(root: str | Path, dim: Optional[int] = None) -> tuple[list[RegionRef], int, int]:
    """The regions of the ``.pt`` files under ``root``, their grid side n and feature width C.

    Files are one region's ``(n*n, dim)`` features (``save_region_features``) or a slide's
    ``(M, n*n, dim)`` (the ``features/slide/`` folder of a level-local extraction): each of its M rows
    is a region, read from the file on demand (memory-mapped), so no per-region file is needed. The width
    C is that of the patch encoder (384 for HIPT's ViT-S/16, 1024 for UNI, ...): ``dim`` when given, else
    the first file's, and the same in every file.

    Raises:
        PretrainingDataError: no folder, no file, a file of another shape, or grids of different sizes.
    """
    root = Path(root)
    if not root.is_dir():
        raise PretrainingDataError(f"data_dir '{root}' is not a folder")
    files = sorted(root.rglob("*.pt"))
    if not files:
        raise PretrainingDataError(
            f"data_dir '{root}' holds no .pt feature file (run extract_features.py --config-name local: its "
            "features/slide/ folder, or features/region/ with save_region_features=true)"
        )
    grid, regions = None, []
    for path in files:
        try:
            tensor = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError, ValueError) as error:
            raise PretrainingDataError(f"region tensor '{path}' is unreadable ({error})") from error
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else ()
        tokens = shape[-2] if len(shape) in (2, 3) else 0
        side = math.isqrt(tokens)
        dim = dim if dim is not None else (shape[-1] if shape else None)
        if len(shape) not in (2, 3) or shape[-1] != dim or side * side != tokens or tokens == 0:
            raise PretrainingDataError(
                f"feature file '{path}' has shape {shape}, expected (n*n, {dim}) for a region or (M, n*n, {dim}) for a "
                "slide (level-local features)"
            )
        if grid is not None and side != grid:
            raise PretrainingDataError(f"region tensor '{path}' is a {side}x{side} grid but others are {grid}x{grid}")
        grid = side
        regions += [RegionRef(path)] if len(shape) == 2 else [RegionRef(path, row) for row in range(shape[0])]
    return regions, grid, dim


class SeededMultiCropDataset(Dataset):
    """Multi-crop views of files, each augmented with a generator seeded by (seed, epoch, index).

    A sample whose ``load`` raises ``BadInputError`` (a patch whose slide tiles cannot be decoded) is
    replaced by a readable one drawn with a generator seeded by (seed, index, attempt), so the same on
    every rank and at every epoch, with a warning.
    More than ``max_bad_fraction`` of this process's reads failing (after :data:`BAD_READS_ALLOWED`
    failures) is an error, as unreadable image files are.

    Args:
        files: the inputs.
        load: file -> the object the augmentation takes (an RGB image or a feature grid).
        augment: object -> list of crops.
        seed: base seed.
        max_bad_fraction: the share of unreadable samples tolerated.
        describe: file -> its name in messages (default ``str``).
    """

    def __init__(
        self,
        files: Sequence,
        load: Callable,
        augment: Callable,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
        describe: Optional[Callable] = None,
    ) -> None:
        self.files, self.load, self.augment, self.seed = list(files), load, augment, seed
        self.max_bad_fraction, self.describe = max_bad_fraction, describe or str
        self.epoch = 0
        self.reads = self.bad_reads = 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        item = self._load_readable(index)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index))
            return self.augment(item)

    def _load_readable(self, index: int):
        for attempt in range(MAX_REPLACEMENTS + 1):
            position = (
                index
                if attempt == 0
                else int(np.random.default_rng([self.seed, index, attempt]).integers(len(self.files)))
            )
            file = self.files[position]
            self.reads += 1
            try:
                return self.load(file)
            except BadInputError as error:
                self.bad_reads += 1
                if self.bad_reads <= 5:
                    logger.warning("unreadable sample %s, replaced by another: %s", self.describe(file), error)
                if self.bad_reads > BAD_READS_ALLOWED and self.bad_reads > self.max_bad_fraction * self.reads:
                    raise PretrainingDataError(
                        f"{self.bad_reads} of {self.reads} samples read by this process are unreadable (more than "
                        f"training.max_bad_fraction={self.max_bad_fraction}), e.g. {self.describe(file)}: {error}. "
                        "Remove the damaged slides from wsi_csv or raise training.max_bad_fraction"
                    ) from error
        raise PretrainingDataError(
            f"{MAX_REPLACEMENTS + 1} samples in a row, from {self.describe(self.files[index])} on, are unreadable"
        )


MAX_REPLACEMENTS = 16
"""Samples tried after an unreadable one before giving up."""
BAD_READS_ALLOWED = 5
"""Unreadable samples a process tolerates before ``max_bad_fraction`` is enforced (early reads are few)."""


def load_rgb(path: Path) -> Image.Image:
    """An image file as RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")


def load_grid(path: Path | RegionRef) -> torch.Tensor:
    """A region's ``(n*n, C)`` features (a file, or a row of a slide's file) as the grid ``(C, n, n)``."""
    ref = path if isinstance(path, RegionRef) else RegionRef(Path(path))
    tokens = torch.load(ref.path, map_location="cpu", weights_only=True, mmap=ref.row is not None)
    tokens = (tokens if ref.row is None else tokens[ref.row]).float()
    side = math.isqrt(tokens.shape[0])
    return tokens.T.reshape(tokens.shape[1], side, side)


def tissue_file(features: Path) -> Path:
    """Where extraction wrote the tissue fractions of a slide's feature file: ``features/tissue/<name>``."""
    return features.parent.parent / "tissue" / features.name


def check_tissue_files(regions: list[RegionRef]) -> None:
    """Every region has its slide's tissue fractions (``mask_background``).

    Raises:
        PretrainingDataError: a per-region file (no tissue is saved for those), or a slide without its tissue file.
    """
    for ref in regions:
        if ref.row is None:
            raise PretrainingDataError(
                f"model.mask_background needs slide files (features/slide/ of a level-local extraction, with "
                f"features/tissue/ beside it), not per-region files such as '{ref.path}'"
            )
    for path in sorted({ref.path for ref in regions}):
        if not tissue_file(path).is_file():
            raise PretrainingDataError(
                f"model.mask_background: '{tissue_file(path)}' is missing (extract_features.py writes the tissue "
                f"fraction of every patch there); extract '{path.stem}' again with this version"
            )


def load_grid_with_tissue(ref: RegionRef) -> torch.Tensor:
    """:func:`load_grid` with the region's tissue fractions as a last channel: ``(C + 1, n, n)``."""
    grid = load_grid(ref)
    tissue = torch.load(tissue_file(ref.path), map_location="cpu", weights_only=True)[ref.row].float()
    return torch.cat([grid, tissue.reshape(1, *grid.shape[1:])])


def with_full_tissue(grid: torch.Tensor) -> torch.Tensor:
    """``(C, n, n)`` -> ``(C + 1, n, n)`` with every patch on tissue (tissue unknown: nothing is masked)."""
    return torch.cat([grid, torch.ones(1, *grid.shape[1:], dtype=grid.dtype)])


def read_downstream(csv: str | Path, label_name: str) -> tuple[list[Path], np.ndarray, list[str]]:
    """A labelled set: ``tile_path`` and ``label_name`` columns; relative paths are taken from the csv's folder.

    Returns:
        the files, class indices, and the class names (sorted, index = position).

    Raises:
        PretrainingDataError: missing file or column, or paths that do not exist (rows named).
    """
    csv = Path(csv)
    if not csv.is_file():
        raise PretrainingDataError(f"downstream csv '{csv}' does not exist")
    table = pd.read_csv(csv)
    missing = [c for c in ("tile_path", label_name) if c not in table.columns]
    if missing:
        raise PretrainingDataError(f"{csv}: missing column(s) {missing}; the columns are {list(table.columns)}")
    paths = [Path(p) if Path(p).is_absolute() else csv.parent / p for p in table.tile_path.astype(str)]
    absent = [i + 2 for i, p in enumerate(paths) if not p.is_file()]
    if absent:
        raise PretrainingDataError(
            f"{csv}: tile_path of row(s) {absent[:5]} does not exist (e.g. {paths[absent[0] - 2]})"
        )
    classes = sorted(table[label_name].astype(str).unique())
    labels = table[label_name].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    return paths, labels, classes
