"""attention_visualization.py from whole-slide images: same scores as the saved regions, level-0 geometry,
thumbnails."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from source.config.heatmaps import HeatmapConfig
from source.engines.extraction_job import run_extraction_job
from source.engines.heatmap_job import run_heatmap_job
from source.errors import ConfigError
from source.heatmaps.stitch import TITLE_HEIGHT
from source.wsi.tissue import tissue_mask
from tests.helpers import REPO, TEST_DEVICE, extraction_config, slides_written_per_log, subprocess_environment
from tests.wsi.conftest import write_csv

TINY = {
    "vit_patch_arch": "vit_tiny",
    "patch_weights": None,
    "region_weights": None,
    "device": TEST_DEVICE,
    "downsample": 8,
}
KEYS = ["level", "region_x", "region_y", "patch", "head"]


def heatmaps(out, run_id, **overrides):
    cfg = OmegaConf.merge(
        OmegaConf.structured(HeatmapConfig), TINY | {"output_dir": str(out), "run_id": run_id} | overrides
    )
    code = run_heatmap_job(cfg)
    return code, out / "heatmaps" / run_id


def attention(run, slide_id="quarter"):
    return pd.read_csv(run / slide_id / "attention.csv").sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def runs(slides_dir, tmp_path_factory):
    """A 0.25 um/px slide: an extraction (512-px regions at 0.5 um/px, saved as PNG too), then heatmaps
    from its region PNGs, from wsi_csv and from the extraction run."""
    out = tmp_path_factory.mktemp("wsi_heatmaps")
    csv = write_csv(out / "slides.csv", [{"slide_id": "quarter", "image_path": str(slides_dir / "he_025_no2x.tif")}])
    cfg = extraction_config(
        output_dir=str(out),
        run_id="ex",
        wsi_csv=str(csv),
        save_region_images=True,
        vit_patch_arch="vit_tiny",
        pretrain_vit_patch=None,
        pretrain_vit_region=None,
        region_size=512,
        num_workers=0,
    )
    assert run_extraction_job(cfg) == 0
    extraction = out / "feature_extraction" / "ex"
    results = {"extraction": extraction}
    for name, keys in (
        ("png", {"region_dir": str(extraction / "region_images"), "format": "png", "region_size": 512}),
        ("wsi", {"wsi_csv": str(csv), "region_size": 512}),
        ("run", {"extraction_run": str(extraction)}),  # region_size comes from the run
    ):
        code, results[name] = heatmaps(out, name, geojson_patches=True, **keys)
        assert code == 0, name
    return results


def test_wsi_and_extraction_run_heatmaps_score_the_regions_like_their_lossless_pngs(runs):
    reference = attention(runs["png"])
    for name in ("wsi", "run"):
        table = attention(runs[name])
        pd.testing.assert_frame_equal(table[KEYS], reference[KEYS])
        np.testing.assert_allclose(table.score, reference.score, atol=1e-6)
        for map_path in sorted((runs["png"] / "quarter" / "hierarchical_512_256" / "mean").glob("*.png")):
            ours = np.asarray(Image.open(runs[name] / "quarter" / "hierarchical_512_256" / "mean" / map_path.name))
            assert np.abs(ours.astype(int) - np.asarray(Image.open(map_path)).astype(int)).max() <= 1, map_path.name
    regions = pd.read_csv(runs["extraction"] / "regions.csv")
    assert sorted(zip(regions.x, regions.y, strict=True)) == sorted(
        set(zip(reference.region_x, reference.region_y, strict=True))
    )


def test_geometry_is_in_level0_pixels_of_the_original_slide(runs):
    # 512 px at 0.5 um/px on a 0.25 um/px slide cover 1024 level-0 px; a 256-px patch 512
    collection = json.loads((runs["run"] / "quarter" / "attention.geojson").read_text())
    regions = [f for f in collection["features"] if f["properties"]["classification"]["name"] == "region"]
    patches = [f for f in collection["features"] if f["properties"]["classification"]["name"] == "patch"]
    assert len(regions) == 6 and len(patches) == 6 * 4
    for feature, side in [(f, 1024) for f in regions] + [(f, 512) for f in patches]:
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert (ring.max(axis=0) - ring.min(axis=0)).tolist() == [side, side]
    first = next(f for f in regions if f["properties"]["name"] == "52_68")  # a region corner of regions.csv
    assert first["geometry"]["coordinates"][0][2] == [52 + 1024, 68 + 1024]
    table = attention(runs["run"])
    rows = table[(table.region_x == 52) & (table.region_y == 68) & (table["head"] == 0)].sort_values("patch")
    assert rows.x.tolist() == [52, 52 + 512, 52, 52 + 512] and rows.y.tolist() == [68, 68, 68 + 512, 68 + 512]
    assert (rows.size_lv0 == 512).all()
    assert (attention(runs["png"]).size_lv0 == 256).all(), (
        "region folders know no footprint: their pixels are level-0 pixels"
    )
    assert pd.read_csv(runs["run"] / "slides.csv").tile_size_lv0.tolist() == [1024]


def test_slide_canvas_is_drawn_over_the_slide_thumbnail(runs, he_pixels):
    # downsample 8: a 512-px region is 64 canvas px for 1024 level-0 px, so 1 canvas px = 16 level-0 px
    canvas = np.asarray(Image.open(runs["wsi"] / "quarter" / "slide" / "patch_mean.png").convert("RGB"))[
        TITLE_HEIGHT:
    ].astype(int)
    thumbnail = cv2.resize(he_pixels, (2208 // 16, 2944 // 16), interpolation=cv2.INTER_AREA).astype(int)
    left_strip = slice(0, 52 // 16)  # left of every region (x >= 52): the slide as it is
    assert np.abs(canvas[: 2944 // 16, left_strip] - thumbnail[:, left_strip]).mean() < 6
    inside = canvas[68 // 16 + 2 : 68 // 16 + 60, 52 // 16 + 2 : 52 // 16 + 60]
    plain = thumbnail[68 // 16 + 2 : 68 // 16 + 60, 52 // 16 + 2 : 52 // 16 + 60]
    tissue = tissue_mask(plain.astype(np.uint8))  # restrict_to_tissue (the default): glass keeps the thumbnail
    assert tissue.mean() > 0.05 and np.abs(inside - plain)[tissue].mean() > 20, "tissue is coloured by attention"
    assert np.abs(inside - plain)[~tissue].mean() < 6, "glass inside a region shows the slide as it is"
    white = canvas[2944 // 16 + 1 : 3140 // 16, 0 : 52 // 16]  # below the slide, beside the last regions
    assert white.size and (white == 255).all()
    png_canvas = np.asarray(Image.open(runs["png"] / "quarter" / "slide" / "patch_mean.png").convert("RGB"))[
        TITLE_HEIGHT:
    ]
    assert (png_canvas[: 68 // 8, : 52 // 8] == 255).all(), (
        "region folders have no thumbnail: white outside the regions"
    )


def test_extraction_run_and_slide_choice_errors(runs, tmp_path):
    with pytest.raises(ConfigError, match="read region images"):
        png_extraction = tmp_path / "png_run"
        png_extraction.mkdir()
        (png_extraction / "config.yaml").write_text("region_dir: /data/regions\nregion_size: 512\npatch_size: 256\n")
        (png_extraction / "slides.csv").write_text("slide_id,status\na,success\n")
        heatmaps(tmp_path, "x", extraction_run=str(png_extraction))
    with pytest.raises(ConfigError, match="is not an extraction run folder"):
        heatmaps(tmp_path, "x", extraction_run=str(tmp_path))
    with pytest.raises(ConfigError, match="none of the requested slide ids"):
        heatmaps(tmp_path, "x", extraction_run=str(runs["extraction"]), slide_id="other")
    with pytest.raises(ConfigError, match="give one slide input, not region_dir and extraction_run"):
        heatmaps(tmp_path, "x", extraction_run=str(runs["extraction"]), region_dir=str(tmp_path))


def test_two_process_gloo_run_draws_each_whole_slide_once(slides_dir, tmp_path):
    rows = [
        {"slide_id": name, "image_path": str(slides_dir / file)}
        for name, file in (("a", "he_025_no2x.tif"), ("b", "he_025_2x.tif"), ("c", "he 0.5 é.tif"))
    ]
    csv = write_csv(tmp_path / "slides.csv", rows)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [
        str(REPO / "attention_visualization.py"),
        "--config-name",
        "default",
        f"wsi_csv={csv}",
        "region_size=512",
    ]
    command += [f"output_dir={tmp_path}", "run_id=ddp", "device=cpu"]
    command += ["vit_patch_arch=vit_tiny", "patch_weights=null", "region_weights=null", "save_region_maps=false"]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_environment(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "heatmaps" / "ddp"
    drawn = slides_written_per_log(run)
    assert sorted(drawn) == ["a", "b", "c"] and all(len(logs) == 1 for logs in drawn.values())
    assert len({logs[0] for logs in drawn.values()}) == 2, "both ranks drew"
    table = pd.read_csv(run / "slides.csv")
    assert table.slide_id.tolist() == ["a", "b", "c"] and table.tile_size_lv0.tolist() == [1024, 1024, 512]
    assert all((run / slide / "slide" / "factorized_mean.png").exists() for slide in "abc")
    assert sorted(p.name for p in (run / "coordinates").glob("*.meta.json")) == [
        f"{s}.coordinates.meta.json" for s in "abc"
    ]
