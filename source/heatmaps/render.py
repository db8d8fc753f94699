"""Colour score maps over tissue: blended, thresholded and highlighted variants, panels and colorbars."""

from __future__ import annotations

from typing import Optional, Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw


def colour_lookup(cmap: str) -> np.ndarray:
    """``(256, 3)`` uint8 RGB table of a matplotlib colormap (e.g. ``jet``, ``coolwarm``, ``viridis``)."""
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError as error:
        raise ValueError(
            f"unknown colormap '{cmap}'; use a matplotlib name such as jet, coolwarm or viridis"
        ) from error
    return (colormap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def colourise(scores: np.ndarray, cmap: str) -> np.ndarray:
    """``(S, S)`` scores in [0, 1] -> ``(S, S, 3)`` uint8 colours."""
    return colour_lookup(cmap)[np.clip(np.rint(scores * 255), 0, 255).astype(np.uint8)]


def blend(image: np.ndarray, scores: np.ndarray, cmap: str, alpha: float) -> np.ndarray:
    """The colour map laid over the tissue: ``(1 - alpha) * image + alpha * colour``; ``(S, S, 3)`` uint8."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colourise(scores, cmap).astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def on_tissue(coloured: np.ndarray, image: np.ndarray, glass: Optional[np.ndarray]) -> np.ndarray:
    """``coloured`` where there is tissue, ``image`` as it is on ``glass`` (``(S, S)`` bool; None: colour all)."""
    if glass is None:
        return coloured
    out = coloured.copy()
    out[glass] = image[glass]
    return out


def thresholded(image: np.ndarray, scores: np.ndarray, cmap: str, alpha: float, threshold: float) -> np.ndarray:
    """Like :func:`blend`, but pixels scoring below ``threshold`` show the tissue as it is."""
    out = blend(image, scores, cmap, alpha)
    below = scores < threshold
    out[below] = image[below]
    return out


def highlighted(image: np.ndarray, scores: np.ndarray, highlight: float, opacity: float) -> np.ndarray:
    """RGBA tissue: opaque where ``scores >= highlight``, faded to ``opacity`` elsewhere; ``(S, S, 4)`` uint8."""
    alpha_channel = np.where(scores >= highlight, 255, round(opacity * 255)).astype(np.uint8)
    return np.dstack([image, alpha_channel])


def with_colorbar(image: np.ndarray, cmap: str, label: str = "attention (rank)") -> Image.Image:
    """Append a vertical colorbar (0 bottom, 1 top, ticks at 0, 0.5, 1) to the right of an image."""
    picture = Image.fromarray(image)
    height = picture.height
    bar_height = max(min(height - 20, 400), 40)
    bar = colour_lookup(cmap)[np.linspace(255, 0, bar_height).astype(int)]
    strip_width = 90
    mode = picture.mode
    background = (255, 255, 255, 255) if mode == "RGBA" else (255, 255, 255)
    out = Image.new(mode, (picture.width + strip_width, max(height, bar_height + 20)), background)
    out.paste(picture, (0, 0))
    top = (out.height - bar_height) // 2
    column = np.repeat(bar[:, None, :], 16, axis=1)
    if mode == "RGBA":
        column = np.dstack([column, np.full(column.shape[:2], 255, np.uint8)])
    out.paste(Image.fromarray(column), (picture.width + 10, top))
    draw = ImageDraw.Draw(out)
    fill = (0, 0, 0, 255) if mode == "RGBA" else (0, 0, 0)
    for value in (0.0, 0.5, 1.0):
        y = top + round((1 - value) * (bar_height - 1))
        draw.line([(picture.width + 26, y), (picture.width + 30, y)], fill=fill)
        draw.text((picture.width + 33, y - 5), f"{value:g}", fill=fill)
    draw.text((picture.width + 8, max(top - 14, 0)), label.split(" ")[0], fill=fill)
    return out


def side_by_side(images: Sequence[np.ndarray], titles: Sequence[str], gap: int = 10) -> Image.Image:
    """A panel of equally sized RGB images in one row, each with its title above."""
    height, width = images[0].shape[:2]
    panel = Image.new("RGB", (len(images) * (width + gap) - gap, height + 18), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for index, (image, title) in enumerate(zip(images, titles, strict=True)):
        left = index * (width + gap)
        panel.paste(Image.fromarray(image[..., :3]), (left, 18))
        draw.text((left + 2, 3), title, fill=(0, 0, 0))
    return panel
