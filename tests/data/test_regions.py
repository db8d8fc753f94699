import numpy as np
import pytest
from PIL import Image

from source.data.region_loader import RegionDataset, RegionItem, collate_regions
from source.data.regions import BadInputError, Region, discover_slide_ids, list_regions, read_region, read_slide_list


def write_image(path, size=(64, 64), color=(200, 100, 150), fmt="JPEG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def test_regions_are_ordered_by_numeric_x_then_y(tmp_path):
    for name in ["10_0", "9_512", "9_64", "100_0"]:
        write_image(tmp_path / "s1" / "imgs" / f"{name}.jpg")
    (tmp_path / "s1" / "imgs" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "s1" / "s1.h5").write_bytes(b"not needed")
    regions = list_regions(tmp_path, "s1", "jpg")
    assert [(r.x, r.y) for r in regions] == [(9, 64), (9, 512), (10, 0), (100, 0)]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: (root / "s").mkdir(), "no imgs/ folder"),
        (lambda root: (root / "s" / "imgs").mkdir(parents=True), "no .jpg images"),
        (lambda root: write_image(root / "s" / "imgs" / "tile-3.jpg"), "not named <x>_<y>"),
        (lambda root: None, "slide folder does not exist"),
    ],
)
def test_unusable_slides_are_named(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(BadInputError, match=message):
        list_regions(tmp_path, "s", "jpg")


@pytest.mark.parametrize("slide_id", ["../outside", "..", "a/b", ""])
def test_slide_ids_cannot_escape(tmp_path, slide_id):
    with pytest.raises(BadInputError, match="escape"):
        list_regions(tmp_path, slide_id, "jpg")


def test_format_selects_extension(tmp_path):
    write_image(tmp_path / "s" / "imgs" / "0_0.png", fmt="PNG")
    write_image(tmp_path / "s" / "imgs" / "0_64.jpg")
    assert [r.path.name for r in list_regions(tmp_path, "s", "png")] == ["0_0.png"]
    assert [r.path.name for r in list_regions(tmp_path, "s", ".JPG")] == ["0_64.jpg"]


def test_read_region_checks_the_image(tmp_path):
    good = write_image(tmp_path / "0_0.png", color=(10, 20, 30), fmt="PNG")
    pixels = read_region(good, 64)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8 and tuple(pixels[5, 5]) == (10, 20, 30)
    with pytest.raises(BadInputError, match="not square"):
        read_region(write_image(tmp_path / "1_0.jpg", size=(64, 32)), 64)
    with pytest.raises(BadInputError, match="region_size is 128: set region_size=64"):
        read_region(good, 128)
    with pytest.raises(BadInputError, match="cannot be decoded"):
        read_region(tmp_path / "absent.jpg", 64)
    text = tmp_path / "2_0.jpg"
    text.write_text("not an image")
    with pytest.raises(BadInputError, match="cannot be decoded"):
        read_region(text, 64)
    noisy = tmp_path / "noise.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noisy, quality=95)
    truncated = tmp_path / "3_0.jpg"
    truncated.write_bytes(noisy.read_bytes()[: noisy.stat().st_size // 2])
    with pytest.raises(BadInputError, match="truncated"):
        read_region(truncated, 64)


def test_slide_list_takes_ids_and_slide_paths(tmp_path):
    listing = tmp_path / "slides.txt"
    listing.write_text("# cohort A\nTCGA-01\n/data/wsi/TCGA-02.svs\n\nTCGA-01\nweird.name\n../escape\n")
    assert read_slide_list(listing) == ["TCGA-01", "TCGA-02", "weird.name", "../escape"]
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / ".git").mkdir()
    assert discover_slide_ids(tmp_path) == ["a", "b"]
    assert discover_slide_ids(tmp_path, listing)[0] == "TCGA-01"


def test_dataset_returns_errors_instead_of_raising(tmp_path):
    good = write_image(tmp_path / "0_0.jpg")
    bad = tmp_path / "0_64.jpg"
    bad.write_bytes(b"broken")
    items = [RegionItem(0, 0, Region(0, 0, good)), RegionItem(1, 0, Region(0, 64, bad))]
    batch = collate_regions([RegionDataset(items, 64)[i] for i in range(2)])
    assert batch.pixels.shape == (1, 3, 64, 64) and batch.pixels.dtype.is_floating_point is False
    assert batch.keys == [(0, 0)]
    assert batch.failures[0][:2] == (1, 0) and "cannot be decoded" in batch.failures[0][2]
    empty = collate_regions([RegionDataset(items, 64)[1]])
    assert empty.pixels.shape[0] == 0 and len(empty.failures) == 1
