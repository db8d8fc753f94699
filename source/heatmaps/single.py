"""Maps of a single image given on its own: ``patch_fp`` (one patch) or ``region_fp`` (one region)."""

from __future__ import annotations

from pathlib import Path

import torch

from source.data.regions import read_region
from source.heatmaps.attention import AttentionReader, patch_maps, region_maps
from source.heatmaps.render import blend, side_by_side, with_colorbar
from source.heatmaps.scores import factorized
from source.heatmaps.settings import RenderSettings
from source.heatmaps.slide_render import head_list, resize
from source.heatmaps.stitch import save_png


def render_patch(reader: AttentionReader, path: Path, out_dir: Path, settings: RenderSettings) -> None:
    """``out_dir/patch/head_<i>.png`` for every head and the panel ``out_dir/patch.png``."""
    image = read_region(path, settings.patch_size)
    heads = head_list(settings.heads, reader.encoder.vit_patch.num_heads, "ViT_patch")
    maps = patch_maps(reader, torch.from_numpy(image).permute(2, 0, 1), settings.granular, heads)
    drawn = [blend(image, scores, settings.cmap, settings.alpha) for scores in maps]
    for head, picture in zip(heads, drawn, strict=True):
        save_png(with_colorbar(picture, settings.cmap), out_dir / "patch" / f"head_{head}.png")
    save_png(side_by_side([image, *drawn], ["patch", *(f"head {h}" for h in heads)]), out_dir / "patch.png")


def render_region(reader: AttentionReader, path: Path, out_dir: Path, settings: RenderSettings) -> None:
    """Patch-mosaic, region and factorized maps of one region, plus panels ``patch.png`` and ``region.png``."""
    pixels = torch.from_numpy(read_region(path, settings.region_size)).permute(2, 0, 1)
    patch_heads = head_list(settings.heads, reader.encoder.vit_patch.num_heads, "ViT_patch")
    region_heads = head_list(settings.heads, reader.encoder.vit_region.num_heads, "ViT_region")
    size = settings.region_size // settings.downscale
    maps = region_maps(reader, pixels, size, settings.granular, patch_heads, region_heads)
    image = resize(pixels, size)
    panels = {}
    for level, heads, level_maps in (("patch", patch_heads, maps.patch), ("region", region_heads, maps.region)):
        drawn = [blend(image, scores, settings.cmap, settings.alpha) for scores in level_maps]
        for head, picture in zip(heads, drawn, strict=True):
            save_png(with_colorbar(picture, settings.cmap), out_dir / level / f"head_{head}.png")
        panels[level] = side_by_side([image, *drawn], ["region", *(f"{level} head {h}" for h in heads)])
    for j_index, j in enumerate(region_heads):
        for i_index, i in enumerate(patch_heads):
            scores = factorized(maps.region[j_index], maps.patch[i_index])
            picture = with_colorbar(blend(image, scores, settings.cmap, settings.alpha), settings.cmap)
            save_png(picture, out_dir / "hierarchical" / f"rhead_{j}_phead_{i}.png")
    for level, panel in panels.items():
        save_png(panel, out_dir / f"{level}.png")


def stem(path: str | Path) -> str:
    """Output folder name of a single input: its file name without extension."""
    return Path(path).stem or "input"
