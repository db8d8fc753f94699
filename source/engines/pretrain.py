"""The DINO training loop shared by both stages: schedules, mixed precision, clipping, EMA teacher,
kNN monitoring, early stopping, snapshots and exact resume."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.optim import Optimizer
from torch.utils.data import DataLoader
from tqdm import tqdm

from source.devices import rng_state, set_rng_state
from source.distributed import DistributedContext, gather_objects
from source.engines.callbacks import EarlyStopping
from source.engines.fit_loop import EpochHooks, EpochPlan, fit_epochs
from source.errors import TrainingDivergedError
from source.io import atomic_torch_save, atomic_write_text
from source.models.hipt import PRECISIONS
from source.pretraining.dino import DINO
from source.pretraining.monitor import KnnMonitor
from source.pretraining.schedules import cosine_schedule, scaled_learning_rate
from source.tracking import Tracker

logger = logging.getLogger(__name__)


@dataclass
class Schedules:
    """Per-iteration learning rate, weight decay and teacher momentum."""

    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray


def build_schedules(cfg: Any, iterations_per_epoch: int, global_batch: int) -> Schedules:
    """DINO's schedules from a pretraining config (``optim.*``, ``training.*``, ``model.momentum_teacher``)."""
    epochs = cfg.training.nepochs
    lr = scaled_learning_rate(cfg.optim.lr, global_batch)
    return Schedules(
        lr=cosine_schedule(lr, cfg.optim.min_lr, epochs, iterations_per_epoch, cfg.training.warmup_epochs),
        weight_decay=cosine_schedule(cfg.optim.weight_decay, cfg.optim.weight_decay_end, epochs, iterations_per_epoch),
        momentum=cosine_schedule(cfg.model.momentum_teacher, 1.0, epochs, iterations_per_epoch),
    )


@dataclass
class DinoSettings:
    """Loop settings from the config."""

    nepochs: int
    freeze_last_layer: int = 1
    clip_grad: float = 3.0
    precision: str = "fp32"
    tune_every: int = 1
    tracking: str = "auc"
    save_every: int = 10
    show_progress: bool = True


