"""Every registered slide model through the jobs: training, exact resume, evaluation, inference and ensembles, for
classification, survival and regression; flat patch bags at level local with a seeded max_bag_size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from source.data.features import BagDataset, FeatureBank
from source.engines import train as train_module
from source.engines.inference_job import run_inference_job
from source.engines.training_job import run_training_job
from source.errors import ConfigError
from source.models.slide_registry import AGGREGATORS, DsMilOptions
from source.tasks.trained import load_trained_slide_model
from tests.helpers import TEST_DEVICE
from tests.training_data import classification_data, job_config, regression_data, survival_data

PREDICTION = {"classification": "prob_1", "survival": "risk", "regression": "prediction"}
SMALL = {"nepochs": 2, "model.hidden_dim": 16}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("aggregator_data")
    return {
        "classification": classification_data(root / "c", n_slides=20, regions=5, signal=2.0),
        "survival": survival_data(root / "s", n_patients=24, regions=5),
        "regression": regression_data(root / "r", n_slides=20, regions=5),
    }


def out_dir(cfg) -> Path:
    return Path(cfg.output_dir) / cfg.experiment_name / cfg.run_id


def inference(tmp_path, kind, run_id, checkpoints, csv):
    cfg = OmegaConf.create(
        {
            "checkpoints": [str(path) for path in checkpoints],
            "run_dir": None,
            "checkpoint_name": "best",
            "test_csvs": {"tune": str(csv)},
            "features_dir": None,
            "output_dir": str(tmp_path / "inference"),
            "experiment_name": kind,
            "run_id": run_id,
            "resume": False,
            "device": TEST_DEVICE,
        }
    )
    assert run_inference_job(cfg, kind) == 0
    return pd.read_csv(tmp_path / "inference" / kind / run_id / "tune_predictions.csv")


@pytest.mark.parametrize("kind", ["classification", "survival", "regression"])
@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
def test_every_aggregator_trains_predicts_and_ensembles(tmp_path, datasets, kind, aggregator):
    cfg = job_config(kind, tmp_path, datasets[kind], **SMALL, **{"model.aggregator": aggregator})
    assert run_training_job(cfg, kind, multi=False) == 0
    out = out_dir(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"tune", "test"} and np.isfinite(metrics["tune"]["loss"])
    trained = load_trained_slide_model(out / "latest.pt", kind=kind)
    assert trained.settings.aggregator == aggregator and trained.kind == kind
    column = PREDICTION[kind]
    tune = pd.read_csv(out / "tune_predictions.csv")
    best = inference(tmp_path, kind, "best", [out / "best.pt"], datasets[kind]["tune"])
    np.testing.assert_allclose(best[column], tune[column], rtol=1e-5, atol=1e-6)  # final predictions use best.pt
    latest = inference(tmp_path, kind, "latest", [out / "latest.pt"], datasets[kind]["tune"])
    both = inference(tmp_path, kind, "both", [out / "best.pt", out / "latest.pt"], datasets[kind]["tune"])
    np.testing.assert_allclose(both[column], (best[column] + latest[column]) / 2, rtol=1e-5, atol=1e-6)


RESUMED = [("classification", name) for name in sorted(AGGREGATORS)] + [
    ("survival", "abmil"),
    ("regression", "clam_mb"),
]


@pytest.mark.parametrize("kind, aggregator", RESUMED)
def test_every_aggregator_resumes_exactly(tmp_path, datasets, monkeypatch, kind, aggregator):
    values = SMALL | {"nepochs": 3, "model.aggregator": aggregator, "model.max_bag_size": 4}
    if aggregator.startswith("clam") and kind == "classification":
        values["model.clam.k_sample"] = 2  # the instance loss runs on these bags of 4
    full = job_config(kind, tmp_path / "full", datasets[kind], **values)
    run_training_job(full, kind, multi=False)
    original_save = train_module.Trainer.save

    def killed_after_first_epoch(self, name, epoch):
        original_save(self, name, epoch)
        if name == "latest" and epoch == 0:
            raise KeyboardInterrupt("killed")

    killed = job_config(kind, tmp_path / "killed", datasets[kind], **values)
    monkeypatch.setattr(train_module.Trainer, "save", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training_job(killed, kind, multi=False)
    monkeypatch.setattr(train_module.Trainer, "save", original_save)
    resumed = job_config(kind, tmp_path / "killed", datasets[kind], resume=True, **values)
    assert run_training_job(resumed, kind, multi=False) == 0
    for name in ("metrics.csv", "tune_predictions.csv", "test_predictions.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out_dir(full) / name), pd.read_csv(out_dir(resumed) / name))


def test_flat_patch_bags_at_level_local(tmp_path):
    """A MIL aggregator at level local reads each slide as its M * n * n patches, like the paper's baselines."""
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, dim=32, local_grid=4, seed=5)
    values = {"level": "local", "model.embed_dim_patch": 32, "model.aggregator": "abmil", "model.max_bag_size": 20}
    cfg = job_config("classification", tmp_path, paths, **SMALL, **values)
    assert run_training_job(cfg, "classification", multi=False) == 0
    trained = load_trained_slide_model(out_dir(cfg) / "best.pt")
    assert trained.settings.patch_bags and trained.model.embed[0].in_features == 32
    assert len(pd.read_csv(out_dir(cfg) / "tune_predictions.csv")) == 4


