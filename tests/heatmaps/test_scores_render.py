"""Pure pieces of the heatmaps: ranks, mosaics, shifts, formulas, canvases, GeoJSON."""

import json

import numpy as np
import pytest
import torch

from source.heatmaps.attention import shift_pixels
from source.heatmaps.export import AttentionExport
from source.heatmaps.render import blend, highlighted, thresholded
from source.heatmaps.scores import average_views, blended, factorized, patch_mosaic, rank_normalise, to_pixels
from source.heatmaps.stitch import SlideCanvas


def test_rank_normalise():
    values = np.array([[0.3, 0.1], [0.3, 5.0]])
    np.testing.assert_allclose(rank_normalise(values), [[2.5 / 4, 1 / 4], [2.5 / 4, 1.0]])
    scores = rank_normalise(np.random.default_rng(0).normal(size=(16, 16)))
    assert scores.min() > 0 and scores.max() == 1.0 and len(np.unique(scores)) == 256


def test_patch_mosaic_puts_patch_r_n_plus_c_at_row_r_column_c():
    n, heads, g = 3, 2, 4
    tokens = torch.arange(n * n, dtype=torch.float32).view(n * n, 1, 1, 1).expand(n * n, heads, g, g).clone()
    tokens[:, 1] *= -1
    mosaic = patch_mosaic(tokens, n)
    assert mosaic.shape == (heads, n * g, n * g)
    for r in range(n):
        for c in range(n):
            block = mosaic[:, r * g : (r + 1) * g, c * g : (c + 1) * g]
            assert torch.all(block[0] == r * n + c) and torch.all(block[1] == -(r * n + c))


def test_shifted_views_are_really_shifted_and_shifted_back():
    pixels = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    shifted = shift_pixels(pixels, 5)
    assert torch.equal(shifted[:, 5:, 5:], pixels[:, :-5, :-5])
    assert torch.all(shifted[:, :5] == 255) and torch.all(shifted[:, :, :5] == 255)
    # A translation-equivariant "model": the view's map is the original map moved by +shift.
    original = torch.rand(2, 32, 32)
    view = torch.zeros_like(original)
    view[:, 5:, 5:] = original[:, :-5, :-5]
    torch.testing.assert_close(average_views([(original, 0), (view, 5)]), original)
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    torch.testing.assert_close(to_pixels(tokens, 4)[0, :2, 2:], torch.full((2, 2), 2.0))


def test_factorized_and_blended_formulas():
    region, patch = np.full((4, 4), 0.2), np.linspace(0, 1, 16).reshape(4, 4)
    np.testing.assert_allclose(factorized(region, patch), (region + patch) / 2)
    np.testing.assert_allclose(blended(0.9, patch, 0.25), 0.25 * 0.9 + 0.75 * patch)


def test_render_variants():
    image = np.full((4, 4, 3), 100, np.uint8)
    scores = np.array([[0.1, 0.9] * 2] * 4)
    full = blend(image, scores, "jet", 1.0)
    assert not np.array_equal(full[0, 0], full[0, 1])
    np.testing.assert_array_equal(blend(image, scores, "jet", 0.0), image)
    cut = thresholded(image, scores, "jet", 0.5, threshold=0.5)
    np.testing.assert_array_equal(cut[:, 0], image[:, 0])
    assert not np.array_equal(cut[:, 1], image[:, 1])
    rgba = highlighted(image, scores, highlight=0.5, opacity=0.2)
    assert rgba.shape == (4, 4, 4) and rgba[0, 0, 3] == 51 and rgba[0, 1, 3] == 255


def test_canvas_places_each_region_at_its_coordinates(tmp_path):
    canvas = SlideCanvas([(0, 0), (1024, 2048)], region_size=1024, downsample=32)
    assert canvas.pixels.shape == (96, 64, 3) and (canvas.pixels == 255).all()
    canvas.paste(1024, 2048, np.zeros((32, 32, 3), np.uint8))
    assert (
        (canvas.pixels[64:96, 32:64] == 0).all()
        and (canvas.pixels[:64] == 255).all()
        and (canvas.pixels[:, :32] == 255).all()
    )
    path = canvas.save(tmp_path / "slide.png", "jet")
    from PIL import Image

    with Image.open(path) as saved:
        assert saved.height >= 96 and saved.width > 64  # the colorbar strip is on the right