class DinoTrainer:
    """Run DINO epochs and keep ``latest.pt``, ``best.pt``, periodic snapshots and ``log.jsonl`` in ``run_dir``."""

    def __init__(
        self,
        dino: DINO,
        optimizer: Optimizer,
        schedules: Schedules,
        loader: DataLoader,
        settings: DinoSettings,
        run_dir: Path,
        context: DistributedContext,
        device: torch.device,
        stopper: EarlyStopping,
        monitor: Optional[KnnMonitor] = None,
        tracker: Optional[Tracker] = None,
        config: Optional[dict] = None,
    ) -> None:
        self.dino, self.optimizer, self.schedules, self.loader = dino, optimizer, schedules, loader
        self.settings, self.run_dir, self.context, self.device = settings, Path(run_dir), context, device
        self.stopper, self.monitor, self.tracker, self.config = stopper, monitor, tracker, config or {}
        self.scaler = torch.amp.GradScaler(device.type) if settings.precision == "fp16" else None
        self.history: list[dict] = []
        self.start_epoch = 0
        self.stopped_early = False

    # -- snapshots ------------------------------------------------------------------------------------
    def save(self, name: str, epoch: int) -> None:
        """Student, teacher (``backbone.*`` / ``head.*``), optimiser, scaler, epoch, loss centre, config, RNG of every
        rank.

        The full training state (what ``resume`` needs, about 6x the backbone for ViT-S with its 65,536-wide heads).
        """
        rng = gather_objects(rng_state(), self.context)
        if not self.context.is_main:
            return
        state = {
            "student": self.dino.student.state_dict(),
            "teacher": self.dino.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": epoch,
            "dino_loss": {"center": self.dino.loss.center.detach().cpu()},
            "early_stopping": self.stopper.state_dict(),
            "history": self.history,
            "rng": rng,
            "stopped_early": self.stopped_early,
            "config": self.config,
        }
        atomic_torch_save(state, self.run_dir / f"{name}.pt")

    def save_teacher(self, name: str, epoch: int) -> None:
        """Only the teacher backbone (``teacher`` -> ``backbone.*``), epoch, history and config: the file extraction
        loads."""
        if not self.context.is_main:
            return
        backbone = {k: v for k, v in self.dino.teacher.state_dict().items() if k.startswith("backbone.")}
        state = {"teacher": backbone, "epoch": epoch, "history": self.history, "config": self.config}
        atomic_torch_save(state, self.run_dir / f"{name}.pt")

    def resume(self) -> bool:
        """Continue from ``latest.pt`` if it exists (schedules continue where they were)."""
        path = self.run_dir / "latest.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.dino.student.load_state_dict(state["student"])
        self.dino.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.dino.loss.center.copy_(state["dino_loss"]["center"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        rng = state["rng"]
        set_rng_state(rng[self.context.rank] if self.context.rank < len(rng) else rng[0])
        self.start_epoch = state["epoch"] + 1
        self.stopped_early = bool(state.get("stopped_early", False))
        logger.info("resumed from %s at epoch %d", path, self.start_epoch + 1)
        return True

    # -- loop -----------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> float:
        """One epoch; returns the mean loss over iterations (averaged over ranks)."""
        self.dino.student.train()
        sampler = self.loader.sampler
        if hasattr(sampler, "set_epoch"):  # DistributedSampler, BalancedEpochSampler
            sampler.set_epoch(epoch)
        self.loader.dataset.epoch = epoch
        iterations = len(self.loader)
        losses = []
        autocast = torch.autocast(
            self.device.type, dtype=PRECISIONS[self.settings.precision], enabled=self.settings.precision != "fp32"
        )
        bar = tqdm(
            self.loader, desc=f"epoch {epoch + 1}", leave=False, unit="batch", disable=not self.settings.show_progress
        )
        for step, crops in enumerate(bar):
            it = epoch * iterations + step
            self._set_schedules(it)
            crops = [crop.to(self.device, non_blocking=True) for crop in crops]
            with autocast:
                loss = self.dino(crops, epoch)
            if not self._finite_everywhere(loss):
                raise TrainingDivergedError(
                    f"the loss is not finite (here {loss.item()}) at epoch {epoch + 1}, iteration {step + 1}: training "
                    "stopped. Lower optim.lr or training.clip_grad, or use speed.precision=fp32."
                )
            self._step(loss, epoch)
            self.dino.update_teacher(float(self.schedules.momentum[it]))
            losses.append(self._mean_over_ranks(loss.detach().float()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        return float(np.mean(losses))

    def _set_schedules(self, iteration: int) -> None:
        """Learning rate of every group and weight decay of the decayed group at ``iteration``."""
        for index, group in enumerate(self.optimizer.param_groups):
            group["lr"] = float(self.schedules.lr[iteration])
            if index == 0:
                group["weight_decay"] = float(self.schedules.weight_decay[iteration])

    def _step(self, loss: torch.Tensor, epoch: int) -> None:
        """Backward (scaled for fp16), clipping, the head's last layer frozen in the first epochs, optimiser step."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.settings.clip_grad:
            self.dino.clip_student_gradients(self.settings.clip_grad)
        if epoch < self.settings.freeze_last_layer:
            self.dino.cancel_last_layer_gradients()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (all ranks stop together otherwise)."""
        finite = torch.tensor([float(math.isfinite(loss.item()))], device=loss.device)
        if self.context.enabled:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _mean_over_ranks(self, value: torch.Tensor) -> float:
        if self.context.enabled:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.context.world_size
        return float(value)

    def fit(self) -> None:
        """Train until ``nepochs`` or early stopping."""
        settings = self.settings
        plan = EpochPlan(
            settings.nepochs,
            settings.tune_every,
            settings.show_progress,
            logger,
            run_name="this run",
            tracked=f"teacher {settings.tracking}",
            patience=self.stopper.patience,
            context=self.context,
        )
        hooks = EpochHooks(
            train=self._train_and_record,
            evaluate=self._monitor_epoch if self.monitor is not None else None,
            save_best=lambda epoch, value: self.save_teacher("best", epoch),
            close=lambda epoch, record, value: self.history.append(record),
            save=self.save,
            report=self._report,
        )
        fit_epochs(self, plan, hooks)

    def _train_and_record(self, epoch: int) -> dict:
        """Train one epoch; returns its record: the mean loss and the schedules at the epoch's last iteration."""
        loss = self.train_epoch(epoch)
        last = (epoch + 1) * len(self.loader) - 1
        return {
            "epoch": epoch + 1,
            "loss": loss,
            "lr": float(self.schedules.lr[last]),
            "wd": float(self.schedules.weight_decay[last]),
            "momentum": float(self.schedules.momentum[last]),
            "teacher_temp": self.dino.loss.teacher_temp(epoch),
        }

    def _monitor_epoch(self, epoch: int, record: dict) -> float:
        """The kNN metrics of the student's and the teacher's backbones into ``record``; returns the tracked teacher
        metric (NaN when missing)."""
        for name, network in (("student", self.dino.student), ("teacher", self.dino.teacher)):
            metrics = self.monitor.evaluate(network.backbone, name, self.device, self.context)
            record.update({f"{name}_{k}": v for k, v in metrics.items()})
        return record.get(f"teacher_{self.settings.tracking}", float("nan"))

    def _report(self, epoch: int, record: dict) -> None:
        """After ``latest``: the periodic teacher snapshot, ``log.jsonl`` and the tracker (rank 0), the epoch's line."""
        if self.settings.save_every and (epoch + 1) % self.settings.save_every == 0:
            self.save_teacher(f"checkpoint_{epoch + 1:04d}", epoch)
        if self.context.is_main:  # rewritten from the history, so it always matches latest.pt
            atomic_write_text(self.run_dir / "log.jsonl", "".join(json.dumps(row) + "\n" for row in self.history))
            if self.tracker is not None:
                self.tracker.log(record)
        logger.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
