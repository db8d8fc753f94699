"""``previews/<slide_id>.png``: the slide's thumbnail with its tissue contours and every region drawn on it.

Regions are numbered in ``regions.csv`` order (row i of the slide's feature tensor), so a user can
see at a glance what was encoded and find region i on the slide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
from PIL import Image

from source.io import atomic_path

CONTOUR_COLOUR = (40, 170, 60)
REGION_COLOUR = (30, 80, 230)
TEXT_COLOUR = (20, 20, 20)
MAX_NUMBERED = 400


def preview_image(
    thumbnail: np.ndarray,
    slide_width: int,
    xs: Sequence[int],
    ys: Sequence[int],
    tile_size_lv0: int,
    contours: Optional[Sequence[np.ndarray]] = None,
) -> np.ndarray:
    """Draw on a copy of ``thumbnail``.

    Args:
        thumbnail: ``(h, w, 3)`` uint8, the whole slide scaled by ``w / slide_width``.
        slide_width: level-0 width of the slide in pixels.
        xs, ys: level-0 top-left corners of the regions, in regions.csv order.
        tile_size_lv0: a region's side in level-0 pixels.
        contours: tissue contours in level-0 pixels (OpenCV ``(k, 1, 2)`` arrays), drawn in green.

    Returns:
        ``(h, w, 3)`` uint8: contours in green, regions as blue squares numbered 0..M-1 (numbers only
        up to :data:`MAX_NUMBERED` squares: beyond, e.g. the patches of a slide, they would cover it).
    """
    canvas = np.ascontiguousarray(thumbnail[..., :3]).copy()
    scale = canvas.shape[1] / float(slide_width)
    thickness = max(1, round(min(canvas.shape[:2]) / 400))
    for contour in contours or ():
        points = np.round(np.asarray(contour, dtype=np.float64).reshape(-1, 1, 2) * scale).astype(np.int32)
        cv2.polylines(canvas, [points], isClosed=True, color=CONTOUR_COLOUR, thickness=thickness)
    side = max(1, round(tile_size_lv0 * scale))
    font_scale = min(max(0.3, side / 120), 1.2)  # readable on small squares, not a poster on big ones
    for index, (x, y) in enumerate(zip(xs, ys, strict=True)):
        left, top = round(x * scale), round(y * scale)
        cv2.rectangle(canvas, (left, top), (left + side - 1, top + side - 1), REGION_COLOUR, thickness)
        if len(xs) > MAX_NUMBERED:
            continue
        cv2.putText(
            canvas,
            str(index),
            (left + 3 * thickness, top + int(22 * font_scale) + thickness),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            TEXT_COLOUR,
            max(1, round(2 * font_scale)),
            cv2.LINE_AA,
        )
    return canvas


def write_preview(
    slide, path: Path, xs: Sequence[int], ys: Sequence[int], tile_size_lv0: int, contours=None, max_side: int = 2000
) -> Path:
    """Render the preview of an open hs2p slide reader to ``path`` (PNG, atomically).

    Args:
        slide: an hs2p ``SlideReader`` (``dimensions``, ``get_thumbnail``).
        max_side: the thumbnail's longer side in pixels (never larger than the slide).
    """
    width, height = (int(v) for v in slide.dimensions)
    factor = min(1.0, max_side / max(width, height))
    thumbnail = slide.get_thumbnail((max(1, round(width * factor)), max(1, round(height * factor))))
    image = preview_image(np.asarray(thumbnail), width, xs, ys, tile_size_lv0, contours)
    with atomic_path(path) as temporary:
        Image.fromarray(image).save(temporary, format="PNG")
    return path
