"""Shared runs (``shared_run: true``): any number of independent jobs (a Slurm array, jobs on several machines over a
shared file system, jobs restarted after preemption) work through the slides of one run folder.

The run folder's ``claims/`` holds, per slide:

- ``<slide_id>.claim``: the job encoding it now (created atomically with its record, touched every 30 s). A claim
  whose process is gone (same host) or whose heartbeat is 10 minutes old is taken over by the next job that reaches
  the slide;
- ``<slide_id>.json``: the slide's outcome (its row of ``slides.csv`` and its rows of ``regions.csv``) and the size
  of each file it wrote, written atomically before the claim is released. A slide with a record is not processed
  again while the files its record lists are there with the recorded sizes; a record whose files are gone or were
  truncated (a clean-up, a quota, a bad sync) counts for nothing: the slide is processed again and the log says why.

A job walks the slides in input order, skips those with a record or a live claim, and processes the others one at
a time. When it finds nothing left (every slide has a record), it writes the tables from the records, so whichever
job finishes last writes complete tables; a job that ends while other jobs still hold claims leaves that to them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from source.errors import ConfigError
from source.io import atomic_write_json, safe_join
from source.runs.claims import CLAIMS_DIR, live_claims
from source.runs.lock import LOCK_FILE
from source.runs.owned import HEARTBEAT_S, STALE_AFTER_S, Heartbeat, OwnedFile, describe_holder, job_identity
from source.runs.termination import describe_signal, exit_on_sigterm, signal_number

logger = logging.getLogger(__name__)
BOOKKEEPING_KEYS = ("recorded_by", "outputs")
"""Keys of a record that are about the record, not the slide's outcome."""


@dataclass
class SharedProgress:
    """Where a shared run stands: slides with a record, slides claimed by live jobs, and the others."""

    done: list[str]
    in_progress: list[str]
    waiting: list[str]


