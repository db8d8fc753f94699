"""DINO patch pretraining straight from whole-slide images, and epochs balanced across slides."""

import logging
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from source.engines.pretraining_job import run_pretraining_job
from source.pretraining.data import PretrainingDataError
from source.pretraining.sampling import BalancedEpochSampler, balanced_quota
from source.wsi.coordinates import load_coordinates
from tests.helpers import REPO, pretraining_config, subprocess_environment
from tests.pretraining.dino_runs import FAST_PATCH, assert_killed_run_resumes, log, on_cpu
from tests.wsi.conftest import write_csv
from tests.wsi.slides import write_pyramid

FAST = {k: v for k, v in FAST_PATCH.items() if k != "early_stopping.save_every"} | {
    "model.drop_path_rate": 0.0,
    "training.nepochs": 2,
    "data.patch_size": 128,
    "data.patches_per_epoch": 16,
}


def wsi_run(tmp_path, csv, run_id="run", **overrides):
    cfg = pretraining_config("patch", wsi_csv=str(csv), output_dir=str(tmp_path), run_id=run_id, **(FAST | overrides))
    return run_pretraining_job(cfg, "patch"), tmp_path / "dino_patch" / run_id


@pytest.fixture(scope="module")
def wsi_csv(slides_dir, tmp_path_factory):
    rows = [
        {"slide_id": "quarter", "image_path": str(slides_dir / "he_025_no2x.tif")},
        {"slide_id": "half", "image_path": str(slides_dir / "he 0.5 é.tif")},
    ]
    return write_csv(tmp_path_factory.mktemp("wsi_patches") / "slides.csv", rows)


