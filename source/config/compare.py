"""Schema and checks of the model-comparison config (``compare_models.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from source.config.checks import check_at_least
from source.config.run_block import RunBlock, check_run_block
from source.errors import ConfigError

MIN_BOOTSTRAP = 100
"""Fewer draws than this give percentile intervals whose ends are a handful of draws: refused."""


@dataclass
class CompareConfig(RunBlock):
    """Every key of ``config/compare/default.yaml``."""

    runs: Any = None
    split: str = "test"
    n_bootstrap: int = 2000
    ci: float = 0.95
    seed: int = 0
    ece_bins: int = 10
    test_train_ratio: Optional[float] = None
    experiment_name: str = "comparison"


RUNS_USE = (
    'give the training runs to compare as "runs={hipt: output/classification/brca_hipt, abmil: '
    'output/classification/brca_abmil}" (model name: run folder) or "runs=[<folder>, <folder>]" (each named by its '
    "folder)"
)


def run_folders(cfg: DictConfig) -> dict[str, Path]:
    """``runs`` as ``{model name: run folder}``: a mapping as given, a list named by each folder's name (its run_id).

    Raises:
        ConfigError: fewer than two runs, two runs of one name, a name that is not a plain file name (it names plot
            files), or a folder that does not exist.
    """
    runs = OmegaConf.to_container(cfg.runs) if OmegaConf.is_config(cfg.runs) else cfg.runs
    if isinstance(runs, dict):
        folders = {str(name): Path(str(folder)) for name, folder in runs.items()}
    elif isinstance(runs, list):
        folders = {}
        for folder in map(Path, map(str, runs)):
            if folder.name in folders:
                raise ConfigError(
                    f"runs: two runs are named '{folder.name}' ({folders[folder.name]} and {folder}); name them "
                    f'yourself: "runs={{a: {folders[folder.name]}, b: {folder}}}"'
                )
            folders[folder.name] = folder
    else:
        folders = {str(runs): Path(str(runs))} if runs else {}
    if len(folders) < 2:
        raise ConfigError(f"runs: give at least two runs to compare, got {len(folders)}; {RUNS_USE}")
    for name, folder in folders.items():
        if not name or name in {".", ".."} or any(char in name for char in "/\\\x00"):
            raise ConfigError(f"runs: the model name '{name}' must be a plain name (it names files of the report)")
        if not folder.is_dir():
            raise ConfigError(f"runs.{name}: '{folder}' is not a folder; give a training run folder of train/*.py")
    return folders


def validate_compare(cfg: DictConfig) -> None:
    """Check values the schema's types cannot; raise :class:`ConfigError` naming the key."""
    run_folders(cfg)
    if not cfg.split or any(char in cfg.split for char in "/\\\x00"):
        raise ConfigError(f"split must be the name of a split of the runs (e.g. test or tune), got '{cfg.split}'")
    check_at_least({"n_bootstrap": cfg.n_bootstrap}, MIN_BOOTSTRAP)
    check_at_least({"ece_bins": cfg.ece_bins})
    if not 0 < cfg.ci < 1:
        raise ConfigError(f"ci must be between 0 and 1 (e.g. 0.95), got {cfg.ci}")
    if cfg.test_train_ratio is not None and cfg.test_train_ratio <= 0:
        raise ConfigError(
            f"test_train_ratio must be > 0 (test cases / training cases of a fold), got {cfg.test_train_ratio}"
        )
    check_run_block(cfg)