@pytest.mark.parametrize("instance_embedding", [False, True])
def test_the_dsmil_form_is_trained_and_rebuilt_from_the_checkpoint(tmp_path, datasets, instance_embedding):
    """``model.dsmil.instance_embedding``: the reference form (false, the default) or the earlier one (true)."""
    values = SMALL | {"model.aggregator": "dsmil", "model.dsmil.instance_embedding": instance_embedding}
    cfg = job_config("classification", tmp_path, datasets["classification"], **values)
    assert run_training_job(cfg, "classification", multi=False) == 0
    trained = load_trained_slide_model(out_dir(cfg) / "best.pt")
    assert trained.settings.options == DsMilOptions(instance_embedding)
    assert isinstance(trained.model.embed, torch.nn.Identity) is not instance_embedding


def test_bags_are_flattened_and_sampled_with_a_seed_in_training_only(tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    torch.save(torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2), features / "s.pt")
    dataset = BagDataset([["s"]], {"label": np.array([0])}, FeatureBank(features, "local", 2), "slide", seed=7)
    dataset.flatten = True
    whole = dataset[0].features
    assert whole.shape == (12, 2) and torch.equal(whole[5], torch.tensor([10.0, 11.0]))  # region 1, patch 1
    dataset.max_instances = 5
    first = dataset[0].features
    assert first.shape == (5, 2) and torch.equal(first, dataset[0].features)  # same seed, epoch, item: same subset
    rows = (first[:, 0] / 2).long()
    assert torch.equal(rows, rows.sort().values) and set(rows.tolist()) <= set(range(12))  # kept in bag order
    dataset.epoch = 1
    assert not torch.equal(dataset[0].features, first)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model.aggregator": "attention"}, "model.aggregator 'attention' is unknown; choose one of"),
        ({"model.aggregator": "abmil", "model.slide_pos_embed.use": True}, "applies to the hipt aggregator only"),
        ({"model.max_bag_size": 0}, "model.max_bag_size must be >= 1"),
        ({"model.clam.instance_loss_weight": 1.0}, r"instance_loss_weight must be in \[0, 1\)"),
    ],
)
def test_bad_slide_model_keys_are_one_error(tmp_path, datasets, values, message):
    cfg = job_config("classification", tmp_path, datasets["classification"], **values)
    with pytest.raises(ConfigError, match=message):
        run_training_job(cfg, "classification", multi=False)
    survival = job_config("survival", tmp_path, datasets["survival"], **{"model.clam.instance_loss_weight": 0.3})
    with pytest.raises(ConfigError, match="needs class labels"):
        run_training_job(survival, "survival", multi=False)


def test_a_dsmil_checkpoint_from_before_the_option_loads_in_the_form_it_was_trained_in(tmp_path, datasets):
    """Checkpoints saved before ``model.dsmil`` existed hold the two-stream form: they load as such, not as the new
    default (which would not fit their weights)."""
    values = SMALL | {"model.aggregator": "dsmil", "model.dsmil.instance_embedding": True}
    cfg = job_config("classification", tmp_path, datasets["classification"], **values)
    assert run_training_job(cfg, "classification", multi=False) == 0
    state = torch.load(out_dir(cfg) / "best.pt", weights_only=True)
    del state["config"]["model"]["dsmil"]  # as saved before the option existed
    earlier = tmp_path / "earlier.pt"
    torch.save(state, earlier)
    trained = load_trained_slide_model(earlier)
    assert trained.settings.options == DsMilOptions(instance_embedding=True)
    reference = load_trained_slide_model(out_dir(cfg) / "best.pt")
    bag = torch.randn(5, 192)
    torch.testing.assert_close(trained.model(bag), reference.model(bag), rtol=0, atol=0)
