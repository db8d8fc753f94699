import dataclasses
import re

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from source.config.extraction import ExtractionConfig, validate_extraction
from source.errors import ConfigError
from tests.helpers import REPO, extraction_config


def test_default_yaml_documents_every_key_with_the_schema_defaults():
    documented = OmegaConf.load(REPO / "config" / "default.yaml")
    schema = OmegaConf.structured(ExtractionConfig)
    assert set(documented) == {f.name for f in dataclasses.fields(ExtractionConfig)}
    for key in documented:
        assert str(OmegaConf.to_container(schema, enum_to_str=True)[key]) == str(
            OmegaConf.to_container(documented)[key]
        ), key
    lines = (REPO / "config" / "default.yaml").read_text().splitlines()
    for key in documented:
        line = next(line for line in lines if re.match(rf"^{key}:", line))
        has_comment = "#" in line or key in {"std", "experiment_name", "wandb"}
        assert has_comment, f"{key} has no comment in config/default.yaml"


def test_feature_extraction_configs_only_use_known_keys():
    for name in ["default", "local", "demo"]:
        cfg = OmegaConf.load(REPO / "config" / "feature_extraction" / f"{name}.yaml")
        merged = OmegaConf.merge(extraction_config(), {k: v for k, v in cfg.items() if k != "defaults"})
        assert merged.level.value in {"global", "local"}


def test_typos_and_wrong_types_are_rejected_with_the_key():
    cfg = extraction_config()
    with pytest.raises(ConfigAttributeError, match="regionsize"):
        OmegaConf.update(cfg, "regionsize", 1024)
    with pytest.raises(ValidationError, match="level"):
        OmegaConf.merge(cfg, {"level": "regional"})
    with pytest.raises(ValidationError, match="region_size"):
        OmegaConf.merge(cfg, {"region_size": "big"})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "give exactly one input, region_dir or wsi_csv"),
        ({"region_dir": "/does/not/exist"}, "region_dir '/does/not/exist' is not a folder"),
        ({"region_size": 1000}, "region_size .1000. must be a multiple of patch_size"),
        ({"patch_size": 250}, "patch_size .250. must be a multiple of mini_patch_size"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"device": "gpu"}, "device must be auto, cpu, cuda"),
        ({"resume": True}, "resume: true needs run_id"),
        ({"mean": [0.5, 0.5]}, "mean needs one value per RGB channel"),
        ({"slide_list": "/no/list.txt"}, "slide_list '/no/list.txt' is not a file"),
        ({"level": "local", "split_across_gpus": True}, "split_across_gpus only applies to level: global"),
        ({"wsi_csv": "/no/slides.csv", "region_dir": None}, "wsi_csv '/no/slides.csv' is not a file"),
        ({"coordinates_dir": "/tmp"}, "coordinates_dir needs wsi_csv"),
        ({"save_region_images": True}, "save_region_images only applies to wsi_csv"),
        ({"tiling.spacing": 0.0}, "tiling.spacing must be a positive"),
        ({"tiling.overlap": 1.0}, "tiling.overlap must be in"),
        ({"tiling.min_tissue_fraction": 1.5}, "tiling.min_tissue_fraction must be in"),
        ({"tiling.backend": "openslid"}, "tiling.backend must be one of"),
        ({"tiling.segmentation": "kmeans"}, "tiling.segmentation must be one of"),
    ],
)
def test_validation_names_the_key(tmp_path, overrides, message):
    values = {"region_dir": str(tmp_path)} | overrides if overrides else {}
    cfg = extraction_config(**values)
    with pytest.raises(ConfigError, match=message):
        validate_extraction(cfg)


@pytest.mark.parametrize("key, value", [("vit_patch_arch", "vit_smal"), ("vit_region_arch", "vit_small")])
def test_architecture_names_are_checked(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"{key}: unknown (pixels|grid) encoder .{value}.; choose one of"):
        validate_extraction(extraction_config(region_dir=str(tmp_path), **{key: value}))
