"""Label tables of slide-level training, whatever the task: reading, validation (errors name file, row and
column), overlap between splits and fold folders. Each task checks its own label columns
(:mod:`source.tasks`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from source.errors import UserError
from source.io import UnsafePathError, safe_join

logger = logging.getLogger(__name__)


class LabelTableError(UserError, ValueError):
    """A label csv or fold folder is unusable; the message names the file, the rows and the fix."""


def row_numbers(frame: pd.DataFrame, mask: Iterable[bool], limit: int = 5) -> str:
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
                raise LabelTableError(f"{path}: blank {column} in row(s) {row_numbers(frame, blank)}")
            frame[column] = frame[column].astype(str).str.strip()
    duplicated = frame.slide_id.duplicated(keep=False)
    if duplicated.any():
        raise LabelTableError(
            f"{path}: duplicate slide_id in row(s) {row_numbers(frame, duplicated)}; each slide may appear once"
        )
    for row, slide_id in frame.slide_id.items():
        try:
            safe_join(".", slide_id)
        except UnsafePathError as error:
            raise LabelTableError(f"{path}, row {int(row) + 2}: slide_id {error}") from error
    return frame.reset_index(drop=True)


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
