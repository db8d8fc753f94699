"""The keys every job shares: where its run folder goes, whether it resumes, which device it runs on.

Every config schema extends :class:`RunBlock` (overriding ``experiment_name``), and every validator
checks it with :func:`check_run_block`, so these keys mean and are checked the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from source.errors import ConfigError


@dataclass
class RunBlock:
    """``output_dir/<experiment_name>/<run_id>/``, ``resume`` and ``device``."""

    output_dir: str = "output"
    experiment_name: str = "run"
    run_id: Optional[str] = None
    resume: bool = False
    device: str = "auto"


def check_device(device: object) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:<index>``."""
    device = str(device)
    if not (device in {"auto", "cpu", "cuda"} or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:<index>, got '{device}'")


def check_run_block(cfg: DictConfig) -> None:
    """``device`` spelled right; ``resume: true`` with the ``run_id`` of the run to continue."""
    check_device(cfg.device)
    if cfg.resume and not cfg.run_id:
        raise ConfigError("resume: true needs run_id: set run_id to the folder name of the run to continue")
