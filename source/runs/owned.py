"""Files that say "a job holds this": the run folder's ``.lock`` (one job per run folder, :mod:`source.runs.lock`)
and, in shared runs, one claim per slide (:mod:`source.runs.claims`).

Each such file names its holder (host, pid, start time, a random token) and is touched while the holder runs (a
heartbeat). A file whose process is gone (same host) or whose heartbeat is stale may be taken over with a warning;
takeovers go through a short mutex beside the file, so two jobs never both take over one stale file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)
HEARTBEAT_S = 30.0
"""How often a holder touches its files."""
STALE_AFTER_S = 600.0
"""A file not touched for this long is stale (its job died on another host, or froze)."""
TAKEOVER_MUTEX_STALE_S = 60.0
"""A takeover mutex is held for milliseconds; one this old belongs to a job killed while holding it."""


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except (OverflowError, ValueError):
        return False
    return True


def job_identity() -> dict:
    """Who this job is: host, pid, start time, a random token and, under Slurm, the array job and task ids."""
    identity = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "token": uuid.uuid4().hex,
    }
    slurm = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if slurm:
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        identity["slurm_job"] = f"{slurm}_{task}" if task else slurm
    return identity


def describe_holder(holder: dict) -> str:
    """``host h, pid p, started s`` (and the Slurm job) of a holder record."""
    text = f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}"
    return text + (f", Slurm job {holder['slurm_job']}" if holder.get("slurm_job") else "")


class OwnedFile:
    """A file whose existence means that one job holds something; created atomically with its record.

    Args:
        path: the file.
        owner: this job's :func:`job_identity`.
        stale_after_s: a heartbeat older than this frees the file.
        heartbeat_s: the holder's touch interval (an unreadable file younger than this is being written).
    """

    def __init__(self, path: Path, owner: dict, stale_after_s: float, heartbeat_s: float) -> None:
        self.path = Path(path)
        self.owner = owner
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s

    def acquire(self) -> Optional[dict]:
        """Take the file; returns None when taken, else the record of the live job that holds it."""
        for _ in range(3):
            if self._try_create(self.path, self.owner):
                return None
            holder = self.holder()
            if self.stale_reason(holder) is None:
                return holder or {"host": "?", "pid": "?", "started": "?"}
            self._take_over()
        holder = self.holder()
        return holder or {"host": "?", "pid": "?", "started": "?"}

    def release(self) -> None:
        """Remove the file if this job still holds it."""
        if self.holder() == self.owner:
            self.path.unlink(missing_ok=True)

    def held(self) -> bool:
        """Whether this job holds the file."""
        return self.holder() == self.owner

    def holder(self) -> dict:
        """The record in the file (empty when missing or unreadable)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def stale_reason(self, holder: dict) -> Optional[str]:
        """Why the file may be taken over, or None when its job is alive."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it was just released"
        if not holder:
            return "it is unreadable" if age > self.heartbeat_s else None
        if holder.get("host") == self.owner["host"] and not process_alive(int(holder.get("pid", -1))):
            return f"its process {holder.get('pid')} on this host is gone"
        if age > self.stale_after_s:
            return f"its heartbeat stopped {age:.0f} s ago ({describe_holder(holder)})"
        return None

    def touch(self) -> None:
        """The heartbeat: mark the file as alive."""
        try:
            os.utime(self.path)
        except OSError:
            pass

    def _take_over(self) -> None:
        """Remove the file if it is still stale, under the takeover mutex (another job may be doing the same)."""
        mutex = self.path.with_name(self.path.name + ".takeover")
        if not self._try_create(mutex, self.owner):
            try:
                if time.time() - mutex.stat().st_mtime > TAKEOVER_MUTEX_STALE_S:
                    mutex.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            time.sleep(0.05)
            return
        try:
            reason = self.stale_reason(self.holder())  # read again: another job may have taken it meanwhile
            if reason is not None:
                logger.warning("taking over %s: %s", self.path, reason)
                self.path.unlink(missing_ok=True)
        finally:
            mutex.unlink(missing_ok=True)

    @staticmethod
    def _try_create(path: Path, record: dict) -> bool:
        """Create ``path`` holding ``record``, or return False if it exists.

        The record is written to a private temporary file first and hard-linked to ``path`` (atomic, and refused
        when ``path`` exists, on local disks and NFS alike), so the file never exists half-written: a job killed
        at any moment leaves either no file or a complete record naming its process.
        """
        draft = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        draft.write_text(json.dumps(record))
        try:
            os.link(draft, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive creation, briefly empty
            return OwnedFile._create_exclusively(path, record)
        finally:
            draft.unlink(missing_ok=True)
        return True

    @staticmethod
    def _create_exclusively(path: Path, record: dict) -> bool:
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as stream:
            json.dump(record, stream)
        return True


class Heartbeat:
    """A daemon thread that touches the files this job holds every ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.files: set[OwnedFile] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            for owned in list(self.files):
                owned.touch()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
