"""train/*.py and inference/*.py as users run them (Hydra command line), and every documented config."""

import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from source.config.contribution import ContributionConfig
from source.config.heatmaps import HeatmapConfig
from source.config.pretraining import KnnEvalConfig, PatchPretrainingConfig, PretrainingConfig
from source.config.training import InferenceConfig
from source.config.viewer import ViewerConfig
from source.tasks.registry import TRAINING_SCHEMAS
from tests.helpers import (
    REPO,
    assert_commented,
    assert_documented,
    schema_keys,
    subprocess_environment,
    training_config,
    yaml_keys,
)
from tests.training_data import classification_data, regression_data, survival_data


@pytest.mark.parametrize(
    "kind, name",
    [(kind, name) for kind in ("classification", "survival", "regression") for name in ("single", "multi")],
)
def test_training_yaml_has_every_schema_key_each_commented(kind, name):
    assert_documented(REPO / "config" / "training" / kind / f"{name}.yaml", TRAINING_SCHEMAS[kind])


@pytest.mark.parametrize("name", ["single", "multi"])
def test_the_any_task_yamls_document_every_key_of_their_default_task(name):
    assert_documented(REPO / "config" / "training" / "any_task" / f"{name}.yaml", TRAINING_SCHEMAS["classification"])


@pytest.mark.parametrize(
    "path, schema",
    [
        ("inference/classification.yaml", InferenceConfig),
        ("inference/survival.yaml", InferenceConfig),
        ("inference/regression.yaml", InferenceConfig),
        ("inference/default.yaml", InferenceConfig),
        ("contribution/default.yaml", ContributionConfig),
        ("heatmaps/default.yaml", HeatmapConfig),
        ("pretraining/patch.yaml", PatchPretrainingConfig),
        ("pretraining/region.yaml", PretrainingConfig),
        ("pretraining/knn.yaml", KnnEvalConfig),
        ("viewer/default.yaml", ViewerConfig),
    ],
)
def test_other_yamls_have_every_schema_key_each_commented(path, schema):
    assert_documented(REPO / "config" / path, schema)


@pytest.mark.parametrize("name", ["base", "task/classification", "task/survival", "task/regression"])
def test_the_shared_training_yamls_comment_every_value_and_fit_their_schemas(name):
    """base.yaml holds only keys every task has; a task file only its own schema's keys."""
    path = REPO / "config" / "training" / f"{name}.yaml"
    assert_commented(path)
    keys = yaml_keys(OmegaConf.to_container(OmegaConf.load(path)))
    schemas = TRAINING_SCHEMAS.values() if name == "base" else [TRAINING_SCHEMAS[name.split("/")[1]]]
    for schema in schemas:
        assert keys <= schema_keys(schema), f"{path.name}: {keys - schema_keys(schema)} not in {schema.__name__}"


def run(script, *args, cwd):
    environment = subprocess_environment()
    return subprocess.run(
        [sys.executable, str(REPO / script), *args], capture_output=True, text=True, env=environment, cwd=cwd
    )


