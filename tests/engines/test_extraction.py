"""End-to-end extraction on regions cut from the real demo slide (CMU-1-Small-Region, CC0)."""

import re
import shutil
import sys

import pandas as pd
import pytest
import torch
from PIL import Image

from source.data.regions import read_region
from source.engines.extraction_job import run_extraction_job
from source.models.factory import build_hipt_encoder
from source.models.settings import EncoderSettings
from source.models.vit import vit4k_xs, vit_small
from tests.helpers import extraction_config, official_checkpoint

TINY = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None}


@pytest.fixture(scope="module")
def official_weights(tmp_path_factory):
    """ViT-S/16 and ViT4K-XS checkpoints in the layout of HIPT's released files."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(5)
    torch.save(official_checkpoint(vit_small()), folder / "vit256_small_dino.pth")
    torch.save(official_checkpoint(vit4k_xs()), folder / "vit4k_xs_dino.pth")
    return folder / "vit256_small_dino.pth", folder / "vit4k_xs_dino.pth"


def run(tmp_path, region_dir, **overrides):
    values = dict(
        region_dir=str(region_dir), output_dir=str(tmp_path / "out"), run_id="run", region_size=1024, num_workers=0
    )
    cfg = extraction_config(**(values | overrides))
    code = run_extraction_job(cfg)
    return code, tmp_path / "out" / cfg.experiment_name / cfg.run_id


@pytest.mark.parametrize("level", ["global", "local"])
def test_real_size_extraction_matches_the_encoder(tmp_path, region_dir, official_weights, level):
    patch_weights, region_weights = official_weights
    code, run_dir = run(
        tmp_path,
        region_dir,
        level=level,
        pretrain_vit_patch=str(patch_weights),
        pretrain_vit_region=str(region_weights),
        save_region_features=True,
        batch_size=2,
        num_workers=2,
    )
    assert code == 0
    slides = pd.read_csv(run_dir / "slides.csv")
    assert list(slides.columns) == [
        "slide_id",
        "feature_path",
        "num_regions",
        "level",
        "region_size",
        "status",
        "error",
    ]
    assert slides.slide_id.tolist() == ["CMU-1-Small-Region", "subset"]
    assert slides.num_regions.tolist() == [6, 3] and set(slides.status) == {"success"} and set(slides.level) == {level}
    regions = pd.read_csv(run_dir / "regions.csv")
    demo = regions[regions.slide_id == "CMU-1-Small-Region"]
    assert list(zip(demo.x, demo.y, strict=True)) == [
        (0, 0),
        (0, 1024),
        (0, 2048),
        (1024, 0),
        (1024, 1024),
        (1024, 2048),
    ]
    assert demo.region_index.tolist() == list(range(6))
    features = torch.load(run_dir / "features" / "slide" / "CMU-1-Small-Region.pt", weights_only=True)
    assert features.dtype == torch.float32
    assert features.shape == ((6, 192) if level == "global" else (6, 16, 384))
    encoder = build_hipt_encoder(EncoderSettings(level, patch_weights=patch_weights, region_weights=region_weights))
    paths = sorted(region_dir.glob("CMU*/imgs/*.jpg"), key=lambda p: tuple(int(v) for v in p.stem.split("_")))
    images = torch.stack([torch.from_numpy(read_region(p, 1024)).permute(2, 0, 1) for p in paths])
    with torch.inference_mode():
        out = encoder(images)
    expected = out.global_ if level == "global" else out.local
    torch.testing.assert_close(features, expected, atol=1e-4, rtol=1e-4)
    region_file = run_dir / "features" / "region" / "CMU-1-Small-Region_1024_2048.pt"
    torch.testing.assert_close(torch.load(region_file, weights_only=True), features[5])
    assert demo.feature_path.iloc[5] == str(region_file)
    assert (run_dir / "config.yaml").exists() and (run_dir / "log.txt").exists()
    wandb = sys.modules.get("wandb")  # timm imports it when installed; it must stay idle
    assert wandb is None or wandb.run is None
    assert not (run_dir / "wandb").exists()


def make_bad_region_dir(root, demo_regions_1024):
    good = sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())
    (root / "good" / "imgs").mkdir(parents=True)
    for path in good[:2]:
        shutil.copy(path, root / "good" / "imgs" / path.name)
    (root / "truncated" / "imgs").mkdir(parents=True)
    shutil.copy(good[0], root / "truncated" / "imgs" / "0_0.jpg")
    (root / "truncated" / "imgs" / "0_1024.jpg").write_bytes(good[1].read_bytes()[:20000])
    (root / "non_square" / "imgs").mkdir(parents=True)
    Image.new("RGB", (1024, 512), "white").save(root / "non_square" / "imgs" / "0_0.jpg")
    (root / "wrong_size" / "imgs").mkdir(parents=True)
    Image.new("RGB", (2048, 2048), "white").save(root / "wrong_size" / "imgs" / "0_0.jpg")
    (root / "no_imgs").mkdir()
    (root / "empty" / "imgs").mkdir(parents=True)
    (root / "bad_name" / "imgs").mkdir(parents=True)
    shutil.copy(good[0], root / "bad_name" / "imgs" / "region-7.jpg")
    listing = root.parent / "slides.txt"
    listing.write_text(
        "\n".join(
            ["good", "truncated", "non_square", "wrong_size", "no_imgs", "empty", "bad_name", "../good", "absent"]
        )
    )
    return listing


def test_bad_inputs_fail_their_slide_and_the_rest_goes_on(tmp_path, demo_regions_1024):
    listing = make_bad_region_dir(tmp_path / "regions", demo_regions_1024)
    code, run_dir = run(tmp_path, tmp_path / "regions", slide_list=str(listing), batch_size=3, **TINY)
    assert code == 1
    slides = pd.read_csv(run_dir / "slides.csv", keep_default_na=False).set_index("slide_id")
    assert slides.loc["good", "status"] == "success"
    expected_errors = {
        "truncated": "truncated",
        "non_square": "not square",
        "wrong_size": "region_size is 1024: set region_size=2048",
        "no_imgs": "no imgs/ folder",
        "empty": "no .jpg images",
        "bad_name": "not named <x>_<y>",
        "../good": "escape",
        "absent": "slide folder does not exist",
    }
    for slide_id, message in expected_errors.items():
        assert slides.loc[slide_id, "status"] == "failed", slide_id
        assert message in slides.loc[slide_id, "error"], (slide_id, slides.loc[slide_id, "error"])
    written = sorted(p.name for p in (run_dir / "features" / "slide").iterdir())
    assert written == ["good.pt"]
    assert set(pd.read_csv(run_dir / "regions.csv").slide_id) == {"good"}
    log = (run_dir / "log.txt").read_text()
    assert "1 failed (truncated)" in log and "1/9 slide(s) succeeded, 8 failed" in log
    assert "encoded 3 of 6 regions" in log, "only regions that went through the encoder are counted"


def test_a_run_where_every_region_fails_says_so(tmp_path, demo_regions_1024):
    listing = make_bad_region_dir(tmp_path / "regions", demo_regions_1024)
    listing.write_text("wrong_size\nnon_square\n")
    code, run_dir = run(tmp_path, tmp_path / "regions", slide_list=str(listing), **TINY)
    log = (run_dir / "log.txt").read_text()
    assert code == 1
    assert "no region was encoded: every one of the 2 regions failed" in log and "regions/s" not in log


def test_resume_skips_finished_slides_and_redoes_changed_ones(tmp_path, region_dir, caplog):
    code, run_dir = run(tmp_path, region_dir, **TINY)
    assert code == 0
    done = run_dir / "features" / "slide" / "subset.pt"
    stamp = done.stat().st_mtime_ns
    (run_dir / "features" / "slide" / "CMU-1-Small-Region.pt").unlink()
    code, _ = run(tmp_path, region_dir, resume=True, **TINY)
    assert code == 0 and done.stat().st_mtime_ns == stamp
    assert (run_dir / "features" / "slide" / "CMU-1-Small-Region.pt").exists()
    assert "1 slide(s) already done, 1 to process" in (run_dir / "log.txt").read_text()
    shutil.copy(
        next((region_dir / "CMU-1-Small-Region" / "imgs").iterdir()), region_dir / "subset" / "imgs" / "4096_4096.jpg"
    )
    run(tmp_path, region_dir, resume=True, **TINY)
    assert torch.load(done, weights_only=True).shape == (4, 192)


def test_resume_refuses_a_changed_config(tmp_path, region_dir):
    assert run(tmp_path, region_dir, **TINY)[0] == 0
    from source.errors import ConfigError

    with pytest.raises(ConfigError, match="resume: level was 'global'"):
        run(tmp_path, region_dir, resume=True, level="local", **TINY)


def test_zero_slides_is_a_config_error_with_the_layout(tmp_path, region_dir):
    from source.errors import ConfigError

    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (empty, "no slide folder in region_dir"),
        (
            region_dir / "subset",
            "holds imgs/ itself: it looks like one slide's folder. region_dir must be the folder that contains",
        ),
        (region_dir / "subset" / "imgs", "looks like a slide's imgs/ folder"),
    ]
    for folder, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            run(tmp_path, folder, **TINY)
    assert not (tmp_path / "out").exists(), "no run folder is left behind"
