"""view_slides.py on real tiny runs: the site's files, the pyramid of the regions' box, overlay colours and inline
data equal to the runs' own values, assets, resume, failures, shared runs, bounded reads (the browser: test_browser.py).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from omegaconf import OmegaConf
from PIL import Image

from source.config.contribution import ContributionConfig
from source.config.heatmaps import HeatmapConfig
from source.config.viewer import ViewerConfig
from source.engines.contribution_job import run_contribution_job
from source.engines.extraction_job import run_extraction_job
from source.engines.heatmap_job import run_heatmap_job
from source.engines.viewer_job import run_viewer_job
from source.errors import ConfigError
from source.viewer import assets, deepzoom, site
from source.viewer.geometry import lattice
from source.viewer.overlays import GRID_COLOUR, grid_overlay
from source.viewer.pyramid import SlideView
from tests.helpers import TEST_DEVICE, extraction_config
from tests.training_data import abmil_checkpoint
from tests.wsi.conftest import write_csv

SLIDE = "quarter"
DZI_XMLNS = "http://schemas.microsoft.com/deepzoom/2008"


@pytest.fixture(scope="module")
def runs(slides_dir, tmp_path_factory):
    """A 0.25 um/px slide: an extraction (six 512-px regions at 0.5 um/px, 1024 level-0 px each), a heatmap run with
    slide weights and a contribution run of the same model, and a predictions csv."""
    out = tmp_path_factory.mktemp("viewer_runs")
    csv = write_csv(out / "slides.csv", [{"slide_id": SLIDE, "image_path": str(slides_dir / "he_025_no2x.tif")}])
    tiny = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None}
    cfg = extraction_config(output_dir=str(out), run_id="ex", wsi_csv=str(csv), region_size=512, num_workers=0, **tiny)
    assert run_extraction_job(cfg) == 0
    extraction = out / "feature_extraction" / "ex"
    checkpoint = abmil_checkpoint(extraction / "features" / "slide", out / "best.pt")
    heatmaps = {"vit_patch_arch": "vit_tiny", "patch_weights": None, "region_weights": None, "device": TEST_DEVICE}
    heatmaps |= {"output_dir": str(out), "run_id": "hm", "extraction_run": str(extraction)}
    heatmaps |= {"slide_weights": str(checkpoint), "save_region_maps": False, "canvas_width": 256}
    assert run_heatmap_job(OmegaConf.merge(OmegaConf.structured(HeatmapConfig), heatmaps)) == 0
    contributions = {"output_dir": str(out), "run_id": "c", "device": TEST_DEVICE, "checkpoint": str(checkpoint)}
    contributions |= {"slide_id": SLIDE, "extraction_run": str(extraction), "top_k": 1, "canvas_width": 256}
    assert run_contribution_job(OmegaConf.merge(OmegaConf.structured(ContributionConfig), contributions)) == 0
    predictions = out / "test_predictions.csv"
    pd.DataFrame(
        {"slide_id": [SLIDE], "label": [1], "prob_0": [0.25], "prob_1": [0.75], "pred": [1], "pred_label": ["1"]}
    ).to_csv(predictions, index=False)
    return {
        "out": out,
        "slide": slides_dir / "he_025_no2x.tif",
        "extraction": extraction,
        "heatmap": out / "heatmaps" / "hm",
        "contribution": out / "contributions" / "c",
        "predictions": predictions,
    }


def viewer(out: Path, run_id: str, **values):
    cfg = OmegaConf.merge(OmegaConf.structured(ViewerConfig), {"output_dir": str(out), "run_id": run_id} | values)
    return run_viewer_job(cfg), out / "viewer" / run_id


def page_data(page: Path) -> dict:
    match = re.search(r'<script id="slide-data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    return json.loads(match.group(1))


def pixel_of(layer: dict, folder: Path, x: float, y: float) -> np.ndarray:
    """The RGBA pixel of a layer's image at level-0 (x, y)."""
    image = np.asarray(Image.open(folder / layer["url"]))
    cell = layer["box"]["width"] / image.shape[1]
    return image[int((y - layer["box"]["y"]) / cell), int((x - layer["box"]["x"]) / cell)]


