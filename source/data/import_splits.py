"""Import the official cross-validation splits of CLAM / HIPT into the ``data.fold_dir`` layout.

    python3 -m source.data.import_splits SPLITS_DIR DATASET_CSV OUT_DIR --label COLUMN

``SPLITS_DIR`` holds ``splits_<k>.csv`` (columns ``train``, ``val``, ``test`` listing slide or case ids, padded
with blanks) or ``splits_<k>_bool.csv`` (ids as the index, one True / False column per split). Ids match the
dataset csv's ``slide_id`` with or without a file extension (``.svs``, ...), or its ``case_id`` (then every slide of
the case). Each fold becomes ``OUT_DIR/fold_<k>/{train,tune,test}.csv`` (``val`` -> ``tune``) with the dataset's
columns, ``slide_id`` without extension (as extraction names feature files) and the label copied to ``label``.
Dataset rows with a blank label are left out. An id in two splits of a fold (``A1.svs`` in ``train``, ``A1`` in
``test``) is an error, since the fold would leak; ``--allow-overlap`` writes such folds anyway with a warning naming
fold, id and splits. A report per fold (split ids absent from the dataset or without a label there, named up to 20,
ids in more than one split, labelled rows in no split) is printed and written to ``OUT_DIR/import_report.csv``.
Nothing is written unless every fold imports. Exit code 2 on a bad folder or csv, or on an overlap.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from source.data.regions import SLIDE_SUFFIXES
from source.errors import UserError
from source.io import atomic_write_csv

logger = logging.getLogger(__name__)

SPLIT_FILE = re.compile(r"^splits_(\d+)(_bool)?\.csv$")
ROLES = {"train": "train", "val": "tune", "test": "test"}
"""CLAM's split columns and the names of this project's split files."""
COLUMNS = {role: column for column, role in ROLES.items()}
"""This project's split names back to CLAM's columns, to name a split as the splits file does."""
NAMED_IDS = 20
"""How many ids a message or the report names before it says ``and N more``."""


class SplitImportError(UserError, ValueError):
    """The split folder or the dataset csv cannot be imported; the message names the file and the fix."""


def strip_extension(slide_id: str) -> str:
    """``TCGA-XX.svs`` -> ``TCGA-XX``: a known slide-file suffix is dropped, any other dot is kept."""
    path = Path(str(slide_id).strip())
    return path.stem if path.suffix.lower() in SLIDE_SUFFIXES else path.name


def name_some(ids: Sequence[str], limit: int = NAMED_IDS) -> str:
    """``a, b, c`` for up to ``limit`` ids, then `` and N more``; empty for no ids."""
    named = ", ".join(ids[:limit])
    return f"{named} and {len(ids) - limit} more" if len(ids) > limit else named


def join_words(words: Sequence[str]) -> str:
    """``train``, ``train and test``, ``train, val and test``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


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


def find_overlaps(ids: dict[str, list[str]]) -> dict[str, list[tuple[str, str]]]:
    """The ids (without extension) listed in more than one split, in file order, each with its ``(column, id as
    written)`` per split: ``{"A1": [("train", "A1.svs"), ("test", "A1")]}``."""
    places: dict[str, dict[str, str]] = {}
    for role, values in ids.items():
        for value in values:
            places.setdefault(strip_extension(value), {}).setdefault(COLUMNS[role], value)
    return {key: list(found.items()) for key, found in places.items() if len(found) > 1}


def overlap_error(fold: int, path: Path, overlaps: dict[str, list[tuple[str, str]]]) -> SplitImportError:
    """The error for a fold whose splits share ids: the first id with its splits, then all shared ids, and the fix."""
    first, places = next(iter(overlaps.items()))
    spelled = ", ".join(f"'{written}' in {column}" for column, written in places)
    shared = (
        f"; {len(overlaps)} ids are in more than one split: {name_some(list(overlaps))}" if len(overlaps) > 1 else ""
    )
    return SplitImportError(
        f"fold {fold} ({path}): id '{first}' is in the {join_words([column for column, _ in places])} splits "
        f"({spelled}; ids are compared without a file extension){shared}. A slide in two splits of a fold leaks "
        "into its evaluation: fix the splits file so each id is in one split, or pass --allow-overlap "
        "(allow_overlap=True) to write the folds as they are, with a warning"
    )


def overlap_warning(fold: int, path: Path, overlaps: dict[str, list[tuple[str, str]]]) -> str:
    """The warning for a fold written with shared ids (``--allow-overlap``): fold, ids and their splits."""
    named = [f"{key} ({', '.join(column for column, _ in places)})" for key, places in overlaps.items()]
    return (
        f"fold {fold} ({path}): {len(overlaps)} id(s) in more than one split, written to each (--allow-overlap): "
        f"{name_some(named)}"
    )


@dataclass
class FoldReport:
    """What one fold's import found.

    Attributes:
        absent_ids: split ids (without extension, file order) with no labelled row in the dataset.
        overlap_ids: split ids (without extension, file order) listed in more than one split of the fold.
    """

    fold: int
    rows: dict[str, int]
    absent_ids: list[str]
    unassigned_rows: int
    matched_by: str
    overlap_ids: list[str] = field(default_factory=list)


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


