"""``compare_models.py`` end to end: training runs -> their predictions, checked and aligned -> metrics with intervals,
paired tests -> ``comparison.csv``, ``pairwise.csv``, figures and the report."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

from source.config.compare import run_folders, validate_compare
from source.engines.job import run_job
from source.io import atomic_write_csv
from source.runs.folder import CONFIG_FILE
from source.study.alignment import ComparisonInputs, read_comparison

logger = logging.getLogger(__name__)


def _check(cfg: DictConfig) -> ComparisonInputs:
    validate_compare(cfg)
    return read_comparison(run_folders(cfg), cfg.split, CONFIG_FILE, cfg.test_train_ratio)


def _on_cpu(cfg: DictConfig, local_rank: int) -> torch.device:
    return torch.device("cpu")


def run_compare_job(cfg: DictConfig) -> int:
    """Compare the runs of ``cfg.runs`` on ``cfg.split``; returns the exit code."""
    with run_job(cfg, check=_check, distributed=False, device_of=_on_cpu) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        # the statistics and plotting stack loads once the runs are read and checked: bad inputs are reported sooner
        from source.study.compare import ComparisonSettings, comparison_table, draw_cases, pairwise_table, score_models
        from source.study.plots import comparison_figures
        from source.study.report import write_report

        inputs: ComparisonInputs = job.inputs
        data = inputs.data
        settings = ComparisonSettings(cfg.n_bootstrap, cfg.ci, cfg.seed, cfg.ece_bins)
        indices = draw_cases(data, settings)
        scored = score_models(data, settings, indices, progress=True)
        tables = {
            "comparison": comparison_table(scored, len(data.cases), settings.ci),
            "pairwise": pairwise_table(data, scored, settings.ci),
        }
        for name, table in tables.items():
            atomic_write_csv(table, job.run_dir / f"{name}.csv")
        figures = comparison_figures(data, tables["comparison"], indices, settings.ci, settings.ece_bins, job.run_dir)
        write_report(job.run_dir, data, settings, tables, figures, inputs.folders, inputs.configs, inputs.notes)
        for note in inputs.notes:
            logger.info("%s", note)
        logger.info(
            "%d models compared on %d cases: %s", len(data.models), len(data.cases), job.run_dir / "report.html"
        )
    return 0
