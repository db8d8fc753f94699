"""view_slides.py's site in a real browser: Debian's headless Chromium (driven by Playwright) opens the pages from disk
(``file://``) and the checks read what it renders, the pixels of screenshots and the page's text. Two viewers of the
same two synthetic slides (flat pink stain on a light grey background), each checked the same way: one built from a
heatmap run (layer ``attention``), one from a contribution run (layer ``contributions``)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from omegaconf import OmegaConf
from PIL import Image
from playwright.sync_api import Page

from scripts.viewer_screenshots import CHROMIUM, chromium_page
from source.config.contribution import ContributionConfig
from source.config.heatmaps import HeatmapConfig
from source.config.viewer import ViewerConfig
from source.engines.contribution_job import run_contribution_job
from source.engines.extraction_job import run_extraction_job
from source.engines.heatmap_job import run_heatmap_job
from source.engines.viewer_job import run_viewer_job
from source.viewer.assets import MissingAssetsError, check_assets
from source.viewer.layers import ATTENTION_CMAP, CONTRIBUTION_CMAP
from tests.helpers import extraction_config
from tests.training_data import abmil_checkpoint
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
TINY = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None}
"""Random, seeded encoders of the smallest width: the features the runs' slide model reads."""


def synthetic_slide(path: Path, seed: int) -> Path:
    """A pyramid of 4 x 3 regions at 0.5 um/px: stain over the top left 3 x 2 regions (hs2p keeps tissue of more than
    4 patches), background elsewhere."""
    pixels = np.empty((3 * REGION, 4 * REGION, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    stain = np.asarray(STAIN, dtype=np.float32) + np.random.default_rng(seed).normal(0, 8, (2 * REGION, 3 * REGION, 3))
    pixels[: 2 * REGION, : 3 * REGION] = np.clip(stain, 0, 255).astype(np.uint8)
    return write_pyramid(path, pixels, 0.5, (1, 4))


def heatmap_run(out: Path) -> Path:
    """A heatmap run with slide attention (tiny random encoders) over the synthetic slides of ``out``."""
    heatmaps = {
        "wsi_csv": str(out / "slides.csv"),
        "region_size": REGION,
        "slide_weights": str(out / "best.pt"),
        "vit_patch_arch": "vit_tiny",
        "patch_weights": None,
        "region_weights": None,
        "save_region_maps": False,
        "output_dir": str(out),
        "run_id": "h",
        "device": "cpu",
    }
    assert run_heatmap_job(OmegaConf.merge(OmegaConf.structured(HeatmapConfig), heatmaps)) == 0
    return out / "heatmaps" / "h"


def contribution_run(out: Path) -> Path:
    """A whole-slide extraction of the synthetic slides of ``out`` (tiny random encoders), then a contribution run of
    the same slide model over its features, drawn on its slides."""
    values = {"output_dir": str(out), "run_id": "ex", "wsi_csv": str(out / "slides.csv"), "region_size": REGION}
    assert run_extraction_job(extraction_config(**values, num_workers=0, device="cpu", **TINY)) == 0
    extraction = out / "feature_extraction" / "ex"
    contributions = {"checkpoint": str(out / "best.pt"), "features_dir": str(extraction / "features" / "slide")}
    contributions |= {"extraction_run": str(extraction), "slide_csv": str(out / "slides.csv")}
    contributions |= {"top_k": 1, "canvas_width": 256}
    contributions |= {"output_dir": str(out), "run_id": "c", "device": "cpu"}
    assert run_contribution_job(OmegaConf.merge(OmegaConf.structured(ContributionConfig), contributions)) == 0
    return out / "contributions" / "c"


RUNS = {"attention": ("heatmap_run", heatmap_run), "contributions": ("contribution_run", contribution_run)}
"""Each viewer's region layer -> the viewer's key of the run that has it, and how that run is made."""


@dataclass(frozen=True)
class Site:
    """A viewer run and the run it was built from."""

    folder: Path
    """The viewer run folder (``index.html``, ``slides/<slide_id>/index.html``)."""
    layer: str
    """Its region layer: ``attention`` (a heatmap run) or ``contributions`` (a contribution run)."""
    run: Path
    """The run folder it shows."""


class Drawn(NamedTuple):
    """A region as the page draws it: its row, the run's value, its colour on screen and the colour map's colour."""

    row: int
    value: float
    shown: np.ndarray
    expected: np.ndarray


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the synthetic slides, their ``slides.csv`` (also a slide_csv: it has ``slide_id``) and a slide
    model's ``best.pt``."""
    out = tmp_path_factory.mktemp("browser")
    rows = [{"slide_id": s, "image_path": str(synthetic_slide(out / f"{s}.tif", i))} for i, s in enumerate(SLIDES)]
    write_csv(out / "slides.csv", rows)
    abmil_checkpoint("unused", out / "best.pt")
    return out


@pytest.fixture(scope="module", params=list(RUNS))
def site(request: pytest.FixtureRequest, slides: Path) -> Site:
    """A viewer run (whole slides tiled, not only their regions) of a heatmap run, then of a contribution run."""
    key, make_run = RUNS[request.param]
    run = make_run(slides)
    viewer = {key: str(run), "tissue_bbox_only": False, "output_dir": str(slides), "run_id": request.param}
    assert run_viewer_job(OmegaConf.merge(OmegaConf.structured(ViewerConfig), viewer)) == 0
    return Site(slides / "viewer" / request.param, request.param, run)


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


def open_slide(page: Page, viewer: Path, slide_id: str) -> list[dict]:
    """Open a slide's page of the viewer run ``viewer``, wait until its slide and first overlays are drawn; returns its
    regions."""
    page.goto((viewer / "slides" / slide_id / "index.html").as_uri())
    page.wait_for_function("window.viewerState && window.viewerState.ready")
    return page.evaluate("window.viewerState.regions")


def show_only(page: Page, layer) -> np.ndarray:
    """Show the slide with only ``layer`` over it (None: no overlay), wait until it is drawn (``showOnly``'s promise)
    and return the viewer's pixels ``(H, W, 3)``."""
    page.evaluate("name => window.viewerState.showOnly(name)", layer)
    png = page.locator("#viewer").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def on_screen(page: Page, row: int) -> tuple[int, int]:
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


def redness(colour: np.ndarray) -> float:
    """Red minus blue of an RGB colour: ``RdBu_r``, the contribution map, is blue below 0 (negative), white at 0 and
    red above (positive)."""
    return float(colour[0]) - float(colour[2])


CONTRAST = {"attention": (intensity, 100), "contributions": (redness, 50)}
"""Per layer, how far apart its highest and lowest regions' colours are at least: 6 attention ranks 1/6 .. 1 span
inferno's luma from about 30 to 240; contributions scaled to +-their largest absolute value put one end of RdBu_r
(red minus blue 72 at the red end, -92 at the blue end) against a colour on the other side of white (0)."""


def region_values(site: Site, slide_id: str) -> pd.DataFrame:
    """The run's own value of each region of a slide, in the run's order: ``x, y, value`` (the slide-level rows of a
    heatmap run's ``attention.csv``, a contribution run's ``contributions.csv``)."""
    if site.layer == "attention":
        table = pd.read_csv(site.run / slide_id / "attention.csv")
        table = table[table.level == "slide"].rename(columns={"score": "value"})
    else:
        table = pd.read_csv(site.run / slide_id / "contributions.csv").sort_values("region")
        table = table.rename(columns={"contribution": "value"})
    return table[["x", "y", "value"]].reset_index(drop=True)


def expected_colour(layer: str, values: pd.Series, row: int) -> np.ndarray:
    """The colour the builder gives region ``row``: attention (a rank in (0, 1]) through inferno as it is,
    contributions through RdBu_r over ``[-m, m]``, ``m`` the largest absolute contribution of the slide."""
    if layer == "attention":
        return colormaps[ATTENTION_CMAP](values[row], bytes=True)[:3]
    limit = values.abs().max()
    return colormaps[CONTRIBUTION_CMAP]((values[row] + limit) / (2 * limit), bytes=True)[:3]


def hover(page: Page, row: int) -> str:
    """Point at region ``row``'s centre and return what the panel then says of it (once it names that row)."""
    centre = page.evaluate("row => window.viewerState.regionCenter(row)", row)
    page.mouse.move(centre["x"], centre["y"], steps=2)
    info = page.locator(f'#region-info[data-row="{row}"]')
    info.wait_for()
    return info.inner_text()


def shown_value(text: str, layer: str) -> float:
    """The value of ``layer`` in the panel's ``text`` (its line ``<layer> <value.toPrecision(4)>``)."""
    return float(re.search(rf"^{layer} (\S+)$", text, re.MULTILINE).group(1))


def listed_slides(page: Page, viewer: Path) -> list[str]:
    """Open the index of the viewer run ``viewer``; the slide ids of its table's rows, in order."""
    page.goto((viewer / "index.html").as_uri())
    rows = page.locator("table#slides tbody tr[data-slide-id]")
    return rows.evaluate_all("rows => rows.map(r => r.dataset.slideId)")


def level0_to_screen(page: Page, regions: list[dict]) -> tuple[float, Callable[[float, float], tuple[int, int]]]:
    """The page's scale (screen px per level-0 px) and the map from level-0 pixels to the viewer screenshot's, from
    the centres of the first region and of the one farthest from it (checked: one scale across and down)."""
    first, last = regions[0], max(regions, key=lambda r: abs(r["x"] - regions[0]["x"]) + abs(r["y"] - regions[0]["y"]))
    (x0, y0), (x1, y1) = on_screen(page, first["row"]), on_screen(page, last["row"])
    across, down = last["x"] != first["x"], last["y"] != first["y"]
    scale = (x1 - x0) / (last["x"] - first["x"]) if across else (y1 - y0) / (last["y"] - first["y"])
    if across and down:
        assert (y1 - y0) / (last["y"] - first["y"]) == pytest.approx(scale, rel=0.02), "another scale down"
    centre = (first["x"] + first["width"] / 2, first["y"] + first["height"] / 2)
    return scale, lambda x, y: (round(x0 + (x - centre[0]) * scale), round(y0 + (y - centre[1]) * scale))


def extremes(page: Page, site: Site, slide_id: str) -> tuple[Drawn, Drawn]:
    """Open a slide's page with only the site's layer over it; its highest and its lowest region as drawn."""
    regions = open_slide(page, site.folder, slide_id)
    table = region_values(site, slide_id)
    assert [[r["x"], r["y"]] for r in regions] == table[["x", "y"]].values.tolist(), "the run's regions, in order"
    pixels = show_only(page, site.layer)
    rows = int(table.value.idxmax()), int(table.value.idxmin())
    return tuple(
        Drawn(
            row,
            table.value[row],
            colour_at(pixels, *on_screen(page, row)),
            expected_colour(site.layer, table.value, row),
        )
        for row in rows
    )


def test_the_viewer_shows_tissue_where_the_slide_has_tissue_and_background_elsewhere(page, site):
    regions = open_slide(page, site.folder, "alpha")
    assert len(regions) == 6 and site.layer in page.evaluate("window.viewerState.layers")
    pixels = show_only(page, None)
    for region in regions:
        assert np.abs(colour_at(pixels, *on_screen(page, region["row"])) - STAIN).max() <= 25, region
    scale, to_screen = level0_to_screen(page, regions)
    assert scale > 0.2
    for x, y in [(3.5 * REGION, 1.5 * REGION), (1.0 * REGION, 2.5 * REGION)]:  # two points of glass
        assert np.abs(colour_at(pixels, *to_screen(x, y)) - BACKGROUND).max() <= 12, (x, y)


def test_the_layer_colours_its_highest_region_apart_from_its_lowest_with_the_colour_map(page, site):
    highest, lowest = extremes(page, site, "alpha")
    if site.layer == "contributions":
        assert highest.value > 0 > lowest.value, "the test needs regions that raise and regions that lower the output"
    measure, gap = CONTRAST[site.layer]
    assert measure(highest.shown) > measure(lowest.shown) + gap, (highest, lowest)
    for drawn in (highest, lowest):  # drawn opaque, unsmoothed: the colour map's own colour
        assert np.abs(drawn.shown - drawn.expected).max() <= 6, drawn


def test_hover_shows_the_row_and_value_of_the_region_under_the_cursor(page, site):
    regions = open_slide(page, site.folder, "alpha")
    values = region_values(site, "alpha").value
    show_only(page, site.layer)
    page.mouse.move(0, 0)  # off the slide: each move below lands on a new region
    for region in regions:
        text = hover(page, region["row"])
        for name in ("row", "x", "y"):
            assert re.search(rf"\b{name} {region[name]}\b", text), (name, text)
        assert shown_value(text, site.layer) == pytest.approx(values[region["row"]], rel=5e-4), text


def test_the_index_lists_every_slide_and_the_filter_hides_the_others(page, site):
    assert sorted(listed_slides(page, site.folder)) == sorted(SLIDES)
    page.fill("#filter", "bet")
    page.locator('tr[data-slide-id="alpha"]').wait_for(state="hidden")
    assert page.locator('tr[data-slide-id="beta"]').is_visible()
    page.fill("#filter", "")
    page.locator('tr[data-slide-id="alpha"]').wait_for(state="visible")
