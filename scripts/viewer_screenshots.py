"""Debian's headless Chromium, driven by Playwright: the browser of tests/viewer/test_browser.py, and the two viewer
pictures of docs/heatmaps.md (docs/images/viewer_overview.png, docs/images/viewer_zoom.png).

    apt-get install -y chromium            # once: /usr/bin/chromium
    python3 scripts/viewer_screenshots.py

The pictures: attention_visualization.py on the demo slide (OpenSlide's CC0 CMU-1-Small-Region.svs, 1024-px regions)
with a seeded, untrained ABMIL slide model and random encoders, then view_slides.py, then the slide's page in the
browser. Random weights: the attention shows what the viewer draws, not biology.

Playwright never downloads a browser here (no ``playwright install``): it starts ``/usr/bin/chromium`` with a fresh
profile and no network, and the pages open from disk (``file://``).
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import torch
from omegaconf import OmegaConf
from PIL import Image
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from source.config.heatmaps import HeatmapConfig  # noqa: E402
from source.config.slide_model import slide_model_settings  # noqa: E402
from source.config.viewer import ViewerConfig  # noqa: E402
from source.data.demo_slide import SLIDE_ID, fetch_demo_slide  # noqa: E402
from source.engines.heatmap_job import run_heatmap_job  # noqa: E402
from source.engines.viewer_job import run_viewer_job  # noqa: E402
from source.models.factory import build_slide_model  # noqa: E402
from source.tasks.registry import TRAINING_SCHEMAS  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI and in containers, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no network here: without these its connection attempts fail noisily
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",  # a file:// page loads its own tiles and overlays
)
PAGE_TIMEOUT_MS = 30_000
"""The longest wait for a page condition (a slow, loaded CI machine draws a page in well under a second)."""
WINDOW = (1000, 680)
"""The pictures' size in CSS pixels (one device pixel each)."""
COLOURS = 256
"""The pictures are quantised to this many colours (PNGs under 300 KB)."""
ZOOM_ROW = 4
"""The region the zoomed picture shows and points at (the middle of the right column: epithelium and stroma)."""


@contextmanager
def chromium_page(width: int, height: int) -> Iterator[Page]:
    """One tab of a fresh headless Chromium with a ``width`` x ``height`` CSS-pixel window (1 device pixel each)."""
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="hipt_chromium_") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=list(CHROMIUM_FLAGS),
            viewport={"width": width, "height": height},
            device_scale_factor=1,
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def random_abmil(path: Path) -> Path:
    """A ``best.pt`` of a seeded, untrained ABMIL classifier on ViT_region features (slide-level attention)."""
    training = OmegaConf.merge(
        OmegaConf.structured(TRAINING_SCHEMAS["classification"]),
        {"features_dir": "unused", "model": {"aggregator": "abmil", "pretrain_vit_region": None}},
    )
    torch.manual_seed(0)
    model = build_slide_model(slide_model_settings(training), 2)
    config = OmegaConf.to_container(training, resolve=True, enum_to_str=True)
    torch.save({"model": model.state_dict(), "config": config, "task": {"kind": "classification"}, "epoch": 0}, path)
    return path


def build_site(out: Path) -> Path:
    """Heatmaps of the demo slide, then its viewer; returns the slide's page."""
    slide = fetch_demo_slide(ROOT / ".cache")
    (out / "slides.csv").write_text(f"slide_id,image_path\n{SLIDE_ID},{slide}\n")
    heatmaps = {"wsi_csv": str(out / "slides.csv"), "region_size": 1024, "save_region_maps": False}
    heatmaps |= {"slide_weights": str(random_abmil(out / "m.pt")), "patch_weights": None, "region_weights": None}
    common = {"output_dir": str(out), "device": "cpu"}
    assert run_heatmap_job(OmegaConf.merge(OmegaConf.structured(HeatmapConfig), heatmaps, common, {"run_id": "h"})) == 0
    viewer = {"heatmap_run": str(out / "heatmaps" / "h"), "run_id": "v"}
    assert run_viewer_job(OmegaConf.merge(OmegaConf.structured(ViewerConfig), viewer, common)) == 0
    return out / "viewer" / "v" / "slides" / SLIDE_ID / "index.html"


def show(page: Page, opacities: dict[str, float], row: Optional[int] = None) -> None:
    """Show the whole slide, or region ``row`` and its surroundings, with exactly the layers of ``opacities`` at those
    opacities, and wait until all is drawn (OpenSeadragon's own viewer, ``OpenSeadragon.getViewer``, for the view)."""
    page.evaluate(
        """async ({opacities, row}) => {
            const viewer = OpenSeadragon.getViewer("viewer");
            const slide = viewer.world.getItemAt(0);
            if (row === null) {
                viewer.viewport.goHome(true);
                viewer.viewport.zoomBy(0.92, undefined, true);  // clear of the zoom buttons
            } else {
                const box = JSON.parse(document.getElementById("slide-data").textContent).box;
                const region = window.viewerState.regions[row];
                const margin = region.width / 16;
                const left = region.x - box.x - margin, top = region.y - box.y - margin;
                const side = region.width + 2 * margin;
                viewer.viewport.fitBounds(slide.imageToViewportRectangle(left, top, side, side), true);
            }
            await window.viewerState.showOnly(null);
            for (const [name, opacity] of Object.entries(opacities)) {
                document.querySelector(`input[data-layer-opacity="${name}"]`).value = String(opacity);
                const checkbox = document.querySelector(`input[data-layer="${name}"]`);
                checkbox.checked = true;
                checkbox.dispatchEvent(new Event("change"));
            }
            const items = Array.from({length: viewer.world.getItemCount()}, (_, i) => viewer.world.getItemAt(i));
            await Promise.all(items.map((item) => new Promise((resolve) => item.whenFullyLoaded(resolve))));
            viewer.forceRedraw();
            await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
        }""",
        {"opacities": opacities, "row": row},
    )


def save(page: Page, path: Path) -> None:
    """A screenshot of the page, quantised to :data:`COLOURS` colours."""
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    picture.quantize(COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} KB")


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="hipt_viewer_pictures_"))
    images = ROOT / "docs" / "images"
    try:
        page_path = build_site(out)
        with chromium_page(*WINDOW) as page:
            page.goto(page_path.as_uri())
            page.wait_for_function("window.viewerState && window.viewerState.ready")
            show(page, {"attention": 0.5, "grid": 1.0})
            save(page, images / "viewer_overview.png")
            show(page, {"attention": 0.0, "region_attention": 0.45}, row=ZOOM_ROW)
            centre = page.evaluate("row => window.viewerState.regionCenter(row)", ZOOM_ROW)
            page.mouse.move(centre["x"] + 40, centre["y"] - 60)  # a patch of the region, off its centre
            page.locator(f'#region-info[data-row="{ZOOM_ROW}"]').wait_for()
            save(page, images / "viewer_zoom.png")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
