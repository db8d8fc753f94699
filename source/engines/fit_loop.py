"""The epoch loop both trainers share: from the resumed epoch, train, evaluate when due, track the best value and
early stopping, save ``best`` and ``latest``; the trainers supply their per-task pieces as hooks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Generic, Optional, Protocol, TypeVar

from tqdm import tqdm

from source.distributed import DistributedContext, broadcast_object
from source.engines.callbacks import EarlyStopping

R = TypeVar("R")


class Resumable(Protocol):
    """The trainer state :func:`fit_epochs` reads (set by the trainer's ``resume``) and writes."""

    start_epoch: int
    stopped_early: bool
    stopper: EarlyStopping


@dataclass
class EpochPlan:
    """How many epochs, when to evaluate, and the wording of the loop's log lines.

    Args:
        nepochs: epochs in all (a resumed run continues up to it).
        tune_every: evaluate every ``tune_every`` epochs, and after the last one.
        show_progress: show the epochs' progress bar.
        log: the trainer's logger, which writes the loop's lines.
        run_name: ``"<run_name> stopped early at epoch N; nothing to resume"``.
        tracked: ``"early stopping at epoch N: <tracked> has not improved for <patience> evaluations"``.
        patience: the number in that line.
        context: the process group; every rank stops with rank 0.
    """

    nepochs: int
    tune_every: int
    show_progress: bool
    log: logging.Logger
    run_name: str
    tracked: str
    patience: int
    context: DistributedContext = DistributedContext()

    def evaluates(self, epoch: int) -> bool:
        """Whether ``epoch`` (0-based) is due an evaluation."""
        return (epoch + 1) % self.tune_every == 0 or epoch + 1 == self.nepochs


@dataclass
class EpochHooks(Generic[R]):
    """A trainer's part of each epoch, in the order :func:`fit_epochs` calls them; ``R`` is what its training of an
    epoch hands to that epoch's later hooks (the epoch's record, its learning rate).

    Args:
        train: ``(epoch) -> R``: train one epoch.
        evaluate: ``(epoch, R) -> value``: evaluate after the epoch; the tracked value (NaN when missing). None: the
            trainer never evaluates (no best checkpoint, no early stopping).
        save_best: ``(epoch, value)``: a new best value: save ``best``.
        close: ``(epoch, R, value)``: the epoch's last work before ``latest`` is saved; ``value`` is None when the
            epoch did not evaluate.
        save: ``(name, epoch)``: save the full checkpoint ``name`` (``latest``) that ``resume`` continues from.
        report: ``(epoch, R)``: after ``latest`` is saved: tables, snapshots, callbacks.
    """

    train: Callable[[int], R]
    evaluate: Optional[Callable[[int, R], float]]
    save_best: Callable[[int, float], None]
    close: Callable[[int, R, Optional[float]], None]
    save: Callable[[str, int], None]
    report: Callable[[int, R], None]


def fit_epochs(run: Resumable, plan: EpochPlan, hooks: EpochHooks[R]) -> None:
    """Epochs ``run.start_epoch`` to ``plan.nepochs - 1``, or until early stopping.

    Each epoch: train; when due, evaluate, update ``run.stopper`` (``best`` on a new best value) and decide whether
    to stop; close the epoch; set ``run.stopped_early`` and save ``latest``; report. A run killed after any epoch
    resumes from ``latest`` exactly where it was; a run that stopped early does nothing more.
    """
    if run.stopped_early:
        plan.log.info("%s stopped early at epoch %d; nothing to resume", plan.run_name, run.start_epoch)
        return
    epochs = tqdm(
        range(run.start_epoch, plan.nepochs),
        desc="epochs",
        unit="epoch",
        initial=run.start_epoch,
        total=plan.nepochs,
        disable=not plan.show_progress,
    )
    for epoch in epochs:
        result = hooks.train(epoch)
        value: Optional[float] = None
        stop = False
        if hooks.evaluate is not None and plan.evaluates(epoch):
            value = hooks.evaluate(epoch, result)
            if run.stopper.update(value, epoch):
                hooks.save_best(epoch, value)
            stop = broadcast_object(run.stopper.should_stop(epoch), plan.context)
        hooks.close(epoch, result, value)
        run.stopped_early = stop
        hooks.save("latest", epoch)
        hooks.report(epoch, result)
        if stop:
            plan.log.info(
                "early stopping at epoch %d: %s has not improved for %d evaluations",
                epoch + 1,
                plan.tracked,
                plan.patience,
            )
            break
