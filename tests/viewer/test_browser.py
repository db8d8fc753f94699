"""view_slides.py's site in a real browser: Debian's headless Chromium (driven by Playwright) opens the pages from disk
(``file://``) and the checks read what it renders, the pixels of screenshots and the page's text, on a viewer built
from a heatmap run of two synthetic slides (flat pink stain on a light grey background)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import colormaps
from omegaconf import OmegaConf
from PIL import Image
from playwright.sync_api import Page

from scripts.viewer_screenshots import CHROMIUM, chromium_page
from source.config.heatmaps import HeatmapConfig
from source.config.slide_model import slide_model_settings
from source.config.viewer import ViewerConfig
from source.engines.heatmap_job import run_heatmap_job
from source.engines.viewer_job import run_viewer_job
from source.models.factory import build_slide_model
from source.viewer.assets import MissingAssetsError, check_assets
from source.viewer.layers import ATTENTION_CMAP
from tests.helpers import training_config
from tests.wsi.conftest import write_csv
from tests.wsi.slides import write_pyramid

if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM}: apt-get install chromium", allow_module_level=True)
try:
    check_assets()
except MissingAssetsError as error:
    pytest.skip(str(error), allow_module_level=True)

STAIN, BACKGROUND = (222, 140, 190), (244, 244, 244)
"""The synthetic slides' colours: tissue (with a little noise) and the glass around it."""
REGION = 256
"""Region side in level-0 px (0.5 um/px slides, ``region_size`` 256)."""
SLIDES = ("alpha", "beta")
WINDOW = (1200, 800)
"""The browser window in CSS px (one device pixel each): the viewer is what the panel leaves of it."""


