"""Training runs read back for a comparison: each run's saved config and ``<split>_predictions.csv`` (of each
``fold_<i>/`` of a multi-fold run), checked to be one task on the same cases with the same truth, and aligned row by
row (:class:`AlignedPredictions`).

Survival predictions are compared per patient, as training scores them: the mean risk of a patient's slides, and the
mean of their predicted survival probabilities over time (:class:`SurvivalCurves`) where the runs wrote them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import yaml

from source.errors import UserError

SINGLE = "single"
"""The fold name of every case of a single (one train/tune/test) run."""
SURVIVAL_PREFIX = "survival_at_"
"""The prefix of a survival prediction file's survival probability columns: ``survival_at_<t>`` is the probability of
surviving past time t, written as Python's ``repr`` of the float (``source.tasks.survival.SURVIVAL_PREFIX``)."""


@dataclass
class SurvivalCurves:
    """The models' predicted survival probabilities over time, and what the integrated Brier score weighs them with.

    Attributes:
        times: ``(T,)`` increasing: the evaluation times of every fold.
        probabilities: model -> ``(N, T)`` each case's (patient's mean) predicted probability of surviving past each
            time; NaN at the times its fold is not evaluated at.
        grids: fold -> ``(T,)`` bool, its evaluation times: the times every model predicts that lie strictly inside
            the fold's test follow-up; only folds with at least two.
        censoring: fold -> ``(time (M,), event (M,))`` of the patients whose censoring distribution weighs the fold:
            its training patients, with its test patients added where the test follow-up reaches the last training
            time (as training weighs the td-AUC).
    """

    times: np.ndarray
    probabilities: dict[str, np.ndarray]
    grids: dict[str, np.ndarray]
    censoring: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class AlignedPredictions:
    """Every model's predictions on the same cases: row i of each model's scores is case i of ``cases``.

    Attributes:
        kind: ``classification``, ``survival`` or ``regression``.
        cases: N rows: ``fold`` (the run's ``fold_<i>`` folder, or :data:`SINGLE`), ``case`` (the slide id; the
            patient id for survival) and the truth: ``truth`` (class index, or value) or ``time`` and ``event``
            (bool, True for an observed event).
        scores: model name -> ``(N, C)`` class probabilities, ``(N,)`` risks or ``(N,)`` predicted values.
        class_names: the C class names (classification).
        time_label: the name of the follow-up time (survival).
        test_train_ratio: test cases / training cases of a fold (mean over folds); None when unknown.
        curves: survival: the survival probabilities the integrated Brier score takes; None where it is left out.
    """

    kind: str
    cases: pd.DataFrame
    scores: dict[str, np.ndarray]
    class_names: tuple[str, ...] = ()
    time_label: str = "time"
    test_train_ratio: Optional[float] = None
    curves: Optional[SurvivalCurves] = None

    @property
    def models(self) -> list[str]:
        """The model names, in the order given."""
        return list(self.scores)

    @property
    def folds(self) -> np.ndarray:
        """``(N,)`` the fold of each case."""
        return self.cases["fold"].to_numpy()

    @property
    def fold_names(self) -> list[str]:
        """The folds, in order of appearance."""
        return list(dict.fromkeys(self.cases["fold"]))

    @property
    def binary(self) -> bool:
        """A classification of two classes (DeLong's test applies to its AUROC)."""
        return self.kind == "classification" and len(self.class_names) == 2


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


@dataclass
class ComparisonInputs:
    """What the comparison reads, checked and aligned.

    Attributes:
        data: the models' aligned predictions.
        folders: model -> run folder.
        configs: model -> saved config.
        notes: what the report must say about the inputs (a left-out metric, a skipped test).
    """

    data: AlignedPredictions
    folders: dict[str, Path]
    configs: dict[str, dict]
    notes: list[str]


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


def training_csv(config: dict, fold: str) -> Optional[Path]:
    """The training table of ``fold``: ``<data.fold_dir>/<fold>/train.csv``, or a single run's ``data.train_csv``;
    None when the config names none."""
    data = config.get("data") or {}
    if fold == SINGLE:
        return Path(str(data["train_csv"])) if data.get("train_csv") else None
    return Path(str(data["fold_dir"])) / fold / "train.csv" if data.get("fold_dir") else None


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


