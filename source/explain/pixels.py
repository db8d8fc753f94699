"""Where contribution pictures get a slide's pixels and the level-0 corner of each row of its feature file.

Three inputs, as for heatmaps:

- ``extraction_run``: the whole-slide extraction run that wrote the features (its tables and geometry);
- ``wsi_csv``: the slides themselves, with the corners from ``coordinates_dir`` (hs2p coordinates, e.g. an
  extraction run's ``coordinates/``) or, without it, from the ``coords`` of CLAM / TRIDENT / this project's h5
  feature files;
- ``region_dir``: region images ``<slide_id>/imgs/<x>_<y>.<format>``, in the order extraction encoded them; the
  canvas is stitched from the region images themselves (no pyramid), white where no region was cut.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from source.data.regions import BadInputError, Region, list_regions
from source.explain.settings import PixelSources
from source.wsi.extraction_run import EncodedSlide, read_encoded_slides


class RegionImageSlide:
    """A ``region_dir`` slide read as a slide: its region images at their file-name corners.

    Args:
        regions: the slide's regions (with their image paths), in feature-file order.
    """

    def __init__(self, regions: list[Region]) -> None:
        from PIL import Image

        self.regions = regions
        with Image.open(regions[0].path) as image:
            self._side = int(image.size[0])

    @property
    def footprint_lv0(self) -> int:
        """A region's side in the corners' pixels (the region image's side)."""
        return self._side

    def level0_size(self) -> tuple[int, int]:
        """``(width, height)`` from the origin to the far edge of the last region."""
        return (
            max(r.x for r in self.regions) + self._side,
            max(r.y for r in self.regions) + self._side,
        )

    def read(self, region: Region) -> np.ndarray:
        """``(side, side, 3)`` uint8 of the region image at ``region``'s corner."""
        from source.data.regions import read_region

        path = next((r.path for r in self.regions if (r.x, r.y) == (region.x, region.y)), None)
        if path is None:
            raise BadInputError(f"no region image at ({region.x}, {region.y})")
        return read_region(path, self._side)

    def thumbnail(self, scale: float) -> np.ndarray:
        """The regions stitched at ``scale`` px per corner px on white: ``(round(H * scale), round(W * scale), 3)``."""
        width, height = self.level0_size()
        canvas = np.full((max(1, round(height * scale)), max(1, round(width * scale)), 3), 255, dtype=np.uint8)
        for region in self.regions:
            top, left = round(region.y * scale), round(region.x * scale)
            bottom = min(canvas.shape[0], max(top + 1, round((region.y + self._side) * scale)))
            right = min(canvas.shape[1], max(left + 1, round((region.x + self._side) * scale)))
            tile = cv2.resize(self.read(region), (right - left, bottom - top), interpolation=cv2.INTER_AREA)
            canvas[top:bottom, left:right] = tile
        return canvas

    def close(self) -> None:
        """Nothing stays open."""


class SlidePixels:
    """Each slide's pixels and corners for the pictures, from the input ``sources`` names (or none).

    Args:
        sources: ``extraction_run``, ``wsi_csv`` with ``coordinates_dir``, or ``region_dir`` with ``format``.
        feature_path: ``slide_id -> its feature file`` (h5 files give the corners with ``wsi_csv``).
    """

    def __init__(self, sources: PixelSources, feature_path) -> None:
        self.sources = sources
        self.feature_path = feature_path
        self.encoded = read_encoded_slides(sources.extraction_run) if sources.extraction_run else {}
        self.whole_slides = {}
        if sources.wsi_csv:
            from source.wsi.slide_table import read_wsi_csv

            self.whole_slides = {slide.slide_id: slide for slide in read_wsi_csv(sources.wsi_csv)}

    @property
    def given(self) -> bool:
        """Whether any pixel input is named."""
        return self.sources.given

    @property
    def source_name(self) -> str:
        return self.sources.source_name

    def find(self, slide_id: str) -> Optional[EncodedSlide]:
        """The slide's corners (row i = row i of its feature file) and pixels; None without a pixel input or when
        the input does not list the slide.

        Raises:
            BadInputError: the input lists the slide but its corners cannot be found or read.
        """
        if self.sources.extraction_run:
            return self.encoded.get(slide_id)
        if self.sources.region_dir:
            regions = list_regions(self.sources.region_dir, slide_id, self.sources.format)
            corners = np.array([(r.x, r.y) for r in regions], dtype=np.int64)
            return EncodedSlide(slide_id, corners, RegionImageSlide(regions))  # type: ignore[arg-type]
        slide = self.whole_slides.get(slide_id)
        if slide is None:
            return None
        return self._whole_slide(slide)

    def _whole_slide(self, slide) -> EncodedSlide:
        from source.wsi.reader import WholeSlideRegions
        from source.wsi.settings import TilingSettings
        from source.wsi.tiling import PyramidRead, pyramid_read_of

        if self.sources.coordinates_dir:
            from source.wsi.coordinates import load_coordinates

            result = load_coordinates(Path(self.sources.coordinates_dir), slide.slide_id)
            if result is None:
                raise BadInputError(
                    f"slide '{slide.slide_id}' has no coordinates in coordinates_dir '{self.sources.coordinates_dir}'"
                )
            read = pyramid_read_of(result, slide, TilingSettings(backend="auto"), int(result.requested_tile_size_px))
            corners = np.stack([np.asarray(result.x), np.asarray(result.y)], axis=1).astype(np.int64)
            return EncodedSlide(slide.slide_id, corners, WholeSlideRegions(slide.slide_id, read))
        corners, footprint = self._h5_corners(slide.slide_id)
        read = PyramidRead(
            image_path=slide.image_path,
            backend="auto",
            spacing_at_level_0=slide.spacing_at_level_0,  # type: ignore[arg-type]
            read_level=0,
            read_size=footprint,
            tile_size_lv0=footprint,
            region_size=min(footprint, 1024),
        )
        return EncodedSlide(slide.slide_id, corners, WholeSlideRegions(slide.slide_id, read))

    def _h5_corners(self, slide_id: str) -> tuple[np.ndarray, int]:
        """``coords`` ``(N, 2)`` and the footprint (``patch_size_level0``) of the slide's h5 feature file."""
        import h5py

        path = Path(self.feature_path(slide_id))
        if path.suffix != ".h5":
            raise BadInputError(
                f"slide '{slide_id}': wsi_csv gives the pixels but not where each region of {path.name} lies: set "
                "coordinates_dir to the extraction run's coordinates/ (or give extraction_run instead)"
            )
        with h5py.File(path, "r") as handle:
            if "coords" not in handle or "patch_size_level0" not in handle.attrs:
                raise BadInputError(
                    f"{path} has no coords dataset or patch_size_level0 attribute: set coordinates_dir to where its "
                    "coordinates are"
                )
            return np.asarray(handle["coords"], dtype=np.int64).reshape(-1, 2), int(handle.attrs["patch_size_level0"])
