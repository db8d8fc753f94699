"""Optional Weights & Biases sink. When ``wandb.enable`` is false it is never initialised (and
``WANDB_MODE=disabled`` is set unless the environment says otherwise): no network, no API key."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from source.config.common import WandbConfig

logger = logging.getLogger(__name__)


class Tracker:
    """Send metrics to wandb on rank 0 when enabled; otherwise do nothing.

    Args:
        wandb: the ``wandb`` block of the config (``enable``, ``project``, ``username``, ``exp_name``, ``tags``,
            ``dir``, ``group``).
        run_dir: the run folder (default wandb dir).
        default_name: run name when ``exp_name`` is blank.
        config: the whole resolved config as plain containers, recorded with the run.
        active: False on ranks other than 0.
    """

    def __init__(
        self, wandb: WandbConfig, run_dir: Path, default_name: str, config: Mapping[str, Any], active: bool = True
    ) -> None:
        self._run: Optional[Any] = None
        if not (active and wandb.enable):
            os.environ.setdefault("WANDB_MODE", "disabled")
            return
        import wandb as client

        self._run = client.init(
            project=wandb.project,
            entity=wandb.username,
            name=wandb.exp_name or default_name,
            tags=list(wandb.tags),
            group=wandb.group,
            dir=str(wandb.dir or run_dir),
            config=dict(config),
        )
        logger.info("wandb run: %s", getattr(self._run, "url", None) or self._run.name)

    @property
    def enabled(self) -> bool:
        """True when metrics go to wandb."""
        return self._run is not None

    def log(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Log a dict of scalars."""
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def finish(self) -> None:
        """Close the wandb run."""
        if self._run is not None:
            self._run.finish()
            self._run = None
