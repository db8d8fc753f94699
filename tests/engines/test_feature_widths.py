"""Features of another encoder's width (UNI: 1024, 1536) as CLAM-layout h5 files, through the training entry with
every registered slide model: each trains, or the config is refused up front (exit 2) with the fix named."""

from __future__ import annotations

import inspect
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from source.config.training import validate_training
from source.data.features import FeatureFileError, check_features
from source.data.h5_features import Geometry, write_h5_features
from source.engines.training_job import run_training_job
from source.entry import exit_with
from source.errors import ConfigError
from source.models.aggregators import SlideAggregator
from source.models.slide import GlobalHIPT
from source.models.slide_registry import AGGREGATORS, HIPT_AGGREGATOR, SLIDE_HEADS
from tests.helpers import REPO, subprocess_environment
from tests.training_data import classification_data, job_config

WIDTHS = (1024, 1536)
TINY = {"nepochs": 1, "model.hidden_dim": 8, "training.gradient_accumulation": 2}
CLAM_KEYS = {"model.clam.k_sample": 2}  # the instance loss samples from bags of 3


@pytest.fixture(scope="module")
def h5_data(tmp_path_factory):
    """Per width: 8 slides of 3 regions as CLAM-layout h5 (``features`` (M, D) + ``coords``); a tune csv of one
    slide per class, a train csv of the other 6."""
    datasets = {}
    for width in WIDTHS:
        root = tmp_path_factory.mktemp(f"h5_{width}")
        paths = classification_data(root / "data", n_slides=8, regions=3, dim=width, signal=2.0)
        slides = pd.concat([pd.read_csv(paths[name]) for name in ("train", "tune", "test")], ignore_index=True)
        tune = slides.groupby("label").head(1)
        slides.drop(tune.index).to_csv(paths["train"], index=False)
        tune.to_csv(paths["tune"], index=False)
        del paths["test"]
        h5_dir = root / "h5"
        for pt in sorted(paths["features_dir"].glob("*.pt")):
            bag = torch.load(pt, weights_only=True)
            corners = [(4096 * i, 0) for i in range(len(bag))]
            write_h5_features(h5_dir / f"{pt.stem}.h5", bag, corners, Geometry(4096, 4096, 256, 0.5))
            pt.unlink()  # only the h5 files are left to read
        datasets[width] = paths | {"features_dir": h5_dir}
    return datasets


def entry_exit_code(cfg) -> int:
    """What the training entry exits with (:func:`source.entry.exit_with` around the job, as train/*.py runs it)."""
    with pytest.raises(SystemExit) as stopped:
        exit_with(run_training_job, cfg, "classification", False)
    return stopped.value.code


def run_dir(cfg) -> Path:
    return Path(cfg.output_dir) / cfg.experiment_name / cfg.run_id


@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
@pytest.mark.parametrize("width", WIDTHS)
def test_every_aggregator_trains_on_wide_h5_features_or_names_the_fix(tmp_path, h5_data, caplog, width, aggregator):
    clam = CLAM_KEYS if aggregator.startswith("clam") else {}
    values = TINY | clam | {"model.aggregator": aggregator, "model.embed_dim_region": width}
    cfg = job_config("classification", tmp_path, h5_data[width], **values)
    with caplog.at_level(logging.ERROR, logger="hipt"):
        code = entry_exit_code(cfg)
    if aggregator == HIPT_AGGREGATOR and width % SLIDE_HEADS:
        assert code == 2
        message = caplog.text
        assert "model.embed_dim_region=1024" in message and "hipt" in message and f"{SLIDE_HEADS} heads" in message
        assert "multiples of 3 (e.g. 1023 or 1026)" in message and "model.hidden_dim" in message
        assert all(name in message for name in AGGREGATORS if name != HIPT_AGGREGATOR)
        assert not run_dir(cfg).exists()  # refused before any work
    else:
        assert code == 0, caplog.text
        assert (run_dir(cfg) / "best.pt").is_file() and (run_dir(cfg) / "latest.pt").is_file()
        shutil.rmtree(run_dir(cfg))  # hipt's checkpoints at 1536 take most of a GB


