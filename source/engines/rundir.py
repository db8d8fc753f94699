"""Run folders: ``output_dir/<experiment_name>/<run_id>/``, the saved config, and resume checks."""

from __future__ import annotations

import contextlib
import datetime
import logging
import shutil
from pathlib import Path
from typing import Iterator, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from source.config.core import save_config
from source.distributed import DistributedContext, broadcast_object
from source.errors import ConfigError
from source.io import UnsafePathError, safe_join

logger = logging.getLogger(__name__)
CONFIG_FILE = "config.yaml"


def new_run_id() -> str:
    """A timestamp run id, e.g. ``2026-11-26_13-05-42``."""
    return datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def run_dir_for(
    output_dir: str | Path, experiment_name: str, run_id: Optional[str], context: DistributedContext
) -> Path:
    """The run folder; a missing ``run_id`` becomes rank 0's timestamp on every rank.

    Raises:
        ConfigError: ``experiment_name`` or ``run_id`` is not a plain folder name.
    """
    run_id = broadcast_object(run_id or new_run_id(), context)
    try:
        return safe_join(safe_join(Path(output_dir).absolute(), experiment_name), run_id)
    except UnsafePathError as error:
        raise ConfigError(f"experiment_name / run_id: {error}") from error


def check_resumable(run_dir: Path, cfg: DictConfig, keys: Sequence[str]) -> None:
    """On resume, refuse a config whose ``keys`` differ from the saved run's (they change the outputs)."""
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.exists():
        logger.info("resume: %s has no saved config yet; starting the run", run_dir)
        return
    saved = OmegaConf.load(saved_path)
    current = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    absent = object()
    for key in keys:
        if OmegaConf.select(saved, key, default=absent) is absent:
            continue  # a key the version that started the run did not have yet
        before, now = (_plain(OmegaConf.select(config, key)) for config in (saved, current))
        if before != now:
            raise ConfigError(
                f"resume: {key} was {before!r} in {saved_path} but is {now!r} now; resuming would mix incompatible "
                f"outputs. Set {key}={before} or use another run_id."
            )


def _plain(value: object) -> object:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def prepare_run_dir(cfg: DictConfig, context: DistributedContext, resume_keys: Sequence[str] = ()) -> Path:
    """Create the run folder, check a resumed run's config, save the resolved config (rank 0).

    ``cfg.run_id`` is set to the folder name, so the saved config names the run to resume.

    Args:
        cfg: needs ``output_dir``, ``experiment_name``, ``run_id``, ``resume``.
        context: the distributed context (rank 0 picks the timestamp and writes).
        resume_keys: keys that must match the saved config when ``resume`` is true.
    """
    run_dir = run_dir_for(cfg.output_dir, cfg.experiment_name, cfg.run_id, context)
    if cfg.resume:
        check_resumable(run_dir, cfg, resume_keys)
    elif context.is_main and (run_dir / CONFIG_FILE).exists():
        logger.warning("run folder %s exists and resume is false: its outputs will be recomputed", run_dir)
    cfg.run_id = run_dir.name
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / CONFIG_FILE)
    return run_dir


BOOKKEEPING = {CONFIG_FILE, "log.txt"}
"""What a run folder holds before a run has done anything: its config and its log."""


@contextlib.contextmanager
def open_run(cfg: DictConfig, context: DistributedContext, resume_keys: Sequence[str] = ()) -> Iterator[Path]:
    """Prepare the run folder (:func:`prepare_run_dir`) and log to ``log.txt`` inside the block.

    A folder this run created is removed again when the block fails before writing anything but its
    config and log (a bad checkpoint, a bad csv): no empty timestamped folders are left behind.
    """
    from source.log import file_log

    run_dir = run_dir_for(cfg.output_dir, cfg.experiment_name, cfg.run_id, context)
    cfg.run_id = run_dir.name  # the same timestamp below
    created = not run_dir.exists()
    run_dir = prepare_run_dir(cfg, context, resume_keys)
    try:
        with file_log(run_dir / "log.txt", context.rank):
            yield run_dir
    except BaseException:
        if created and context.is_main and run_dir.is_dir() and _only_bookkeeping(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _only_bookkeeping(run_dir: Path) -> bool:
    return all(path.name in BOOKKEEPING or path.name.startswith("log.rank") for path in run_dir.iterdir())