@pytest.fixture(scope="module")
def site_run(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("viewer")
    code, run = viewer(
        out,
        "v",
        heatmap_run=str(runs["heatmap"]),
        contribution_run=str(runs["contribution"]),
        predictions=str(runs["predictions"]),
    )
    assert code == 0
    return run


def test_index_and_slide_page_follow_the_page_contract(site_run):
    index = (site_run / "index.html").read_text()
    assert '<table id="slides">' in index and '<input id="filter"' in index
    row = re.search(r'<tr data-slide-id="quarter"[^>]*>(.*?)</tr>', index, re.S).group(1)
    assert 'href="slides/quarter/index.html"' in row and 'src="slides/quarter/thumbnail.jpg"' in row
    assert "probability 0.75" in row and "best.pt" in row
    page = (site_run / "slides" / SLIDE / "index.html").read_text()
    data = page_data(site_run / "slides" / SLIDE / "index.html")
    names = [layer["name"] for layer in data["layers"]]
    assert names == ["attention", "contributions", "region_attention", "grid", "tissue"]
    for name in names:
        assert (
            f'data-layer="{name}"' in page
            and f'type="range" min="0" max="1" step="0.05" value="0.5" data-layer-opacity="{name}"' in page
        )
    assert [layer["name"] for layer in data["layers"] if layer["visible"]] == ["attention"]
    assert '<div id="viewer"></div>' in page and '<div id="region-info">' in page
    assert pd.read_csv(site_run / "slides.csv").status.tolist() == ["success"]


def test_inline_values_and_overlay_colours_are_the_runs_own(site_run, runs):
    folder = site_run / "slides" / SLIDE
    data = page_data(folder / "index.html")
    layers = {layer["name"]: layer for layer in data["layers"]}
    attention = pd.read_csv(runs["heatmap"] / SLIDE / "attention.csv")
    slide_rows = attention[attention.level == "slide"].set_index(["region_x", "region_y"]).score
    tokens = attention[attention.level == "region"].groupby(["region_x", "region_y", "patch"]).score.mean()
    contributions = pd.read_csv(runs["contribution"] / SLIDE / "contributions.csv").sort_values("region")
    limit = contributions.contribution.abs().max()
    regions = data["regions"]
    assert [[r["x"], r["y"]] for r in regions] == contributions[["x", "y"]].values.tolist()
    assert {r["width"] for r in regions} == {1024}
    for region, contribution in zip(regions, contributions.contribution, strict=True):
        x, y = region["x"], region["y"]
        assert region["values"] == {"attention": slide_rows[(x, y)], "contributions": pytest.approx(contribution)}
        expected = colormaps["inferno"](slide_rows[(x, y)], bytes=True)
        assert tuple(pixel_of(layers["attention"], folder, x + 512, y + 512)) == expected
        expected = colormaps["RdBu_r"]((contribution + limit) / (2 * limit), bytes=True)
        assert tuple(pixel_of(layers["contributions"], folder, x + 512, y + 512)) == expected
        patches = np.array(region["patches"]["region_attention"])
        assert patches.shape == (2, 2)
        for patch in range(4):
            row, col = divmod(patch, 2)
            assert patches[row, col] == pytest.approx(tokens[(x, y, patch)])
            centre = (x + col * 512 + 256, y + row * 512 + 256)
            assert tuple(pixel_of(layers["region_attention"], folder, *centre)) == colormaps["inferno"](
                tokens[(x, y, patch)], bytes=True
            )
    attention_image = Image.open(folder / layers["attention"]["url"])
    assert attention_image.size == (2, 3), "one pixel per region: 2 x 3 regions"
    assert Image.open(folder / layers["region_attention"]["url"]).size == (4, 6), "2 x 2 patches per region"
    assert np.asarray(Image.open(folder / layers["attention"]["url"]))[..., 3].min() == 255
    assert (layers["contributions"]["vmin"], layers["contributions"]["vmax"]) == pytest.approx((-limit, limit))
    top = [r for r in regions if "top_region" in r]
    assert top and all((folder / r["top_region"]).is_file() for r in top)


def test_the_pyramid_tiles_only_the_regions_box_at_every_level(site_run, he_pixels):
    folder = site_run / "slides" / SLIDE
    data = page_data(folder / "index.html")
    box = data["box"]
    assert box == {"x": 52, "y": 68, "width": 2048, "height": 3072}, "the regions' box (the last row is over the edge)"
    image = data["tile_source"]["Image"]
    assert image["Size"] == {"Width": "2048", "Height": "3072"} and image["Url"] == "tiles/slide_files/"
    levels = math.ceil(math.log2(3072)) + 1
    tiles = folder / "tiles" / "slide_files"
    assert sorted(int(p.name) for p in tiles.iterdir()) == list(range(levels))
    for level in range(levels):
        scale = 2 ** (levels - 1 - level)
        cols, rows = math.ceil(math.ceil(2048 / scale) / 254), math.ceil(math.ceil(3072 / scale) / 254)
        expected = {f"{c}_{r}.jpeg" for c in range(cols) for r in range(rows)}
        assert {p.name for p in (tiles / str(level)).iterdir()} == expected, level
    # the slide's pixels from the box's corner on, white beyond its edge; a coarse level is them area-averaged
    pixels = np.full((3072, 2048, 3), 255, dtype=np.uint8)
    pixels[: 2944 - 68] = he_pixels[68:, 52 : 52 + 2048]
    first = np.asarray(Image.open(tiles / str(levels - 1) / "0_0.jpeg")).astype(int)
    assert first.shape == (255, 255, 3) and np.abs(first - pixels[:255, :255]).mean() < 4
    coarse = np.asarray(Image.open(tiles / str(levels - 5) / "0_0.jpeg")).astype(int)
    expected = cv2.resize(pixels, (coarse.shape[1], coarse.shape[0]), interpolation=cv2.INTER_AREA).astype(int)
    assert coarse.shape == (192, 128, 3) and np.abs(coarse - expected).mean() < 6
    last = np.asarray(Image.open(tiles / str(levels - 1) / "7_12.jpeg")).astype(int)
    assert (last[-100:] > 245).all(), "white beyond the slide's edge"
    assert Image.open(folder / "thumbnail.jpg").size == (128, 192)


def test_assets_licence_and_no_network_reference(site_run):
    osd = site_run / "assets" / "openseadragon"
    assert (osd / "openseadragon.min.js").is_file() and (osd / "images" / "home_rest.png").is_file()
    assert "BSD" in (osd / "LICENSE.txt").read_text() or "Redistribution" in (osd / "LICENSE.txt").read_text()
    ours = [
        site_run / "index.html",
        *site_run.glob("slides/*/index.html"),
        *site_run.glob("assets/*.js"),
        site_run / "assets" / "viewer.css",
    ]
    assert len(ours) == 5
    for path in ours:
        text = path.read_text().replace(DZI_XMLNS, "")
        assert "http://" not in text and "https://" not in text, path
        assert "LICENSE.txt" in text or path.suffix != ".html"


def test_resume_skips_a_built_slide_and_writes_the_index_again(site_run, runs, monkeypatch):
    page = site_run / "slides" / SLIDE / "index.html"
    before = page.stat().st_mtime_ns
    (site_run / "index.html").unlink()

    def no_tiles(*args, **kwargs):
        raise AssertionError("a built slide was tiled again")

    monkeypatch.setattr(site, "write_deep_zoom", no_tiles)
    code, _ = viewer(
        site_run.parent.parent,
        "v",
        heatmap_run=str(runs["heatmap"]),
        contribution_run=str(runs["contribution"]),
        predictions=str(runs["predictions"]),
        resume=True,
    )
    assert code == 0 and page.stat().st_mtime_ns == before and (site_run / "index.html").is_file()


def test_a_slide_that_does_not_open_fails_alone(runs, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 100)
    csv = write_csv(
        tmp_path / "wsi.csv",
        [
            {"slide_id": "gone", "image_path": str(tmp_path / "moved.tif")},
            {"slide_id": "broken", "image_path": str(broken)},
            {"slide_id": "whole", "image_path": str(runs["slide"])},
        ],
    )
    code, run = viewer(tmp_path, "w", wsi_csv=str(csv))
    assert code == 1
    table = pd.read_csv(run / "slides.csv", keep_default_na=False).set_index("slide_id")
    assert "moved.tif' does not exist" in table.loc["gone", "error"]
    assert "cannot be opened" in table.loc["broken", "error"] and str(broken) in table.loc["broken", "error"]
    assert table.loc["whole", "status"] == "success" and table.loc["whole", "layers"] == "tissue"
    data = page_data(run / "slides" / "whole" / "index.html")
    assert data["box"] == {"x": 0, "y": 0, "width": 2208, "height": 2944}, "no regions: the whole slide"
    assert [layer["name"] for layer in data["layers"]] == ["tissue"] and data["regions"] == []
    assert not (run / "slides" / "broken").exists() and not list((run / "slides").glob(".*"))
    index = (run / "index.html").read_text()
    assert all(f'data-slide-id="{slide}"' in index for slide in ("gone", "broken", "whole"))


def test_reads_are_tile_sized_never_a_whole_level(runs, tmp_path, monkeypatch):
    reads = []
    original = SlideView.read_region

    def recorded(self, location, level, size):
        reads.append((level, tuple(size), self.level_dimensions[level]))
        return original(self, location, level, size)

    monkeypatch.setattr(SlideView, "read_region", recorded)
    code, run = viewer(tmp_path, "m", extraction_run=str(runs["extraction"]), tile_size=64, tile_overlap=1)
    assert code == 0
    bound = deepzoom.MAX_READ_FACTOR * (64 + 2)
    assert reads and max(max(size) for _, size, _ in reads) <= bound
    assert all(size[0] < dims[0] or size[1] < dims[1] for _, size, dims in reads), "a whole level was read"
    assert {level for level, _, _ in reads} == {0, 1}, "both levels of the slide are used"
    data = page_data(run / "slides" / SLIDE / "index.html")
    assert [layer["name"] for layer in data["layers"]] == ["grid", "tissue"], "an extraction run: regions, no values"
    assert len(data["regions"]) == 6 and data["regions"][0]["values"] == {}


def test_patch_contributions_are_n_by_n_pixels_per_region(runs, tmp_path):
    run = tmp_path / "contributions"
    shutil.copytree(runs["contribution"], run)
    rng = np.random.default_rng(0)
    rows = [(region, patch, *divmod(patch, 2), rng.normal()) for region in range(6) for patch in range(4)]
    table = pd.DataFrame(rows, columns=["region", "patch", "row", "col", "contribution"])
    table.insert(0, "slide_id", SLIDE)
    table.to_csv(run / SLIDE / "patch_contributions.csv", index=False)
    code, site_dir = viewer(tmp_path, "p", contribution_run=str(run))
    assert code == 0
    folder = site_dir / "slides" / SLIDE
    data = page_data(folder / "index.html")
    layer = next(layer for layer in data["layers"] if layer["name"] == "patch_contributions")
    assert [layer["name"] for layer in data["layers"] if layer["visible"]] == ["contributions"]
    limit = table.contribution.abs().max()
    for item in table.itertuples():
        region = data["regions"][item.region]
        assert region["patches"]["patch_contributions"][item.row][item.col] == pytest.approx(item.contribution)
        centre = (region["x"] + item.col * 512 + 256, region["y"] + item.row * 512 + 256)
        expected = colormaps["RdBu_r"]((item.contribution + limit) / (2 * limit), bytes=True)
        assert tuple(pixel_of(layer, folder, *centre)) == expected


def test_a_contribution_run_without_pixels_takes_the_regions_of_extraction_run(runs, tmp_path):
    run = tmp_path / "contributions"
    shutil.copytree(runs["contribution"], run)
    table = pd.read_csv(run / SLIDE / "contributions.csv")
    table.drop(columns=["x", "y"]).to_csv(run / SLIDE / "contributions.csv", index=False)
    (run / SLIDE / "contributions.geojson").unlink()
    code, site_dir = viewer(tmp_path, "e", contribution_run=str(run), extraction_run=str(runs["extraction"]))
    assert code == 0
    regions = page_data(site_dir / "slides" / SLIDE / "index.html")["regions"]
    assert [[r["x"], r["y"]] for r in regions] == table[["x", "y"]].values.tolist()
    assert [r["values"]["contributions"] for r in regions] == pytest.approx(table.contribution.tolist())
    code, site_dir = viewer(tmp_path, "f", contribution_run=str(run), wsi_csv=str(runs["out"] / "slides.csv"))
    assert code == 1
    error = pd.read_csv(site_dir / "slides.csv").error[0]
    assert "has no region corners (the run was given no pixels): set extraction_run" in error


def test_regions_off_one_grid_are_whole_pixels(tmp_path):
    corners = np.array([[0, 0], [1024, 0], [2048 + 256, 512]])  # a second contour's regions laid from its own corner
    grid = lattice(corners, 1024, 1)
    assert grid.per_region == 4 and (grid.width, grid.height) == (13, 6)
    assert grid.origins(corners).tolist() == [[0, 0], [4, 0], [9, 2]]
    assert lattice(corners, 1024, 16).per_region == 16


def test_grid_labels_stay_inside_their_region():
    # a contribution's label (.4g of a change of probability) has up to 10 characters: wider than the full-size font
    # (a fifth of the region's 96 px) fits in a region; a short label keeps that size
    corners = np.array([[0, 0], [1024, 0]])
    for value in ("-0.0003553", "-3.338e-05", "0.25"):
        pixels = np.asarray(grid_overlay(corners, 1024, [f"0\n{value}", ""]).image)
        assert pixels.shape == (96, 192, 4), "96 px per region"
        text = (pixels[..., 3] > 0) & (pixels[..., :3] != GRID_COLOUR[:3]).any(axis=-1)
        columns, rows = np.flatnonzero(text.any(axis=0)), np.flatnonzero(text.any(axis=1))
        assert columns.max() < 95, f"label {value!r} crosses region 0's right edge (column 95) into region 1"
        if value == "0.25":
            assert rows.max() - rows.min() >= 2 * 96 // 5, "two lines of the full-size font"
        else:
            assert columns.max() > 80, f"label {value!r} is shrunk more than it needs"


def test_a_shared_run_builds_each_slide_once_and_the_last_job_writes_the_index(runs, tmp_path):
    keys = {"extraction_run": str(runs["extraction"]), "shared_run": True}
    first, run = viewer(tmp_path, "s", **keys)
    assert first == 0 and (run / "index.html").is_file() and (run / "claims" / f"{SLIDE}.json").is_file()
    page = run / "slides" / SLIDE / "index.html"
    before = page.stat().st_mtime_ns
    second, _ = viewer(tmp_path, "s", **keys)
    assert second == 0 and page.stat().st_mtime_ns == before


def test_config_mistakes_are_one_clear_error(runs, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="nothing to view"):
        viewer(tmp_path, "x")
    with pytest.raises(ConfigError, match="is not a run folder of attention_visualization.py"):
        viewer(tmp_path, "x", heatmap_run=str(runs["contribution"].parent))
    no_slides = tmp_path / "single_images"
    no_slides.mkdir()
    shutil.copy(runs["heatmap"] / "config.yaml", no_slides)
    with pytest.raises(ConfigError, match="has no slides.csv: it drew no slide"):
        viewer(tmp_path, "x", heatmap_run=str(no_slides))
    failed = tmp_path / "failed_run"
    shutil.copytree(runs["heatmap"], failed, ignore=shutil.ignore_patterns(SLIDE))
    pd.read_csv(failed / "slides.csv").assign(status="failed").to_csv(failed / "slides.csv", index=False)
    with pytest.raises(ConfigError, match="has no slide drawn successfully"):
        viewer(tmp_path, "x", heatmap_run=str(failed))
    with pytest.raises(ConfigError, match="wsi_csv and extraction_run are both set"):
        viewer(tmp_path, "x", extraction_run=str(runs["extraction"]), wsi_csv=str(runs["predictions"]))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match="is not writable"):
        viewer(tmp_path / "a_file", "x", extraction_run=str(runs["extraction"]))
    monkeypatch.setattr(assets, "OPENSEADRAGON", tmp_path / "nothing")
    with pytest.raises(assets.MissingAssetsError, match=r"run `make viewer-assets` \(needs npm\)") as error:
        viewer(tmp_path, "x", extraction_run=str(runs["extraction"]))
    assert error.value.exit_code == 2 and not (tmp_path / "viewer").exists()
