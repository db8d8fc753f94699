"""``train/*.py`` end to end: config -> splits -> model -> Trainer -> final predictions, metrics, plots."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from source.config.core import plain_config, settings_from_config
from source.config.slide_model import slide_model_settings
from source.config.training import validate_training
from source.data.bags import SlideBag
from source.data.features import Split, shape_bags
from source.data.labels import discover_folds
from source.engines.evaluate import encode_once, predict_split, write_results
from source.engines.job import run_job
from source.engines.optim import build_optimizer, build_scheduler
from source.engines.train import Trainer, TrainerSettings
from source.errors import ConfigError
from source.io import atomic_write_csv
from source.models.factory import build_slide_model
from source.plots import plot_curves
from source.study.fold_tests import t_interval
from source.tasks.base import Task
from source.tasks.registry import resume_keys, task_class
from source.tracking import Tracker

logger = logging.getLogger(__name__)


def check_against_data(cfg: DictConfig, task: Task, splits: dict[str, Split]) -> None:
    """Config values that depend on the task and the data: the tracked metric, the positional-encoding length.

    Raises:
        ConfigError: an unknown ``early_stopping.tracking``, or a bag longer than ``model.slide_pos_embed.max_len``.
    """
    tracking = cfg.early_stopping.tracking
    if tracking is not None and tracking not in ("loss", *task.metric_names):
        raise ConfigError(
            f"early_stopping.tracking '{tracking}' is not a metric of this task; use one of "
            f"{['loss', *task.metric_names]}"
        )
    positions = cfg.model.slide_pos_embed
    if positions.use:
        largest = max(split.dataset.largest_bag() for split in splits.values())
        if largest > positions.max_len:
            raise ConfigError(
                f"model.slide_pos_embed.max_len is {positions.max_len} but a bag has {largest} regions; raise it (or "
                "set model.max_regions)"
            )


def check_resumed_schedule(cfg: DictConfig, latest: Path) -> None:
    """A cosine schedule is built for ``nepochs``: resuming it with another ``nepochs`` is refused."""
    if cfg.optim.lr_scheduler.name != "cosine" or not latest.exists():
        return
    before = torch.load(latest, map_location="cpu", weights_only=True)["config"]["nepochs"]
    if before != cfg.nepochs:
        raise ConfigError(
            f"resume: the cosine schedule of this run was built for nepochs={before}; resume with nepochs={before} (or "
            "use another run_id to train longer)"
        )


def train_fold(
    kind: str, cfg: DictConfig, paths: dict[str, str], run_dir: Path, device: torch.device, tracker: Tracker
) -> dict:
    """Train on one train/tune(/test) set of csvs in ``run_dir``; returns the final tune/test metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model_settings = slide_model_settings(cfg)
    bag = SlideBag.of(model_settings)
    task_type = task_class(kind)
    settings = settings_from_config(task_type.settings, cfg)
    task, splits, task_state = task_type.build(settings, paths, bag.bank(cfg.features_dir))
    check_against_data(cfg, task, splits)
    shape_bags(splits, bag.flat, cfg.model.max_bag_size)
    model = build_slide_model(model_settings, task.num_outputs).to(device)
    encode_once(model, splits, device)
    optimizer = build_optimizer(model.parameters(), cfg.optim.name, cfg.optim.lr, cfg.optim.wd, cfg.optim.momentum)
    tracking = cfg.early_stopping.tracking or task.default_tracking
    maximize = (
        cfg.early_stopping.min_max == "max"
        if cfg.early_stopping.min_max
        else task.higher_is_better.get(tracking, False)
    )
    sched = cfg.optim.lr_scheduler
    scheduler = build_scheduler(
        optimizer,
        sched.name,
        cfg.nepochs,
        sched.step_size,
        sched.gamma,
        sched.eta_min,
        sched.factor,
        sched.patience,
        "max" if maximize else "min",
    )
    settings = TrainerSettings(
        nepochs=cfg.nepochs,
        accumulation=cfg.training.gradient_accumulation,
        tune_every=cfg.tuning.tune_every,
        tracking=tracking,
        maximize=maximize,
        patience=cfg.early_stopping.patience,
        min_epoch=cfg.early_stopping.min_epoch,
        early_stopping=cfg.early_stopping.enable,
        weighted_sampling=cfg.training.weighted_sampling,
        seed=cfg.seed,
    )
    extra = {"config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "task": task_state}
    trainer = Trainer(model, task, optimizer, scheduler, settings, run_dir, device, extra, tracker)
    if cfg.resume:
        check_resumed_schedule(cfg, trainer.checkpoint_path("latest"))
        trainer.resume()
    trainer.fit(splits["train"], splits["tune"])
    checkpoint = trainer.checkpoint_path(cfg.testing.retrieve_checkpoint)
    if not checkpoint.exists():
        logger.warning("%s does not exist (the tracked metric never improved); testing with latest.pt", checkpoint)
        checkpoint = trainer.checkpoint_path("latest")
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    logger.info("final evaluation with %s", checkpoint)
    results = {name: predict_split(model, task, splits[name], device) for name in ("tune", "test") if name in splits}
    metrics = write_results(task, results, run_dir)
    plot_curves(pd.DataFrame(trainer.history), run_dir)
    for split, values in metrics.items():
        logger.info("%s: %s", split, ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return metrics


SUMMARY_CI = 0.95
"""The level of the Student-t interval over folds in ``summary.csv``."""


def summarize_folds(fold_metrics: dict[int, dict], out_path: Path) -> pd.DataFrame:
    """``summary.csv``: one row per (split, metric) with mean, std (over folds, ddof 0), the 95 % Student-t interval
    of the mean over the folds that have the metric (``ci_low``, ``ci_high``: blank with fewer than 2) and every
    fold's value."""
    rows = []
    splits = sorted({split for metrics in fold_metrics.values() for split in metrics})
    for split in splits:
        names = sorted({name for metrics in fold_metrics.values() for name in metrics.get(split, {})})
        for name in names:
            values = {
                f"fold_{fold}": metrics.get(split, {}).get(name, np.nan) for fold, metrics in fold_metrics.items()
            }
            array = np.array(list(values.values()), dtype=float)
            _, _, low, high = t_interval(array[np.isfinite(array)], SUMMARY_CI)
            rows.append(
                {
                    "split": split,
                    "metric": name,
                    "mean": np.nanmean(array),
                    "std": np.nanstd(array),
                    "ci_low": low,
                    "ci_high": high,
                    **values,
                }
            )
    summary = pd.DataFrame(rows)
    atomic_write_csv(summary, out_path)
    return summary


def check_training(cfg: DictConfig, kind: str, multi: bool) -> None:
    """The shared checks of a training config, then the task's own (:class:`ConfigError` naming the key)."""
    validate_training(cfg, multi)
    task_type = task_class(kind)
    for problem in task_type.config_problems(settings_from_config(task_type.settings, cfg)):
        raise ConfigError(problem)


def run_training_job(cfg: DictConfig, kind: str, multi: bool) -> int:
    """Train (one set of csvs, or every fold of ``data.fold_dir``); returns the exit code."""
    check = functools.partial(check_training, kind=kind, multi=multi)
    weights = {"weight_keys": ("model.pretrain_vit_region",) if cfg.level.value == "local" else ()}
    with run_job(cfg, check=check, resume_keys=resume_keys(kind), distributed=False, **weights) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        run_dir, device = job.run_dir, job.device
        tracker = Tracker(OmegaConf.to_object(cfg.wandb), run_dir, cfg.experiment_name, plain_config(cfg))
        try:
            if not multi:
                paths = {name: cfg.data[f"{name}_csv"] for name in ("train", "tune", "test") if cfg.data[f"{name}_csv"]}
                train_fold(kind, cfg, paths, run_dir, device, tracker)
                return 0
            fold_metrics = {}
            for fold, folder in discover_folds(cfg.data.fold_dir):
                fold_dir = run_dir / f"fold_{fold}"
                if cfg.resume and (fold_dir / "metrics.json").exists():
                    logger.info("fold %d already finished; reading its metrics", fold)
                    fold_metrics[fold] = json.loads((fold_dir / "metrics.json").read_text())
                    continue
                logger.info("fold %d (%s)", fold, folder)
                paths = {
                    name: str(folder / f"{name}.csv")
                    for name in ("train", "tune", "test")
                    if (folder / f"{name}.csv").is_file()
                }
                fold_metrics[fold] = train_fold(kind, cfg, paths, fold_dir, device, tracker)
            summary = summarize_folds(fold_metrics, run_dir / "summary.csv")
            logger.info(
                "summary over %d folds:\n%s",
                len(fold_metrics),
                summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
            )
            return 0
        finally:
            tracker.finish()
