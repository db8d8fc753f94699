"""One job per run folder: ``<run>/.lock`` names the job that holds it (host, pid, start time) and is touched while it
runs (a heartbeat); a second job is refused naming the holder; a lock whose process is gone (same host) or whose
heartbeat is stale is taken over with a warning."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from source.errors import ConfigError

logger = logging.getLogger(__name__)
LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0
"""How often the holder touches the lock."""
STALE_AFTER_S = 600.0
"""A lock not touched for this long is stale (its job died on another host, or froze)."""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


class RunLock:
    """Hold ``run_dir/.lock`` for the life of a job (a context manager).

    Args:
        run_dir: the run folder (created if missing).
        stale_after_s: a heartbeat older than this frees the lock.

    Raises (on enter):
        ConfigError: another live job holds the folder.
    """

    def __init__(self, run_dir: Path, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._try_create():
                break
            holder = self._holder()
            reason = self._stale_reason(holder)
            if reason is None:
                raise ConfigError(
                    f"run folder {self.path.parent} is in use by another job (host {holder.get('host')}, pid "
                    f"{holder.get('pid')}, started {holder.get('started')}): wait for it, or use another run_id; a "
                    f"lock not renewed for {self.stale_after_s:.0f} s is taken over"
                )
            logger.warning("taking over the run folder lock %s: %s", self.path, reason)
            self.path.unlink(missing_ok=True)
        else:
            raise ConfigError(f"could not take the lock {self.path}: other jobs keep taking it; use another run_id")
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._holder() == self.owner:
            self.path.unlink(missing_ok=True)

    def _try_create(self) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as stream:
            json.dump(self.owner, stream)
        return True

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _stale_reason(self, holder: dict) -> Optional[str]:
        """Why the current lock may be taken over, or None when its job is alive."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it was just released"
        if not holder:
            return "it is unreadable" if age > self.heartbeat_s else None
        if holder.get("host") == self.owner["host"] and not _process_alive(int(holder.get("pid", -1))):
            return f"its process {holder.get('pid')} on this host is gone"
        if age > self.stale_after_s:
            return f"its heartbeat stopped {age:.0f} s ago (host {holder.get('host')}, pid {holder.get('pid')})"
        return None

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                return
