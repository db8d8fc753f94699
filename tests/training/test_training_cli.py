"""train/*.py and inference/*.py as users run them (Hydra command line), and their documented configs."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from source.config.training import TRAINING_SCHEMAS, InferenceConfig
from tests.helpers import REPO
from tests.training_data import classification_data, survival_data


def schema_keys(schema, prefix=""):
    keys = set()
    for field in dataclasses.fields(schema):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if dataclasses.is_dataclass(default):
            keys |= schema_keys(type(default), f"{prefix}{field.name}.")
        else:
            keys.add(f"{prefix}{field.name}")
    return keys


def yaml_keys(node, prefix=""):
    keys = set()
    for key, value in node.items():
        if isinstance(value, dict) and key not in {"label_mapping", "test_csvs"}:
            keys |= yaml_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


@pytest.mark.parametrize(
    "kind, name", [("classification", "single"), ("classification", "multi"), ("survival", "single"), ("survival", "multi")]
)
def test_training_yaml_has_every_schema_key_each_commented(kind, name):
    path = REPO / "config" / "training" / kind / f"{name}.yaml"
    documented = OmegaConf.load(path)
    documented.pop("defaults")
    assert yaml_keys(OmegaConf.to_container(documented)) == schema_keys(TRAINING_SCHEMAS[kind])
    for line in path.read_text().splitlines():
        if re.match(r"^\s*[a-z_]+:\s*\S", line) or re.match(r"^\s*[a-z_]+:\s*$", line):
            leaf = not line.rstrip().endswith(":")
            assert "#" in line or not leaf, f"{path.name}: '{line.strip()}' has no comment"
    OmegaConf.merge(OmegaConf.structured(TRAINING_SCHEMAS[kind]), documented)


def test_inference_yaml_matches_its_schema():
    for kind in ("classification", "survival"):
        documented = OmegaConf.load(REPO / "config" / "inference" / f"{kind}.yaml")
        documented.pop("defaults")
        assert set(documented) == {f.name for f in dataclasses.fields(InferenceConfig)}


def run(script, *args, cwd):
    environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, env=environment, cwd=cwd)


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
    inferred = json.loads((tmp_path / "out" / "classification_inference" / "inf" / "metrics.json").read_text())
    trained = json.loads((out / "metrics.json").read_text())
    assert inferred["cohort"]["auc"] == pytest.approx(trained["test"]["auc"])
    bad = run("train/classification.py", "--config-name", "single", "nepocs=3", cwd=tmp_path)
    assert bad.returncode != 0 and "nepocs" in bad.stderr
    missing = run("train/classification.py", "--config-name", "single", f"features_dir={paths['features_dir']}", cwd=tmp_path)
    assert missing.returncode == 2 and "data.train_csv is not set" in missing.stderr


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
