"""Regression labels: a continuous column checked row by row, standardised with the training split's mean and
standard deviation only, and the splits of a regression run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from source.data.features import BagDataset, FeatureBank, Split
from source.data.labels import LabelTableError, check_no_overlap, read_table, row_numbers
from source.data.splits import drop_missing_features, stratified_share, subsample

TARGET = "target"
"""Column of a regression table (and its prediction table) holding the true value, in the label's units."""


def check_values(frame: pd.DataFrame, label_name: str, path: str | Path) -> np.ndarray:
    """The label column as finite floats.

    Raises:
        LabelTableError: blank, non-numeric or non-finite values, naming the file and the rows.
    """
    raw = frame[label_name]
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    if blank.any():
        raise LabelTableError(f"{path}: blank {label_name} in row(s) {row_numbers(frame, blank)}; fill or drop them")
    values = pd.to_numeric(raw, errors="coerce")
    text = values.isna()
    if text.any():
        examples = sorted({str(v) for v in raw[text]})[:3]
        raise LabelTableError(
            f"{path}: {label_name} in row(s) {row_numbers(frame, text)} is not a number ({examples}); regression "
            "needs numeric labels"
        )
    infinite = ~np.isfinite(values.to_numpy(dtype=float))
    if infinite.any():
        raise LabelTableError(f"{path}: {label_name} in row(s) {row_numbers(frame, infinite)} is not finite (inf)")
    return values.to_numpy(dtype=float)


@dataclass(frozen=True)
class Scaling:
    """``standardised = (value - mean) / std``, from the training split."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: np.ndarray) -> "Scaling":
        """The mean and (population) standard deviation of ``values``; a constant column keeps std 1."""
        std = float(np.std(values))
        return cls(float(np.mean(values)), std if std > 0 else 1.0)


def regression_splits(
    paths: Mapping[str, str],
    bank: FeatureBank,
    label_name: str,
    pct: Optional[float] = None,
    seed: int = 0,
    scaling: Optional[Scaling] = None,
    allow_overlap: bool = False,
    train_fraction: Optional[float] = None,
) -> tuple[dict[str, Split], Scaling]:
    """Splits for regression; ``paths`` maps split names (``train`` first) to csvs.

    ``train_fraction`` keeps a seeded share of the training split, stratified by quartile of the label.
    The scaling comes from the training split (after ``pct`` / ``train_fraction``) unless ``scaling`` is given (a
    trained model's).
    Bags carry the standardised value as target ``value``; tables keep the raw one in :data:`TARGET`.

    Raises:
        LabelTableError: bad tables or labels, slides shared by splits (unless ``allow_overlap``), a training split
            whose labels are all equal.
    """
    tables = {}
    for name, path in paths.items():
        frame = read_table(path, ["slide_id", label_name])
        frame[TARGET] = check_values(frame, label_name, path)
        tables[name] = frame
    check_no_overlap(tables, paths, allow_overlap)
    tables = drop_missing_features(tables, paths, bank)
    if "train" in tables:
        tables["train"] = subsample(tables["train"], pct, seed)
        quartiles = pd.qcut(tables["train"][TARGET], 4, labels=False, duplicates="drop")
        tables["train"] = stratified_share(tables["train"], train_fraction, seed, quartiles)
        if scaling is None and tables["train"][TARGET].nunique() < 2:
            raise LabelTableError(f"{paths['train']}: every {label_name} of the training split is the same value")
    if scaling is None:
        if "train" not in tables:
            raise ValueError("regression scaling needs the training split or a trained model's scaling")
        scaling = Scaling.of(tables["train"][TARGET].to_numpy())
    splits = {}
    for name, frame in tables.items():
        standardised = (frame[TARGET].to_numpy() - scaling.mean) / scaling.std
        dataset = BagDataset([[s] for s in frame.slide_id], {"value": standardised.astype(np.float32)}, bank, "slide")
        splits[name] = Split(name, dataset, frame)
    return splits, scaling
