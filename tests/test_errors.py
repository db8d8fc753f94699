"""One user-error family: every user-facing error derives from UserError, and exit codes follow the type."""

from __future__ import annotations

import logging

import pytest

from source.data.features import FeatureFileError
from source.data.labels import LabelTableError
from source.data.make_folds import FoldError
from source.data.regions import BadInputError
from source.entry import exit_with
from source.errors import ConfigError, RunFailedError, TrainingDivergedError, UserError
from source.io import UnsafePathError
from source.models.checkpoints import CheckpointError
from source.pretraining.data import PretrainingDataError

USER_ERRORS = [
    ConfigError,
    CheckpointError,
    LabelTableError,
    FeatureFileError,
    PretrainingDataError,
    BadInputError,
    FoldError,
    UnsafePathError,
    TrainingDivergedError,
]


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda error: error.__name__)
def test_every_user_facing_error_is_a_user_error(error):
    assert issubclass(error, UserError)


def test_value_errors_stay_value_errors():
    """Code that catches ValueError around a check (e.g. a batch job recording one bad slide) still does."""
    for error in (ConfigError, LabelTableError, FeatureFileError, PretrainingDataError, BadInputError, UnsafePathError):
        assert issubclass(error, ValueError)


def exit_code_of(job) -> int:
    with pytest.raises(SystemExit) as stopped:
        exit_with(job)
    return stopped.value.code


def raising(error: Exception):
    def job():
        raise error

    return job


def test_exit_codes_follow_the_error_type(caplog):
    with caplog.at_level(logging.ERROR):
        assert exit_code_of(raising(ConfigError("bad key"))) == 2
        assert exit_code_of(raising(CheckpointError("bad file"))) == 2
        assert exit_code_of(raising(TrainingDivergedError("loss is nan at epoch 3"))) == 1
    assert [record.getMessage() for record in caplog.records] == ["bad key", "bad file", "loss is nan at epoch 3"]

    class Custom(RunFailedError):
        exit_code = 3

    assert exit_code_of(raising(Custom("a subclass sets its own code"))) == 3
    assert exit_code_of(lambda: 0) == 0 and exit_code_of(lambda: 1) == 1


def test_a_programming_error_is_not_swallowed():
    """Only user errors become one log line: a bug keeps its traceback (even a RuntimeError of the same name)."""

    look_alike = type("TrainingDivergedError", (RuntimeError,), {})  # the old code matched this name as a string
    with pytest.raises(look_alike):
        exit_with(raising(look_alike("not a user error")))
    with pytest.raises(KeyError):
        exit_with(raising(KeyError("bug")))
