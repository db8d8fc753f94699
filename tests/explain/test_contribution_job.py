"""contribution_maps.py end to end: values equal an independent leave-one-out, tables, pictures, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from source.config.contribution import ContributionConfig
from source.engines.contribution_job import run_contribution_job
from source.engines.extraction_job import run_extraction_job
from source.engines.training_job import run_training_job
from source.errors import ConfigError
from source.tasks.trained import load_trained_slide_model
from tests.helpers import TEST_DEVICE, extraction_config
from tests.training_data import abmil_checkpoint, classification_data, job_config, regression_data, survival_data
from tests.wsi.conftest import write_csv

DATA = {"classification": classification_data, "survival": survival_data, "regression": regression_data}


def contribution_config(out: Path, **values):
    base = {"output_dir": str(out), "run_id": "c", "device": TEST_DEVICE}
    return OmegaConf.merge(OmegaConf.structured(ContributionConfig), base | values)


def independent(checkpoint: Path, features: torch.Tensor, task_kind: str, target) -> np.ndarray:
    """f(bag) - f(bag without region i), one forward per removal, computed here from the loaded model."""
    trained = load_trained_slide_model(checkpoint)
    model, task = trained.model, trained.task

    def value(bag):
        with torch.no_grad():
            logits = model(bag).unsqueeze(0)
        return float(task.explained(logits, target)[0])

    full = value(features)
    return np.array([full - value(features[torch.arange(len(features)) != i]) for i in range(len(features))])


@pytest.mark.parametrize(
    "kind, aggregator", [("classification", "abmil"), ("survival", "hipt"), ("regression", "dsmil")]
)
def test_region_contributions_equal_an_independent_leave_one_out(tmp_path, kind, aggregator):
    sizes = {"n_patients" if kind == "survival" else "n_slides": 20, "regions": 6}
    paths = DATA[kind](tmp_path / "data", **sizes)
    cfg = job_config(kind, tmp_path, paths, nepochs=2, **{"model.aggregator": aggregator, "model.hidden_dim": 16})
    assert run_training_job(cfg, kind, multi=False) == 0
    run_dir = tmp_path / "out" / cfg.experiment_name / "run"
    explain = contribution_config(tmp_path, run_dir=str(run_dir), slide_csv=str(paths["test"]), batch_size=4)
    assert run_contribution_job(explain) == 0
    out = tmp_path / "contributions" / "c"
    slides = pd.read_csv(paths["test"]).slide_id.tolist()
    for slide_id in slides[:2]:
        table = pd.read_csv(out / slide_id / "contributions.csv")
        features = torch.load(paths["features_dir"] / f"{slide_id}.pt", weights_only=True)
        target = int(table.target_class.iloc[0]) if kind == "classification" else None
        expected = independent(run_dir / "best.pt", features, kind, target)
        np.testing.assert_allclose(table.contribution, expected, atol=1e-5)
        assert table.region.tolist() == list(range(6)) and (out / slide_id / "distribution.png").exists()
        assert table.explained.iloc[0] == {"classification": "probability", "survival": "risk"}.get(kind, "prediction")
    summary = pd.read_csv(out / "slides.csv")
    assert (summary.status == "success").all() and len(summary) == len(slides)


def test_flat_patch_bags_remove_a_whole_region_and_a_chosen_class_is_explained(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, dim=32, local_grid=4, seed=5)
    values = {"level": "local", "model.embed_dim_patch": 32, "model.aggregator": "clam_sb", "model.hidden_dim": 16}
    cfg = job_config("classification", tmp_path, paths, nepochs=1, **values)
    assert run_training_job(cfg, "classification", multi=False) == 0
    checkpoint = tmp_path / "out" / "classification" / "run" / "latest.pt"
    explain = contribution_config(tmp_path, checkpoint=str(checkpoint), slide_id="slide_000", target_class=1)
    assert run_contribution_job(explain) == 0
    table = pd.read_csv(tmp_path / "contributions" / "c" / "slide_000" / "contributions.csv")
    features = torch.load(paths["features_dir"] / "slide_000.pt", weights_only=True)  # (3, 16, 32)
    trained = load_trained_slide_model(checkpoint)
    with torch.no_grad():
        full = torch.softmax(trained.model(features.reshape(-1, 32)), -1)[1]
        without = [
            torch.softmax(trained.model(features[[j for j in range(3) if j != i]].reshape(-1, 32)), -1)[1]
            for i in range(3)
        ]
    np.testing.assert_allclose(table.contribution, [float(full - w) for w in without], atol=1e-5)
    assert (table.target_class == 1).all() and len(table) == 3


@pytest.fixture(scope="module")
def whole_slide_run(slides_dir, tmp_path_factory):
    """A whole-slide extraction (512-px regions of a 0.25 um/px slide) and a classification checkpoint on it."""
    out = tmp_path_factory.mktemp("contribution_wsi")
    csv = write_csv(out / "slides.csv", [{"slide_id": "quarter", "image_path": str(slides_dir / "he_025_no2x.tif")}])
    tiny = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None}
    cfg = extraction_config(output_dir=str(out), run_id="ex", wsi_csv=str(csv), region_size=512, num_workers=0, **tiny)
    assert run_extraction_job(cfg) == 0
    run = out / "feature_extraction" / "ex"
    return run, abmil_checkpoint(run / "features" / "slide", out / "m.pt")


def test_pictures_and_geojson_in_level0_pixels_from_an_extraction_run(tmp_path, whole_slide_run):
    run, checkpoint = whole_slide_run
    cfg = contribution_config(
        tmp_path, checkpoint=str(checkpoint), slide_id="quarter", extraction_run=str(run), top_k=2
    )
    assert run_contribution_job(cfg) == 0
    out = tmp_path / "contributions" / "c" / "quarter"
    table = pd.read_csv(out / "contributions.csv")
    regions = pd.read_csv(run / "regions.csv")
    assert table[["x", "y"]].values.tolist() == regions[["x", "y"]].values.tolist()
    size = int(pd.read_csv(run / "slides.csv").tile_size_lv0.iloc[0])
    assert size == 1024  # 512 px at 0.5 um/px of a 0.25 um/px slide
    collection = json.loads((out / "contributions.geojson").read_text())
    first = collection["features"][0]
    assert first["geometry"]["coordinates"][0][2] == [int(table.x[0]) + size, int(table.y[0]) + size]
    assert first["properties"]["measurements"]["contribution"] == pytest.approx(table.contribution[0])
    assert Image.open(out / "canvas.png").size[0] > 400
    saved = sorted(p.name for p in (out / "top_regions").iterdir())
    positives, negatives = (table.contribution > 0).sum(), (table.contribution < 0).sum()
    assert len(saved) == min(2, positives) + min(2, negatives)
    assert all(Image.open(out / "top_regions" / name).size == (512, 512) for name in saved)


def test_pictures_from_wsi_csv_with_coordinates_dir_or_h5_coords(tmp_path, whole_slide_run, slides_dir):
    from source.data.h5_features import Geometry, write_h5_features

    run, checkpoint = whole_slide_run
    csv = write_csv(tmp_path / "wsi.csv", [{"slide_id": "quarter", "image_path": str(slides_dir / "he_025_no2x.tif")}])
    common = {"checkpoint": str(checkpoint), "slide_id": "quarter", "wsi_csv": str(csv), "top_k": 1}
    cfg = contribution_config(tmp_path, coordinates_dir=str(run / "coordinates"), run_id="coords", **common)
    assert run_contribution_job(cfg) == 0
    regions = pd.read_csv(run / "regions.csv")
    by_coordinates = pd.read_csv(tmp_path / "contributions" / "coords" / "quarter" / "contributions.csv")
    assert by_coordinates[["x", "y"]].values.tolist() == regions[["x", "y"]].values.tolist()
    assert (tmp_path / "contributions" / "coords" / "quarter" / "canvas.png").is_file()
    h5_dir = tmp_path / "h5"
    features = torch.load(run / "features" / "slide" / "quarter.pt", weights_only=True)
    corners = regions[["x", "y"]].values.tolist()
    write_h5_features(h5_dir / "quarter.h5", features, corners, Geometry(512, 1024, 256, 0.5))
    cfg = contribution_config(tmp_path, features_dir=str(h5_dir), run_id="h5", **common)
    assert run_contribution_job(cfg) == 0
    out = tmp_path / "contributions" / "h5" / "quarter"
    by_h5 = pd.read_csv(out / "contributions.csv")
    pd.testing.assert_frame_equal(by_h5, by_coordinates)
    square = json.loads((out / "contributions.geojson").read_text())["features"][0]["geometry"]["coordinates"][0]
    assert square[2] == [corners[0][0] + 1024, corners[0][1] + 1024]
    assert (out / "canvas.png").is_file() and list((out / "top_regions").iterdir())
    cfg = contribution_config(tmp_path, run_id="pt", **common)  # .pt features carry no corners
    assert run_contribution_job(cfg) == 1
    error = pd.read_csv(tmp_path / "contributions" / "pt" / "slides.csv").error[0]
    assert "set coordinates_dir to the extraction run's coordinates/" in error


def test_pictures_from_region_images_stitched_on_white(tmp_path, region_dir):
    tiny = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None}
    values = {"output_dir": str(tmp_path), "run_id": "ex", "region_dir": str(region_dir), "region_size": 1024}
    assert run_extraction_job(extraction_config(**values, num_workers=0, slide_list=None, **tiny)) == 0
    run = tmp_path / "feature_extraction" / "ex"
    checkpoint = abmil_checkpoint(run / "features" / "slide", tmp_path / "m.pt")
    slide = "CMU-1-Small-Region"
    cfg = contribution_config(
        tmp_path, checkpoint=str(checkpoint), slide_id=slide, region_dir=str(region_dir), top_k=1, canvas_width=500
    )
    assert run_contribution_job(cfg) == 0
    out = tmp_path / "contributions" / "c" / slide
    table = pd.read_csv(out / "contributions.csv")
    regions = pd.read_csv(run / "regions.csv")
    assert table[["x", "y"]].values.tolist() == regions[regions.slide_id == slide][["x", "y"]].values.tolist()
    canvas = np.asarray(Image.open(out / "canvas.png").convert("RGB"))
    assert canvas.shape[1] >= 500
    top = sorted((out / "top_regions").iterdir())
    assert top and all(Image.open(path).size == (1024, 1024) for path in top)
    first = top[0].stem.split("_")  # <sign>_<rank>_<x>_<y>
    original = np.asarray(Image.open(region_dir / slide / "imgs" / f"{first[2]}_{first[3]}.jpg").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(top[0]).convert("RGB")), original)


def test_bad_inputs_are_one_clear_error_each(tmp_path, whole_slide_run):
    run, checkpoint = whole_slide_run
    cfg = contribution_config(tmp_path, checkpoint=str(checkpoint), slide_csv=str(tmp_path / "ids.csv"))
    pd.DataFrame({"slide_id": ["quarter", "nowhere"]}).to_csv(tmp_path / "ids.csv", index=False)
    assert run_contribution_job(cfg) == 1
    summary = pd.read_csv(tmp_path / "contributions" / "c" / "slides.csv").set_index("slide_id")
    assert summary.loc["quarter", "status"] == "success"
    assert "slide 'nowhere' has no feature file" in summary.loc["nowhere", "error"]
    wide = tmp_path / "wide"
    wide.mkdir()
    torch.save(torch.randn(4, 384), wide / "quarter.pt")  # features of another width than the model's 192
    cfg = contribution_config(
        tmp_path, checkpoint=str(checkpoint), slide_id="quarter", features_dir=str(wide), run_id="w"
    )
    assert run_contribution_job(cfg) == 1
    error = pd.read_csv(tmp_path / "contributions" / "w" / "slides.csv").error[0]
    assert "(4, 384) but level global needs (M, 192)" in error
    for values, message in (
        ({"canvases": True}, "canvases=true needs the slides' pixels"),
        ({"run_dir": str(tmp_path)}, "give one trained model"),
        ({"region_dir": str(tmp_path), "extraction_run": str(run)}, "extraction_run and region_dir are both set"),
        ({"coordinates_dir": str(tmp_path)}, "coordinates_dir goes with wsi_csv"),
    ):
        bad = contribution_config(tmp_path, checkpoint=str(checkpoint), slide_id="quarter", **values)
        with pytest.raises(ConfigError, match=message):
            run_contribution_job(bad)
    (tmp_path / "multi" / "fold_0").mkdir(parents=True)
    with pytest.raises(ConfigError, match="a multi-fold run, give one fold's folder"):
        run_contribution_job(contribution_config(tmp_path, run_dir=str(tmp_path / "multi"), slide_id="quarter"))


def test_level_local_hipt_also_explains_each_patch(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, dim=32, local_grid=4, seed=5)
    values = {"level": "local", "model.embed_dim_patch": 32, "model.pretrain_vit_region": None}
    cfg = job_config("classification", tmp_path, paths, nepochs=1, **values)
    assert run_training_job(cfg, "classification", multi=False) == 0
    checkpoint = tmp_path / "out" / "classification" / "run" / "latest.pt"
    assert run_contribution_job(contribution_config(tmp_path, checkpoint=str(checkpoint), slide_id="slide_001")) == 0
    out = tmp_path / "contributions" / "c" / "slide_001"
    patches = pd.read_csv(out / "patch_contributions.csv")
    assert len(patches) == 3 * 16 and patches.contribution.notna().all()
    assert patches[["region", "patch", "row", "col"]].iloc[17].tolist() == [1, 1, 0, 1]
    regions = pd.read_csv(out / "contributions.csv")
    assert len(regions) == 3  # and the region table as for any model
