"""Label tables of slide-level training: reading, validation (errors name file, row and column),
label mapping, survival time bins and fold folders."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from source.errors import UserError
from source.io import UnsafePathError, safe_join

logger = logging.getLogger(__name__)
CLASS_TARGET = "label_index"
"""Column of a classification table (and its prediction table) holding the true class index."""


class LabelTableError(UserError, ValueError):
    """A label csv or fold folder is unusable; the message names the file, the rows and the fix."""


def _rows(frame: pd.DataFrame, mask: Iterable[bool], limit: int = 5) -> str:
    """Spreadsheet row numbers (header = row 1) of the rows where ``mask`` is true."""
    index = [int(i) + 2 for i in frame.index[np.asarray(list(mask), dtype=bool)]]
    return ", ".join(map(str, index[:limit])) + (f" (and {len(index) - limit} more)" if len(index) > limit else "")


def read_table(path: str | Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a label csv and check its columns, slide ids and duplicates.

    Args:
        path: the csv.
        required: columns it must have.

    Returns:
        the table, index 0..N-1, ``slide_id`` (and ``case_id`` if present) as stripped strings.

    Raises:
        LabelTableError: missing file or column, empty table, blank / duplicate / unsafe slide ids.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelTableError(f"label csv '{path}' does not exist")
    frame = pd.read_csv(path, dtype={"slide_id": str, "case_id": str}, keep_default_na=True)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise LabelTableError(f"{path}: missing column(s) {missing}; the columns are {list(frame.columns)}")
    if frame.empty:
        raise LabelTableError(f"{path}: the table has no rows")
    for column in ("slide_id", "case_id"):
        if column in frame.columns:
            blank = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
            if blank.any():
                raise LabelTableError(f"{path}: blank {column} in row(s) {_rows(frame, blank)}")
            frame[column] = frame[column].astype(str).str.strip()
    duplicated = frame.slide_id.duplicated(keep=False)
    if duplicated.any():
        raise LabelTableError(
            f"{path}: duplicate slide_id in row(s) {_rows(frame, duplicated)}; each slide may appear once"
        )
    for row, slide_id in frame.slide_id.items():
        try:
            safe_join(".", slide_id)
        except UnsafePathError as error:
            raise LabelTableError(f"{path}, row {int(row) + 2}: slide_id {error}") from error
    return frame.reset_index(drop=True)


def encode_classes(
    frame: pd.DataFrame, label_name: str, num_classes: int, label_mapping: Optional[Mapping[str, int]], path: str | Path
) -> np.ndarray:
    """Class index of every row: ``label_mapping[raw]`` if a mapping is given, else the label itself (0..C-1).

    Raises:
        LabelTableError: a label missing from the mapping, not an integer, or out of range.
    """
    raw = frame[label_name]
    if raw.isna().any():
        raise LabelTableError(f"{path}: empty {label_name} in row(s) {_rows(frame, raw.isna())}")
    if label_mapping:
        mapping = {_label_text(key): int(value) for key, value in label_mapping.items()}
        as_text = raw.map(_label_text)
        unknown = ~as_text.isin(list(mapping))
        if unknown.any():
            values = sorted(set(as_text[unknown]))
            raise LabelTableError(
                f"{path}: {label_name} value(s) {values} in row(s) {_rows(frame, unknown)} are not in label_mapping "
                f"{sorted(mapping)}; add them to label_mapping or drop those rows"
            )
        classes = as_text.map(mapping).to_numpy(dtype=np.int64)
    else:
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna() | (numeric % 1 != 0)
        if bad.any():
            raise LabelTableError(
                f"{path}: {label_name} in row(s) {_rows(frame, bad)} is not a class index; give integer labels "
                "0..num_classes-1 or a label_mapping"
            )
        classes = numeric.to_numpy(dtype=np.int64)
    outside = (classes < 0) | (classes >= num_classes)
    if outside.any():
        raise LabelTableError(
            f"{path}: class index outside 0..{num_classes - 1} (num_classes) in row(s) {_rows(frame, outside)}"
        )
    return classes


def _label_text(value: object) -> str:
    """``1.0`` -> ``'1'`` so numeric labels read by pandas match mapping keys written as integers."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


SPLIT_NAMES = ("train", "tune", "test")
"""The splits of one training run, which must not share slides or patients."""


