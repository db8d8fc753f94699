"""Early stopping on a tune metric."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass
class EarlyStopping:
    """Track the best value of a tune metric and say when to stop.

    Args:
        maximize: larger is better.
        patience: tune evaluations without improvement before stopping.
        min_epoch: never stop before this epoch (1-based count of finished epochs).
        enabled: when false, ``should_stop`` is always false (the best epoch is still tracked).
    """

    maximize: bool
    patience: int = 10
    min_epoch: int = 0
    enabled: bool = True
    best: Optional[float] = None
    best_epoch: Optional[int] = None
    bad_evaluations: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record a tune value; returns True when it is a new best (NaN never is)."""
        if value is None or math.isnan(value):
            self.bad_evaluations += 1
            return False
        improved = self.best is None or (value > self.best if self.maximize else value < self.best)
        if improved:
            self.best, self.best_epoch, self.bad_evaluations = value, epoch, 0
        else:
            self.bad_evaluations += 1
        return improved

    def should_stop(self, epoch: int) -> bool:
        """True once patience is exhausted, after ``min_epoch``."""
        return self.enabled and epoch + 1 >= self.min_epoch and self.bad_evaluations >= self.patience

    def state_dict(self) -> dict:
        """For checkpoints."""
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        for key, value in state.items():
            setattr(self, key, value)
