"""Features as CLAM / TRIDENT h5: written by extraction, read by training, and their geometry."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from source.data.features import FeatureBank, FeatureFileError
from source.data.h5_features import Geometry, instance_coords, read_h5_features, write_h5_features
from source.engines.extraction_job import run_extraction_job
from source.engines.training_job import run_training_job
from tests.helpers import extraction_config
from tests.training_data import classification_data, job_config

TINY = {"vit_patch_arch": "vit_tiny", "pretrain_vit_patch": None, "pretrain_vit_region": None}


def test_patch_corners_follow_the_row_major_patch_order():
    coords = instance_coords([(100, 200), (5000, 0)], 2, 1000)
    assert coords.tolist()[:4] == [[100, 200], [600, 200], [100, 700], [600, 700]]
    assert coords.shape == (8, 2) and coords[4].tolist() == [5000, 0]
    assert instance_coords([(1, 2)], 0, 1000).tolist() == [[1, 2]]


def test_write_and_read_round_trip(tmp_path):
    local = torch.randn(3, 4, 8)
    path = write_h5_features(tmp_path / "s.h5", local, [(0, 0), (2048, 0), (0, 2048)], Geometry(1024, 2048, 256, 0.5))
    with h5py.File(path) as handle:
        assert handle["coords"].shape == (12, 2) and handle["coords"][5].tolist() == [2048 + 1024, 0]
        attrs = dict(handle.attrs)
    assert attrs["patch_size_level0"] == 1024 and attrs["region_size"] == 1024 and attrs["spacing"] == 0.5
    assert attrs["level"] == "local" and attrs["patch_size"] == 256
    torch.testing.assert_close(read_h5_features(path), local.reshape(12, 8))
    with h5py.File(tmp_path / "trident.h5", "w") as handle:  # TRIDENT may keep a batch axis of 1
        handle.create_dataset("features", data=np.ones((1, 5, 8), dtype=np.float16))
    assert read_h5_features(tmp_path / "trident.h5").dtype == torch.float32
    assert read_h5_features(tmp_path / "trident.h5").shape == (5, 8)


@pytest.mark.parametrize("level", ["global", "local"])
def test_extraction_writes_h5_equal_to_its_feature_files(tmp_path, region_dir, level):
    cfg = extraction_config(
        region_dir=str(region_dir),
        slide_list=None,
        output_dir=str(tmp_path / "out"),
        run_id="run",
        region_size=1024,
        num_workers=0,
        level=level,
        save_h5=True,
        **TINY,
    )
    assert run_extraction_job(cfg) == 0
    run_dir = tmp_path / "out" / cfg.experiment_name / "run"
    regions = pd.read_csv(run_dir / "regions.csv")
    for slide_id in ("subset", "CMU-1-Small-Region"):
        features = torch.load(run_dir / "features" / "slide" / f"{slide_id}.pt", weights_only=True)
        with h5py.File(run_dir / "features" / "h5" / f"{slide_id}.h5") as handle:
            stored, coords, attrs = np.asarray(handle["features"]), np.asarray(handle["coords"]), dict(handle.attrs)
        np.testing.assert_array_equal(stored, features.reshape(-1, features.shape[-1]).numpy())
        corners = regions[regions.slide_id == slide_id][["x", "y"]].to_numpy()
        if level == "global":
            np.testing.assert_array_equal(coords, corners)
            assert attrs["patch_size_level0"] == 1024
        else:
            np.testing.assert_array_equal(coords[::16], corners)  # the first patch of each region is its corner
            assert attrs["patch_size_level0"] == 256 and len(coords) == 16 * len(corners)
        assert np.isnan(attrs["spacing"]) and attrs["level"] == level  # region images: spacing unknown
    resumed = extraction_config(**(dict(cfg) | {"resume": True}))
    (run_dir / "features" / "h5" / "subset.h5").unlink()  # a missing h5 makes its slide incomplete
    assert run_extraction_job(resumed) == 0 and (run_dir / "features" / "h5" / "subset.h5").exists()


def test_training_reads_h5_bags_and_names_a_bad_file(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=4, signal=2.0)
    h5_dir = tmp_path / "h5"
    for pt in paths["features_dir"].glob("*.pt"):
        bag = torch.load(pt, weights_only=True)
        write_h5_features(h5_dir / f"{pt.stem}.h5", bag, [(0, 0)] * len(bag), Geometry(4096, 4096, 256, 0.5))
    bank = FeatureBank(h5_dir, "global", 192)
    torch.testing.assert_close(bank.load("slide_000"), torch.load(paths["features_dir"] / "slide_000.pt"))
    cfg = job_config("classification", tmp_path, paths | {"features_dir": h5_dir}, nepochs=2)
    cfg.model.aggregator = "abmil"
    assert run_training_job(cfg, "classification", multi=False) == 0
    (h5_dir / "slide_001.h5").write_bytes(b"not hdf5")
    with pytest.raises(FeatureFileError, match="slide_001.h5 cannot be read"):
        FeatureBank(h5_dir, "global", 192).load("slide_001")
