"""Render every map of one slide: per-region PNGs, stitched slide canvases, panels, GeoJSON and csv."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from source.data.regions import Region, read_region
from source.data.slides import RegionSource
from source.errors import ConfigError
from source.heatmaps.attention import AttentionReader, region_maps
from source.heatmaps.export import AttentionExport
from source.heatmaps.render import blend, highlighted, on_tissue, side_by_side, thresholded, with_colorbar
from source.heatmaps.scores import blended, factorized, rank_normalise
from source.heatmaps.settings import RenderSettings
from source.heatmaps.slide_level import slide_attention
from source.heatmaps.stitch import SlideCanvas, save_png
from source.tasks.trained import TrainedSlideModel
from source.wsi.tissue import tissue_from_pixels, tissue_mask

logger = logging.getLogger(__name__)


def resize(pixels: torch.Tensor | np.ndarray, size: int) -> np.ndarray:
    """``(3, R, R)`` tensor or ``(R, R, 3)`` array -> ``(size, size, 3)`` uint8 (box filter)."""
    array = pixels.permute(1, 2, 0).numpy() if isinstance(pixels, torch.Tensor) else pixels
    return np.asarray(Image.fromarray(array).resize((size, size), Image.BOX))


def pool(scores: np.ndarray, size: int) -> np.ndarray:
    """Average ``(S, S)`` scores down to ``(size, size)`` (S a multiple of size)."""
    factor = scores.shape[0] // size
    return scores.reshape(size, factor, size, factor).mean(axis=(1, 3))


def choose_downsample(
    coordinates: Sequence[tuple[int, int]],
    settings: RenderSettings,
    size_lv0: Optional[int] = None,
    slide_extent_lv0: int = 0,
) -> int:
    """The canvas downsample (canvas px = ``downsample`` region px): ``settings.downsample`` when set, else
    the finest one whose canvas is at most ``canvas_width`` px wide (and high), among the multiples of
    ``downscale`` dividing ``region_size``.

    Args:
        coordinates: level-0 region corners.
        size_lv0: a region's side in level-0 px (default ``region_size``).
        slide_extent_lv0: the slide's longer level-0 side when the canvas covers the whole slide (thumbnail).
    """
    if settings.downsample:
        return settings.downsample
    size_lv0 = size_lv0 or settings.region_size
    extent_lv0 = max(
        max(x for x, _ in coordinates) + size_lv0, max(y for _, y in coordinates) + size_lv0, slide_extent_lv0
    )
    extent = extent_lv0 * settings.region_size / size_lv0
    candidates = [
        d
        for d in range(settings.downscale, settings.region_size + 1, settings.downscale)
        if settings.region_size % d == 0
    ]
    fitting = [d for d in candidates if extent / d <= settings.canvas_width]
    return fitting[0] if fitting else candidates[-1]


def head_list(requested: Optional[Sequence[int]], available: int, name: str) -> list[int]:
    """The heads to draw (all when None); an unknown index is an error naming it."""
    if requested is None:
        return list(range(available))
    bad = [h for h in requested if not 0 <= h < available]
    if bad:
        raise ConfigError(f"heads: {bad} do not exist in {name}, which has heads 0..{available - 1}")
    return list(requested)


class SlideRenderer:
    """Draw the maps of one slide's regions.

    Args:
        reader: ViT_patch / ViT_region attention.
        settings: drawing settings.
        slide_model: a trained slide aggregator for slide-level attention, or None.
    """

    def __init__(
        self, reader: AttentionReader, settings: RenderSettings, slide_model: Optional[TrainedSlideModel] = None
    ) -> None:
        self.reader, self.settings, self.slide_model = reader, settings, slide_model
        encoder = reader.encoder
        self.patch_heads = head_list(settings.heads, encoder.vit_patch.num_heads, "ViT_patch")
        self.region_heads = head_list(settings.heads, encoder.vit_region.num_heads, "ViT_region")
        self.per_head = settings.all_heads or settings.heads is not None
        """Draw every selected head (and head pair); otherwise only the mean over heads."""

    def render(
        self,
        slide_id: str,
        regions: Sequence[Region],
        out_dir: Path,
        show_progress: bool = True,
        source: Optional[RegionSource] = None,
    ) -> None:
        """Write every output of the slide under ``out_dir`` (``attention.csv`` last).

        Args:
            regions: the slide's regions (level-0 corners).
            source: reads the regions from a whole slide, whose thumbnail is then drawn under the
                slide canvases; ``None``: each region is its image file (``region.path``).
        """
        s = self.settings
        if not regions:
            raise ValueError(f"slide {slide_id} has no regions")
        self._start(slide_id, regions, source)
        export = AttentionExport(slide_id, s.region_size, s.patch_size, s.geojson_patches, self.size_lv0)
        factor_tiles, image_tiles, local, global_, tissue = [], [], [], [], []
        needs_tissue = self.slide_model is not None and self.slide_model.settings.tissue_channel
        heads = len(self.region_heads) * len(self.patch_heads)
        for region in tqdm(regions, desc=slide_id, unit="region", leave=False, disable=not show_progress):
            array = source.read(region) if source is not None else read_region(region.path, s.region_size)
            maps, mean_factorized, image_tile = self._draw_region(
                region, torch.from_numpy(array).permute(2, 0, 1), out_dir
            )
            export.add_region(region.x, region.y, maps.tokens.region.numpy(), self.region_heads)
            if self.slide_model is not None:
                factor_tiles.append(pool(mean_factorized / heads, image_tile.shape[0]))
                image_tiles.append(image_tile)
                local.append(maps.tokens.local)
                global_.append(maps.tokens.global_)
            if needs_tissue:  # the model's ViT_region masks background: the fractions of hs2p's HSV rule
                tissue.append(torch.from_numpy(tissue_from_pixels(array, s.region_size // s.patch_size)))
        slide_scores = weights = None
        if self.slide_model is not None:
            fractions = torch.stack(tissue) if tissue else None
            weights = slide_attention(self.slide_model, torch.stack(local), torch.stack(global_), fractions)
            slide_scores = rank_normalise(weights)
            for region, score, factor_tile, image_tile in zip(
                regions, slide_scores, factor_tiles, image_tiles, strict=True
            ):
                self._paste("slide", region, blended(score, factor_tile, s.gamma), image_tile)
        self._save(out_dir)
        export.write(out_dir, slide_scores, weights)

    def _start(self, slide_id: str, regions: Sequence[Region], source: Optional[RegionSource]) -> None:
        """The slide's canvas geometry: a whole slide is drawn entirely, over its thumbnail."""
        s = self.settings
        self.slide_id = slide_id
        self.coordinates = [(r.x, r.y) for r in regions]
        self.size_lv0 = source.footprint_lv0 if source is not None else s.region_size
        slide_extent = max(source.level0_size()) if source is not None else 0
        self.downsample = choose_downsample(self.coordinates, s, self.size_lv0, slide_extent)
        tile = s.region_size // self.downsample
        self.background = source.thumbnail(tile / self.size_lv0) if source is not None else None
        self.canvases: dict[str, SlideCanvas] = {}

    def _draw_region(self, region: Region, pixels: torch.Tensor, out_dir: Path):
        """Every map of one ``(3, R, R)`` uint8 region: PNGs and canvas tiles.

        Returns:
            the region's maps, its summed factorized scores ``(S, S)`` and its canvas-size image tile.
        """
        s = self.settings
        size, tile = s.region_size // s.downscale, s.region_size // self.downsample
        maps = region_maps(self.reader, pixels, size, s.granular, self.patch_heads, self.region_heads)
        image, image_tile = resize(pixels, size), resize(pixels, tile)
        name = f"{region.x}_{region.y}.png"
        patch_dir, region_dir = out_dir / "patch" / str(s.patch_size), out_dir / "region" / str(s.region_size)
        hierarchical_dir = out_dir / f"hierarchical_{s.region_size}_{s.patch_size}"
        mean_factorized = np.zeros((size, size))
        for j_index, j in enumerate(self.region_heads):
            for i_index, i in enumerate(self.patch_heads):
                scores = factorized(maps.region[j_index], maps.patch[i_index])
                mean_factorized += scores
                if self.per_head:
                    pair = f"rhead_{j}_phead_{i}"
                    self._draw(pair, scores, image, image_tile, region, hierarchical_dir / pair / name)
        if self.per_head:
            for index, head in enumerate(self.patch_heads):
                folder = patch_dir / f"head_{head}"
                self._draw(f"patch_head_{head}", maps.patch[index], image, image_tile, region, folder / name)
            for index, head in enumerate(self.region_heads):
                folder = region_dir / f"head_{head}"
                self._draw(f"region_head_{head}", maps.region[index], image, image_tile, region, folder / name)
        else:  # the mean over heads, re-ranked: one map per level
            for level, scores, folder in (
                ("patch", maps.patch.mean(axis=0), patch_dir),
                ("region", maps.region.mean(axis=0), region_dir),
                ("factorized", mean_factorized, hierarchical_dir),
            ):
                self._draw(f"{level}_mean", rank_normalise(scores), image, image_tile, region, folder / "mean" / name)
        return maps, mean_factorized, image_tile

    def _canvas(self, name: str, channels: int = 3) -> SlideCanvas:
        if name not in self.canvases:
            self.canvases[name] = SlideCanvas(
                self.coordinates, self.settings.region_size, self.downsample, channels, self.size_lv0, self.background
            )
        return self.canvases[name]

    def _draw(
        self, name: str, scores: np.ndarray, image: np.ndarray, image_tile: np.ndarray, region: Region, path: Path
    ) -> None:
        s = self.settings
        if s.save_region_maps:
            save_png(with_colorbar(blend(image, scores, s.cmap, s.alpha), s.cmap), path)
        self._paste(name, region, pool(scores, image_tile.shape[0]), image_tile)

    def _paste(self, name: str, region: Region, scores: np.ndarray, image_tile: np.ndarray) -> None:
        s = self.settings
        glass = ~tissue_mask(image_tile) if s.restrict_to_tissue else None
        self._canvas(name).paste(
            region.x, region.y, on_tissue(blend(image_tile, scores, s.cmap, s.alpha), image_tile, glass)
        )
        if s.threshold is not None:
            tile = thresholded(image_tile, scores, s.cmap, s.alpha, s.threshold)
            self._canvas(f"{name}_thresh").paste(region.x, region.y, on_tissue(tile, image_tile, glass))
        if s.highlight is not None:
            self._canvas(f"{name}_highlight", 4).paste(
                region.x, region.y, highlighted(image_tile, scores, s.highlight, s.opacity)
            )

    def _save(self, out_dir: Path) -> None:
        for name, canvas in self.canvases.items():
            canvas.save(
                out_dir / "slide" / f"{name}.png",
                self.settings.cmap,
                title=f"{self.slide_id}: {name.replace('_', ' ')}",
            )
        if not self.per_head:
            names = ["patch_mean", "region_mean", "factorized_mean"] + (["slide"] if "slide" in self.canvases else [])
            images = [self.canvases[n].pixels for n in names]
            save_png(side_by_side(images, [n.replace("_", " ") for n in names]), out_dir / "summary.png")
            return
        for level, heads in (("patch", self.patch_heads), ("region", self.region_heads)):
            images = [self.canvases[f"{level}_head_{h}"].pixels for h in heads]
            save_png(side_by_side(images, [f"{level} head {h}" for h in heads]), out_dir / f"{level}.png")