def check_no_overlap(tables: Mapping[str, pd.DataFrame], paths: Mapping[str, str | Path], allow: bool = False) -> None:
    """Refuse slides, or patients (``case_id`` where both tables have it), shared by two of train / tune / test.

    Raises:
        LabelTableError: naming both files and the first shared ids (unless ``allow``: then a warning).
    """
    names = [name for name in SPLIT_NAMES if name in tables]
    problems = []
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            for column in ("case_id", "slide_id"):
                if column not in tables[first].columns or column not in tables[second].columns:
                    continue
                shared = sorted(set(tables[first][column].astype(str)) & set(tables[second][column].astype(str)))
                if shared:
                    listed = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
                    problems.append(
                        f"{len(shared)} {column}(s) in both {paths[first]} ({first}) and {paths[second]} ({second}): "
                        f"{listed}"
                    )
                    break  # shared patients imply the slide overlap, if any: one line per pair
    if not problems:
        return
    message = "the splits overlap, so tune/test metrics would be optimistic: " + "; ".join(problems)
    if allow:
        logger.warning("%s (allowed by data.allow_overlap)", message)
        return
    raise LabelTableError(
        f"{message}. Make disjoint splits (python3 -m source.data.make_folds), or set data.allow_overlap=true"
    )


def check_survival_columns(frame: pd.DataFrame, time_column: str, path: str | Path) -> None:
    """Times must be numbers > 0, censorship 0 or 1 (1 = censored), one time and status per patient.

    Raises:
        LabelTableError: naming the rows.
    """
    times = pd.to_numeric(frame[time_column], errors="coerce")
    bad_time = times.isna() | (times <= 0)
    if bad_time.any():
        raise LabelTableError(f"{path}: {time_column} must be a number > 0; row(s) {_rows(frame, bad_time)} are not")
    censorship = pd.to_numeric(frame["censorship"], errors="coerce")
    bad_status = ~censorship.isin([0, 1])
    if bad_status.any():
        raise LabelTableError(
            f"{path}: censorship must be 0 (event) or 1 (censored); row(s) {_rows(frame, bad_status)} are not"
        )
    frame[time_column] = times.astype(float)
    frame["censorship"] = censorship.astype(int)
    per_patient = frame.groupby("case_id")[[time_column, "censorship"]].nunique()
    inconsistent = per_patient[(per_patient > 1).any(axis=1)].index.tolist()
    if inconsistent:
        raise LabelTableError(
            f"{path}: case_id(s) {inconsistent[:5]} have slides with different {time_column} or censorship"
        )


def survival_bin_edges(
    train: pd.DataFrame, time_column: str, nbins: int, all_splits: Sequence[pd.DataFrame]
) -> np.ndarray:
    """Bin edges of the discrete-time model from the **training split only**.

    The inner edges are the quantiles of the uncensored training patients' times; the outer edges are
    widened to cover every split's times.

    Returns:
        ``nbins + 1`` increasing edges.

    Raises:
        LabelTableError: too few distinct event times in the training split for ``nbins`` bins.
    """
    patients = train.drop_duplicates("case_id")
    events = patients.loc[patients.censorship == 0, time_column].to_numpy(dtype=float)
    if len(np.unique(events)) < nbins:
        raise LabelTableError(
            f"the training split has {len(np.unique(events))} distinct event times (uncensored patients), fewer than "
            f"nbins={nbins}; lower nbins"
        )
    edges = np.quantile(events, np.linspace(0, 1, nbins + 1))
    if len(np.unique(edges)) != len(edges):
        raise LabelTableError(
            f"training event times give repeated quantile edges {edges.tolist()} for nbins={nbins}; lower nbins"
        )
    every_time = np.concatenate([split[time_column].to_numpy(dtype=float) for split in all_splits])
    edges[0] = min(edges[0], every_time.min()) - 1e-6
    edges[-1] = max(edges[-1], every_time.max()) + 1e-6
    return edges


def assign_bins(times: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Bin index in ``0..nbins-1`` of each time (bins are ``[edge_i, edge_i+1)``, the last one closed)."""
    return np.clip(np.searchsorted(edges, np.asarray(times, dtype=float), side="right") - 1, 0, len(edges) - 2)


FOLD_NAME = re.compile(r"^fold_(\d+)$")


def discover_folds(fold_dir: str | Path) -> list[tuple[int, Path]]:
    """``fold_dir/fold_<i>/`` folders in numeric order; each needs ``train.csv`` and ``tune.csv``.

    Raises:
        LabelTableError: no fold folder, or a fold without train.csv / tune.csv.
    """
    fold_dir = Path(fold_dir)
    if not fold_dir.is_dir():
        raise LabelTableError(f"data.fold_dir '{fold_dir}' is not a folder")
    folds = sorted((int(m.group(1)), p) for p in fold_dir.iterdir() if p.is_dir() and (m := FOLD_NAME.match(p.name)))
    if not folds:
        raise LabelTableError(f"data.fold_dir '{fold_dir}' has no fold_<i>/ folders")
    for _, folder in folds:
        absent = [name for name in ("train.csv", "tune.csv") if not (folder / name).is_file()]
        if absent:
            raise LabelTableError(
                f"fold folder '{folder}' lacks {absent}; each fold needs train.csv and tune.csv (test.csv optional)"
            )
    return folds
