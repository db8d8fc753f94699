"""The one skeleton of every job: logging, checks, device, processes, precision, run folder, shutdown.

Each ``run_*_job`` is ``with run_job(cfg, ...) as job: <its own work>``; the entry scripts map errors to
exit codes with :func:`source.entry.exit_with`. The order is fixed so that every mistake a user can make
in the config or the inputs is reported before a device, a process group or a run folder exists.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from source.config.core import plain_config
from source.devices import resolve_device
from source.distributed import DistributedContext, context_from_env, init_distributed, shutdown
from source.log import setup_logging
from source.precision import resolve_precision
from source.runs.folder import RunSpec, open_run, run_dir_for
from source.runs.termination import exit_on_sigterm


@dataclass
class Job:
    """What the skeleton hands a job's body.

    Attributes:
        run_dir: ``output_dir/<experiment_name>/<run_id>/`` (config saved, ``log.txt`` open).
        context: this process's rank and world size (one process: rank 0 of 1).
        device: this process's device.
        config: the job's config as it runs and was saved: a copy of the one given with ``run_id`` the folder's
            name, the precision resolved for the device and, in a shared run, ``resume`` true. The body reads this
            one (the config given is never edited).
        inputs: what the ``check`` callable returned (e.g. the slides read before any work).
    """

    run_dir: Path
    context: DistributedContext
    device: torch.device
    config: DictConfig
    inputs: Any = None


def _default_device(cfg: DictConfig, local_rank: int) -> torch.device:
    return resolve_device(cfg.device, local_rank)


@contextlib.contextmanager
def run_job(
    cfg: DictConfig,
    check: Optional[Callable[[DictConfig], Any]] = None,
    resume_keys: Sequence[str] = (),
    distributed: bool = True,
    precision_key: Optional[str] = None,
    device_of: Callable[[DictConfig, int], torch.device] = _default_device,
    weight_keys: Sequence[str] = (),
    seed_key: Optional[str] = None,
    shared: bool = False,
    adopt: Optional[Callable[[DictConfig, Any], None]] = None,
) -> Iterator[Job]:
    """Set a job up, yield it, shut it down.

    Args:
        cfg: the job's config (needs ``device``, ``output_dir``, ``experiment_name``, ``run_id``, ``resume``).
        check: validates the config and reads the inputs (raising user errors) before anything else.
        resume_keys: keys a resumed run must not change.
        distributed: join torchrun's process group (from the environment); False: one process.
        precision_key: dotted key of a precision to resolve for the device (``auto`` -> what it runs natively).
        device_of: ``(cfg, local_rank) -> device`` (default ``resolve_device(cfg.device, local_rank)``).
        weight_keys: keys of weight files a resumed run must find unchanged (by content).
        seed_key: the seed key, which must not change on resume when some of those weights are random.
        shared: the run folder is shared by independent jobs (``shared_run: true``; see :func:`open_run`).
        adopt: ``(running config, inputs)``: values the inputs decide (e.g. an extraction run's region size), set in
            the job's running copy of the config before it is saved.
    """
    context = context_from_env() if distributed else DistributedContext()
    setup_logging(context.rank)
    inputs = check(cfg) if check is not None else None
    device = device_of(cfg, context.local_rank)
    if distributed:
        context = init_distributed(device)
    try:
        running = copy.deepcopy(cfg)
        if adopt is not None:
            adopt(running, inputs)
        if precision_key is not None:
            requested = OmegaConf.select(running, precision_key)
            OmegaConf.update(running, precision_key, resolve_precision(str(requested.value), device, precision_key))
        run_dir = run_dir_for(running.output_dir, running.experiment_name, running.run_id, context)
        running.run_id = run_dir.name
        if shared:
            running.resume = True  # a joining job continues the run: same config, same weights, finished slides kept
        spec = RunSpec(run_dir, plain_config(running), bool(running.resume), resume_keys, weight_keys, seed_key, shared)
        with exit_on_sigterm(), open_run(spec, context):
            yield Job(run_dir, context, device, running, inputs)
    finally:
        if distributed:
            shutdown()
