"""One training run read back for a comparison: its saved config and ``<split>_predictions.csv`` (of each
``fold_<i>/`` of a multi-fold run), each file checked (:class:`TrainingRun`).

Survival predictions are read per patient, as training scores them: the mean risk of a patient's slides, and the
mean of their predicted survival probabilities over time where the run wrote them.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import yaml

from source.errors import UserError
from source.study.survival_curves import SINGLE, SURVIVAL_PREFIX, training_csv

CLASSIFICATION_TRUTH = "label_index"
"""The true class index of a classification prediction file (``source.tasks.classification_splits.TARGET``)."""
REGRESSION_TRUTH = "target"
"""The true value of a regression prediction file (``source.tasks.regression_splits.TARGET``)."""
FOLD_FOLDER = re.compile(r"^fold_(\d+)$")
SHOWN_IDS = 5
"""Ids named in a message before "and N more"."""


class ComparisonInputError(UserError, ValueError):
    """Runs that cannot be compared (another task, other cases, a missing or malformed file); the message names the
    runs, the files or the ids, and the fix."""


def predictions_file(split: str) -> str:
    """The file a training run writes a split's predictions to."""
    return f"{split}_predictions.csv"


def listed(ids: list[str]) -> str:
    """The first :data:`SHOWN_IDS` ids, then "and N more"."""
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(ids[:SHOWN_IDS]) + more


@dataclass
class TrainingRun:
    """One run's predictions of a split, one row per case.

    Attributes:
        name: the model's name in the comparison.
        folder: the run folder.
        config: its saved config (plain dicts and lists).
        kind: its task.
        cases: ``fold``, ``case`` and the truth columns (see :class:`AlignedPredictions`).
        scores: ``(N, C)`` probabilities, ``(N,)`` risks or ``(N,)`` predictions, row-aligned with ``cases``.
        class_names: classification: the class names of its ``prob_<name>`` columns.
        train_sizes: fold -> its training cases, where the fold's ``train.csv`` could be read.
        curves: survival: ``(N, U)`` survival probabilities at the U times of every fold's ``survival_at_<t>``
            columns (increasing; NaN at a time the case's fold has no column for), row-aligned with ``cases``; None
            when a fold's file has no such column.
    """

    name: str
    folder: Path
    config: dict
    kind: str
    cases: pd.DataFrame
    scores: np.ndarray
    class_names: tuple[str, ...] = ()
    train_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    curves: Optional[pd.DataFrame] = None

    @property
    def case_word(self) -> str:
        """What a case is: a patient (survival) or a slide."""
        return "patients" if self.kind == "survival" else "slides"


def read_config(name: str, folder: Path, config_file: str) -> dict:
    """The run's saved config.

    Raises:
        ComparisonInputError: no such file (not a training run folder), or not a YAML mapping.
    """
    path = folder / config_file
    if not path.is_file():
        raise ComparisonInputError(
            f"runs.{name}: {folder} has no {config_file}; give the run folder train/*.py wrote (output_dir/"
            "experiment_name/run_id), not one of its fold_<i>/ folders"
        )
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ComparisonInputError(f"runs.{name}: {path} is not readable YAML: {error}") from error
    if not isinstance(config, dict):
        raise ComparisonInputError(f"runs.{name}: {path} is not a saved training config")
    return config


def prediction_paths(name: str, folder: Path, split: str) -> dict[str, Path]:
    """fold -> its predictions file: each ``fold_<i>/`` in numeric order, or :data:`SINGLE` for a single run.

    Raises:
        ComparisonInputError: a missing predictions file, naming the run and the path expected.
    """
    folds = sorted(
        (int(match.group(1)), path.name)
        for path in folder.iterdir()
        if path.is_dir() and (match := FOLD_FOLDER.match(path.name))
    )
    paths = {fold: folder / fold / predictions_file(split) for _, fold in folds} or {
        SINGLE: folder / predictions_file(split)
    }
    for fold, path in paths.items():
        if not path.is_file():
            where = f"fold {fold}'s predictions" if folds else "a single run's predictions"
            others = sorted(p.name.removesuffix("_predictions.csv") for p in path.parent.glob("*_predictions.csv"))
            hint = f"; it has the splits {others}: set split to one of them" if others else ""
            raise ComparisonInputError(
                f"run {name}: {path} not found ({where} of split '{split}'; expected <run>/"
                f"{'fold_<i>/' if folds else ''}{predictions_file(split)}){hint}"
            )
    return paths


