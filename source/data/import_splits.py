"""Import the official cross-validation splits of CLAM / HIPT into the ``data.fold_dir`` layout.

    python3 -m source.data.import_splits SPLITS_DIR DATASET_CSV OUT_DIR --label COLUMN

``SPLITS_DIR`` holds ``splits_<k>.csv`` (columns ``train``, ``val``, ``test`` listing slide or case ids, padded
with blanks) or ``splits_<k>_bool.csv`` (ids as the index, one True / False column per split). Ids match the
dataset csv's ``slide_id`` with or without a file extension (``.svs``, ...), or its ``case_id`` (then every slide of
the case). Each fold becomes ``OUT_DIR/fold_<k>/{train,tune,test}.csv`` (``val`` -> ``tune``) with the dataset's
columns, ``slide_id`` without extension (as extraction names feature files) and the label copied to ``label``.
Dataset rows with a blank label are left out. A report per fold (split ids absent from the dataset or without a
label there, labelled rows in no split) is printed and written to ``OUT_DIR/import_report.csv``. Exit code 2 on a
bad folder or csv.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from source.data.regions import SLIDE_SUFFIXES
from source.errors import UserError
from source.io import atomic_write_csv

SPLIT_FILE = re.compile(r"^splits_(\d+)(_bool)?\.csv$")
ROLES = {"train": "train", "val": "tune", "test": "test"}
"""CLAM's split columns and the names of this project's split files."""


class SplitImportError(UserError, ValueError):
    """The split folder or the dataset csv cannot be imported; the message names the file and the fix."""


def strip_extension(slide_id: str) -> str:
    """``TCGA-XX.svs`` -> ``TCGA-XX``: a known slide-file suffix is dropped, any other dot is kept."""
    path = Path(str(slide_id).strip())
    return path.stem if path.suffix.lower() in SLIDE_SUFFIXES else path.name


def find_split_files(splits_dir: Path) -> dict[int, Path]:
    """``fold -> file``: ``splits_<k>.csv``, or ``splits_<k>_bool.csv`` where only that one exists.

    Raises:
        SplitImportError: not a folder, or no split file in it.
    """
    if not splits_dir.is_dir():
        raise SplitImportError(f"splits folder '{splits_dir}' does not exist")
    files: dict[int, Path] = {}
    for path in sorted(splits_dir.iterdir()):
        match = SPLIT_FILE.match(path.name)
        if match and (int(match.group(1)) not in files or not match.group(2)):
            files[int(match.group(1))] = path
    if not files:
        raise SplitImportError(f"'{splits_dir}' has no splits_<k>.csv or splits_<k>_bool.csv files")
    return dict(sorted(files.items()))


def read_split_ids(path: Path) -> dict[str, list[str]]:
    """The ids of each role (``train`` / ``tune`` / ``test``) of one split file, in file order.

    Raises:
        SplitImportError: an unreadable file, or one without a ``train`` and a ``val`` column.
    """
    boolean = path.name.endswith("_bool.csv")
    try:
        frame = pd.read_csv(path, index_col=0 if boolean else None, dtype=str, keep_default_na=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SplitImportError(f"cannot read '{path}': {error}") from error
    missing = [column for column in ("train", "val") if column not in frame.columns]
    if missing:
        raise SplitImportError(f"{path}: missing column(s) {missing}; a CLAM split file has train, val, test")
    ids = {}
    for column, role in ROLES.items():
        if column not in frame.columns:
            continue
        if boolean:
            chosen = frame.index[frame[column].astype(str).str.strip().str.lower().isin({"true", "1"})]
            ids[role] = [str(value).strip() for value in chosen]
        else:
            ids[role] = [value.strip() for value in frame[column].dropna() if value.strip()]
    return ids


@dataclass
class FoldReport:
    """What one fold's import found."""

    fold: int
    rows: dict[str, int]
    absent_ids: int
    unassigned_rows: int
    matched_by: str