class SharedRun:
    """The claims and records of one shared run folder, seen by one job.

    Args:
        run_dir: the run folder.
        stale_after_s: a claim not touched for this long is taken over.
        heartbeat_s: how often this job touches the claim it holds.
    """

    def __init__(self, run_dir: Path, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / CLAIMS_DIR
        self.owner = job_identity()
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s

    def check_not_exclusive(self) -> None:
        """Refuse to join a run folder held by an ordinary (exclusive) job.

        Raises:
            ConfigError: naming the job that holds ``.lock``.
        """
        lock = OwnedFile(self.run_dir / LOCK_FILE, self.owner, self.stale_after_s, self.heartbeat_s)
        holder = lock.holder()
        if lock.path.exists() and lock.stale_reason(holder) is None:
            raise ConfigError(
                f"run folder {self.run_dir} is held by a job that does not share it ({describe_holder(holder)}): wait "
                "for it to end, or use another run_id"
            )

    def record_path(self, slide_id: str) -> Path:
        return safe_join(self.folder, slide_id, ".json")

    def record(self, slide_id: str) -> Optional[dict]:
        """The outcome a job recorded for ``slide_id``, or None."""
        try:
            return json.loads(self.record_path(slide_id).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # written atomically: unreadable only if edited by hand; process the slide again

    @contextlib.contextmanager
    def claim(self, slide_id: str, heartbeat: Heartbeat) -> Iterator[bool]:
        """Hold the claim of ``slide_id`` inside the block; yields False when a live job holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        owned = OwnedFile(safe_join(self.folder, slide_id, ".claim"), self.owner, self.stale_after_s, self.heartbeat_s)
        if owned.acquire() is not None:
            yield False
            return
        heartbeat.files.add(owned)
        try:
            yield True
        finally:
            heartbeat.files.discard(owned)
            owned.release()

    def finish(self, slide_id: str, outcome: dict, outputs: Sequence[Path] = ()) -> None:
        """Record ``slide_id``'s outcome and the size of each of its ``outputs`` (files inside the run folder),
        atomically; call while holding its claim."""
        sizes = {self._relative(path): Path(path).stat().st_size for path in outputs}
        atomic_write_json(self.record_path(slide_id), outcome | {"recorded_by": self.owner, "outputs": sizes})

    def _relative(self, path: Path) -> str:
        path = Path(path)
        try:
            return path.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            raise ValueError(f"output {path} of a shared run is not inside its run folder {self.run_dir}") from None

    def _output_path(self, relative: str) -> Optional[Path]:
        """The run folder's file ``relative`` (None for a path that would leave the folder, e.g. an edited record)."""
        path = (self.run_dir / relative).resolve()
        return path if path.is_relative_to(self.run_dir.resolve()) else None

    def damage(self, record: dict) -> list[str]:
        """What is wrong with the files ``record`` lists: one line per missing or resized file (empty: intact)."""
        problems = []
        for relative, size in (record.get("outputs") or {}).items():
            path = self._output_path(relative)
            if path is None:
                problems.append(f"{relative} is outside the run folder")
            elif not path.is_file():
                problems.append(f"{relative} is missing")
            elif path.stat().st_size != size:
                problems.append(f"{relative} has {path.stat().st_size} bytes, the record says {size}")
        return problems

    def intact_record(self, slide_id: str) -> Optional[dict]:
        """The record of ``slide_id`` if the files it lists are all there with their recorded sizes, else None."""
        record = self.record(slide_id)
        return record if record is not None and not self.damage(record) else None

    def discard_damaged(self, slide_id: str, record: dict, problems: Sequence[str]) -> None:
        """Log why ``record`` (with :meth:`damage` ``problems``) no longer counts and delete the files it lists, so
        the slide is processed afresh; call while holding the claim."""
        logger.warning(
            "slide %s was recorded as done by %s, but %s: processing it again",
            slide_id,
            describe_holder(record.get("recorded_by") or {}),
            "; ".join(problems),
        )
        for relative in record.get("outputs") or {}:
            path = self._output_path(relative)
            if path is not None and path.is_file():
                path.unlink()

    def progress(self, slide_ids: Sequence[str]) -> SharedProgress:
        """Which of ``slide_ids`` are done (an intact record), being processed by live jobs, or waiting."""
        live = {slide for slide, _ in live_claims(self.run_dir, self.stale_after_s)}
        done = [s for s in slide_ids if self.intact_record(s) is not None]
        finished = set(done)
        in_progress = [s for s in slide_ids if s not in finished and s in live]
        waiting = [s for s in slide_ids if s not in finished and s not in live]
        return SharedProgress(done, in_progress, waiting)

    def records(self, slide_ids: Sequence[str]) -> list[dict]:
        """The outcomes recorded for ``slide_ids`` in that order (all must exist), without the bookkeeping keys."""
        return [
            {key: value for key, value in (self.record(slide_id) or {}).items() if key not in BOOKKEEPING_KEYS}
            for slide_id in slide_ids
        ]


MAX_PASSES = 3
"""Passes over the slides: a later pass takes over the claims of jobs that died after this job passed them."""


Outputs = Callable[[str, dict], Sequence[Path]]
"""``(slide_id, outcome) -> files`` the slide's processing wrote (their sizes go into its record)."""


def _one_pass(
    shared: SharedRun,
    slide_ids: Sequence[str],
    process: Callable[[str], dict],
    heartbeat: Heartbeat,
    outputs_of: Optional[Outputs],
    mine: list[dict],
    current: list[str],
) -> None:
    """Process each slide without an intact record or a live claim; append its outcome to ``mine``. ``current``
    holds the slide being processed (for the log line of a job terminated mid-slide)."""
    for slide_id in slide_ids:
        if shared.intact_record(slide_id) is not None:
            continue
        with shared.claim(slide_id, heartbeat) as held:
            if not held:
                continue
            record = shared.record(slide_id)
            if record is not None:
                problems = shared.damage(record)
                if not problems:  # finished while we were claiming
                    continue
                shared.discard_damaged(slide_id, record, problems)
            current[:] = [slide_id]
            outcome = process(slide_id)
            shared.finish(slide_id, outcome, outputs_of(slide_id, outcome) if outputs_of else ())
            current.clear()
            mine.append(outcome)


def work_through(
    shared: SharedRun,
    slide_ids: Sequence[str],
    process: Callable[[str], dict],
    what: str = "slide",
    outputs_of: Optional[Outputs] = None,
) -> tuple[list[dict], SharedProgress]:
    """Process every slide of ``slide_ids`` no other job has done or is doing, one at a time, recording each outcome.

    A job ended by SIGTERM (Slurm's preemption notice) or SIGINT releases its claim at once and logs which slide it
    was processing and its summary before it exits.

    Args:
        shared: the shared run.
        slide_ids: every slide of the run, in input order.
        process: ``slide_id -> outcome`` (a JSON-able dict with a ``status`` key); called while holding the claim.
        what: the word for an item in the log.
        outputs_of: ``(slide_id, outcome) -> files`` the slide wrote; their sizes are recorded, and a record whose
            files are later missing or resized makes the slide be processed again.

    Returns:
        The outcomes this job recorded, and the run's progress once it found nothing left to claim.
    """
    mine: list[dict] = []
    current: list[str] = []
    heartbeat = Heartbeat(shared.heartbeat_s)
    started = time.perf_counter()
    try:
        with exit_on_sigterm():
            for _ in range(MAX_PASSES):
                _one_pass(shared, slide_ids, process, heartbeat, outputs_of, mine, current)
                progress = shared.progress(slide_ids)
                if not progress.waiting:  # a slide waits when the job that claimed it died after our pass
                    break
    except (SystemExit, KeyboardInterrupt) as stop:
        number = signal_number(stop)
        if number is not None:
            where = f"during {what} {current[0]}; claim released" if current else f"between {what}s"
            logger.warning("terminated by signal %s %s", describe_signal(number), where)
            _log_summary(shared, slide_ids, mine, what, started, " before it was terminated")
        raise
    finally:
        heartbeat.stop()
    _log_summary(shared, slide_ids, mine, what, started, "", progress)
    return mine, progress


def _log_summary(
    shared: SharedRun,
    slide_ids: Sequence[str],
    mine: list[dict],
    what: str,
    started: float,
    ending: str,
    progress: Optional[SharedProgress] = None,
) -> None:
    progress = progress or shared.progress(slide_ids)
    logger.info(
        "shared run: this job processed %d %s(s) in %.1f s%s; the run has %d/%d done, %d being processed by other jobs",
        len(mine),
        what,
        time.perf_counter() - started,
        ending,
        len(progress.done),
        len(slide_ids),
        len(progress.in_progress),
    )


def run_status(run_dir: Path, stale_after_s: float = STALE_AFTER_S) -> str:
    """A shared run's state for its operator: recorded slides (succeeded, failed with their reasons), slides being
    processed (by which job, heartbeat age), claims that the next job will take over, and whether the tables exist.

    Raises:
        ConfigError: ``run_dir`` holds no ``claims/`` folder (not a shared run, or nothing started yet).
    """
    folder = Path(run_dir) / CLAIMS_DIR
    if not folder.is_dir():
        raise ConfigError(f"{run_dir} has no {CLAIMS_DIR}/ folder: not a shared run, or no job has started in it")
    records = {}
    for path in sorted(folder.glob("*.json")):
        try:
            records[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    failed = {slide: record.get("error", "") for slide, record in records.items() if record.get("status") != "success"}
    shared = SharedRun(Path(run_dir), stale_after_s)
    damaged = {slide: problems for slide, record in records.items() if (problems := shared.damage(record))}
    lines = [f"shared run {run_dir}", f"- recorded: {len(records)} slide(s), {len(failed)} failed"]
    lines += [f"  - {slide}: {reason}" for slide, reason in list(failed.items())[:10]]
    if damaged:
        lines.append(f"- records whose files are gone: {len(damaged)} slide(s) (the next job processes them again)")
        lines += [f"  - {slide}: {'; '.join(problems)}" for slide, problems in list(damaged.items())[:10]]
    probe = job_identity()
    now = time.time()
    for path in sorted(folder.glob("*.claim")):
        claim = OwnedFile(path, probe, stale_after_s, HEARTBEAT_S)
        holder = claim.holder()
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        reason = claim.stale_reason(holder)
        state = f"stale, taken over by the next job ({reason})" if reason else "in progress"
        lines.append(f"- {path.stem}: {state}; {describe_holder(holder)}; heartbeat {age:.0f} s ago")
    tables = [name for name in ("slides.csv", "regions.csv") if (Path(run_dir) / name).is_file()]
    lines.append(f"- tables: {', '.join(tables) if tables else 'not written yet (the last job writes them)'}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """``python3 -m source.runs.shared <run folder>``: print :func:`run_status`; exit 2 when it is not a shared
    run folder."""
    if len(argv) != 1:
        print("usage: python3 -m source.runs.shared <run folder of a shared run>")
        return 2
    try:
        print(run_status(Path(argv[0])))
    except ConfigError as error:
        print(f"ERROR {error}")
        return error.exit_code
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