def test_canvas_of_a_whole_slide_scales_level0_and_keeps_the_thumbnail():
    # 1024-px regions covering 2048 level-0 px each (a 0.25 um/px slide at 0.5 um/px), 32 canvas px per region
    thumbnail = np.full((80, 100, 3), 7, np.uint8)  # a 3200 x 2560 level-0 slide at 1/64
    canvas = SlideCanvas([(0, 0), (2048, 4096)], region_size=1024, downsample=32, size_lv0=2048, background=thumbnail)
    assert canvas.position(2048) == 32 and canvas.position(4096) == 64
    assert canvas.pixels.shape == (96, 100, 3), "as wide as the slide, as high as the last region"
    canvas.paste(2048, 4096, np.zeros((32, 32, 3), np.uint8))
    assert (
        (canvas.pixels[64:80, 32:64] == 0).all()
        and (canvas.pixels[:64] == 7).all()
        and (canvas.pixels[80:, 64:] == 255).all()
    )
    seams = SlideCanvas([(52 + 8105 * k, 68) for k in range(3)], region_size=4096, downsample=64, size_lv0=8105)
    assert [seams.position(52 + 8105 * k) for k in range(3)] == [0, 64, 128], (
        "regions on a grid tile without seams or overlaps"
    )


def test_geojson_and_csv(tmp_path):
    export = AttentionExport("s1", region_size=1024, patch_size=256, patches_in_geojson=True)
    tokens = np.random.default_rng(0).random((6, 4, 4))
    export.add_region(0, 0, tokens, heads=[0, 2])
    export.add_region(1024, 0, tokens, heads=[0, 2])
    export.write(tmp_path, slide_scores=np.array([0.5, 1.0]), slide_weights=np.array([0.3, 0.7]))
    collection = json.loads((tmp_path / "attention.geojson").read_text())
    regions = [f for f in collection["features"] if f["properties"]["classification"]["name"] == "region"]
    assert collection["type"] == "FeatureCollection" and len(regions) == 2
    assert regions[1]["geometry"]["coordinates"][0] == [[1024, 0], [2048, 0], [2048, 1024], [1024, 1024], [1024, 0]]
    assert regions[1]["properties"]["measurements"] == {"slide_attention_rank": 1.0, "slide_attention": 0.7}
    assert len(collection["features"]) == 2 + 2 * 16
    import pandas as pd

    table = pd.read_csv(tmp_path / "attention.csv")
    assert list(table.columns) == [
        "slide_id",
        "level",
        "x",
        "y",
        "size_lv0",
        "region_x",
        "region_y",
        "patch",
        "head",
        "score",
    ]
    region_rows = table[table.level == "region"]
    assert len(region_rows) == 2 * 2 * 16 and set(region_rows["head"]) == {0, 2}
    first = region_rows[(region_rows.region_x == 0) & (region_rows["head"] == 2)].sort_values("patch")
    np.testing.assert_allclose(first.score.to_numpy(), rank_normalise(tokens[2].ravel()))
    # each region row scores one 256-px patch: its own corner, row-major in the 4 x 4 grid
    assert first.x.tolist() == [256 * (p % 4) for p in range(16)] and first.y.tolist() == [
        256 * (p // 4) for p in range(16)
    ]
    assert (region_rows.size_lv0 == 256).all() and (table[table.level == "slide"].size_lv0 == 1024).all()
    slide_rows = table[table.level == "slide"]
    assert slide_rows.patch.isna().all() and slide_rows.score.tolist() == [0.5, 1.0]


@pytest.mark.parametrize("bad", [7, -1])
def test_unknown_head_index_is_a_config_error(bad):
    from source.errors import ConfigError
    from source.heatmaps.slide_render import head_list

    with pytest.raises(ConfigError, match="do not exist"):
        head_list([0, bad], 6, "ViT_patch")
