"""Ending a job on a signal: SIGTERM (Slurm's preemption and time-limit notice, torchrun stopping its workers) becomes
an ordinary exit, so that claims and locks are released and the log says what happened."""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator, Optional


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Inside the block, SIGTERM raises ``SystemExit(128 + 15)`` (``finally`` blocks run: files held are released);
    the previous handler is back afterwards. Outside the main thread nothing changes."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def signal_number(stop: BaseException) -> Optional[int]:
    """The signal that ended the job: SIGINT for Ctrl-C (``KeyboardInterrupt``), ``n`` for ``SystemExit(128 + n)`` of
    :func:`exit_on_sigterm`; None for an ordinary exit."""
    if isinstance(stop, KeyboardInterrupt):
        return int(signal.SIGINT)
    code = getattr(stop, "code", None)
    return code - 128 if isinstance(code, int) and 128 < code < 128 + signal.NSIG else None


def describe_signal(number: int) -> str:
    """``15 (SIGTERM)``."""
    try:
        return f"{number} ({signal.Signals(number).name})"
    except ValueError:
        return str(number)
