"""Every entry point refuses an unknown key or a badly typed value with one line naming it, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO, subprocess_environment

ENTRY_POINTS = [
    ("extract_features.py", "default", "tiling.spacng=0.5", "tiling.spacing"),
    ("train/classification.py", "single", "data.tunecsv=tune.csv", "data.tune_csv"),
    ("train/survival_multi.py", "multi", "optim.learning_rate=0.1", "optim.lr"),
    ("inference/classification.py", "classification", "run_dirr=x", "run_dir"),
    ("train/train.py", "multi", "data.foldir=x", "data.fold_dir"),
    ("inference/predict.py", "default", "run_dirr=x", "run_dir"),
    ("pretrain/dino_patch.py", "patch", "+optim.lrr=0.1", "optim.lr"),
    ("pretrain/eval_knn.py", "knn", "++devce=cpu", "device"),
    ("attention_visualization.py", "default", "downsampel=8", "downsample"),
    ("contribution_maps.py", "default", "target_clas=1", "target_class"),
    ("compare_models.py", "default", "n_bootstrp=100", "n_bootstrap"),
    ("view_slides.py", "default", "tile_sise=128", "tile_size"),
]


def run(tmp_path, script, config, override):
    command = [sys.executable, str(REPO / script), "--config-name", config, override]
    return subprocess.run(command, capture_output=True, text=True, env=subprocess_environment(), cwd=tmp_path)


@pytest.mark.parametrize("script, config, override, closest", ENTRY_POINTS)
def test_unknown_keys_are_one_error_with_the_closest_key(tmp_path, script, config, override, closest):
    result = run(tmp_path, script, config, override)
    key = override.split("=")[0].lstrip("+")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"unknown config key '{key}'; did you mean {closest}?" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir()), "nothing is written"


@pytest.mark.parametrize(
    "script, config, override, message",
    [
        (
            "train/classification.py",
            "single",
            "nepochs=many",
            "nepochs: Value 'many' of type 'str' could not be converted to Integer",
        ),
        ("extract_features.py", "local", "tiling.overlap=[1]", "tiling.overlap:"),
    ],
)
def test_badly_typed_values_are_one_error_naming_the_key(tmp_path, script, config, override, message):
    result = run(tmp_path, script, config, override)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