def assign_rows(dataset: pd.DataFrame, ids: dict[str, list[str]]) -> tuple[dict[str, pd.DataFrame], list[str], str]:
    """The dataset rows of each role, the split ids (without extension, file order) found in no row, and what the
    ids matched."""
    all_ids = list(dict.fromkeys(strip_extension(value) for values in ids.values() for value in values))
    by_slide = len(set(all_ids) & set(dataset.slide_id))
    by_case = len(set(all_ids) & set(dataset.case_id)) if "case_id" in dataset.columns else -1
    column = "case_id" if by_case > by_slide else "slide_id"
    known = set(dataset[column])
    tables = {}
    for role, values in ids.items():
        wanted = [strip_extension(value) for value in values]
        tables[role] = dataset[dataset[column].isin(set(wanted))]
    absent = [value for value in all_ids if value not in known]
    return tables, absent, column


def plan_fold(
    fold: int, path: Path, dataset: pd.DataFrame, dataset_csv: str | Path, allow_overlap: bool
) -> tuple[dict[str, pd.DataFrame], FoldReport]:
    """The tables of one fold and its report, before anything is written.

    Raises:
        SplitImportError: an id in two splits (unless ``allow_overlap``; then a warning is logged), or a train or
            tune split that matches no labelled row.
    """
    ids = read_split_ids(path)
    overlaps = find_overlaps(ids)
    if overlaps and not allow_overlap:
        raise overlap_error(fold, path, overlaps)
    if overlaps:
        logger.warning(overlap_warning(fold, path, overlaps))
    tables, absent, column = assign_rows(dataset, ids)
    for role in ("train", "tune"):
        if tables.get(role) is None or tables[role].empty:
            raise SplitImportError(
                f"{path}: no {role} id matches a labelled slide_id or case_id of '{dataset_csv}' (ids are matched "
                "with or without a file extension); check that both list the same slides"
            )
    assigned = set().union(*(set(table.slide_id) for table in tables.values()))
    counts = {role: len(table) for role, table in tables.items()}
    unassigned = int((~dataset.slide_id.isin(assigned)).sum())
    return tables, FoldReport(fold, counts, absent, unassigned, column, list(overlaps))


def import_splits(
    splits_dir: str | Path,
    dataset_csv: str | Path,
    out_dir: str | Path,
    label: str = "label",
    allow_overlap: bool = False,
) -> list[FoldReport]:
    """Write ``out_dir/fold_<k>/{train,tune[,test]}.csv`` for every split file; returns one report per fold.

    Every fold is checked before any is written. With ``allow_overlap`` an id in two splits of a fold goes to both,
    with a warning naming fold, id and splits.

    Raises:
        SplitImportError: a bad folder or csv, an id in two splits of a fold (without ``allow_overlap``), or a fold
            whose train or tune split matches no labelled row.
    """
    dataset, _ = read_dataset(Path(dataset_csv), label)
    planned = [
        plan_fold(fold, path, dataset, dataset_csv, allow_overlap)
        for fold, path in find_split_files(Path(splits_dir)).items()
    ]
    for tables, report in planned:
        folder = Path(out_dir) / f"fold_{report.fold}"
        for role, table in tables.items():
            if not table.empty:
                atomic_write_csv(table, folder / f"{role}.csv")
    return [report for _, report in planned]


def report_table(reports: Sequence[FoldReport]) -> pd.DataFrame:
    """One row per fold: rows per split, split ids absent from the dataset (count and the first 20 named), ids in
    more than one split, labelled rows in no split."""
    return pd.DataFrame(
        [
            {
                "fold": report.fold,
                **{f"{role}_rows": report.rows.get(role, 0) for role in ("train", "tune", "test")},
                "split_ids_absent_from_dataset": len(report.absent_ids),
                "absent_split_ids": name_some(report.absent_ids),
                "split_ids_in_several_splits": len(report.overlap_ids),
                "dataset_rows_in_no_split": report.unassigned_rows,
                "matched_by": report.matched_by,
            }
            for report in reports
        ]
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: import the folds, write and print the report; 0 on success, 2 on a user error."""
    parser = argparse.ArgumentParser(prog="python3 -m source.data.import_splits", description=__doc__.split("\n\n")[0])
    parser.add_argument("splits_dir", help="folder of splits_<k>.csv (or splits_<k>_bool.csv) of CLAM / HIPT")
    parser.add_argument("dataset_csv", help="csv with slide_id (optional case_id) and the label column")
    parser.add_argument("out_dir", help="where fold_<k>/{train,tune,test}.csv go (the data.fold_dir of multi.yaml)")
    parser.add_argument("--label", default="label", help="label column of the dataset csv (copied to 'label')")
    parser.add_argument(
        "--allow-overlap",
        action="store_true",
        help="write folds whose splits share an id (a leak) with a warning, instead of stopping with an error",
    )
    args = parser.parse_args(argv)
    try:
        dataset, unlabelled = read_dataset(Path(args.dataset_csv), args.label)
        reports = import_splits(args.splits_dir, args.dataset_csv, args.out_dir, args.label, args.allow_overlap)
    except SplitImportError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 2
    table = report_table(reports)
    atomic_write_csv(table, Path(args.out_dir) / "import_report.csv")
    print(f"{len(dataset)} labelled slides in {args.dataset_csv} ({unlabelled} rows without {args.label} left out)")
    print(table.drop(columns="absent_split_ids").to_string(index=False))
    for report in reports:
        if report.absent_ids:
            print(
                f"fold {report.fold}: {len(report.absent_ids)} split ids absent from the dataset or without a label "
                f"there: {name_some(report.absent_ids)}"
            )
    print(f"{len(reports)} folds in {Path(args.out_dir).absolute()} (data.fold_dir={args.out_dir})")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    sys.exit(main())
