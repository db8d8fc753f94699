"""Bad inputs of training: each is an error naming the file, row or key, raised before training starts."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from source.config.training import validate_training
from source.data.features import FeatureFileError
from source.data.labels import LabelTableError, discover_folds
from source.engines.training_job import run_training_job
from source.errors import ConfigError
from tests.helpers import training_config
from tests.training_data import classification_data, job_config, survival_data


@pytest.fixture
def data(tmp_path):
    return classification_data(tmp_path / "data", n_slides=20, regions=3)


def run(tmp_path, paths, kind="classification", **overrides):
    cfg = job_config(
        kind, tmp_path, {k: v for k, v in paths.items() if k != "test"}, **({"run_id": "r", "nepochs": 1} | overrides)
    )
    return run_training_job(cfg, kind, multi=False)


def edit_csv(path, change):
    frame = pd.read_csv(path)
    change(frame)
    frame.to_csv(path, index=False)
    return frame


def assert_nothing_trained(tmp_path):
    assert not list(tmp_path.glob("out/**/latest.pt"))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.pop("label"), r"missing column\(s\) \['label'\]"),
        (lambda f: f.loc.__setitem__((3, "slide_id"), f.slide_id[2]), r"duplicate slide_id in row\(s\) 4, 5"),
        (lambda f: f.loc.__setitem__((1, "slide_id"), "../escape"), "row 3: slide_id"),
        (lambda f: f.loc.__setitem__((0, "label"), 7), r"class index outside 0..1 \(num_classes\) in row\(s\) 2"),
        (lambda f: f.__setitem__("label", 1), "single class"),
    ],
)
def test_bad_classification_tables(tmp_path, data, change, message):
    edit_csv(data["train"], change)
    with pytest.raises(LabelTableError, match=message) as error:
        run(tmp_path, data)
    assert str(data["train"]) in str(error.value) or "single class" in message
    assert_nothing_trained(tmp_path)


def test_label_absent_from_mapping(tmp_path, data):
    for name in ("train", "tune"):
        edit_csv(data[name], lambda f: f.__setitem__("label", np.where(f.label == 1, "LUSC", "LUAD")))
    edit_csv(data["tune"], lambda f: f.loc.__setitem__((2, "label"), "MESO"))
    with pytest.raises(LabelTableError, match=r"\['MESO'\] in row\(s\) 4 are not in label_mapping"):
        run(tmp_path, data, label_mapping={"LUAD": 0, "LUSC": 1})
    edit_csv(data["tune"], lambda f: f.loc.__setitem__((2, "label"), "LUSC"))
    assert run(tmp_path, data, label_mapping={"LUAD": 0, "LUSC": 1}) == 0
    tune = pd.read_csv(next(tmp_path.glob("out/**/tune_predictions.csv")))
    assert {"prob_LUAD", "prob_LUSC", "pred", "pred_label"} <= set(tune.columns)
    assert (tune.pred_label == np.where(tune.prob_LUSC > tune.prob_LUAD, "LUSC", "LUAD")).all()


def test_label_mapping_with_more_classes_than_num_classes_is_refused_up_front(tmp_path, data):
    for name in ("train", "tune"):
        edit_csv(data[name], lambda f: f.__setitem__("label", np.where(f.label == 1, "LUSC", "LUAD")))
    with pytest.raises(
        ConfigError, match=r"label_mapping uses class indices \[0, 1, 2\] but num_classes is 2.*set num_classes=3"
    ):
        run(tmp_path, data, label_mapping={"LUAD": 0, "LUSC": 1, "MESO": 2})
    assert_nothing_trained(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda f: f.loc.__setitem__((2, "survival_months"), 0),
            r"survival_months must be a finite number > 0; row\(s\) 4",
        ),
        (
            lambda f: f.loc.__setitem__((0, "censorship"), 2),
            r"censorship must be 0 \(event\) or 1 \(censored\); row\(s\) 2",
        ),
        (lambda f: f.pop("case_id"), r"missing column\(s\) \['case_id'\]"),
    ],
)
def test_bad_survival_tables(tmp_path, change, message):
    paths = survival_data(tmp_path / "data", n_patients=30, regions=3)
    edit_csv(paths["train"], change)
    with pytest.raises(LabelTableError, match=message):
        run(tmp_path, paths, kind="survival")
    assert_nothing_trained(tmp_path)


def test_wrong_feature_shape_and_non_finite_values(tmp_path, data):
    slide = pd.read_csv(data["tune"]).slide_id[0]
    torch.save(torch.zeros(3, 100), data["features_dir"] / f"{slide}.pt")
    with pytest.raises(FeatureFileError, match=rf"{slide}.pt has shape \(3, 100\) but level global needs \(M, 192\)"):
        run(tmp_path, data)
    with pytest.raises(FeatureFileError, match=r"level local needs \(M, n\*n, 384\)"):
        run(tmp_path, data, level="local", **{"model.pretrain_vit_region": None})
    bad = torch.zeros(3, 192)
    bad[1, 5] = float("nan")
    torch.save(bad, data["features_dir"] / f"{slide}.pt")
    with pytest.raises(FeatureFileError, match="NaN or inf"):
        run(tmp_path, data)
    assert_nothing_trained(tmp_path)


def test_missing_feature_files_are_dropped_with_one_warning(tmp_path, data, caplog):
    tune = pd.read_csv(data["tune"])
    for slide in tune.slide_id[:2]:
        (data["features_dir"] / f"{slide}.pt").unlink()
    with caplog.at_level(logging.WARNING):
        assert run(tmp_path, data) == 0
    warnings = [r.getMessage() for r in caplog.records if "no feature file" in r.getMessage()]
    assert len(warnings) == 1 and all(slide in warnings[0] for slide in tune.slide_id[:2])
    assert len(pd.read_csv(tmp_path / "out" / "classification" / "r" / "tune_predictions.csv")) == len(tune) - 2
    for slide in tune.slide_id:
        (data["features_dir"] / f"{slide}.pt").unlink(missing_ok=True)
    with pytest.raises(LabelTableError, match="none of its slides has a feature file"):
        run(tmp_path, data)


def test_fold_folders(tmp_path):
    with pytest.raises(LabelTableError, match="has no fold_<i>/ folders"):
        (tmp_path / "folds").mkdir()
        discover_folds(tmp_path / "folds")
    (tmp_path / "folds" / "fold_0").mkdir()
    with pytest.raises(LabelTableError, match=r"lacks \['train.csv', 'tune.csv'\]"):
        discover_folds(tmp_path / "folds")


@pytest.mark.parametrize(
    "overrides, multi, message",
    [
        ({"data.train_csv": None}, False, "data.train_csv is not set"),
        ({}, True, "data.fold_dir is not set"),
        ({"features_dir": "/no/such/dir"}, False, "features_dir '/no/such/dir' is not a folder"),
        ({"training.batch_size": 4}, False, "training.batch_size must be 1"),
        ({"training.pct": 1.5}, False, r"training.pct must be in \(0, 1\]"),
        ({"resume": True}, False, "resume: true needs run_id"),
    ],
)
def test_bad_config_values_name_the_key(tmp_path, data, overrides, multi, message):
    values = {
        "data.train_csv": str(data["train"]),
        "data.tune_csv": str(data["tune"]),
        "features_dir": str(data["features_dir"]),
    }
    cfg = training_config("classification", multi=multi, **(values | overrides))
    with pytest.raises(ConfigError, match=message):
        validate_training(cfg, multi)


@pytest.mark.parametrize(
    "key, value, choices",
    [
        ("optim.name", "lamb", "adam, adamw, sgd"),
        ("optim.lr_scheduler.name", "linear", "step, cosine, reduce_on_plateau"),
        ("testing.retrieve_checkpoint", "last", "best, latest"),
        ("early_stopping.min_max", "up", "min, max"),
        ("model.slide_pos_embed.type", "rotary", "sinusoidal, learned"),
    ],
)
def test_choice_fields_refuse_other_values_with_the_valid_ones(key, value, choices):
    with pytest.raises(ValidationError, match=f"Invalid value '{value}', expected one of \\[{choices}\\]"):
        training_config("classification", **{key: value})
    assert training_config("classification", **{key: choices.split(", ")[1]}) is not None


def test_choice_values_read_like_the_strings_they_replace():
    cfg = training_config("classification", **{"optim.name": "adamw", "early_stopping.min_max": "max"})
    assert cfg.optim.name == "adamw" and f"{cfg.optim.name}" == "adamw" and str(cfg.early_stopping.min_max) == "max"
    assert OmegaConf.to_container(cfg, enum_to_str=True)["optim"]["name"] == "adamw"


def test_data_dependent_config_checks(tmp_path, data):
    with pytest.raises(ConfigError, match="early_stopping.tracking 'kappa' is not a metric of this task"):
        run(tmp_path, data, **{"early_stopping.tracking": "kappa"})  # kappa exists for multiclass only
    with pytest.raises(ConfigError, match="model.slide_pos_embed.max_len is 2 but a bag has 3 regions"):
        run(tmp_path, data, **{"model.slide_pos_embed.use": True, "model.slide_pos_embed.max_len": 2})
    assert_nothing_trained(tmp_path)


def test_resuming_a_cosine_schedule_with_other_epochs_is_refused(tmp_path, data):
    assert run(tmp_path, data, nepochs=2, **{"optim.lr_scheduler.name": "cosine"}) == 0
    with pytest.raises(ConfigError, match="cosine schedule of this run was built for nepochs=2"):
        run(tmp_path, data, nepochs=4, resume=True, **{"optim.lr_scheduler.name": "cosine"})
    assert run(tmp_path / "b", data, nepochs=2, **{"optim.lr_scheduler.name": "step"}) == 0
    assert (
        run(tmp_path / "b", data, nepochs=3, resume=True, **{"optim.lr_scheduler.name": "step"}) == 0
    )  # other schedules may grow
    assert pd.read_csv(tmp_path / "b" / "out" / "classification" / "r" / "metrics.csv").epoch.max() == 3


def test_corrupt_feature_file_is_named(tmp_path, data):
    slide = pd.read_csv(data["train"]).slide_id[0]
    path = data["features_dir"] / f"{slide}.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(FeatureFileError, match=rf"{slide}.pt cannot be read"):
        run(tmp_path, data)


def test_identical_train_and_tune_csvs_are_refused(tmp_path, data):
    same = dict(data, tune=data["train"])
    with pytest.raises(
        LabelTableError, match=r"slide_id\(s\) in both .* \(train\) and .* \(tune\).*data.allow_overlap=true"
    ):
        run(tmp_path, same)
    assert_nothing_trained(tmp_path)