def test_patch_stage_from_whole_slides_trains_monitors_and_writes_no_patch(tmp_path, wsi_csv, downstream_csvs):
    knn = {"downstream.train_csv": str(downstream_csvs[0]), "downstream.test_csv": str(downstream_csvs[1]), "knn.k": 3}
    code, run_dir = wsi_run(tmp_path, wsi_csv, **knn)
    assert code == 0
    records = log(run_dir)
    assert [r["epoch"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)
    assert all(0 <= r["teacher_auc"] <= 1 for r in records)
    for slide_id in (
        "quarter",
        "half",
    ):  # tiled once at start into 128-px patches at 0.5 um/px, saved like extraction's
        coordinates = load_coordinates(run_dir / "coordinates", slide_id)
        assert int(coordinates.requested_tile_size_px) == 128 and coordinates.num_tiles > 16
        assert (run_dir / "previews" / f"{slide_id}.png").exists()
    images = [p for p in run_dir.rglob("*") if p.suffix in {".png", ".jpg", ".tif"} and p.parent.name != "previews"]
    assert not images, "no patch is written to disk"
    text = (run_dir / "log.txt").read_text()
    assert "(16 per epoch)" in text and "2 iterations per epoch" in text


def test_resume_from_whole_slides_continues_identically(tmp_path, wsi_csv, monkeypatch):
    assert_killed_run_resumes(lambda root, **keys: wsi_run(root, wsi_csv, **keys), tmp_path, monkeypatch, kill_after=0)


def test_two_process_gloo_run_gives_the_single_process_loss(tmp_path, wsi_csv):
    common = [f"wsi_csv={wsi_csv}"] + [
        f"{k}={v}" for k, v in on_cpu(FAST).items() if k != "training.batch_size_per_gpu"
    ]
    script = [str(REPO / "pretrain" / "dino_patch.py"), "--config-name", "patch", *common]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for command, batch, out in (([sys.executable], 8, "one"), (torchrun, 4, "two")):
        result = subprocess.run(
            [*command, *script, f"training.batch_size_per_gpu={batch}", f"output_dir={out}", "run_id=x"],
            cwd=tmp_path,
            env=subprocess_environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = log(tmp_path / "one" / "dino_patch" / "x"), log(tmp_path / "two" / "dino_patch" / "x")
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)


def corrupt_level0(path):
    """Overwrite every level-0 tile of a pyramid with bytes no codec decodes (levels below stay readable)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    with open(path, "r+b") as handle:
        for offset, count in spans:
            handle.seek(offset)
            handle.write(b"\x00\xff" * (count // 2))


def test_unopenable_slides_are_skipped_and_unreadable_patches_count_as_bad(tmp_path, slides_dir, he_pixels, caplog):
    broken = write_pyramid(tmp_path / "broken.tif", he_pixels, 0.5, (1, 4))
    corrupt_level0(broken)
    (tmp_path / "not_a_slide.svs").write_text("<html>404</html>")
    rows = [
        {"slide_id": "good", "image_path": str(slides_dir / "he 0.5 é.tif")},
        {"slide_id": "broken", "image_path": str(broken)},
        {"slide_id": "missing", "image_path": str(tmp_path / "missing.svs")},
        {"slide_id": "html", "image_path": str(tmp_path / "not_a_slide.svs")},
    ]
    csv = write_csv(tmp_path / "slides.csv", rows)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(PretrainingDataError, match="unreadable .*max_bad_fraction=0.01.*slide 'broken'"):
            wsi_run(tmp_path, csv, "strict")
    skipped = next(r.getMessage() for r in caplog.records if "slide(s) of wsi_csv are skipped" in r.getMessage())
    assert "2 of 4" in skipped and "missing: " in skipped and "html: " in skipped and "does not exist" in skipped
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        code, run_dir = wsi_run(tmp_path, csv, "tolerant", **{"training.max_bad_fraction": 0.9})
    assert code == 0 and all(np.isfinite(r["loss"]) for r in log(run_dir))
    assert any("unreadable sample slide 'broken' at (" in r.getMessage() for r in caplog.records)
    rows[0]["image_path"] = rows[1]["image_path"] = str(tmp_path / "gone.svs")
    with pytest.raises(PretrainingDataError, match="no slide of wsi_csv .* gave patches"):
        wsi_run(tmp_path, write_csv(tmp_path / "none.csv", rows), "none")


def test_balanced_quota_fills_small_slides_first_and_sums_to_the_count():
    rng = np.random.default_rng(0)
    assert balanced_quota([100, 100, 100], 30, rng).tolist() == [10, 10, 10]
    assert balanced_quota([2, 100, 100], 30, rng).tolist() == [2, 14, 14]
    quota = balanced_quota([5, 50, 50, 50], 100, rng)
    assert quota.sum() == 100 and quota[0] == 5 and sorted(quota[1:].tolist()) == [31, 32, 32]
    assert balanced_quota([3, 4], 100, rng).tolist() == [3, 4]


def test_balanced_sampler_is_seeded_per_epoch_and_shards_like_one_process():
    groups = np.repeat(np.arange(4), [3, 40, 40, 200])
    single = BalancedEpochSampler(groups, 40)
    order = single.epoch_indices()
    assert len(set(order.tolist())) == 40 and np.bincount(groups[order], minlength=4).tolist() == [3, 12, 12, 13]
    single.set_epoch(1)
    assert not np.array_equal(single.epoch_indices(), order) and np.array_equal(
        BalancedEpochSampler(groups, 40).epoch_indices(), order
    )
    ranks = [BalancedEpochSampler(groups, 40, world_size=2, rank=r) for r in (0, 1)]
    assert [len(r) for r in ranks] == [20, 20]
    per_rank = [list(r) for r in ranks]
    single.set_epoch(0)
    one = list(single)
    for step in range(5):  # global batch of 8: 4 per rank
        together = per_rank[0][4 * step : 4 * step + 4] + per_rank[1][4 * step : 4 * step + 4]
        assert sorted(together) == sorted(one[8 * step : 8 * step + 8])


def test_missing_pretrained_weights_are_refused_before_any_slide_is_tiled(tmp_path, wsi_csv, monkeypatch):
    from source.models.checkpoints import CheckpointError
    from source.pretraining import slide_patches

    def no_tiling(*args, **kwargs):
        raise AssertionError("a slide was tiled before the weights were checked")

    monkeypatch.setattr(slide_patches, "slide_patches", no_tiling)
    with pytest.raises(CheckpointError, match="does not exist.*set model.pretrained_weights=null"):
        wsi_run(tmp_path, wsi_csv, **{"model.pretrained_weights": str(tmp_path / "dino.pth")})
