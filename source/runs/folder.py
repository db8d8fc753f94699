"""Run folders: ``output_dir/<experiment_name>/<run_id>/``, the saved config, and resume checks."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from source.config.core import config_yaml, read_saved_config
from source.distributed import DistributedContext, broadcast_object
from source.errors import ConfigError
from source.io import UnsafePathError, atomic_write_json, atomic_write_text, remove_orphan_temporaries, safe_join
from source.runs.lock import RunLock
from source.runs.owned import STALE_AFTER_S, job_identity
from source.runs.shared import SharedRun
from source.runs.termination import describe_signal, signal_number

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


@dataclass(frozen=True)
class RunSpec:
    """A job's run folder and what its config asks of it, read once at the edge (:func:`source.engines.job.run_job`).

    Attributes:
        run_dir: ``output_dir/<experiment_name>/<run_id>/`` (:func:`run_dir_for`).
        config: the job's resolved config as plain containers, ``run_id`` the folder's name: saved as ``config.yaml``
            and compared with a resumed run's.
        resume: continue the run in ``run_dir`` (a shared run's jobs always do).
        resume_keys: dotted keys a resumed run must not change.
        weight_keys: dotted keys of weight files a resumed run must find unchanged (by content).
        seed_key: the seed key, which must not change on resume when some of those weights are random.
        shared: the folder is shared by independent jobs (``shared_run: true``; see :func:`open_run`).
    """

    run_dir: Path
    config: Mapping[str, Any]
    resume: bool = False
    resume_keys: Sequence[str] = ()
    weight_keys: Sequence[str] = ()
    seed_key: Optional[str] = None
    shared: bool = False


_ABSENT = object()


def select(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at the dotted ``key`` of a plain config, else ``default``."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def check_resumable(spec: RunSpec) -> None:
    """On resume, refuse a config whose ``resume_keys`` differ from the saved run's (they change the outputs)."""
    saved_path = spec.run_dir / CONFIG_FILE
    if not saved_path.exists():
        logger.info("resume: %s has no saved config yet; starting the run", spec.run_dir)
        return
    saved = read_saved_config(saved_path)
    for key in spec.resume_keys:
        before = select(saved, key, _ABSENT)
        if before is _ABSENT:
            continue  # a key the version that started the run did not have yet
        now = select(spec.config, key)
        if before != now:
            raise ConfigError(
                f"resume: {key} was {before!r} in {saved_path} but is {now!r} now; resuming would mix incompatible "
                f"outputs. Set {key}={before} or use another run_id."
            )


def prepare_run_dir(spec: RunSpec, context: DistributedContext) -> None:
    """Create the run folder, check a resumed run's config, save the resolved config (rank 0)."""
    if spec.resume:
        check_resumable(spec)
    elif context.is_main and (spec.run_dir / CONFIG_FILE).exists():
        logger.warning("run folder %s exists and resume is false: its outputs will be recomputed", spec.run_dir)
    if context.is_main:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(spec.run_dir / CONFIG_FILE, config_yaml(spec.config))


BOOKKEEPING = {CONFIG_FILE, "log.txt", "fingerprints.json"}
"""What a run folder holds before a run has done anything: its config, its log and its weights' fingerprints."""


@contextlib.contextmanager
def open_run(spec: RunSpec, context: DistributedContext) -> Iterator[Path]:
    """Prepare the run folder (:func:`prepare_run_dir`), hold it (:class:`RunLock`), check the weights' fingerprints
    and log to ``log.txt`` inside the block; orphan temporaries of a killed run are removed on resume and at the end.

    A folder this run created is removed again when the block fails before writing anything but its
    config and log (a bad checkpoint, a bad csv): no empty timestamped folders are left behind.

    ``spec.shared``: the folder is shared with other jobs (``shared_run: true``): no lock (each slide is claimed, see
    :mod:`source.runs.shared`), a joining job is checked as a resumed one (the spec says ``resume``), each job logs to
    ``logs/<job>.txt``, and only temporaries untouched for 10 minutes are removed (another job may be writing).

    Raises:
        ConfigError: a shared run under torchrun, or a folder held by an exclusive job.
    """
    from source.log import file_log

    run_dir, shared = spec.run_dir, spec.shared
    if shared and context.world_size > 1:
        raise ConfigError(
            "shared_run: true is for independent one-process jobs (e.g. a Slurm array); a torchrun job of "
            f"{context.world_size} processes already splits its slides: run it with shared_run=false"
        )
    created = not run_dir.exists()
    started = time.time()
    check_writable(run_dir)
    if shared:
        lock = contextlib.nullcontext()
        SharedRun(run_dir).check_not_exclusive()
        log_path = run_dir / "logs" / f"{_job_name()}.txt"
        cutoff = lambda: min(started, time.time() - STALE_AFTER_S)  # noqa: E731
    else:
        lock = RunLock(run_dir) if context.is_main else contextlib.nullcontext()
        log_path = run_dir / "log.txt"
        cutoff = lambda: started  # noqa: E731
    try:
        with lock:
            prepare_run_dir(spec, context)
            if context.is_main:
                check_fingerprints(spec)
            if spec.resume and context.is_main:
                _clean_temporaries(run_dir, cutoff())
            with file_log(log_path, context.rank):
                try:
                    yield run_dir
                except (SystemExit, KeyboardInterrupt) as stop:
                    if not shared:  # a shared job's log names the slide (source.runs.shared)
                        _log_termination(stop, run_dir)
                    raise
            if context.is_main:
                _clean_temporaries(run_dir, cutoff())
    except BaseException:
        if not shared and created and context.is_main and run_dir.is_dir() and _only_bookkeeping(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _log_termination(stop: BaseException, run_dir: Path) -> None:
    """One log line for a job ended by a signal (a preempted job must not look like a crash)."""
    number = signal_number(stop)
    if number is not None:
        logger.warning(
            "terminated by signal %s; the run lock is released: rerun with resume=true run_id=%s to continue",
            describe_signal(number),
            run_dir.name,
        )


def _job_name() -> str:
    """This job's log name: the Slurm array job and task (or job) id, else host and pid."""
    identity = job_identity()
    return identity.get("slurm_job") or f"{identity['host']}-{identity['pid']}"


def _clean_temporaries(run_dir: Path, started: float) -> None:
    removed = remove_orphan_temporaries(run_dir, older_than=started)
    if removed:
        logger.info("removed %d temporary file(s) that a killed run left in %s", removed, run_dir)


def check_writable(run_dir: Path) -> None:
    """The run folder can be created and written, before any compute.

    Raises:
        ConfigError: naming the folder and the reason (permissions, a read-only disk, no space).
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as error:
        raise ConfigError(
            f"output folder {run_dir} is not writable: {error.strerror or error} (check output_dir and its "
            "permissions, or free space)"
        ) from error


def _only_bookkeeping(run_dir: Path) -> bool:
    return all(path.name in BOOKKEEPING or path.name.startswith("log.rank") for path in run_dir.iterdir())


FINGERPRINTS = "fingerprints.json"
"""The content hash of every weight file a run started with (and its seed when some weights are random)."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 8 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_fingerprints(config: Mapping[str, Any], weight_keys: Sequence[str], seed_key: Optional[str]) -> dict:
    """``{key: {"path", "sha256"}}`` for each weights key of a plain config (``sha256`` None for null = random
    weights), and the seed when any weights are random (they are drawn from it)."""
    prints: dict = {}
    for key in weight_keys:
        value = select(config, key)
        path = Path(value) if value else None
        prints[key] = {
            "path": str(value) if value else None,
            "sha256": file_sha256(path) if path and path.is_file() else None,
        }
    if seed_key is not None and any(entry["sha256"] is None for entry in prints.values()):
        prints[seed_key] = select(config, seed_key)
    return prints


def check_fingerprints(spec: RunSpec) -> None:
    """Record the weights' fingerprints; on resume, refuse weights whose content changed since the run started (the
    same path may hold a new file, e.g. a DINO run's ``latest.pt``), or another seed for random weights.

    Raises:
        ConfigError: naming the key, the file and the fix.
    """
    if not spec.weight_keys:
        return
    seed_key = spec.seed_key
    current = weight_fingerprints(spec.config, spec.weight_keys, seed_key)
    saved_path = spec.run_dir / FINGERPRINTS
    if spec.resume and saved_path.is_file():
        saved = json.loads(saved_path.read_text())
        for key, now in current.items():
            before = saved.get(key, now)
            if key == seed_key and before != now:
                raise ConfigError(
                    f"resume: {key} was {before} when this run started with random weights, but is {now} now: the "
                    f"random weights would differ. Set {key}={before} or use another run_id"
                )
            if key != seed_key and before.get("sha256") != now.get("sha256"):
                raise ConfigError(
                    f"resume: the weights of {key} ({now['path']}) are not those this run started with "
                    f"({before['path']}, sha256 {str(before['sha256'])[:12]}..., now {str(now['sha256'])[:12]}...): "
                    "features of the two would not match. Give the original file, or use another run_id"
                )
    atomic_write_json(saved_path, current)
