"""Classification labels: raw labels to class indices (``label_mapping``), and the splits of a classification run."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from source.data.features import BagDataset, FeatureBank, Split
from source.data.labels import LabelTableError, check_no_overlap, read_table, row_numbers
from source.data.splits import drop_missing_features, stratified_share, subsample

TARGET = "label_index"
"""Column of a classification table (and its prediction table) holding the true class index."""


def encode_classes(
    frame: pd.DataFrame, label_name: str, num_classes: int, label_mapping: Optional[Mapping[str, int]], path: str | Path
) -> np.ndarray:
    """Class index of every row: ``label_mapping[raw]`` if a mapping is given, else the label itself (0..C-1).

    Raises:
        LabelTableError: a label missing from the mapping, not an integer, or out of range.
    """
    raw = frame[label_name]
    if raw.isna().any():
        raise LabelTableError(f"{path}: empty {label_name} in row(s) {row_numbers(frame, raw.isna())}")
    if label_mapping:
        mapping = {_label_text(key): int(value) for key, value in label_mapping.items()}
        as_text = raw.map(_label_text)
        unknown = ~as_text.isin(list(mapping))
        if unknown.any():
            values = sorted(set(as_text[unknown]))
            raise LabelTableError(
                f"{path}: {label_name} value(s) {values} in row(s) {row_numbers(frame, unknown)} are not in "
                f"label_mapping {sorted(mapping)}; add them to label_mapping or drop those rows"
            )
        classes = as_text.map(mapping).to_numpy(dtype=np.int64)
    else:
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna() | (numeric % 1 != 0)
        if bad.any():
            raise LabelTableError(
                f"{path}: {label_name} in row(s) {row_numbers(frame, bad)} is not a class index; give integer labels "
                "0..num_classes-1 or a label_mapping"
            )
        classes = numeric.to_numpy(dtype=np.int64)
    outside = (classes < 0) | (classes >= num_classes)
    if outside.any():
        raise LabelTableError(
            f"{path}: class index outside 0..{num_classes - 1} (num_classes) in row(s) {row_numbers(frame, outside)}"
        )
    return classes


def _label_text(value: object) -> str:
    """``1.0`` -> ``'1'`` so numeric labels read by pandas match mapping keys written as integers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def classification_splits(
    paths: Mapping[str, str],
    bank: FeatureBank,
    label_name: str,
    num_classes: int,
    label_mapping: Optional[Mapping[str, int]] = None,
    pct: Optional[float] = None,
    seed: int = 0,
    allow_overlap: bool = False,
    train_fraction: Optional[float] = None,
) -> dict[str, Split]:
    """Splits for classification; ``paths`` maps split names (``train`` first) to csvs. ``pct`` keeps a random
    share of the training split, ``train_fraction`` a label-stratified one.

    Raises:
        LabelTableError: bad tables, labels, a training split with a single class, or slides / patients
            shared by train, tune and test (unless ``allow_overlap``).
    """
    tables = {}
    for name, path in paths.items():
        frame = read_table(path, ["slide_id", label_name])
        frame[TARGET] = encode_classes(frame, label_name, num_classes, label_mapping, path)
        tables[name] = frame
    check_no_overlap(tables, paths, allow_overlap)
    tables = drop_missing_features(tables, paths, bank)
    if "train" in tables:
        tables["train"] = subsample(tables["train"], pct, seed)
        tables["train"] = stratified_share(tables["train"], train_fraction, seed, tables["train"][TARGET])
        classes = np.unique(tables["train"][TARGET])
        if len(classes) < 2:
            raise LabelTableError(
                f"{paths['train']}: the training split has a single class ({classes.tolist()}); it needs at least two"
            )
    if "tune" in tables and "train" in tables and tables["tune"][TARGET].nunique() < 2:
        raise LabelTableError(
            f"{paths['tune']}: the tune split has a single class ({tables['tune'][TARGET].iloc[0]}): no AUC, no "
            "best.pt. Give a tune split with every class (python3 -m source.data.make_folds ... --stratify label)"
        )
    splits = {}
    for name, frame in tables.items():
        counts = frame[TARGET].value_counts()
        weights = (1.0 / frame[TARGET].map(counts)).to_numpy()
        dataset = BagDataset([[s] for s in frame.slide_id], {"label": frame[TARGET].to_numpy()}, bank, "slide")
        splits[name] = Split(name, dataset, frame, weights)
    return splits
