"""Logging: one line per event, rank 0 on the console, every rank in the run folder's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

FORMAT = "%(asctime)s %(levelname)s %(message)s"


class TqdmAwareHandler(logging.StreamHandler):
    """A console handler that writes through ``tqdm.write``: log lines go above a progress bar, never into it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # a broken stream must not break the job
            self.handleError(record)


def setup_logging(rank: int = 0, level: int = logging.INFO) -> None:
    """Console logging: rank 0 at ``level``; other ranks only warnings, prefixed with their rank."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hipt_console", False):
            root.removeHandler(handler)
    handler = TqdmAwareHandler(sys.stderr)
    handler._hipt_console = True  # type: ignore[attr-defined]
    prefix = "" if rank == 0 else f"[rank {rank}] "
    handler.setFormatter(logging.Formatter(f"{prefix}{FORMAT}", datefmt="%H:%M:%S"))
    handler.setLevel(level if rank == 0 else logging.WARNING)
    root.addHandler(handler)
    root.setLevel(level)


@contextlib.contextmanager
def file_log(path: Path, rank: int = 0) -> Iterator[Path]:
    """Also append log lines to ``path`` (``log.txt`` on rank 0, ``log.rank<k>.txt`` on the others) inside the block."""
    if rank:
        path = path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()


def failure_reason(message: str) -> str:
    """A failure message with its specifics (quoted names and paths, numbers) blanked, so that the same kind of
    failure on many slides reads as one reason."""
    import re

    return re.sub(r"\d+(\.\d+)?", "#", re.sub(r"'[^']*'", "'…'", message))


def log_failures(log: logging.Logger, failures: list[tuple[str, str]], table: Path | str, shown: int = 5) -> None:
    """One ERROR line per kind of failure, with the count and the first ids (every reason is in ``table``).

    Args:
        failures: ``(id, message)`` of each failed item.
    """
    groups: dict[str, list[tuple[str, str]]] = {}
    for item, message in failures:
        groups.setdefault(failure_reason(message), []).append((item, message))
    for members in sorted(groups.values(), key=len, reverse=True):
        ids = ", ".join(item for item, _ in members[:shown])
        more = f" and {len(members) - shown} more" if len(members) > shown else ""
        log.error("%d failed (%s%s): %s [each one's reason: %s]", len(members), ids, more, members[0][1], table)
