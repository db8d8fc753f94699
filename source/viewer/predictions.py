"""A training or inference run's ``<split>_predictions.csv``, as the columns of the viewer's index: the label, the
prediction and the probability of the predicted class (classification) or the risk (survival)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from source.config.core import read_saved_config
from source.data.labels import read_table

DEFAULT_LABELS = ("label", "target", "survival_months")
"""The tasks' default ``label_name`` columns, tried when the csv's run folder does not say."""


@dataclass(frozen=True)
class Prediction:
    """One slide's row of the index (blank strings where the task has no such column)."""

    label: str = ""
    prediction: str = ""
    score_name: str = ""
    score: Optional[float] = None


def _label_column(path: Path, columns: pd.Index) -> Optional[str]:
    config = path.parent / "config.yaml"
    named = read_saved_config(config).get("label_name") if config.is_file() else None
    candidates = ([named] if named else []) + list(DEFAULT_LABELS)
    return next((column for column in candidates if column in columns), None)


def _text(value: object) -> str:
    return "" if pd.isna(value) else str(value)


def _row(row: pd.Series, label: Optional[str]) -> Prediction:
    values = {"label": _text(row[label]) if label else ""}
    if "pred_label" in row.index:  # classification: prob_<class name> of the predicted class
        values |= {"prediction": _text(row.pred_label), "score_name": "probability"}
        values["score"] = float(row.get(f"prob_{row.pred_label}", float("nan")))
    elif "risk" in row.index:
        values |= {"score_name": "risk", "score": float(row.risk)}
    elif "prediction" in row.index:
        values["prediction"] = f"{float(row.prediction):.4g}"
    return Prediction(**values)


def read_predictions(path: str | Path) -> dict[str, Prediction]:
    """Each slide's label, prediction and probability or risk.

    Raises:
        LabelTableError: the csv is missing, has no ``slide_id`` column, or has duplicate slide ids.
    """
    path = Path(path)
    table = read_table(path, ["slide_id"])
    label = _label_column(path, table.columns)
    return {row.slide_id: _row(row, label) for _, row in table.iterrows()}