def read_dataset(csv: Path, label: str) -> tuple[pd.DataFrame, int]:
    """The labelled rows of the dataset csv (``slide_id`` without extension, ``label`` = the label column) and the
    number of rows left out for a blank label.

    Raises:
        SplitImportError: an unreadable csv, no ``slide_id`` or label column, duplicate slide ids.
    """
    try:
        frame = pd.read_csv(csv, dtype={"slide_id": str, "case_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SplitImportError(f"cannot read '{csv}': {error}") from error
    for column in ("slide_id", label):
        if column not in frame.columns:
            raise SplitImportError(f"{csv}: no column '{column}' (columns: {list(frame.columns)}); check --label")
    frame["slide_id"] = frame["slide_id"].map(strip_extension)
    duplicated = frame.slide_id[frame.slide_id.duplicated()].unique().tolist()
    if duplicated:
        raise SplitImportError(f"{csv}: slide_id(s) {duplicated[:5]} appear more than once (extensions dropped)")
    if "case_id" in frame.columns:
        frame["case_id"] = frame["case_id"].astype(str).str.strip()
    blank = frame[label].isna() | (frame[label].astype(str).str.strip() == "")
    frame = frame[~blank].reset_index(drop=True)
    frame["label"] = frame[label]
    return frame, int(blank.sum())


def assign_rows(dataset: pd.DataFrame, ids: dict[str, list[str]]) -> tuple[dict[str, pd.DataFrame], int, str]:
    """The dataset rows of each role, the number of split ids found in no row, and what the ids matched."""
    all_ids = {strip_extension(value) for values in ids.values() for value in values}
    by_slide = len(all_ids & set(dataset.slide_id))
    by_case = len(all_ids & set(dataset.case_id)) if "case_id" in dataset.columns else -1
    column = "case_id" if by_case > by_slide else "slide_id"
    known = set(dataset[column])
    tables = {}
    for role, values in ids.items():
        wanted = [strip_extension(value) for value in values]
        tables[role] = dataset[dataset[column].isin(set(wanted))]
    absent = len(all_ids - known)
    return tables, absent, column


def import_splits(
    splits_dir: str | Path, dataset_csv: str | Path, out_dir: str | Path, label: str = "label"
) -> list[FoldReport]:
    """Write ``out_dir/fold_<k>/{train,tune[,test]}.csv`` for every split file; returns one report per fold.

    Raises:
        SplitImportError: a bad folder or csv, or a fold whose train or tune split matches no labelled row.
    """
    dataset, _ = read_dataset(Path(dataset_csv), label)
    reports = []
    for fold, path in find_split_files(Path(splits_dir)).items():
        tables, absent, column = assign_rows(dataset, read_split_ids(path))
        for role in ("train", "tune"):
            if tables.get(role) is None or tables[role].empty:
                raise SplitImportError(
                    f"{path}: no {role} id matches a labelled slide_id or case_id of '{dataset_csv}' (ids are matched "
                    "with or without a file extension); check that both list the same slides"
                )
        assigned = set().union(*(set(table.slide_id) for table in tables.values()))
        folder = Path(out_dir) / f"fold_{fold}"
        for role, table in tables.items():
            if not table.empty:
                atomic_write_csv(table, folder / f"{role}.csv")
        counts = {role: len(table) for role, table in tables.items()}
        reports.append(FoldReport(fold, counts, absent, int((~dataset.slide_id.isin(assigned)).sum()), column))
    return reports


def report_table(reports: Sequence[FoldReport]) -> pd.DataFrame:
    """One row per fold: rows per split, split ids absent from the dataset, labelled rows in no split."""
    return pd.DataFrame(
        [
            {
                "fold": report.fold,
                **{f"{role}_rows": report.rows.get(role, 0) for role in ("train", "tune", "test")},
                "split_ids_absent_from_dataset": report.absent_ids,
                "dataset_rows_in_no_split": report.unassigned_rows,
                "matched_by": report.matched_by,
            }
            for report in reports
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m source.data.import_splits", description=__doc__.split("\n\n")[0])
    parser.add_argument("splits_dir", help="folder of splits_<k>.csv (or splits_<k>_bool.csv) of CLAM / HIPT")
    parser.add_argument("dataset_csv", help="csv with slide_id (optional case_id) and the label column")
    parser.add_argument("out_dir", help="where fold_<k>/{train,tune,test}.csv go (the data.fold_dir of multi.yaml)")
    parser.add_argument("--label", default="label", help="label column of the dataset csv (copied to 'label')")
    args = parser.parse_args(argv)
    try:
        dataset, unlabelled = read_dataset(Path(args.dataset_csv), args.label)
        reports = import_splits(args.splits_dir, args.dataset_csv, args.out_dir, args.label)
    except SplitImportError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 2
    table = report_table(reports)
    atomic_write_csv(table, Path(args.out_dir) / "import_report.csv")
    print(f"{len(dataset)} labelled slides in {args.dataset_csv} ({unlabelled} rows without {args.label} left out)")
    print(table.to_string(index=False))
    print(f"{len(reports)} folds in {Path(args.out_dir).absolute()} (data.fold_dir={args.out_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