def training_outcomes(config: dict, fold: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(time (M,), event (M,))`` of the M training patients of ``fold`` (the first row of each ``case_id`` of its
    :func:`training_csv`, ``censorship`` 1 = censored); None when the file cannot be read or a value is not a finite
    time or a censorship of 0 or 1."""
    path, label = training_csv(config, fold), str(config.get("label_name"))
    if path is None or not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, usecols=["case_id", "censorship", label], dtype={"case_id": str})
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    patients = frame.drop_duplicates("case_id")
    time = pd.to_numeric(patients[label], errors="coerce").to_numpy(float)
    censorship = pd.to_numeric(patients.censorship, errors="coerce").to_numpy(float)
    if len(patients) == 0 or not np.isfinite(time).all() or not np.isin(censorship, (0, 1)).all():
        return None
    return time, censorship == 0


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


def check_same_task(runs: list[TrainingRun]) -> None:
    """One task, and for classification the same classes.

    Raises:
        ComparisonInputError: naming each run's task (or classes).
    """
    if len({run.kind for run in runs}) > 1:
        tasks = ", ".join(f"{run.name} is {run.kind}" for run in runs)
        raise ComparisonInputError(f"runs of different tasks cannot be compared: {tasks}")
    if len({run.class_names for run in runs}) > 1:
        classes = ", ".join(f"{run.name} has {list(run.class_names)}" for run in runs)
        raise ComparisonInputError(f"runs with different classes cannot be compared: {classes}")


def _keys(run: TrainingRun) -> list[str]:
    single = run.cases.fold.eq(SINGLE).all()
    return run.cases.case.tolist() if single else (run.cases.fold + "/" + run.cases.case).tolist()


def check_same_cases(runs: list[TrainingRun], split: str) -> None:
    """Every run has the same folds and, in each, the same cases as the first run.

    Raises:
        ComparisonInputError: one message naming each run that differs and the ids only it or only the first has.
    """
    first, problems = runs[0], []
    for run in runs[1:]:
        if run.cases.fold.unique().tolist() != first.cases.fold.unique().tolist():
            folds = ", ".join(f"{r.name}: {r.cases.fold.unique().tolist()}" for r in (first, run))
            problems.append(f"{first.name} and {run.name} have other folds ({folds})")
            continue
        mine, theirs = set(_keys(run)), set(_keys(first))
        only_first, only_run = sorted(theirs - mine), sorted(mine - theirs)
        parts = [
            f"{len(ids)} only in {who} ({listed(ids)})"
            for who, ids in ((first.name, only_first), (run.name, only_run))
            if ids
        ]
        if parts:
            problems.append(f"{first.name} and {run.name}: {'; '.join(parts)}")
    if problems:
        raise ComparisonInputError(
            f"the runs do not cover the same {first.case_word} of split '{split}', so their predictions cannot be "
            f"paired: {' | '.join(problems)}. Compare runs trained and tested on the same folds (data.fold_dir) or "
            "csvs"
        )


def align(
    runs: list[TrainingRun],
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, Optional[pd.DataFrame]]]:
    """The first run's cases, and every run's scores and survival curves (:attr:`TrainingRun.curves`) in that row
    order.

    Raises:
        ComparisonInputError: a case whose truth differs between runs (another label column, mapping or outcome).
    """
    first = runs[0]
    truth = [column for column in first.cases.columns if column not in ("fold", "case")]
    order = pd.MultiIndex.from_frame(first.cases[["fold", "case"]])
    scores, curves = {first.name: first.scores}, {first.name: first.curves}
    for run in runs[1:]:
        rows = pd.MultiIndex.from_frame(run.cases[["fold", "case"]]).get_indexer(order)
        differs = ~np.all(
            [np.isclose(run.cases[c].to_numpy(float)[rows], first.cases[c].to_numpy(float)) for c in truth], axis=0
        )
        if differs.any():
            ids = [_keys(first)[i] for i in np.flatnonzero(differs)]
            raise ComparisonInputError(
                f"runs {first.name} and {run.name} disagree on the truth ({', '.join(truth)}) of {len(ids)} "
                f"{first.case_word}: {listed(ids)}; were they trained on the same labels (label_name, label_mapping)?"
            )
        scores[run.name] = run.scores[rows]
        curves[run.name] = None if run.curves is None else run.curves.iloc[rows].reset_index(drop=True)
    return first.cases.reset_index(drop=True), scores, curves


def check_classes_present(cases: pd.DataFrame, class_names: tuple[str, ...], split: str) -> None:
    """Every class has a case in the split (AUROC and AUPRC are undefined otherwise).

    Raises:
        ComparisonInputError: naming the classes present and absent.
    """
    present = set(cases.truth.unique())
    absent = [name for index, name in enumerate(class_names) if index not in present]
    if absent:
        found = [class_names[index] for index in sorted(present)]
        only = "one class only" if len(present) == 1 else "not every class"
        raise ComparisonInputError(
            f"split '{split}' has {only}: its truth holds {found}, none of {absent}, so AUROC (one class against "
            "the rest) is undefined; compare on a split with cases of every class"
        )


def fold_test_train_ratio(runs: list[TrainingRun], given: Optional[float]) -> tuple[Optional[float], list[str]]:
    """The test / training cases of a fold for the corrected t-test: ``given``, else the mean over every run's folds
    whose ``train.csv`` could be read; and a note for the report when it is unknown."""
    folds = runs[0].cases.fold.unique()
    if len(folds) < 2:
        return None, []
    if given is not None:
        return given, []
    ratios = [(run.cases.fold == fold).sum() / size for run in runs for fold, size in run.train_sizes.items()]
    if not ratios:
        return None, [
            "No t-test over folds: the folds' train.csv (data.fold_dir of the runs' configs) could not be read, so "
            "the test / training ratio of the corrected t-test is unknown; set test_train_ratio to add it."
        ]
    return float(np.mean(ratios)), []


def fold_evaluation_times(curves: list[pd.DataFrame], test_time: np.ndarray) -> tuple[np.ndarray, Optional[str]]:
    """A fold's evaluation times of the integrated Brier score, and why the fold has none where fewer than two.

    Args:
        curves: each model's ``(n, U)`` survival probabilities of the fold's n cases (NaN at times it has no column
            for).
        test_time: ``(n,)`` the cases' follow-up times.

    Returns:
        The times every model predicts at that lie strictly inside ``(min, max)`` of ``test_time``, increasing; and
        None, or the reason in words when fewer than two.
    """
    defined = [frame.columns[frame.notna().all().to_numpy()].to_numpy(float) for frame in curves]
    common = functools.reduce(np.intersect1d, defined)
    low, high = float(test_time.min()), float(test_time.max())
    inside = common[(common > low) & (common < high)]
    if len(common) == 0:
        return inside, "its models predict at no common time (other bin edges: another nbins or training split)"
    if len(inside) < 2:
        return inside, (
            f"only {len(inside)} of its {len(common)} common times (bin edges every model predicts at) lie strictly "
            f"inside its test follow-up ({low:g}, {high:g}), 2 are needed"
        )
    return inside, None


def _fold_list(reasons: dict[str, list[str]]) -> str:
    """Reason -> folds as one clause per reason: ``fold_0, fold_2: <reason>; fold_1: <reason>``."""
    return "; ".join(f"{', '.join(folds)}: {reason}" for reason, folds in reasons.items())


def survival_curves(
    runs: list[TrainingRun], cases: pd.DataFrame, curves: dict[str, Optional[pd.DataFrame]]
) -> tuple[Optional[SurvivalCurves], list[str]]:
    """What the integrated Brier score takes, and the report's note on it: how it is computed, or why it is left out
    (a run without survival probabilities, no fold with training patients to read or two evaluation times).

    Args:
        runs: the compared runs (their configs name the folds' training tables).
        cases: the aligned cases (``fold``, ``time``, ``event``).
        curves: model -> its ``(N, U)`` survival probabilities row-aligned with ``cases``, None where it has none.
    """
    missing = [name for name, frame in curves.items() if frame is None]
    if missing:
        return None, [
            f"No integrated Brier score: the predictions of {', '.join(missing)} hold no {SURVIVAL_PREFIX}<time> "
            "columns (survival probabilities over time; runs trained before they were written lack them)."
        ]
    folds, time, event = cases.fold.to_numpy(), cases.time.to_numpy(float), cases.event.to_numpy(bool)
    grids, censoring, reasons, widened = {}, {}, {}, []
    for fold in dict.fromkeys(folds):
        rows = folds == fold
        reference = next((o for run in runs if (o := training_outcomes(run.config, fold)) is not None), None)
        fold_times, problem = fold_evaluation_times([frame[rows] for frame in curves.values()], time[rows])
        if reference is None:
            where = training_csv(runs[0].config, fold) or "data.fold_dir or data.train_csv, unset in the configs"
            problem = f"its training patients (censoring distribution) could not be read from {where}"
        if problem:
            reasons.setdefault(problem, []).append(fold)
            continue
        if time[rows].max() >= reference[0].max():
            reference = (np.r_[reference[0], time[rows]], np.r_[reference[1], event[rows]])
            widened.append(fold)
        grids[fold], censoring[fold] = fold_times, reference
    if not grids:
        return None, [f"No integrated Brier score: {_fold_list(reasons)}."]
    times = np.unique(np.concatenate(list(grids.values())))
    note = (
        "The integrated Brier score is scikit-survival's, per fold at the bin edges every model predicts at that lie "
        "strictly inside the fold's test follow-up, weighted by the censoring distribution of the fold's training "
        "patients, and averaged over folds."
    )
    if reasons:
        note += f" It leaves out {_fold_list(reasons)}."
    if widened:
        note += (
            f" In {', '.join(widened)} the test follow-up reaches the last training time, so the censoring "
            "distribution comes from the training and test patients (as training's td-AUC)."
        )
    probabilities = {name: frame.reindex(columns=times).to_numpy(float) for name, frame in curves.items()}
    masks = {fold: np.isin(times, fold_times) for fold, fold_times in grids.items()}
    return SurvivalCurves(times, probabilities, masks, censoring), [note]


def read_comparison(
    folders: dict[str, Path], split: str, config_file: str, given_ratio: Optional[float] = None
) -> ComparisonInputs:
    """Read, check and align the runs of ``folders`` (model -> run folder) on ``split``.

    Args:
        folders: at least two runs.
        split: the split whose predictions are compared.
        config_file: the name of the saved config in a run folder.
        given_ratio: the corrected t-test's test / training ratio; None = from the folds' train.csv.

    Raises:
        ComparisonInputError: fewer than two runs, runs of different tasks or classes, other cases or truth, a
            missing or malformed file, a classification split missing a class.
    """
    if len(folders) < 2:
        raise ComparisonInputError(f"give at least two runs to compare, got {len(folders)}: {list(folders)}")
    runs = [read_run(name, Path(folder), split, config_file) for name, folder in folders.items()]
    check_same_task(runs)
    check_same_cases(runs, split)
    cases, scores, curves = align(runs)
    first = runs[0]
    if first.kind == "classification":
        check_classes_present(cases, first.class_names, split)
    ratio, notes = fold_test_train_ratio(runs, given_ratio)
    survival = None
    if first.kind == "survival":
        notes.append(
            "The c-index is Harrell's, per fold (patients' mean risk), averaged over folds as training reports it."
        )
        survival, brier_notes = survival_curves(runs, cases, curves)
        notes += brier_notes
    time_label = str(first.config.get("label_name", "time"))
    data = AlignedPredictions(first.kind, cases, scores, first.class_names, time_label, ratio, survival)
    return ComparisonInputs(data, dict(folders), {run.name: run.config for run in runs}, notes)
