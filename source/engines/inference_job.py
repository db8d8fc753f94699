"""``inference/*.py``: predictions of trained checkpoints on named csvs; several checkpoints = an ensemble
that averages class probabilities or risks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from source.config.core import ConfigError
from source.config.rundir import open_run
from source.config.training import TRAINING_SCHEMAS
from source.data.splits import unlabelled_split
from source.devices import resolve_device
from source.distributed import DistributedContext
from source.engines.evaluate import predict_split
from source.engines.training_job import (
    build_model_from_config,
    build_task_and_splits,
    encode_once,
    feature_bank,
    write_results,
)
from source.log import setup_logging
from source.models.checkpoints import CheckpointError, read_checkpoint

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


def split_by_labels(test_csvs: DictConfig, kind: str, train_cfg: DictConfig) -> tuple[dict[str, str], list[str]]:
    """Csvs with the training label columns (predicted and scored) and those without (predicted only)."""
    needed = {train_cfg.label_name} if kind == "classification" else {"case_id", "censorship", train_cfg.label_name}
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


def ensemble(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Average the prediction columns (``prob_*`` or ``risk``) of several models; ``pred`` / ``pred_label`` are
    recomputed."""
    result = tables[0].copy()
    probability_columns = [c for c in result.columns if c.startswith("prob_")]
    for column in probability_columns + (["risk"] if "risk" in result.columns else []):
        result[column] = np.mean([table[column].to_numpy() for table in tables], axis=0)
    if probability_columns:
        result["pred"] = result[probability_columns].to_numpy().argmax(axis=1)
        if "pred_label" in result.columns:
            result["pred_label"] = [probability_columns[i].removeprefix("prob_") for i in result["pred"]]
    return result


def run_inference_job(cfg: DictConfig, kind: str) -> int:
    """Predict every csv of ``test_csvs`` with every checkpoint, average, write tables, metrics and plots."""
    setup_logging()
    if not OmegaConf.is_dict(cfg.test_csvs) or not cfg.test_csvs:
        raise ConfigError('test_csvs must name the csvs to predict, e.g. test_csvs="{external: /data/external.csv}"')
    checkpoints = find_checkpoints(cfg)
    device = resolve_device(cfg.device)
    with open_run(cfg, DistributedContext()) as run_dir:
        per_model: dict[str, list[tuple[pd.DataFrame, float]]] = {name: [] for name in cfg.test_csvs}
        task, unlabelled = None, []
        for path in checkpoints:
            state = read_checkpoint(path)
            if not isinstance(state.get("task"), dict) or state["task"].get("kind") != kind:
                found = state["task"].get("kind") if isinstance(state.get("task"), dict) else None
                raise CheckpointError(
                    f"checkpoint '{path}' is not a {kind} model of train/*.py (its task is {found!r})"
                )
            train_cfg = OmegaConf.merge(OmegaConf.structured(TRAINING_SCHEMAS[kind]), state["config"])
            if cfg.features_dir:
                train_cfg.features_dir = cfg.features_dir
            labelled, unlabelled = split_by_labels(cfg.test_csvs, kind, train_cfg)
            bank = feature_bank(train_cfg)
            task, splits, _ = build_task_and_splits(kind, train_cfg, labelled, bank, state["task"])
            by_patient = kind == "survival" and train_cfg.model.agg_method is not None
            targets = ["label"] if kind == "classification" else ["bin", "censorship"]
            splits |= {
                name: unlabelled_split(name, str(cfg.test_csvs[name]), bank, targets, by_patient) for name in unlabelled
            }
            model = build_model_from_config(train_cfg, task.num_outputs, load_vit_region=False).to(device)
            model.load_state_dict(state["model"])
            encode_once(model, splits, device)
            logger.info("%s: epoch %d", path, state["epoch"] + 1)
            for name, split in splits.items():
                per_model[name].append(predict_split(model, task, split, device))
        results = {}
        for name, outputs in per_model.items():
            predictions = ensemble([table for table, _ in outputs])
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
