"""The runs of a comparison checked against each other (one task, the same cases and truth, every class present)
and aligned row by row (:class:`AlignedPredictions`), with the notes the report gives on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from source.study.runs import (
    ComparisonInputError,
    TrainingRun,
    listed,
    read_run,
)
from source.study.survival_curves import SINGLE, SurvivalCurves, survival_curves


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
        survival, brier_notes = survival_curves([run.config for run in runs], cases, curves)
        notes += brier_notes
    time_label = str(first.config.get("label_name", "time"))
    data = AlignedPredictions(first.kind, cases, scores, first.class_names, time_label, ratio, survival)
    return ComparisonInputs(data, dict(folders), {run.name: run.config for run in runs}, notes)
