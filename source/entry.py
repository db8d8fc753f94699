"""Shared start-up of the training and inference entry scripts (they stay a few lines each)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from source.config.core import hydra_entry, register_schema


def exit_with(job, *args) -> None:
    """Run ``job(*args)`` and exit with its code; a :class:`~source.errors.UserError` is logged in one line and
    exits with its own ``exit_code`` (2 for bad config or inputs, 1 for a run that failed on its data)."""
    from source.errors import UserError  # a light module: a bad command line is still reported before torch loads

    try:
        code = job(*args)
    except UserError as error:
        logging.getLogger("hipt").error("%s", error)
        code = error.exit_code
    sys.exit(code)


def job_entry(config_dir: Path, config_name: str, schema_name: str, schema: type, job: str) -> None:
    """Run the job ``module:function`` (imported after the command line is checked) on the Hydra config
    ``config_dir/<config_name>.yaml``, whose defaults list names ``schema`` as ``schema_name``."""
    import importlib

    register_schema(schema_name, schema)

    def main(cfg: DictConfig) -> None:
        module, function = job.split(":")
        exit_with(getattr(importlib.import_module(module), function), cfg)

    hydra_entry(main, config_dir, config_name)


def training_entry(config_dir: Path, kind: str, multi: bool) -> None:
    """Run ``train/<kind>[_multi].py``: Hydra config ``config/training/<kind>/{single,multi}.yaml`` (the task's schema,
    ``config/training/base.yaml`` and ``config/training/task/<kind>.yaml``)."""
    _train(config_dir / "training" / kind, f"{kind}_schema", kind, "multi" if multi else "single", config_dir)


def any_task_training_entry(config_dir: Path) -> None:
    """Run ``train/train.py``: the task chosen with ``task=<kind>`` (default: that of ``any_task/single.yaml``),
    Hydra config ``config/training/any_task/{single,multi}.yaml`` (``--config-name multi``: every fold of
    ``data.fold_dir``)."""
    from source.config.core import config_name_of, group_choice

    any_task = config_dir / "training" / "any_task"
    config_name = config_name_of(sys.argv[1:], "single")
    kind = group_choice(sys.argv[1:], "task", any_task / f"{config_name}.yaml")
    _train(any_task, ANY_TASK_SCHEMA, kind, config_name, config_dir)


ANY_TASK_SCHEMA = "training_schema"
"""The schema ``config/training/any_task/{single,multi}.yaml`` compose: that of the task chosen on the command line."""


def _train(config_path: Path, schema_name: str, kind: str, config_name: str, config_dir: Path) -> None:
    from source.config.training import TASK_GROUP, register_training_configs
    from source.tasks.registry import TASKS, training_schema  # a task module holds its keys (it loads torch)

    if kind not in TASKS:
        print(f"ERROR config: task={kind} is not a task; choose one of {', '.join(sorted(TASKS))}", file=sys.stderr)
        sys.exit(2)
    register_schema(schema_name, training_schema(kind))
    register_training_configs(config_dir)

    def main(cfg: DictConfig) -> None:
        from source.engines.training_job import run_training_job

        exit_with(run_training_job, cfg, kind, config_name == "multi")

    hydra_entry(main, config_path, config_name, groups=(TASK_GROUP,))


def inference_entry(config_dir: Path, kind: Optional[str], config_name: Optional[str] = None) -> None:
    """Run ``inference/<kind>.py`` (Hydra config ``config/inference/<kind>.yaml``), or with ``kind`` None
    ``inference/predict.py``: models of any task (the checkpoints' own), ``config/inference/default.yaml``."""
    from source.config.training import InferenceConfig

    register_schema("inference_schema", InferenceConfig)

    def main(cfg: DictConfig) -> None:
        from source.engines.inference_job import run_inference_job

        exit_with(run_inference_job, cfg, kind)

    hydra_entry(main, config_dir / "inference", config_name or kind or "default")


def pretraining_entry(config_dir: Path, stage: str) -> None:
    """Run ``pretrain/dino_<stage>.py``: Hydra config ``config/pretraining/<stage>.yaml``."""
    from source.config.pretraining import PRETRAINING_SCHEMAS

    register_schema("pretraining_schema", PRETRAINING_SCHEMAS[stage])

    def main(cfg: DictConfig) -> None:
        from source.engines.pretraining_job import run_pretraining_job

        exit_with(run_pretraining_job, cfg, stage)

    hydra_entry(main, config_dir / "pretraining", stage)


def knn_entry(config_dir: Path) -> None:
    """Run ``pretrain/eval_knn.py``: Hydra config ``config/pretraining/knn.yaml``."""
    from source.config.pretraining import KnnEvalConfig

    register_schema("knn_schema", KnnEvalConfig)

    def main(cfg: DictConfig) -> None:
        from source.engines.pretraining_job import run_knn_job

        exit_with(run_knn_job, cfg)

    hydra_entry(main, config_dir / "pretraining", "knn")
