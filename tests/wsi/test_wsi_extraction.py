"""extract_features.py from whole-slide images: features, tables, coordinates, previews, resume, bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from source.engines.extraction_job import run_extraction_job
from source.errors import ConfigError
from source.wsi.coordinates import load_coordinates, save_coordinates
from tests.helpers import (
    REPO,
    assert_killed_run_resumes,
    extraction_config,
    run_two_process_extraction,
    slides_written_per_log,
    subprocess_environment,
)
from tests.wsi.conftest import write_csv
from tests.wsi.slides import write_pyramid

TINY = {
    "vit_patch_arch": "vit_tiny",
    "pretrain_vit_patch": None,
    "pretrain_vit_region": None,
    "region_size": 512,
    "num_workers": 0,
}

TINY_ARGS = ["vit_patch_arch=vit_tiny", "pretrain_vit_patch=null", "pretrain_vit_region=null", "region_size=512"]


def run(tmp_path, run_id="run", **overrides):
    values = dict(output_dir=str(tmp_path / "out"), run_id=run_id) | TINY | overrides
    cfg = extraction_config(**values)
    code = run_extraction_job(cfg)
    return code, tmp_path / "out" / cfg.experiment_name / cfg.run_id


def features(run_dir, slide_id):
    return torch.load(run_dir / "features" / "slide" / f"{slide_id}.pt", weights_only=True)


@pytest.fixture
def wsi_csv(slides_dir, tmp_path):
    return write_csv(
        tmp_path / "slides.csv",
        [
            {"slide_id": "half", "image_path": str(slides_dir / "he 0.5 é.tif")},
            {"slide_id": "quarter", "image_path": str(slides_dir / "he_025_no2x.tif")},
        ],
    )


def test_wsi_features_equal_those_of_the_same_regions_saved_as_png(tmp_path, wsi_csv, slides_dir):
    code, wsi_run = run(tmp_path, "wsi", wsi_csv=str(wsi_csv), save_region_images=True)
    assert code == 0
    slides = pd.read_csv(wsi_run / "slides.csv")
    assert slides.status.tolist() == ["success", "success"]
    half, quarter = slides.set_index("slide_id").loc["half"], slides.set_index("slide_id").loc["quarter"]
    assert (half.read_level, half.read_size, half.tile_size_lv0, half.spacing_at_level_0) == (0, 512, 512, 0.5)
    assert (quarter.read_level, quarter.read_size, quarter.tile_size_lv0, quarter.spacing_at_level_0) == (
        0,
        1024,
        1024,
        0.25,
    )
    assert half.image_path == str(slides_dir / "he 0.5 é.tif")

    regions = pd.read_csv(wsi_run / "regions.csv")
    for slide_id in ("half", "quarter"):
        rows = regions[regions.slide_id == slide_id]
        saved = load_coordinates(wsi_run / "coordinates", slide_id)
        assert rows.x.tolist() == list(saved.x) and rows.y.tolist() == list(saved.y)
        assert rows.region_index.tolist() == list(range(len(rows)))
        assert features(wsi_run, slide_id).shape == (len(rows), 192)
        preview = Image.open(wsi_run / "previews" / f"{slide_id}.png")
        assert preview.format == "PNG" and 0 < max(preview.size) <= 2000
        images = sorted((wsi_run / "region_images" / slide_id / "imgs").glob("*.png"))
        assert len(images) == len(rows)

    code, png_run = run(tmp_path, "png", region_dir=str(wsi_run / "region_images"), format="png")
    assert code == 0
    png_regions = pd.read_csv(png_run / "regions.csv")
    pd.testing.assert_frame_equal(
        png_regions[["slide_id", "region_index", "x", "y"]], regions[["slide_id", "region_index", "x", "y"]]
    )
    for slide_id in ("half", "quarter"):
        torch.testing.assert_close(features(png_run, slide_id), features(wsi_run, slide_id), atol=1e-5, rtol=1e-5)


def test_coordinates_dir_is_reused_and_checked(tmp_path, wsi_csv):
    code, first = run(tmp_path, "first", wsi_csv=str(wsi_csv))
    assert code == 0
    code, reused = run(
        tmp_path,
        "reused",
        wsi_csv=str(wsi_csv),
        coordinates_dir=str(first / "coordinates"),
        **{"tiling.min_tissue_fraction": 0.9},
    )
    assert code == 0, "a min_tissue_fraction that would keep nothing is not applied: the coordinates are reused"
    pd.testing.assert_frame_equal(
        pd.read_csv(first / "regions.csv").drop(columns="feature_path"),
        pd.read_csv(reused / "regions.csv").drop(columns="feature_path"),
    )
    torch.testing.assert_close(features(first, "half"), features(reused, "half"))
    assert (reused / "coordinates" / "half.coordinates.npz").exists()

    code, other = run(
        tmp_path, "other", wsi_csv=str(wsi_csv), coordinates_dir=str(first / "coordinates"), region_size=1024
    )
    assert code == 1
    errors = pd.read_csv(other / "slides.csv").error.tolist()
    assert all("made for 512-px regions at 0.5 um/px" in error and "region_size=1024" in error for error in errors)


def test_resume_redoes_unfinished_slides_and_refuses_changed_coordinates(tmp_path, wsi_csv, caplog):
    code, run_dir = run(tmp_path, wsi_csv=str(wsi_csv))
    assert code == 0
    reference = features(run_dir, "quarter")
    (run_dir / "features" / "slide" / "quarter.pt").unlink()
    stale = run_dir / "features" / "slide" / ".quarter.pt.abc123.tmp"
    stale.write_bytes(b"partial")
    caplog.clear()
    code, _ = run(tmp_path, wsi_csv=str(wsi_csv), resume=True)
    assert code == 0 and not stale.exists()
    assert "1 slide(s) already done, 1 to process" in caplog.text
    torch.testing.assert_close(features(run_dir, "quarter"), reference)

    with pytest.raises(ConfigError, match="tiling"):
        run(tmp_path, wsi_csv=str(wsi_csv), resume=True, **{"tiling.min_tissue_fraction": 0.5})

    moved = tmp_path / "moved"
    result = load_coordinates(run_dir / "coordinates", "half")
    result.tiles.x = result.tiles.x + 16
    save_coordinates(result, moved)
    shutil.copy(run_dir / "coordinates" / "quarter.coordinates.npz", moved)
    shutil.copy(run_dir / "coordinates" / "quarter.coordinates.meta.json", moved)
    code, _ = run(tmp_path, wsi_csv=str(wsi_csv), resume=True, coordinates_dir=str(moved))
    assert code == 1
    slides = pd.read_csv(run_dir / "slides.csv").set_index("slide_id")
    assert slides.loc["quarter", "status"] == "success"
    assert slides.loc["half", "status"] == "failed" and "resume refused" in slides.loc["half", "error"]
    assert list(load_coordinates(run_dir / "coordinates", "half").x) == list(result.tiles.x - 16), (
        "the run's coordinates are kept"
    )


def test_each_bad_slide_fails_alone_with_its_reason(tmp_path, slides_dir, he_pixels):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = slides_dir / "he 0.5 é.tif"
    (bad / "truncated.tif").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (bad / "lfs.svs").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    (bad / "page.svs").write_text("<!DOCTYPE html><html><body>Quota exceeded</body></html>")
    (bad / "text.svs").write_text("this is not a slide at all\n" * 20)
    write_pyramid(bad / "nospacing.tif", he_pixels, None, (1, 4))
    write_pyramid(bad / "blank.tif", np.full((1024, 1024, 3), 242, np.uint8), 0.5, (1, 4))
    write_pyramid(bad / "coarse.tif", he_pixels[::2, ::2].copy(), 1.0, (1, 4))
    rows = [{"slide_id": "good", "image_path": str(good)}] + [
        {"slide_id": name, "image_path": str(bad / file)}
        for name, file in [
            ("missing", "nothing.svs"),
            ("truncated", "truncated.tif"),
            ("lfs", "lfs.svs"),
            ("html", "page.svs"),
            ("text", "text.svs"),
            ("nospacing", "nospacing.tif"),
            ("blank", "blank.tif"),
            ("coarse", "coarse.tif"),
        ]
    ]
    code, run_dir = run(tmp_path, wsi_csv=str(write_csv(tmp_path / "slides.csv", rows)))
    assert code == 1
    slides = pd.read_csv(run_dir / "slides.csv").set_index("slide_id")
    assert slides.loc["good", "status"] == "success" and slides.loc["good", "num_regions"] > 0
    expected = {
        "missing": "does not exist",
        "truncated": "truncated.tif",
        "lfs": "git-LFS pointer",
        "html": "HTML page",
        "text": "cannot be opened",
        "nospacing": "spacing_at_level_0",
        "blank": "tiling.min_tissue_fraction=0.1",
        "coarse": "finer than level 0",
    }
    for slide_id, fragment in expected.items():
        assert slides.loc[slide_id, "status"] == "failed", slide_id
        assert fragment in slides.loc[slide_id, "error"], (slide_id, slides.loc[slide_id, "error"])
    assert (run_dir / "previews" / "blank.png").exists(), "a slide without tissue still gets its preview"

    rows[6]["spacing_at_level_0"] = 0.5  # the header has none: the column supplies it
    code, fixed = run(tmp_path, "fixed", wsi_csv=str(write_csv(tmp_path / "fixed.csv", rows[:1] + rows[6:7])))
    assert code == 0 and pd.read_csv(fixed / "slides.csv").spacing_at_level_0.tolist() == [0.5, 0.5]


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"slide_id": "a", "path": "x.svs"}], "no column image_path"),
        (
            [{"slide_id": "a", "image_path": "x.svs"}, {"slide_id": "a", "image_path": "y.svs"}],
            "'a' is on rows 2 and 3",
        ),
        ([{"sample_id": "../escape", "image_path": "x.svs"}], "row 2: sample_id '../escape' is not a plain"),
        ([{"slide_id": "a", "image_path": "x.svs", "spacing_at_level_0": "-1"}], "row 2: spacing_at_level_0"),
    ],
)
def test_bad_wsi_csv_is_one_config_error_before_any_work(tmp_path, rows, message):
    csv = write_csv(tmp_path / "slides.csv", rows)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run(tmp_path, wsi_csv=str(csv))
    assert not (tmp_path / "out").exists()


def test_input_choice_is_checked(tmp_path, wsi_csv):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "extract_features.py"),
            "--config-name",
            "default",
            f"wsi_csv={wsi_csv}",
            f"region_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "give exactly one input, region_dir or wsi_csv (both are set)" in result.stderr


def test_sample_id_of_an_hs2p_process_list_is_accepted(tmp_path, slides_dir):
    csv = write_csv(
        tmp_path / "process_list.csv",
        [
            {
                "sample_id": "s1",
                "image_path": str(slides_dir / "he 0.5 é.tif"),
                "mask_path": "",
                "tiling_status": "success",
            }
        ],
    )
    code, run_dir = run(tmp_path, wsi_csv=str(csv), level="local")
    assert code == 0
    assert features(run_dir, "s1").shape[1:] == (4, 192)


def test_two_process_gloo_run_tiles_and_writes_each_slide_once(tmp_path, slides_dir):
    rows = [
        {"slide_id": f"slide_{i}", "image_path": str(slides_dir / name)}
        for i, name in enumerate(["he 0.5 é.tif", "he_025_2x.tif", "he_025_no2x.tif"])
    ]
    csv = write_csv(tmp_path / "slides.csv", rows)
    run_dir = run_two_process_extraction(
        tmp_path,
        f"wsi_csv={csv}",
        "vit_patch_arch=vit_tiny",
        "pretrain_vit_patch=null",
        "pretrain_vit_region=null",
        "region_size=512",
    )
    writes = slides_written_per_log(run_dir)
    assert sorted(writes) == ["slide_0", "slide_1", "slide_2"] and all(len(ranks) == 1 for ranks in writes.values())
    assert {ranks[0] for ranks in writes.values()} == {"log.txt", "log.rank1.txt"}
    assert sorted(p.name for p in (run_dir / "previews").iterdir()) == ["slide_0.png", "slide_1.png", "slide_2.png"]
    slides = pd.read_csv(run_dir / "slides.csv")
    assert slides.slide_id.tolist() == ["slide_0", "slide_1", "slide_2"] and set(slides.status) == {"success"}
    assert slides.read_level.tolist() == [0, 1, 0]


def test_killed_wsi_run_resumes_to_the_same_files(tmp_path, slides_dir):
    rows = [{"slide_id": f"slide_{i}", "image_path": str(slides_dir / "he_025_2x.tif")} for i in range(5)]
    csv = write_csv(tmp_path / "slides.csv", rows)
    assert_killed_run_resumes([f"wsi_csv={csv}", *TINY_ARGS, "num_workers=0"], tmp_path, slides=5)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_unusable_weights_are_refused_before_any_slide_is_tiled(wsi_csv, tmp_path, monkeypatch, damage):
    from source.models.checkpoints import CheckpointError
    from source.wsi import planning

    def no_tiling(*args, **kwargs):
        raise AssertionError("a slide was tiled before the weights were checked")

    monkeypatch.setattr(planning.WholeSlidePlanner, "plan", no_tiling)
    monkeypatch.setattr(planning.WholeSlidePlanner, "plan_one", no_tiling)
    weights = tmp_path / "vit256_small_dino.pth"
    if damage == "truncated":
        torch.save({"teacher": {"pos_embed": torch.zeros(1, 17, 192)}}, weights)
        weights.write_bytes(weights.read_bytes()[:200])
    for shared in (False, True):
        with pytest.raises(CheckpointError, match="does not exist|truncated or corrupt"):
            run(tmp_path, wsi_csv=str(wsi_csv), pretrain_vit_patch=str(weights), shared_run=shared)
    assert not (tmp_path / "out" / "feature_extraction" / "run" / "coordinates").exists()