def test_command_line_hipt_on_1024_wide_features_exits_2_naming_the_fix(tmp_path, h5_data):
    paths = h5_data[1024]
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train" / "classification.py"),
            "--config-name",
            "single",
            f"data.train_csv={paths['train']}",
            f"data.tune_csv={paths['tune']}",
            f"features_dir={paths['features_dir']}",
            "output_dir=out",
            "model.embed_dim_region=1024",
        ],
        capture_output=True,
        text=True,
        env=subprocess_environment(),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "hipt" in result.stderr and "3 heads" in result.stderr and "model.embed_dim_region=1024" in result.stderr
    assert "model.aggregator=abmil" in result.stderr


def test_wide_features_with_the_default_width_name_the_key(tmp_path, h5_data, caplog):
    cfg = job_config("classification", tmp_path, h5_data[1024], **TINY)  # hipt, embed_dim_region 192
    with caplog.at_level(logging.ERROR, logger="hipt"):
        assert entry_exit_code(cfg) == 2
    assert "has shape (3, 1024) but level global needs (M, 192); check level and features_dir" in caplog.text
    assert "set model.embed_dim_region=1024" in caplog.text


def test_local_features_of_another_width_name_the_patch_key():
    with pytest.raises(FeatureFileError, match=r"check level and features_dir, or .* set model.embed_dim_patch=1024"):
        check_features(torch.zeros(2, 16, 1024), "local", 384, Path("s.pt"))
    with pytest.raises(FeatureFileError, match=r"needs \(M, 192\); check level and features_dir$"):
        check_features(torch.zeros(2, 16, 192), "global", 192, Path("s.pt"))  # local features: the level is wrong


@pytest.mark.parametrize(
    "values, refused",
    [
        ({"model.embed_dim_region": 1024}, "(e.g. 1023 or 1026)"),
        ({"model.embed_dim_region": 100}, "(e.g. 99 or 102)"),
        ({"model.embed_dim_region": 1024, "model.slide_pos_embed.use": True}, "(e.g. 1023 or 1026)"),
        ({"model.embed_dim_region": 1536}, None),
        ({"model.embed_dim_region": 1023, "model.slide_pos_embed.use": True}, None),  # odd widths are fine
        ({"model.embed_dim_region": 1024, "model.aggregator": "abmil"}, None),
        ({"model.embed_dim_region": 1024, "model.aggregator": "transmil"}, None),
        ({"model.embed_dim_region": 1024, "level": "local"}, None),  # hipt reads ViT_region's 192 at level local
    ],
)
def test_config_check_takes_the_widths_the_slide_transformer_takes(tmp_path, h5_data, values, refused):
    cfg = job_config("classification", tmp_path, h5_data[1024], **values)
    if refused is None:
        validate_training(cfg, multi=False)
        return
    with pytest.raises(ConfigError, match=r"hipt aggregator.* 3 heads") as error:
        validate_training(cfg, multi=False)
    assert refused in str(error.value)


def test_the_configured_head_count_is_the_slide_transformers():
    assert inspect.signature(SlideAggregator).parameters["num_heads"].default == SLIDE_HEADS
    model = GlobalHIPT(2, dim=2 * SLIDE_HEADS)
    assert all(layer.self_attn.num_heads == SLIDE_HEADS for layer in model.aggregator.transformer.layers)


@pytest.mark.parametrize("pos_embed", [None, "sinusoidal", "learned"])
def test_the_slide_transformer_takes_odd_multiples_of_its_heads(pos_embed):
    """The sinusoidal encoding needs no even width: only the heads constrain model.embed_dim_region."""
    model = GlobalHIPT(2, dim=1023, pos_embed=pos_embed)
    logits = model(torch.randn(5, 1023))
    logits.sum().backward()
    assert logits.shape == (2,) and torch.isfinite(logits).all()
