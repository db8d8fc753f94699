"""Optimisers (adam, adamw, sgd) and epoch-level schedulers (step, cosine, reduce_on_plateau)."""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch.optim import SGD, Adam, AdamW, Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau, StepLR

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("step", "cosine", "reduce_on_plateau")


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float, momentum: float = 0.9
) -> Optimizer:
    """``adam``, ``adamw`` or ``sgd`` over the trainable ``parameters``."""
    trainable = [p for p in parameters if p.requires_grad]
    if name == "adam":
        return Adam(trainable, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return AdamW(trainable, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return SGD(trainable, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got '{name}'")


def build_scheduler(
    optimizer: Optimizer,
    name: Optional[str],
    nepochs: int,
    step_size: int = 20,
    gamma: float = 0.5,
    eta_min: float = 0.0,
    factor: float = 0.5,
    patience: int = 5,
    mode: str = "min",
) -> Optional[LRScheduler | ReduceLROnPlateau]:
    """An epoch-level scheduler, or None.

    ``step``: lr x gamma every ``step_size`` epochs; ``cosine``: cosine from lr to ``eta_min`` over
    ``nepochs``; ``reduce_on_plateau``: lr x ``factor`` when the tracked tune metric has not improved
    for ``patience`` tune evaluations (``mode`` min or max).
    """
    if name is None:
        return None
    if name == "step":
        return StepLR(optimizer, step_size=step_size, gamma=gamma)
    if name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=nepochs, eta_min=eta_min)
    if name == "reduce_on_plateau":
        return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)
    raise ValueError(f"optim.lr_scheduler.name must be null or one of {SCHEDULERS}, got '{name}'")
