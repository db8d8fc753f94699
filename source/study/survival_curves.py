"""What the integrated Brier score of a survival comparison takes: the models' predicted survival probabilities over
time (patients' means), each fold's evaluation times inside its test follow-up, and the censoring distribution of the
fold's training patients (:class:`SurvivalCurves`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

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


def training_csv(config: dict, fold: str) -> Optional[Path]:
    """The training table of ``fold``: ``<data.fold_dir>/<fold>/train.csv``, or a single run's ``data.train_csv``;
    None when the config names none."""
    data = config.get("data") or {}
    if fold == SINGLE:
        return Path(str(data["train_csv"])) if data.get("train_csv") else None
    return Path(str(data["fold_dir"])) / fold / "train.csv" if data.get("fold_dir") else None


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
    configs: list[dict], cases: pd.DataFrame, curves: dict[str, Optional[pd.DataFrame]]
) -> tuple[Optional[SurvivalCurves], list[str]]:
    """What the integrated Brier score takes, and the report's note on it: how it is computed, or why it is left out
    (a run without survival probabilities, no fold with training patients to read or two evaluation times).

    Args:
        configs: the compared runs' saved configs (they name the folds' training tables).
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
        reference = next((o for config in configs if (o := training_outcomes(config, fold)) is not None), None)
        fold_times, problem = fold_evaluation_times([frame[rows] for frame in curves.values()], time[rows])
        if reference is None:
            where = training_csv(configs[0], fold) or "data.fold_dir or data.train_csv, unset in the configs"
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