def synthetic_slide(path: Path, seed: int) -> Path:
    """A pyramid of 4 x 3 regions at 0.5 um/px: stain over the top left 3 x 2 regions (hs2p keeps tissue of more than
    4 patches), background elsewhere."""
    pixels = np.empty((3 * REGION, 4 * REGION, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    stain = np.asarray(STAIN, dtype=np.float32) + np.random.default_rng(seed).normal(0, 8, (2 * REGION, 3 * REGION, 3))
    pixels[: 2 * REGION, : 3 * REGION] = np.clip(stain, 0, 255).astype(np.uint8)
    return write_pyramid(path, pixels, 0.5, (1, 4))


def abmil_checkpoint(path: Path) -> Path:
    """A ``best.pt`` of an untrained, seeded ABMIL classifier on ViT_region features: slide-level attention."""
    cfg = training_config("classification", features_dir="unused")
    cfg.model.aggregator, cfg.model.pretrain_vit_region = "abmil", None
    torch.manual_seed(0)
    state = build_slide_model(slide_model_settings(cfg), 2).state_dict()
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    torch.save({"model": state, "config": config, "task": {"kind": "classification"}, "epoch": 0}, path)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A viewer run (whole slides tiled, not only their regions) of a heatmap run with slide attention (tiny random
    encoders) over the synthetic slides."""
    out = tmp_path_factory.mktemp("browser")
    rows = [{"slide_id": s, "image_path": str(synthetic_slide(out / f"{s}.tif", i))} for i, s in enumerate(SLIDES)]
    heatmaps = {
        "wsi_csv": str(write_csv(out / "slides.csv", rows)),
        "region_size": REGION,
        "slide_weights": str(abmil_checkpoint(out / "best.pt")),
        "vit_patch_arch": "vit_tiny",
        "patch_weights": None,
        "region_weights": None,
        "save_region_maps": False,
        "output_dir": str(out),
        "run_id": "h",
        "device": "cpu",
    }
    assert run_heatmap_job(OmegaConf.merge(OmegaConf.structured(HeatmapConfig), heatmaps)) == 0
    viewer = {"heatmap_run": str(out / "heatmaps" / "h"), "tissue_bbox_only": False, "output_dir": str(out)}
    assert run_viewer_job(OmegaConf.merge(OmegaConf.structured(ViewerConfig), viewer | {"run_id": "v"})) == 0
    return out


@pytest.fixture(scope="module")
def browser() -> tuple[Page, list[str]]:
    """One Chromium tab for the module, and what its pages report as errors (exceptions, files that fail to load)."""
    errors = []

    def console(message) -> None:
        if message.type == "error":
            errors.append(message.text)

    with chromium_page(*WINDOW) as tab:
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("console", console)
        yield tab, errors


@pytest.fixture
def page(browser):
    """The module's tab; the test fails if its pages reported an error meanwhile."""
    tab, errors = browser
    errors.clear()
    yield tab
    assert errors == [], "the page reported errors"


def open_slide(page, site: Path, slide_id: str) -> list[dict]:
    """Open a slide's page, wait until its slide and first overlays are drawn; returns its regions."""
    page.goto((site / "viewer" / "v" / "slides" / slide_id / "index.html").as_uri())
    page.wait_for_function("window.viewerState && window.viewerState.ready")
    return page.evaluate("window.viewerState.regions")


def show_only(page, layer) -> np.ndarray:
    """Show the slide with only ``layer`` over it (None: no overlay), wait until it is drawn (``showOnly``'s promise)
    and return the viewer's pixels ``(H, W, 3)``."""
    page.evaluate("name => window.viewerState.showOnly(name)", layer)
    png = page.locator("#viewer").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def on_screen(page, row: int) -> tuple[int, int]:
    """Where region ``row``'s centre is in the viewer's screenshot (pixels from its top left corner)."""
    centre = page.evaluate("row => window.viewerState.regionCenter(row)", row)
    corner = page.evaluate(
        "() => { const r = document.getElementById('viewer').getBoundingClientRect();"
        " return {x: r.left + window.scrollX, y: r.top + window.scrollY}; }"
    )
    return round(centre["x"] - corner["x"]), round(centre["y"] - corner["y"])


def colour_at(pixels: np.ndarray, x: int, y: int, half: int = 4) -> np.ndarray:
    """The median colour of the ``(2 half + 1)``-px square around ``(x, y)`` (JPEG tiles and noise averaged out)."""
    assert half <= x < pixels.shape[1] - half and half <= y < pixels.shape[0] - half, (x, y, pixels.shape)
    return np.median(pixels[y - half : y + half + 1, x - half : x + half + 1].reshape(-1, 3), axis=0)


def intensity(colour: np.ndarray) -> float:
    """Luma (Rec. 601) of an RGB colour: ``inferno``, the attention map, gets lighter from its lowest value (black)
    to its highest (pale yellow), so a higher attention is a higher intensity."""
    return float(np.dot(colour, [0.299, 0.587, 0.114]))


def slide_attention(site: Path, slide_id: str) -> pd.DataFrame:
    """The heatmap run's slide-level attention of each region: ``x, y, score`` (the run's own table)."""
    table = pd.read_csv(site / "heatmaps" / "h" / slide_id / "attention.csv")
    return table[table.level == "slide"][["x", "y", "score"]].reset_index(drop=True)


def test_the_viewer_shows_tissue_where_the_slide_has_tissue_and_background_elsewhere(page, site):
    regions = open_slide(page, site, "alpha")
    assert len(regions) == 6 and "attention" in page.evaluate("window.viewerState.layers")
    pixels = show_only(page, None)
    for region in regions:
        assert np.abs(colour_at(pixels, *on_screen(page, region["row"])) - STAIN).max() <= 25, region
    # level-0 -> screen from two region centres (the same scale across and down), then two points of glass
    first, last = regions[0], max(regions, key=lambda r: r["x"] + r["y"])
    (x0, y0), (x1, y1) = on_screen(page, first["row"]), on_screen(page, last["row"])
    scale = (x1 - x0) / (last["x"] - first["x"])
    assert (y1 - y0) / (last["y"] - first["y"]) == pytest.approx(scale, rel=0.02) and scale > 0.2
    for x, y in [(3.5 * REGION, 1.5 * REGION), (1.0 * REGION, 2.5 * REGION)]:
        point = (round(x0 + (x - first["x"] - REGION / 2) * scale), round(y0 + (y - first["y"] - REGION / 2) * scale))
        assert np.abs(colour_at(pixels, *point) - BACKGROUND).max() <= 12, (x, y)


def test_attention_colours_the_highest_region_more_intensely_than_the_lowest(page, site):
    regions = open_slide(page, site, "alpha")
    scores = slide_attention(site, "alpha")
    assert [[r["x"], r["y"]] for r in regions] == scores[["x", "y"]].values.tolist()
    pixels = show_only(page, "attention")
    highest, lowest = int(scores.score.idxmax()), int(scores.score.idxmin())
    colours = {row: colour_at(pixels, *on_screen(page, row)) for row in (highest, lowest)}
    # 6 regions ranked 1/6 .. 1: inferno's luma goes from about 30 to 240
    assert intensity(colours[highest]) > intensity(colours[lowest]) + 100
    for row, colour in colours.items():  # drawn opaque, unsmoothed: the colour map's own colour
        expected = colormaps[ATTENTION_CMAP](scores.score[row], bytes=True)[:3]
        assert np.abs(colour - expected).max() <= 6, (row, colour, expected)


def test_hover_shows_the_row_and_attention_of_the_region_under_the_cursor(page, site):
    regions = open_slide(page, site, "alpha")
    scores = slide_attention(site, "alpha")
    show_only(page, "attention")
    page.mouse.move(0, 0)  # off the slide: each move below lands on a new region
    for region in regions:
        centre = page.evaluate("row => window.viewerState.regionCenter(row)", region["row"])
        page.mouse.move(centre["x"], centre["y"], steps=2)
        info = page.locator(f'#region-info[data-row="{region["row"]}"]')
        info.wait_for()
        text = info.inner_text()
        for name in ("row", "x", "y"):
            assert re.search(rf"\b{name} {region[name]}\b", text), (name, text)
        shown = float(re.search(r"^attention (\S+)$", text, re.MULTILINE).group(1))  # toPrecision(4)
        assert shown == pytest.approx(scores.score[region["row"]], rel=5e-4), text


def test_the_index_lists_every_slide_and_the_filter_hides_the_others(page, site):
    page.goto((site / "viewer" / "v" / "index.html").as_uri())
    rows = page.locator("table#slides tbody tr[data-slide-id]")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.slideId)")) == sorted(SLIDES)
    page.fill("#filter", "bet")
    page.locator('tr[data-slide-id="alpha"]').wait_for(state="hidden")
    assert page.locator('tr[data-slide-id="beta"]').is_visible()
    page.fill("#filter", "")
    page.locator('tr[data-slide-id="alpha"]').wait_for(state="visible")
