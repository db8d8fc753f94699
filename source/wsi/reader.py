"""Read regions from a slide's pyramid: one open slide per DataLoader worker, never a region dump.

A region is ``read_size`` px read at ``read_level`` from its level-0 corner (hs2p's reader, which
pads whatever lies outside the slide with white); when no level is within ``tiling.tolerance`` of
the target spacing the larger footprint is read from the finer level and area-averaged
(``cv2.INTER_AREA``) down to ``region_size``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from PIL import Image

from source.data.regions import BadInputError, Region
from source.io import atomic_path, safe_join
from source.wsi.raw_tiles import RawJpegTiles, RawRegion, UnsupportedTilesError
from source.wsi.tiling import PyramidRead

FAST_READER = "tifffile"
FAST_READER_SUFFIXES = {".tif", ".tiff", ".svs", ".btf"}
"""Files that ``tiling.reader: auto`` reads with tifffile (imagecodecs) when its pyramid matches the tiling
backend's."""


def open_pyramid(path: Path, backend: str, spacing_at_level_0: Optional[float]):
    """Open a slide with an hs2p reader, its level-0 spacing given (a file's own, e.g. a TIFF's inches, is ignored).

    Raises:
        BadInputError: the backend cannot open the file.
    """
    from hs2p.wsi.reader import open_slide

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Slide spacing override conflict")
            return open_slide(path, backend=backend, spacing_override=spacing_at_level_0)
    except Exception as error:  # any backend's failure to open is this slide's failure
        raise BadInputError(
            f"slide '{path}' cannot be opened with backend '{backend}' ({type(error).__name__}: {error})"
        ) from error


def choose_reader(requested: str, tiling_backend: str, image_path: Path, spacing_at_level_0: float, result) -> str:
    """The backend that reads a slide's regions.

    ``requested`` other than ``auto`` is used as it is. ``auto`` picks tifffile for TIFF-family files
    (several times faster than OpenSlide on JPEG tiles, same level pixels) when it sees the same
    pyramid as the tiling up to the read level (level-0 size, and the downsamples of the tiling
    ``result`` up to ``result.read_level``), else the tiling backend.
    """
    if requested != "auto":
        return requested
    if image_path.suffix.lower() not in FAST_READER_SUFFIXES or tiling_backend == FAST_READER:
        return tiling_backend
    try:
        handle = open_pyramid(image_path, FAST_READER, spacing_at_level_0)
    except BadInputError:
        return tiling_backend
    try:
        same_size = [int(v) for v in handle.level_dimensions[0]] == [int(v) for v in result.slide_dimensions]
        ours = [float(d[0]) for d in handle.level_downsamples]
        theirs = [float(d) for d in result.level_downsamples][: int(result.read_level) + 1]
        same_levels = len(ours) >= len(theirs) and all(
            abs(a - b) <= 1e-3 * b for a, b in zip(ours, theirs, strict=False)
        )
    finally:
        handle.close()
    return FAST_READER if same_size and same_levels else tiling_backend


