"""Per-iteration schedules of DINO: learning rate, weight decay, teacher momentum, teacher temperature."""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base: float, final: float, epochs: int, iterations_per_epoch: int, warmup_epochs: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """One value per iteration: linear warm-up from ``warmup_start`` to ``base`` over ``warmup_epochs``,
    then a cosine from ``base`` to ``final``.

    Returns:
        ``(epochs * iterations_per_epoch,)`` float64.
    """
    warmup_iterations = warmup_epochs * iterations_per_epoch
    warmup = np.linspace(warmup_start, base, warmup_iterations) if warmup_iterations else np.array([])
    steps = np.arange(epochs * iterations_per_epoch - warmup_iterations)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / max(len(steps), 1)))
    return np.concatenate((warmup, cosine))


def teacher_temperature_schedule(warmup_temp: float, temp: float, warmup_epochs: int, epochs: int) -> np.ndarray:
    """One value per epoch: linear from ``warmup_temp`` to ``temp`` over ``warmup_epochs``, then ``temp``."""
    return np.concatenate(
        (np.linspace(warmup_temp, temp, warmup_epochs), np.full(max(epochs - warmup_epochs, 0), temp))
    )[:epochs]


def scaled_learning_rate(lr: float, global_batch: int) -> float:
    """DINO's linear scaling rule: ``lr * global_batch / 256``."""
    return lr * global_batch / 256.0
