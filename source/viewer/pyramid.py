"""A slide's pyramid as OpenSlide's ``DeepZoomGenerator`` reads it, limited to a level-0 box.

The slide is read through hs2p's readers (OpenSlide first, then any backend that opens the file), so any slide the
project tiles can be viewed; only the box is exposed, so the deep-zoom pyramid covers nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from source.data.regions import BadInputError
from source.viewer.geometry import Box
from source.wsi.reader import open_pyramid

BACKENDS = ("openslide", "auto")
"""Readers tried in turn: OpenSlide's own, then hs2p's choice (cuCIM, libvips, ASAP) for files it does not read."""


def open_slide_file(path: Path, spacing: Optional[float]):
    """An hs2p reader of the slide.

    Raises:
        BadInputError: the file is missing or no reader opens it (the message of the first reader).
    """
    if not Path(path).is_file():
        raise BadInputError(f"slide file '{path}' does not exist: was it moved? Give wsi_csv with its new path")
    errors = []
    for backend in BACKENDS:
        try:
            return open_pyramid(Path(path), backend, spacing)
        except BadInputError as error:
            errors.append(error)
    raise errors[0]


class SlideView:
    """The ``box`` of a slide, with the attributes and methods of ``openslide.AbstractSlide`` that
    ``DeepZoomGenerator`` uses: level ``l`` is the box at the slide's downsample ``d_l``, ``ceil(size / d_l)`` px.

    Args:
        reader: an hs2p reader (``level_downsamples`` as ``(dx, dy)``, ``read_region`` returning ``(h, w, 3)`` uint8).
        box: the level-0 box to expose.
    """

    def __init__(self, reader, box: Box) -> None:
        self.reader, self.box = reader, box
        self.level_downsamples = tuple(float(d[0]) for d in reader.level_downsamples)
        self.level_dimensions = tuple(
            (math.ceil(box.width / d), math.ceil(box.height / d)) for d in self.level_downsamples
        )
        self.properties: dict[str, str] = {}  # no bounds: the view is the box; white background

    @property
    def level_count(self) -> int:
        return len(self.level_downsamples)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.level_dimensions[0]

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample is at most ``downsample`` (OpenSlide's rule)."""
        fitting = [level for level, d in enumerate(self.level_downsamples) if d <= downsample * (1 + 1e-6)]
        return fitting[-1] if fitting else 0

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        """``size`` px of ``level`` from the box-relative level-0 ``location``, as an RGBA image (outside the slide:
        white, as the reader pads it).

        Raises:
            BadInputError: the pixels cannot be read (a truncated or corrupt file).
        """
        x, y = int(location[0]) + self.box.x, int(location[1]) + self.box.y
        try:
            pixels = self.reader.read_region((x, y), level, (int(size[0]), int(size[1])))
        except Exception as error:  # a backend's failure to decode is this slide's failure
            raise BadInputError(f"cannot read ({x}, {y}) at level {level} ({type(error).__name__}: {error})") from error
        return Image.fromarray(np.ascontiguousarray(pixels[..., :3])).convert("RGBA")

    def close(self) -> None:
        self.reader.close()