def prediction_kind(frame: pd.DataFrame, path: Path) -> str:
    """The task whose predictions ``frame`` holds, by the columns training writes: ``risk`` (survival),
    ``prediction`` (regression), ``prob_<class>`` columns and ``pred`` (classification).

    Raises:
        ComparisonInputError: none of them.
    """
    if "risk" in frame.columns:
        return "survival"
    if "prediction" in frame.columns:
        return "regression"
    if "pred" in frame.columns and any(column.startswith("prob_") for column in frame.columns):
        return "classification"
    raise ComparisonInputError(
        f"{path} holds no predictions of a classification (prob_<class>, pred), survival (risk) or regression "
        f"(prediction) run (columns: {list(frame.columns)})"
    )


def _require(frame: pd.DataFrame, columns: list[str], path: Path, kind: str) -> None:
    absent = [column for column in columns if column not in frame.columns]
    if absent:
        raise ComparisonInputError(
            f"{path} lacks the column(s) {absent} of {kind} predictions (columns: {list(frame.columns)}); give the "
            f"<split>_predictions.csv a {kind} run of train/*.py wrote"
        )


def probability_columns(frame: pd.DataFrame) -> list[str]:
    """The ``prob_<class name>`` columns in class order: the run of them just before ``pred`` (the table's own
    columns, ending with the truth, come before)."""
    columns = list(frame.columns)[: list(frame.columns).index("pred")]
    count = next((i for i, column in enumerate(reversed(columns)) if not column.startswith("prob_")), len(columns))
    return columns[len(columns) - count :]


def _check_numbers(frame: pd.DataFrame, columns: list[str], id_column: str, path: Path, run: str) -> None:
    """Every value of ``columns`` (truth and predictions) is a finite number.

    Raises:
        ComparisonInputError: naming the file and the ids of the rows that are not.
    """
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        ids = listed(frame[id_column][bad].tolist())
        raise ComparisonInputError(f"run {run}: {path} has a blank or non-finite {' / '.join(columns)} for {ids}")


def survival_columns(frame: pd.DataFrame, path: Path) -> dict[str, float]:
    """Column -> time of each ``survival_at_<t>`` column of ``frame``.

    Raises:
        ComparisonInputError: a column whose time does not read as a number.
    """
    times = {}
    for column in frame.columns:
        if column.startswith(SURVIVAL_PREFIX):
            try:
                times[column] = float(column.removeprefix(SURVIVAL_PREFIX))
            except ValueError:
                raise ComparisonInputError(
                    f"{path}: the column {column} is not {SURVIVAL_PREFIX}<time> (a survival probability at a time)"
                ) from None
    return times


@dataclass
class FoldPredictions:
    """One predictions file, one row per case: its task, cases (``case`` and truth columns), scores and class names
    as :class:`TrainingRun` holds them, and survival's ``(n, T)`` patients' mean survival probabilities (columns: the
    T increasing times of its ``survival_at_<t>`` columns; None without such columns)."""

    kind: str
    cases: pd.DataFrame
    scores: np.ndarray
    class_names: tuple[str, ...] = ()
    curves: Optional[pd.DataFrame] = None


