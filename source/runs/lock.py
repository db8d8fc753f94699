"""The run folder's ``.lock``: one job per run folder (exclusive jobs); a dead or silent holder is taken over."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from source.errors import ConfigError
from source.runs.claims import live_claims
from source.runs.owned import HEARTBEAT_S, STALE_AFTER_S, Heartbeat, OwnedFile, describe_holder, job_identity

LOCK_FILE = ".lock"


class RunLock:
    """Hold ``run_dir/.lock`` for the life of a job (a context manager).

    Args:
        run_dir: the run folder (created if missing).
        stale_after_s: a heartbeat older than this frees the lock.

    Raises (on enter):
        ConfigError: another live job holds the folder, or shared-run jobs are working in it.
    """

    def __init__(self, run_dir: Path, stale_after_s: float = STALE_AFTER_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.run_dir = Path(run_dir)
        self.file = OwnedFile(self.run_dir / LOCK_FILE, job_identity(), stale_after_s, heartbeat_s)
        self.path, self.owner = self.file.path, self.file.owner
        self._heartbeat: Optional[Heartbeat] = None

    def __enter__(self) -> "RunLock":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        holder = self.file.acquire()
        if holder is not None:
            raise ConfigError(
                f"run folder {self.run_dir} is in use by another job ({describe_holder(holder)}): wait for it, or use "
                f"another run_id; a lock not renewed for {self.file.stale_after_s:.0f} s is taken over"
            )
        claims = live_claims(self.run_dir, self.file.stale_after_s)
        if claims:
            self.file.release()
            slide, holder = claims[0]
            raise ConfigError(
                f"run folder {self.run_dir} is shared by running jobs (shared_run: true): {len(claims)} slide(s) are "
                f"being processed, e.g. '{slide}' by {describe_holder(holder)}. Join them with shared_run=true, or "
                "wait for them to end"
            )
        self._heartbeat = Heartbeat(self.file.heartbeat_s)
        self._heartbeat.files.add(self.file)
        return self

    def __exit__(self, *exc) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.file.release()
