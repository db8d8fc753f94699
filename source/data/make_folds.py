"""Make patient-level, stratified cross-validation folds in the ``data.fold_dir`` layout from one labelled csv.

    python3 -m source.data.make_folds labels.csv splits/ --folds 5 --stratify label
    python3 -m source.data.make_folds survival.csv splits/ --folds 5 --stratify censorship --no-test

Fold i takes part i of the patients as ``test.csv``, part i+1 as ``tune.csv`` and the rest as
``train.csv`` (with ``--no-test``: part i is ``tune.csv``). Patients are ``case_id`` when the csv has
it, else each slide is its own patient, so no patient is ever in two splits of a fold. Parts keep the
class (or censorship) proportions as far as the patients allow (scikit-learn's StratifiedGroupKFold).
Exit code 2 on a bad csv or arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from source.errors import UserError
from source.io import atomic_write_csv


class FoldError(UserError, ValueError):
    """The csv or the arguments cannot make the folds asked for; the message says why."""


def patient_parts(frame: pd.DataFrame, stratify: str, parts: int, seed: int = 0) -> list[np.ndarray]:
    """Split the rows into ``parts`` groups of row indices, whole patients each, stratified by ``stratify``.

    Raises:
        FoldError: a missing column, or fewer patients than parts.
    """
    if stratify not in frame.columns:
        raise FoldError(f"no column '{stratify}' to stratify by (columns: {list(frame.columns)}); set --stratify")
    groups = frame["case_id"].astype(str) if "case_id" in frame.columns else frame["slide_id"].astype(str)
    labels = frame.groupby(groups)[stratify].transform("first").astype(str)
    if groups.nunique() < parts:
        raise FoldError(f"{groups.nunique()} patient(s) cannot fill {parts} parts: use fewer --folds")
    splitter = StratifiedGroupKFold(n_splits=parts, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(frame)), labels, groups)]


def make_folds(
    csv: str | Path, out_dir: str | Path, folds: int = 5, stratify: str = "label", test: bool = True, seed: int = 0
) -> list[Path]:
    """Write ``out_dir/fold_<i>/{train,tune[,test]}.csv`` for ``i < folds``; returns the fold folders.

    Raises:
        FoldError: an unreadable csv, no ``slide_id`` column, a missing stratification column, too few
            patients, or fewer than 2 (3 with a test split) folds.
    """
    if folds < (3 if test else 2):
        raise FoldError(
            f"--folds must be at least {3 if test else 2} {'with' if test else 'without'} a test split, got {folds}"
        )
    try:
        frame = pd.read_csv(csv)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise FoldError(f"cannot read '{csv}': {error}") from error
    if "slide_id" not in frame.columns:
        raise FoldError(f"'{csv}' has no slide_id column (columns: {list(frame.columns)})")
    parts = patient_parts(frame, stratify, folds, seed)
    written = []
    for fold in range(folds):
        folder = Path(out_dir) / f"fold_{fold}"
        roles = {"test": parts[fold], "tune": parts[(fold + 1) % folds]} if test else {"tune": parts[fold]}
        used = np.concatenate(list(roles.values()))
        roles = {"train": np.setdiff1d(np.arange(len(frame)), used), **roles}
        for name, rows in roles.items():
            atomic_write_csv(frame.iloc[np.sort(rows)], folder / f"{name}.csv")
        written.append(folder)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m source.data.make_folds", description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="labelled csv: slide_id, optional case_id, the stratification column")
    parser.add_argument(
        "out_dir", help="folder to write fold_<i>/train.csv, tune.csv, test.csv into (the data.fold_dir of multi.yaml)"
    )
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument(
        "--stratify", default="label", help="column whose proportions each part keeps (label, censorship, ...)"
    )
    parser.add_argument("--no-test", dest="test", action="store_false", help="only train and tune in each fold")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        folders = make_folds(args.csv, args.out_dir, args.folds, args.stratify, args.test, args.seed)
    except FoldError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 2
    print(f"{len(folders)} folds in {Path(args.out_dir).absolute()} (data.fold_dir={args.out_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