def test_classification_and_inference_command_lines(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, signal=3.0)
    result = run(
        "train/classification.py",
        "--config-name",
        "single",
        f"data.train_csv={paths['train']}",
        f"data.tune_csv={paths['tune']}",
        f"data.test_csv={paths['test']}",
        f"features_dir={paths['features_dir']}",
        "output_dir=out",
        "run_id=cli",
        "nepochs=2",
        "label_mapping={0: 0, 1: 1}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out" / "classification" / "cli"
    assert (out / "test_predictions.csv").exists() and not (tmp_path / "outputs").exists()
    result = run(
        "inference/classification.py",
        "--config-name",
        "classification",
        f"run_dir={out}",
        f"test_csvs={{cohort: {paths['test']}}}",
        "output_dir=out",
        "run_id=inf",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    inferred = json.loads(
        (tmp_path / "out" / "classification_inference" / "inf" / "metrics.json").read_text(), parse_constant=strict
    )
    trained = json.loads((out / "metrics.json").read_text())
    assert inferred["cohort"]["auc"] == pytest.approx(trained["test"]["auc"])
    bad = run("train/classification.py", "--config-name", "single", "nepocs=3", cwd=tmp_path)
    assert bad.returncode != 0 and "nepocs" in bad.stderr
    missing = run(
        "train/classification.py", "--config-name", "single", f"features_dir={paths['features_dir']}", cwd=tmp_path
    )
    assert missing.returncode == 2 and "data.train_csv is not set" in missing.stderr


def strict(constant):
    raise AssertionError(f"metrics.json holds {constant}, which strict JSON parsers reject")


def test_survival_multi_command_line(tmp_path):
    paths = survival_data(tmp_path / "data", n_patients=40, regions=3)
    folds = tmp_path / "folds"
    for fold in range(2):
        (folds / f"fold_{fold}").mkdir(parents=True)
        for name in ("train", "tune"):
            (folds / f"fold_{fold}" / f"{name}.csv").write_text(paths[name].read_text())
    result = run(
        "train/survival_multi.py",
        "--config-name",
        "multi",
        f"data.fold_dir={folds}",
        f"features_dir={paths['features_dir']}",
        "output_dir=out",
        "run_id=cv",
        "nepochs=2",
        "nbins=3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = (tmp_path / "out" / "survival_multi" / "cv" / "summary.csv").read_text()
    assert "c_index" in summary and "fold_1" in summary
    assert "summary over 2 folds" in result.stderr


@pytest.mark.parametrize("kind", ["classification", "survival", "regression"])
def test_multi_yaml_is_single_yaml_with_the_fold_keys(kind):
    """Hydra composes multi.yaml on single.yaml: every key but the fold input and the run name is single's."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from source.config.core import register_schema
    from source.config.training import register_training_configs

    register_schema(f"{kind}_schema", TRAINING_SCHEMAS[kind])
    register_training_configs(REPO / "config")
    with initialize_config_dir(config_dir=str(REPO / "config" / "training" / kind), version_base=None):
        single = OmegaConf.to_container(compose("single"))
        multi = OmegaConf.to_container(compose("multi"))
    assert multi["experiment_name"] == f"{kind}_multi" and single["experiment_name"] == kind
    differing = {key for key in single if single[key] != multi[key]}
    assert differing == {"experiment_name"}  # data.* holds the same (blank) values; only the comments differ
    assert multi["model"] == single["model"] and multi["optim"] == single["optim"]
    # Hydra's composition (schema, base.yaml, task/<kind>.yaml) is what the tests' configs are built from
    assert single == OmegaConf.to_container(training_config(kind))


def test_the_any_task_entries_train_and_predict_as_the_task_s_own(tmp_path):
    """train/train.py task=regression is train/regression.py; inference/predict.py takes the checkpoint's task."""
    paths = regression_data(tmp_path / "data", n_slides=16, regions=3)
    common = [
        f"data.train_csv={paths['train']}",
        f"data.tune_csv={paths['tune']}",
        f"features_dir={paths['features_dir']}",
        "output_dir=out",
        "nepochs=2",
    ]
    own = run("train/regression.py", "--config-name", "single", *common, "run_id=own", cwd=tmp_path)
    assert own.returncode == 0, own.stderr[-3000:]
    generic = run("train/train.py", "--config-name", "single", "task=regression", *common, "run_id=any", cwd=tmp_path)
    assert generic.returncode == 0, generic.stderr[-3000:]
    runs = tmp_path / "out" / "regression"
    assert (runs / "any" / "tune_predictions.csv").read_bytes() == (runs / "own" / "tune_predictions.csv").read_bytes()
    assert (runs / "any" / "config.yaml").read_text().replace("run_id: any", "run_id: own") == (
        runs / "own" / "config.yaml"
    ).read_text()
    predicted = run(
        "inference/predict.py",
        f"run_dir={runs / 'any'}",
        f"test_csvs={{cohort: {paths['tune']}}}",
        "output_dir=out",
        "run_id=p",
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    inferred = json.loads((tmp_path / "out" / "inference" / "p" / "metrics.json").read_text())["cohort"]
    trained = json.loads((runs / "any" / "metrics.json").read_text())["tune"]
    assert inferred["r2"] == pytest.approx(trained["r2"]) and inferred["mae"] == pytest.approx(trained["mae"])
    unknown = run("train/train.py", "task=segmentation", cwd=tmp_path)
    assert unknown.returncode == 2 and "task=segmentation is not a task; choose one of classification, regression" in (
        unknown.stderr
    )
