"""``inference/*.py``: predictions of trained checkpoints on named csvs; several checkpoints = an ensemble
that averages class probabilities or risks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from source.config.run_block import check_run_block
from source.data.bags import SlideBag
from source.data.features import shape_bags
from source.data.splits import unlabelled_split
from source.engines.evaluate import encode_once, predict_split, write_results
from source.engines.job import run_job
from source.errors import ConfigError
from source.models.checkpoints import CheckpointError
from source.tasks.registry import task_class
from source.tasks.trained import load_trained_slide_model

logger = logging.getLogger(__name__)


def find_checkpoints(cfg: DictConfig) -> list[Path]:
    """``checkpoints`` as given, or ``run_dir/<checkpoint_name>.pt`` / every
    ``run_dir/fold_<i>/<checkpoint_name>.pt``."""
    if cfg.checkpoints:
        paths = [Path(p) for p in cfg.checkpoints]
    elif cfg.run_dir:
        name = f"{cfg.checkpoint_name}.pt"
        folds = sorted(Path(cfg.run_dir).glob(f"fold_*/{name}"), key=lambda p: int(p.parent.name.split("_")[1]))
        paths = folds or [Path(cfg.run_dir) / name]
    else:
        raise ConfigError("set checkpoints (a list of .pt files) or run_dir (a training run folder)")
    for path in paths:
        if not path.is_file():
            raise CheckpointError(f"checkpoint '{path}' does not exist; check checkpoints / run_dir / checkpoint_name")
    return paths


def split_by_labels(test_csvs: DictConfig, needed: set[str]) -> tuple[dict[str, str], list[str]]:
    """Csvs with the ``needed`` label columns (predicted and scored) and those without (predicted only)."""
    labelled, unlabelled = {}, []
    for name, csv in test_csvs.items():
        if not Path(csv).is_file():
            raise ConfigError(f"test_csvs.{name}: '{csv}' does not exist")
        columns = set(pd.read_csv(csv, nrows=0).columns)
        if needed <= columns:
            labelled[name] = str(csv)
        else:
            unlabelled.append(name)
    return labelled, unlabelled


def _check_inference(cfg: DictConfig) -> list[Path]:
    """The checkpoints to predict with, after checking ``test_csvs`` and the run block."""
    check_run_block(cfg)
    if not OmegaConf.is_dict(cfg.test_csvs) or not cfg.test_csvs:
        raise ConfigError('test_csvs must name the csvs to predict, e.g. test_csvs="{external: /data/external.csv}"')
    return find_checkpoints(cfg)


def run_inference_job(cfg: DictConfig, kind: Optional[str]) -> int:
    """Predict every csv of ``test_csvs`` with every checkpoint, average, write tables, metrics and plots.

    ``kind`` None takes the task of the first checkpoint; every checkpoint must be of the same task."""
    with run_job(cfg, check=_check_inference, distributed=False) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        run_dir, device, checkpoints = job.run_dir, job.device, job.inputs
        per_model: dict[str, list[tuple[pd.DataFrame, float]]] = {name: [] for name in cfg.test_csvs}
        task, unlabelled = None, []
        for path in checkpoints:
            trained = load_trained_slide_model(path, device, kind)
            kind = trained.kind
            task_type, settings = task_class(kind), trained.task_settings
            labelled, unlabelled = split_by_labels(cfg.test_csvs, task_type.label_columns(settings))
            bag = SlideBag.of(trained.settings)
            bank = bag.bank(cfg.features_dir or trained.features_dir)
            task, splits, _ = task_type.build(settings, labelled, bank, trained.task_state)
            targets, by_patient = task_type.target_names(), task_type.by_patient(settings)
            splits |= {
                name: unlabelled_split(name, str(cfg.test_csvs[name]), bank, targets, by_patient) for name in unlabelled
            }
            shape_bags(splits, bag.flat)
            model = trained.model
            encode_once(model, splits, device)
            logger.info("%s: epoch %d", path, trained.epoch + 1)
            for name, split in splits.items():
                per_model[name].append(predict_split(model, task, split, device))
        results = {}
        for name, outputs in per_model.items():
            predictions = task.ensemble([table for table, _ in outputs])
            results[name] = (
                predictions,
                float(np.mean([loss for _, loss in outputs])) if len(outputs) == 1 else float("nan"),
            )
        metrics = write_results(task, results, run_dir, unlabelled)
        for name in unlabelled:
            logger.info("%s: no labels, predictions only (%s)", name, run_dir / f"{name}_predictions.csv")
        for name, values in metrics.items():
            logger.info(
                "%s (%d model%s): %s",
                name,
                len(checkpoints),
                "s" if len(checkpoints) > 1 else "",
                ", ".join(f"{k} {v:.4f}" for k, v in values.items()),
            )
    return 0
