"""Training runs end to end on generated features: learning, outputs, resume, determinism, folds, inference."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats

from source.data.features import FeatureFileError
from source.engines import train as train_module
from source.engines.inference_job import run_inference_job
from source.engines.training_job import run_training_job
from source.models.vit import vit4k_xs
from tests.helpers import TEST_DEVICE, official_checkpoint, training_config
from tests.training_data import classification_data, job_config, survival_data


def classification_cfg(tmp_path, paths, **overrides):
    return job_config("classification", tmp_path, paths, **overrides)


def survival_cfg(tmp_path, paths, **overrides):
    return job_config("survival", tmp_path, paths, **overrides)


def inference_config(tmp_path, run_id, **values):
    """An inference config writing to ``tmp_path/inf/inference/<run_id>``."""
    defaults = {
        "checkpoints": [],
        "run_dir": None,
        "checkpoint_name": "best",
        "test_csvs": {},
        "features_dir": None,
        "output_dir": str(tmp_path / "inf"),
        "experiment_name": "inference",
        "run_id": run_id,
        "resume": False,
        "device": TEST_DEVICE,
    }
    return OmegaConf.create(defaults | values)


def run_dir(cfg):
    return Path(cfg.output_dir) / cfg.experiment_name / cfg.run_id


@pytest.fixture(scope="module")
def signal_data(tmp_path_factory):
    return classification_data(tmp_path_factory.mktemp("cls_signal"), signal=3.0)


def test_classification_learns_a_real_signal_and_writes_every_output(tmp_path, signal_data):
    cfg = classification_cfg(tmp_path, signal_data)
    assert run_training_job(cfg, "classification", multi=False) == 0
    out = run_dir(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tune"]["auc"] > 0.9 and metrics["test"]["auc"] > 0.9
    history = pd.read_csv(out / "metrics.csv")
    assert set(history.split) == {"train", "tune"} and history.epoch.max() == 6
    assert {"loss", "accuracy", "balanced_accuracy", "auc", "lr"} <= set(history.columns)
    tune = pd.read_csv(out / "tune_predictions.csv")
    assert list(tune.columns[:2]) == ["slide_id", "label"] and {"prob_0", "prob_1", "pred"} <= set(tune.columns)
    assert len(tune) == 18 and np.allclose(tune.prob_0 + tune.prob_1, 1)
    for name in [
        "best.pt",
        "latest.pt",
        "config.yaml",
        "test_predictions.csv",
        "loss.png",
        "auc.png",
        "tune_roc.png",
        "test_confusion_matrix.png",
        "test_confusion_matrix.csv",
        "log.txt",
    ]:
        assert (out / name).exists(), name
    confusion = pd.read_csv(out / "test_confusion_matrix.csv", index_col=0)
    assert confusion.to_numpy().sum() == len(pd.read_csv(out / "test_predictions.csv")) and confusion.shape == (2, 2)
    state = torch.load(out / "best.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "config", "task"} <= set(state)


def test_classification_on_noise_stays_near_chance(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=150, signal=0.0, seed=3)
    cfg = classification_cfg(tmp_path, paths)
    run_training_job(cfg, "classification", multi=False)
    metrics = json.loads((run_dir(cfg) / "metrics.json").read_text())
    assert 0.2 < metrics["tune"]["auc"] < 0.8 and 0.2 < metrics["test"]["auc"] < 0.8


@pytest.mark.parametrize("signal, low, high", [(1.0, 0.75, 1.0), (0.0, 0.3, 0.7)])
def test_survival_learns_a_real_signal_and_not_noise(tmp_path, signal, low, high):
    paths = survival_data(tmp_path / "data", n_patients=120, signal=signal, seed=1)
    cfg = survival_cfg(tmp_path, paths)
    assert run_training_job(cfg, "survival", multi=False) == 0
    out = run_dir(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert low < metrics["tune"]["c_index"] < high
    predictions = pd.read_csv(out / "test_predictions.csv")
    assert {"case_id", "slide_id", "censorship", "survival_months", "risk"} <= set(predictions.columns)
    assert (out / "test_kaplan_meier.png").exists()
    if signal:
        assert metrics["test"]["c_index"] > 0.75 and (out / "c_index.png").exists()


def test_same_seed_same_results_and_resume_equals_uninterrupted(tmp_path, signal_data, monkeypatch):
    full = classification_cfg(
        tmp_path / "a", signal_data, nepochs=4, **{"optim.lr_scheduler.name": "step", "optim.lr_scheduler.step_size": 1}
    )
    run_training_job(full, "classification", multi=False)
    again = classification_cfg(
        tmp_path / "b", signal_data, nepochs=4, **{"optim.lr_scheduler.name": "step", "optim.lr_scheduler.step_size": 1}
    )
    run_training_job(again, "classification", multi=False)
    for name in ["metrics.csv", "tune_predictions.csv", "test_predictions.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(run_dir(full) / name), pd.read_csv(run_dir(again) / name))

    original_save = train_module.Trainer.save

    def killed_after_second_epoch(self, name, epoch):
        original_save(self, name, epoch)
        if name == "latest" and epoch == 1:
            raise KeyboardInterrupt("killed")

    killed = classification_cfg(
        tmp_path / "c", signal_data, nepochs=4, **{"optim.lr_scheduler.name": "step", "optim.lr_scheduler.step_size": 1}
    )
    monkeypatch.setattr(train_module.Trainer, "save", killed_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_training_job(killed, "classification", multi=False)
    monkeypatch.setattr(train_module.Trainer, "save", original_save)
    assert not (run_dir(killed) / "metrics.json").exists()
    resumed = classification_cfg(
        tmp_path / "c",
        signal_data,
        nepochs=4,
        resume=True,
        **{"optim.lr_scheduler.name": "step", "optim.lr_scheduler.step_size": 1},
    )
    assert run_training_job(resumed, "classification", multi=False) == 0
    for name in ["metrics.csv", "tune_predictions.csv", "test_predictions.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(run_dir(full) / name), pd.read_csv(run_dir(resumed) / name))
    assert json.loads((run_dir(full) / "metrics.json").read_text()) == json.loads(
        (run_dir(resumed) / "metrics.json").read_text()
    )


def make_folds(root, paths, n_folds=2):
    frame = pd.concat([pd.read_csv(paths[name]) for name in ("train", "tune", "test")]).reset_index(drop=True)
    for fold in range(n_folds):
        shuffled = frame.sample(frac=1, random_state=fold).reset_index(drop=True)
        folder = root / f"fold_{fold}"
        folder.mkdir(parents=True)
        shuffled[:54].to_csv(folder / "train.csv", index=False)
        shuffled[54:72].to_csv(folder / "tune.csv", index=False)
        shuffled[72:].to_csv(folder / "test.csv", index=False)
    return root


def test_multi_fold_summary_is_the_mean_and_std_of_the_folds(tmp_path, signal_data):
    fold_dir = make_folds(tmp_path / "folds", signal_data)
    cfg = training_config(
        "classification",
        multi=True,
        **{
            "data.fold_dir": str(fold_dir),
            "features_dir": str(signal_data["features_dir"]),
            "output_dir": str(tmp_path / "out"),
            "run_id": "cv",
            "device": TEST_DEVICE,
            "nepochs": 2,
            "training.gradient_accumulation": 8,
        },
    )
    assert run_training_job(cfg, "classification", multi=True) == 0
    out = run_dir(cfg)
    folds = [json.loads((out / f"fold_{i}" / "metrics.json").read_text()) for i in range(2)]
    summary = pd.read_csv(out / "summary.csv").set_index(["split", "metric"])
    for split in ("tune", "test"):
        for metric in ("auc", "accuracy", "loss"):
            values = [fold[split][metric] for fold in folds]
            assert summary.loc[(split, metric), "mean"] == pytest.approx(np.mean(values))
            assert summary.loc[(split, metric), "std"] == pytest.approx(np.std(values))
            assert summary.loc[(split, metric), "fold_1"] == pytest.approx(values[1])
            half_width = stats.t.ppf(0.975, 1) * np.std(values, ddof=1) / np.sqrt(2)  # Student t, 1 df, 2 folds
            assert summary.loc[(split, metric), "ci_low"] == pytest.approx(np.mean(values) - half_width)
            assert summary.loc[(split, metric), "ci_high"] == pytest.approx(np.mean(values) + half_width)

    ensemble = inference_config(tmp_path, "ens", run_dir=str(out), test_csvs={"external": str(signal_data["test"])})
    assert run_inference_job(ensemble, "classification") == 0
    averaged = pd.read_csv(tmp_path / "inf" / "inference" / "ens" / "external_predictions.csv")
    metrics_text = (tmp_path / "inf" / "inference" / "ens" / "metrics.json").read_text()
    assert "NaN" not in metrics_text and json.loads(metrics_text)["external"]["loss"] is None, (
        "an ensemble has no loss: null"
    )
    singles = []
    for i in range(2):
        one = ensemble.copy()
        one.run_dir, one.checkpoints, one.run_id = None, [str(out / f"fold_{i}" / "best.pt")], f"f{i}"
        run_inference_job(one, "classification")
        singles.append(pd.read_csv(tmp_path / "inf" / "inference" / f"f{i}" / "external_predictions.csv"))
    np.testing.assert_allclose(averaged.prob_1, (singles[0].prob_1 + singles[1].prob_1) / 2, rtol=1e-6)
    assert (averaged.pred == (averaged.prob_1 > averaged.prob_0).astype(int)).all()


def test_inference_reproduces_the_tune_metrics_of_its_checkpoint(tmp_path):
    paths = survival_data(tmp_path / "data", n_patients=60, signal=1.0, seed=2)
    cfg = survival_cfg(tmp_path, paths, nepochs=3)
    run_training_job(cfg, "survival", multi=False)
    trained = json.loads((run_dir(cfg) / "metrics.json").read_text())["tune"]
    unlabelled = tmp_path / "unlabelled.csv"
    pd.read_csv(paths["tune"]).drop(columns=["censorship", "survival_months"]).to_csv(unlabelled, index=False)
    test_csvs = {"tune": str(paths["tune"]), "cohort": str(unlabelled)}
    inference = inference_config(tmp_path, "x", run_dir=str(run_dir(cfg)), test_csvs=test_csvs)
    assert run_inference_job(inference, "survival") == 0
    reproduced = json.loads((tmp_path / "inf" / "inference" / "x" / "metrics.json").read_text())["tune"]
    assert reproduced == pytest.approx(trained, nan_ok=True)
    inferred = tmp_path / "inf" / "inference" / "x"
    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir(cfg) / "tune_predictions.csv"), pd.read_csv(inferred / "tune_predictions.csv")
    )
    np.testing.assert_allclose(
        pd.read_csv(inferred / "cohort_predictions.csv").risk, pd.read_csv(inferred / "tune_predictions.csv").risk
    )
    assert "cohort" not in json.loads((inferred / "metrics.json").read_text())


@pytest.mark.parametrize("agg_method", ["concat", "self_att"])
def test_patient_level_survival(tmp_path, agg_method):
    paths = survival_data(tmp_path / "data", n_patients=40, slides_per_patient=2, signal=1.0, seed=4)
    cfg = survival_cfg(tmp_path, paths, nepochs=2, **{"model.agg_method": agg_method, "model.max_regions": 10})
    assert run_training_job(cfg, "survival", multi=False) == 0
    predictions = pd.read_csv(run_dir(cfg) / "tune_predictions.csv")
    assert predictions.case_id.is_unique and predictions.slide_id.str.contains(";").all()


def test_local_level_trains_with_a_frozen_official_vit_region(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, dim=384, local_grid=4, seed=5)
    torch.manual_seed(0)
    vit = vit4k_xs()
    torch.save(official_checkpoint(vit), tmp_path / "vit4k_xs_dino.pth")
    cfg = classification_cfg(
        tmp_path, paths, level="local", nepochs=2, **{"model.pretrain_vit_region": str(tmp_path / "vit4k_xs_dino.pth")}
    )
    assert run_training_job(cfg, "classification", multi=False) == 0
    state = torch.load(run_dir(cfg) / "latest.pt", map_location="cpu", weights_only=True)["model"]
    for name, value in vit.state_dict().items():
        torch.testing.assert_close(state[f"vit_region.{name}"], value)
    unfrozen = classification_cfg(
        tmp_path / "b",
        paths,
        level="local",
        nepochs=1,
        **{
            "model.pretrain_vit_region": str(tmp_path / "vit4k_xs_dino.pth"),
            "model.freeze_vit_region": False,
            "optim.lr": 0.01,
        },
    )
    run_training_job(unfrozen, "classification", multi=False)
    state = torch.load(run_dir(unfrozen) / "latest.pt", map_location="cpu", weights_only=True)["model"]
    torch.testing.assert_close(state["vit_region.pos_embed"], vit.pos_embed.detach())
    assert not torch.allclose(state["vit_region.blocks.0.attn.qkv.weight"], vit.blocks[0].attn.qkv.weight)


def test_local_level_trains_on_grids_of_a_foundation_model_width(tmp_path):
    """Level-local features of a 1024-wide patch encoder (UNI's width): ViT_region's input layer takes 1024."""
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, dim=1024, local_grid=4, seed=6)
    random_region = {"model.pretrain_vit_region": None}
    cfg = classification_cfg(
        tmp_path, paths, level="local", nepochs=1, **{"model.embed_dim_patch": 1024} | random_region
    )
    assert run_training_job(cfg, "classification", multi=False) == 0
    state = torch.load(run_dir(cfg) / "latest.pt", map_location="cpu", weights_only=True)["model"]
    assert state["vit_region.phi.0.weight"].shape == (192, 1024)
    assert pd.read_csv(run_dir(cfg) / "tune_predictions.csv").shape[0] == 4
    wrong = classification_cfg(tmp_path / "b", paths, level="local", nepochs=1, **random_region)  # width left at 384
    with pytest.raises(FeatureFileError, match="384"):
        run_training_job(wrong, "classification", multi=False)
