"""Tissue segmentation and region coordinates of one slide with hs2p's in-memory API (``tile_slide``).

hs2p segments the tissue on a low-resolution level, lays a grid of ``region_size`` px regions at
``tiling.spacing`` over each tissue contour and keeps those with enough tissue. Its result gives, in
level-0 pixels, each region's top-left corner and footprint, and the pyramid level to read from.
This module turns hs2p's failures into one clear sentence per slide.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from source.data.regions import BadInputError
from source.io import placeholder_kind
from source.wsi.settings import TilingSettings
from source.wsi.slide_table import WholeSlide

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PyramidRead:
    """How to read a slide's regions: ``read_size`` px at ``read_level`` from a level-0 corner, then
    area-downsampled to ``region_size`` when the two differ (no level within tolerance)."""

    image_path: Path
    backend: str
    spacing_at_level_0: float
    read_level: int
    read_size: int
    tile_size_lv0: int
    region_size: int


def hs2p_configs(settings: TilingSettings, region_size: int, patch_size: int):
    """hs2p's ``(TilingConfig, SegmentationConfig, FilterConfig, MaskSamplingConfig)`` for these settings.

    ``FilterConfig.ref_tile_size`` (hs2p's unit for its minimum tissue and hole areas) stays at patch
    scale: at the region size it would discard every contour.
    """
    from hs2p import DEFAULT_MASK_SAMPLING, FilterConfig, SegmentationConfig, TilingConfig

    tiling = TilingConfig(
        requested_spacing_um=float(settings.spacing),
        requested_tile_size_px=int(region_size),
        tolerance=float(settings.tolerance),
        overlap=float(settings.overlap),
        backend=settings.backend,
    )
    segmentation = SegmentationConfig(method=settings.segmentation, downsample=int(settings.seg_downsample))
    filtering = FilterConfig(ref_tile_size=int(patch_size))
    masks = replace(DEFAULT_MASK_SAMPLING, min_coverage={"tissue": float(settings.min_tissue_fraction)})
    return tiling, segmentation, filtering, masks


def check_slide_file(path: Path, what: str = "slide") -> None:
    """Raise :class:`BadInputError` when ``path`` is missing, a folder, empty, or a stand-in (LFS pointer, HTML
    page)."""
    if not path.exists():
        raise BadInputError(f"{what} file '{path}' does not exist: check image_path / mask_path in wsi_csv")
    if path.is_dir() and path.suffix.lower() != ".mrxs":
        raise BadInputError(f"{what} file '{path}' is a folder, not a slide file")
    if path.is_file():
        with path.open("rb") as handle:
            head = handle.read(512)
        if not head:
            raise BadInputError(f"{what} file '{path}' is empty (0 bytes): copy or download it again")
        kind = placeholder_kind(head)
        if kind is not None:
            raise BadInputError(
                f"{what} file '{path}' is {kind}, not a slide: fetch the real file (e.g. 'git lfs pull') or download "
                "it again"
            )


def _unreadable_file_errors() -> tuple[type[Exception], ...]:
    """The exception types that mean "this backend cannot read the file": OpenSlide's, PIL's and tifffile's, for
    those of them that are installed."""
    types: list[type[Exception]] = []
    for module, names in (
        ("openslide", ("OpenSlideError",)),
        ("PIL", ("UnidentifiedImageError",)),
        ("tifffile", ("TiffFileError",)),
        ("hs2p.wsi.backends.pil", ("PILImageTooLargeError",)),
    ):
        try:
            imported = importlib.import_module(module)
        except ImportError:
            continue
        types += [getattr(imported, name) for name in names if hasattr(imported, name)]
    return tuple(types)


def _explain(error: Exception, slide: WholeSlide, settings: TilingSettings) -> str:
    """One sentence for a tiling failure: by exception type where the readers give one."""
    if isinstance(error, _unreadable_file_errors()) or _says(error, "Unable to open"):
        return (
            f"slide '{slide.image_path}' cannot be opened with backend '{settings.backend}' ({type(error).__name__}: "
            f"{error}): the file is truncated or corrupt, not a slide, or in a format this backend does not read (try "
            "tiling.backend=auto)"
        )
    # hs2p reports a missing spacing and a spacing finer than level 0 as plain ValueErrors, with no type of their
    # own: only its message tells them apart (checked against hs2p 6.1.0's wording; an unknown wording falls
    # through to the generic sentence below, which still names the slide and hs2p's own message).
    if _says(error, "Unable to infer slide spacing"):
        return (
            f"slide '{slide.image_path}' has no pixel spacing (um/px) in its header: add a column spacing_at_level_0 "
            "to wsi_csv with the level-0 spacing of this slide (e.g. 0.25 at 40x, 0.5 at 20x)"
        )
    if _says(error, "finer than finest available spacing", "upsampling is forbidden"):
        finest = str(error).split("spacing ")[-1].split(";")[0]
        return (
            f"tiling.spacing {settings.spacing} um/px is finer than level 0 of '{slide.image_path}' ({finest}): "
            "regions are never upsampled; set tiling.spacing to at least the slide's level-0 spacing"
        )
    return f"tiling '{slide.image_path}' failed ({type(error).__name__}: {error})"


def _says(error: Exception, *phrases: str) -> bool:
    """Whether a ValueError / RuntimeError of hs2p carries one of ``phrases`` (the fallback of :func:`_explain`)."""
    return isinstance(error, (ValueError, RuntimeError)) and any(phrase in str(error) for phrase in phrases)


def tile_whole_slide(slide: WholeSlide, settings: TilingSettings, region_size: int, patch_size: int):
    """Segment the tissue of ``slide`` and lay its regions; coordinates sorted by x, then y (hs2p's saved order).

    Returns:
        hs2p's ``TilingResult`` (possibly with zero regions: the caller reports "no tissue").

    Raises:
        BadInputError: a missing, empty or stand-in file, a file no backend opens, a slide without a
            spacing, a ``tiling.spacing`` finer than level 0; the message names the file and the fix.
    """
    from hs2p import SlideSpec, tile_slide
    from hs2p.preprocessing import canonicalize_tiling_result

    check_slide_file(slide.image_path)
    if slide.mask_path is not None:
        check_slide_file(slide.mask_path, "tissue mask")
    tiling, segmentation, filtering, masks = hs2p_configs(settings, region_size, patch_size)
    spec = SlideSpec(
        sample_id=slide.slide_id,
        image_path=slide.image_path,
        mask_path=slide.mask_path,
        spacing_at_level_0=slide.spacing_at_level_0,
    )
    try:
        result = tile_slide(spec, tiling=tiling, segmentation=segmentation, filtering=filtering, masks=masks)
    except Exception as error:  # hs2p and the backends raise many types; each becomes one sentence
        raise BadInputError(_explain(error, slide, settings)) from error
    return replace(result, tiles=canonicalize_tiling_result(result.tiles))


def pyramid_read_of(result, slide: WholeSlide, settings: TilingSettings, region_size: int) -> PyramidRead:
    """The reading geometry of a tiling result (from ``tile_whole_slide`` or loaded coordinates).

    Raises:
        BadInputError: the result would need upsampling (fewer pixels read than ``region_size``).
    """
    read_size = int(result.read_tile_size_px)
    if read_size < region_size:
        raise BadInputError(
            f"slide '{slide.image_path}': a region of {region_size} px would be upsampled from {read_size} px read at "
            f"level {result.read_level}; set tiling.spacing to at least the slide's level-0 spacing"
        )
    backend = settings.backend if settings.backend != "auto" else str(result.backend)
    return PyramidRead(
        image_path=slide.image_path,
        backend=backend,
        spacing_at_level_0=float(result.base_spacing_um),
        read_level=int(result.read_level),
        read_size=read_size,
        tile_size_lv0=int(result.tile_size_lv0),
        region_size=int(region_size),
    )
