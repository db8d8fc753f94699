"""The one family of user-facing errors: every mistake a user can fix derives from :class:`UserError`.

An error carries the exit code its job ends with (:func:`source.entry.exit_with` maps by type, never by
name): 2 for a bad config, file or checkpoint (nothing useful was computed), 1 for a run that started and
failed on its data (e.g. a diverging loss). The message names the key, file or row and how to fix it.

This module imports nothing of the project and nothing heavy: configs, data readers and engines all
raise these types, and the command line checks run before torch loads.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's config, files or data; the message says what and how to fix it.

    Attributes:
        exit_code: the process exit code of a job that ends with this error.
    """

    exit_code: int = 2


class ConfigError(UserError, ValueError):
    """A user configuration is invalid; the message names the key and the fix."""


class RunFailedError(UserError, RuntimeError):
    """A run started but cannot go on with its data (exit code 1: unlike a config error, work was done)."""

    exit_code = 1


class TrainingDivergedError(RunFailedError):
    """A training loss stopped being finite; the message names the epoch and the item."""