def read_fold(run: str, config: dict, path: Path) -> FoldPredictions:
    """One predictions file.

    Raises:
        ComparisonInputError: an unreadable file, no task's predictions, missing columns or values, or a case listed
            twice.
    """
    try:
        frame = pd.read_csv(path, dtype={"slide_id": str, "case_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ComparisonInputError(f"run {run}: {path} is not a readable csv: {error}") from error
    kind = prediction_kind(frame, path)
    names: tuple[str, ...] = ()
    curves = None
    if kind == "classification":
        columns = probability_columns(frame)
        if len(columns) < 2:
            raise ComparisonInputError(f"{path}: expected a prob_<class> column per class just before 'pred'")
        _require(frame, ["slide_id", CLASSIFICATION_TRUTH], path, kind)
        _check_numbers(frame, [CLASSIFICATION_TRUTH, *columns], "slide_id", path, run)
        names = tuple(column.removeprefix("prob_") for column in columns)
        cases = pd.DataFrame({"case": frame.slide_id, "truth": frame[CLASSIFICATION_TRUTH].astype(int)})
        scores = frame[columns].to_numpy(float)
    elif kind == "survival":
        time = str(config.get("label_name"))
        _require(frame, ["case_id", "censorship", time], path, kind)
        times = survival_columns(frame, path)
        _check_numbers(frame, ["censorship", time, "risk", *times], "case_id", path, run)
        by_patient = frame.groupby("case_id", sort=False)
        patients = by_patient.agg(risk=("risk", "mean"), censorship=("censorship", "first"), time=(time, "first"))
        cases = pd.DataFrame(
            {"case": patients.index, "time": patients.time.to_numpy(float), "event": patients.censorship.eq(0)}
        ).reset_index(drop=True)
        scores = patients.risk.to_numpy(float)
        if times:
            curves = by_patient[list(times)].mean().rename(columns=times).sort_index(axis=1).reset_index(drop=True)
    else:
        _require(frame, ["slide_id", REGRESSION_TRUTH], path, kind)
        _check_numbers(frame, [REGRESSION_TRUTH, "prediction"], "slide_id", path, run)
        cases = pd.DataFrame({"case": frame.slide_id, "truth": frame[REGRESSION_TRUTH].astype(float)})
        scores = frame.prediction.to_numpy(float)
    twice = cases.case[cases.case.duplicated()].tolist()
    if twice:
        raise ComparisonInputError(f"run {run}: {path} lists {listed(twice)} more than once")
    return FoldPredictions(kind, cases, scores, names, curves)


def train_size(config: dict, kind: str, fold: str) -> Optional[int]:
    """The training cases of ``fold``: the distinct ids of its :func:`training_csv`, if it can be read."""
    path = training_csv(config, fold)
    if path is None or not path.is_file():
        return None
    column = "case_id" if kind == "survival" else "slide_id"
    try:
        ids = pd.read_csv(path, usecols=[column], dtype=str)[column]
    except (ValueError, OSError, pd.errors.ParserError):
        return None
    return int(ids.nunique())


def read_run(name: str, folder: Path, split: str, config_file: str) -> TrainingRun:
    """A run's config and predictions of ``split`` (every fold's, stacked in fold order).

    Raises:
        ComparisonInputError: not a run folder, a missing predictions file, malformed predictions.
    """
    config = read_config(name, folder, config_file)
    folds = {fold: read_fold(name, config, path) for fold, path in prediction_paths(name, folder, split).items()}
    kinds = {part.kind for part in folds.values()}
    if len(kinds) > 1:
        raise ComparisonInputError(f"run {name}: its folds hold predictions of different tasks {sorted(kinds)}")
    kind = kinds.pop()
    sizes = {fold: size for fold in folds if (size := train_size(config, kind, fold))}
    cases = pd.concat([part.cases.assign(fold=fold) for fold, part in folds.items()], ignore_index=True)
    cases = cases[["fold", *[c for c in cases.columns if c != "fold"]]]
    scores = np.concatenate([part.scores for part in folds.values()])
    curves = [part.curves for part in folds.values()]
    union = None if any(c is None for c in curves) else pd.concat(curves, ignore_index=True).sort_index(axis=1)
    class_names = list(folds.values())[-1].class_names
    return TrainingRun(name, folder, config, kind, cases, scores, class_names, sizes, union)
