"""``contribution_maps.py`` end to end: trained model -> each slide's exact leave-one-out contributions -> tables,
plots, GeoJSON and canvases."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from source.config.contribution import explain_settings, validate_contribution
from source.engines.job import run_job
from source.errors import ConfigError
from source.explain.slide_explainer import SlideExplainer
from source.io import atomic_write_csv
from source.tasks.trained import load_trained_slide_model

logger = logging.getLogger(__name__)


def checkpoint_of(cfg: DictConfig) -> Path:
    """``checkpoint``, or ``run_dir/<checkpoint_name>.pt``.

    Raises:
        ConfigError: a multi-fold run folder (explain one fold's model), or a run folder without that checkpoint.
    """
    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    path = Path(cfg.run_dir) / f"{cfg.checkpoint_name}.pt"
    if not path.is_file():
        folds = sorted(p.name for p in Path(cfg.run_dir).glob("fold_*") if p.is_dir())
        hint = (
            f": a multi-fold run, give one fold's folder, e.g. run_dir={Path(cfg.run_dir) / folds[0]}" if folds else ""
        )
        raise ConfigError(f"run_dir '{cfg.run_dir}' has no {path.name}{hint}")
    return path


def slide_ids_of(cfg: DictConfig) -> list[str]:
    """``slide_id``, or the ``slide_id`` column of ``slide_csv``."""
    if cfg.slide_id:
        return [str(cfg.slide_id)]
    frame = pd.read_csv(cfg.slide_csv, dtype={"slide_id": str})
    if "slide_id" not in frame.columns or frame.slide_id.isna().all():
        raise ConfigError(f"slide_csv '{cfg.slide_csv}' needs a slide_id column (columns: {list(frame.columns)})")
    return list(dict.fromkeys(frame.slide_id.dropna().str.strip()))


def _check(cfg: DictConfig) -> list[str]:
    validate_contribution(cfg)
    checkpoint_of(cfg)
    return slide_ids_of(cfg)


def run_contribution_job(cfg: DictConfig) -> int:
    """Explain every requested slide; returns the exit code (1 if a slide failed)."""
    with run_job(cfg, check=_check, distributed=False) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        trained = load_trained_slide_model(checkpoint_of(cfg), job.device, key="checkpoint")
        if trained.settings.patient_bags:
            raise ConfigError("the model pools a patient's slides (agg_method=self_att): explain slide-level models")
        settings = explain_settings(cfg)
        explainer = SlideExplainer(settings, trained, settings.features_dir or trained.features_dir)
        outcomes = [explainer.run(slide_id, job.run_dir) for slide_id in job.inputs]
        atomic_write_csv(pd.DataFrame(outcomes), job.run_dir / "slides.csv")
        failed = [o for o in outcomes if o["status"] != "success"]
        logger.info("%d slide(s) explained, %d failed: %s", len(outcomes) - len(failed), len(failed), job.run_dir)
    return 1 if failed else 0