def area_downsample(pixels: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(size, size, 3)`` uint8 by area averaging (never used to upsample)."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    return cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)


class WholeSlideRegions:
    """The regions of one slide, read from its pyramid.

    The slide is opened on first use in the process that reads (each DataLoader worker opens it
    once) and is never pickled open.

    Args:
        slide_id: the slide's id (names the saved region images).
        read: the reading geometry.
        save_dir: when set, each region is also written to ``save_dir/<slide_id>/imgs/<x>_<y>.png``
            (lossless, the ``region_dir`` layout), for quality control.
    """

    def __init__(self, slide_id: str, read: PyramidRead, save_dir: Optional[Path] = None) -> None:
        self.slide_id = slide_id
        self.geometry = read
        self.save_dir = save_dir
        self._slide = None
        self._raw: object = None  # None: not tried yet; False: not raw-decodable; else the RawJpegTiles

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_slide": None, "_raw": None}

    def read_raw(self, region: Region) -> Optional[RawRegion]:
        """The region as its compressed JPEG tiles, to be decoded in a batch on the encoder's device
        (:func:`~source.wsi.raw_tiles.decode_regions`); None when it must be decoded here on the CPU: a level that
        is not tiled JPEG, a read that needs resampling, a file the tifffile view disagrees about, or region images
        being saved."""
        tiles = self._raw_tiles()
        if tiles is None:
            return None
        return tiles.raw_region(
            int(round(region.x / tiles.downsample)), int(round(region.y / tiles.downsample)), self.geometry.read_size
        )

    def _raw_tiles(self) -> Optional[RawJpegTiles]:
        if self._raw is None:
            self._raw = self._open_raw_tiles() or False
        return self._raw or None  # type: ignore[return-value]

    def _open_raw_tiles(self) -> Optional[RawJpegTiles]:
        g = self.geometry
        if g.read_size != g.region_size or self.save_dir is not None:
            return None
        try:
            tiles = RawJpegTiles(g.image_path, g.read_level)
        except (UnsupportedTilesError, OSError, ValueError, IndexError):
            return None
        try:
            dimensions = tuple(int(v) for v in self._open().level_dimensions[g.read_level])
            if dimensions == (tiles.width, tiles.height) and tiles.decodes_like_tifffile():
                return tiles
        except Exception:  # any disagreement between the two views of the file: the CPU readers decide
            pass
        tiles.close()
        return None

    def _open(self):
        if self._slide is None:
            self._slide = open_pyramid(
                self.geometry.image_path, self.geometry.backend, self.geometry.spacing_at_level_0
            )
        return self._slide

    def read(self, region: Region) -> np.ndarray:
        """The region whose level-0 corner is ``(region.x, region.y)``: ``(R, R, 3)`` uint8.

        Raises:
            BadInputError: the slide cannot be opened or the region's tiles cannot be decoded.
        """
        g = self.geometry
        slide = self._open()
        try:
            pixels = slide.read_region((int(region.x), int(region.y)), g.read_level, (g.read_size, g.read_size))
        except Exception as error:  # a truncated or corrupt tile
            raise BadInputError(
                f"slide '{g.image_path}': region at ({region.x}, {region.y}) cannot be read ({type(error).__name__}: "
                f"{error}); the file is truncated or corrupt"
            ) from error
        pixels = area_downsample(np.ascontiguousarray(pixels[..., :3]), g.region_size)
        if self.save_dir is not None:
            self._save(region, pixels)
        return pixels

    @property
    def footprint_lv0(self) -> int:
        """A region's side in level-0 pixels (``tile_size_lv0``)."""
        return self.geometry.tile_size_lv0

    def level0_size(self) -> tuple[int, int]:
        """The slide's level-0 ``(width, height)`` in pixels."""
        width, height = (int(v) for v in self._open().dimensions)
        return width, height

    def thumbnail(self, scale: float) -> np.ndarray:
        """The whole slide at ``scale`` px per level-0 px: ``(round(H * scale), round(W * scale), 3)`` uint8."""
        width, height = self.level0_size()
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = np.ascontiguousarray(np.asarray(self._open().get_thumbnail(size))[..., :3])
        if pixels.shape[:2] != (size[1], size[0]):  # a backend that keeps its own aspect ratio
            pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        return pixels

    def _save(self, region: Region, pixels: np.ndarray) -> None:
        path = safe_join(safe_join(self.save_dir, self.slide_id) / "imgs", f"{region.x}_{region.y}", ".png")
        if not path.exists():
            with atomic_path(path) as temporary:
                Image.fromarray(pixels).save(temporary, format="PNG")

    def close(self) -> None:
        """Close the slide (it is reopened if read again)."""
        if self._slide is not None:
            self._slide.close()
            self._slide = None
        if self._raw:
            self._raw.close()  # type: ignore[union-attr]
        self._raw = None
