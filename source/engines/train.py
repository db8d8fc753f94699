"""The one training loop every slide-level task uses: epochs, accumulation, tuning, early stopping,
checkpoints and exact resume."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm import tqdm

from source.devices import rng_state, set_rng_state
from source.engines.callbacks import EarlyStopping
from source.engines.evaluate import Split, predict_split, to_device
from source.engines.fit_loop import EpochHooks, EpochPlan, fit_epochs
from source.errors import TrainingDivergedError
from source.io import atomic_torch_save, atomic_write_csv
from source.models.slide_model import SlideModel
from source.tasks.base import Task
from source.tracking import Tracker

logger = logging.getLogger(__name__)


@dataclass
class TrainerSettings:
    """Loop settings (config: ``nepochs``, ``training.*``, ``tuning.*``, ``early_stopping.*``, ``seed``)."""

    nepochs: int
    accumulation: int = 1
    tune_every: int = 1
    tracking: str = "loss"
    maximize: bool = False
    patience: int = 10
    min_epoch: int = 0
    early_stopping: bool = False
    weighted_sampling: bool = False
    seed: int = 0
    show_progress: bool = True


def forward_for_training(
    model: SlideModel, bag: torch.Tensor | list[torch.Tensor], targets: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, Optional[torch.Tensor], float]:
    """Logits ``(C,)`` of a training step, with the model's own auxiliary loss and its weight where it has one
    (``forward_train``, e.g. CLAM's instance clustering): the step's loss is ``(1 - w) * task loss + w * aux``."""
    if not model.auxiliary_loss:
        return model(bag).float(), None, 0.0
    logits, auxiliary, weight = model.forward_train(bag, targets)
    return logits.float(), auxiliary, weight


class Trainer:
    """Train ``model`` on ``task`` and keep ``latest.pt`` / ``best.pt`` and ``metrics.csv`` in ``run_dir``.

    Args:
        model: a slide-level model (one bag -> logits).
        task: loss, predictions and metrics.
        optimizer: over the model's trainable parameters.
        scheduler: epoch-level scheduler or None (ReduceLROnPlateau gets the tracked tune metric).
        settings: loop settings.
        run_dir: where checkpoints and tables go.
        device: the model's device.
        extra_state: saved in every checkpoint (config, task state) so inference can rebuild the model.
        tracker: optional wandb sink.
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        optimizer: Optimizer,
        scheduler: Any,
        settings: TrainerSettings,
        run_dir: Path,
        device: torch.device,
        extra_state: Optional[dict] = None,
        tracker: Optional[Tracker] = None,
    ) -> None:
        self.model, self.task, self.optimizer, self.scheduler = model, task, optimizer, scheduler
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.device = device
        self.extra_state = extra_state or {}
        self.tracker = tracker
        self.stopper = EarlyStopping(settings.maximize, settings.patience, settings.min_epoch, settings.early_stopping)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.stopped_early = False

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint_path(self, name: str) -> Path:
        """``run_dir/<name>.pt`` (``best`` or ``latest``)."""
        return self.run_dir / f"{name}.pt"

    def save(self, name: str, epoch: int) -> None:
        """Model, optimiser, scheduler, epoch, early stopping, history, RNG state and the extra state."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": epoch,
            "early_stopping": self.stopper.state_dict(),
            "history": self.history,
            "rng": rng_state(),
            "stopped_early": self.stopped_early,
            **self.extra_state,
        }
        atomic_torch_save(state, self.checkpoint_path(name))

    def resume(self) -> bool:
        """Continue from ``latest.pt`` if it exists; returns whether it did."""
        path = self.checkpoint_path("latest")
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        set_rng_state(state["rng"])
        self.start_epoch = state["epoch"] + 1
        self.stopped_early = state["stopped_early"]
        logger.info("resumed from %s at epoch %d", path, self.start_epoch + 1)
        return True

    # -- loop --------------------------------------------------------------------------------------
    def _order(self, split: Split, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.settings.seed * 7919 + epoch)
        count = len(split.dataset)
        if self.settings.weighted_sampling and split.sample_weights is not None:
            weights = torch.tensor(
                np.array(split.sample_weights, dtype=np.float64)
            )  # a copy: pandas may hand out read-only arrays
            return torch.multinomial(weights, count, replacement=True, generator=generator).tolist()
        return torch.randperm(count, generator=generator).tolist()

    def train_epoch(self, split: Split, epoch: int) -> dict[str, float]:
        """One pass over the training split with gradient accumulation; returns loss and train metrics."""
        self.model.train()
        split.dataset.epoch = epoch
        self.optimizer.zero_grad(set_to_none=True)
        order = self._order(split, epoch)
        group = self.settings.accumulation
        losses, rows = [], []
        bar = tqdm(
            order, desc=f"epoch {epoch + 1} train", leave=False, unit="slide", disable=not self.settings.show_progress
        )
        for step, index in enumerate(bar):
            bag = split.dataset[index]
            targets = {k: v.to(self.device) for k, v in bag.targets.items()}
            logits, auxiliary, weight = forward_for_training(self.model, to_device(bag.features, self.device), targets)
            loss = self.task.loss(logits, targets, training=True)
            if auxiliary is not None:
                loss = (1 - weight) * loss + weight * auxiliary
            if not torch.isfinite(loss):
                item = split.frame.iloc[index].get("slide_id", index)
                raise TrainingDivergedError(
                    f"the training loss is {float(loss)} at epoch {epoch + 1}, on {item} (its features or label hold "
                    "values the model cannot use, or the learning rate is too high): check that slide's feature "
                    "file, lower optim.lr, or resume from latest.pt"
                )
            group_size = min(group, len(order) - (step // group) * group)
            (loss / group_size).backward()
            if (step + 1) % group == 0 or step + 1 == len(order):
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            rows.append(self.task.predict(logits.detach().cpu()))
        predictions = pd.concat([split.frame.iloc[order].reset_index(drop=True), pd.DataFrame(rows)], axis=1)
        return {"loss": sum(losses) / max(len(losses), 1), **self.task.metrics(predictions)}

    def fit(self, train: Split, tune: Split, on_epoch_end: Optional[Callable[[int], None]] = None) -> None:
        """Train for ``nepochs`` (or until early stopping), tuning every ``tune_every`` epochs."""
        settings = self.settings

        def report(epoch: int, lr: float) -> None:
            atomic_write_csv(pd.DataFrame(self.history), self.run_dir / "metrics.csv")
            if on_epoch_end is not None:
                on_epoch_end(epoch)

        plan = EpochPlan(
            settings.nepochs,
            settings.tune_every,
            settings.show_progress,
            logger,
            run_name="training",
            tracked=f"tune {settings.tracking}",
            patience=settings.patience,
        )
        hooks = EpochHooks(
            train=lambda epoch: self._train_and_record(train, epoch),
            evaluate=lambda epoch, lr: self._tune(tune, epoch, lr),
            save_best=self._save_best,
            close=self._step_scheduler,
            save=self.save,
            report=report,
        )
        fit_epochs(self, plan, hooks)

    def _train_and_record(self, split: Split, epoch: int) -> float:
        """Train one epoch and record it; returns its learning rate (the scheduler steps when the epoch closes)."""
        lr = self.optimizer.param_groups[0]["lr"]
        self._record(epoch, "train", self.train_epoch(split, epoch), lr)
        return lr

    def _tune(self, split: Split, epoch: int, lr: float) -> float:
        """Evaluate and record the tune split; returns the tracked metric (NaN when the task has none of that name)."""
        predictions, loss = predict_split(self.model, self.task, split, self.device)
        metrics = {"loss": loss, **self.task.metrics(predictions)}
        self._record(epoch, "tune", metrics, lr)
        return metrics.get(self.settings.tracking, float("nan"))

    def _save_best(self, epoch: int, value: float) -> None:
        self.save("best", epoch)
        logger.info("epoch %d: new best tune %s = %.4f", epoch + 1, self.settings.tracking, value)

    def _step_scheduler(self, epoch: int, lr: float, value: Optional[float]) -> None:
        """ReduceLROnPlateau steps on the tracked tune ``value`` of the epochs that tuned, other schedulers every
        epoch."""
        if isinstance(self.scheduler, ReduceLROnPlateau):
            if value is not None:
                self.scheduler.step(value)
        elif self.scheduler is not None:
            self.scheduler.step()

    def _record(self, epoch: int, split: str, metrics: dict[str, float], lr: float) -> None:
        self.history.append({"epoch": epoch + 1, "split": split, "lr": lr, **metrics})
        if self.tracker is not None:
            self.tracker.log({f"{split}/{k}": v for k, v in metrics.items()} | {"epoch": epoch + 1, "lr": lr})
        logger.info("epoch %d %s: %s", epoch + 1, split, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
