"""What every task's splits share: feature files checked (missing ones dropped), seeded subsets, unlabelled
splits. Each task builds its labelled splits itself (:mod:`source.tasks`)."""

from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from source.data.features import BagDataset, FeatureBank, Split
from source.data.labels import LabelTableError, read_table

logger = logging.getLogger(__name__)


def drop_missing_features(
    tables: Mapping[str, pd.DataFrame], paths: Mapping[str, str], bank: FeatureBank
) -> dict[str, pd.DataFrame]:
    """Validate every feature file; drop rows whose file is missing (one warning for all of them).

    Raises:
        FeatureFileError: a file of the wrong shape or with NaN / inf.
        LabelTableError: a split left empty.
    """
    kept = {}
    all_missing = []
    for name, frame in tables.items():
        missing = set(bank.validate(frame.slide_id.tolist()))
        all_missing += [f"{slide_id} ({name})" for slide_id in frame.slide_id if slide_id in missing]
        kept[name] = frame[~frame.slide_id.isin(missing)].reset_index(drop=True)
        if kept[name].empty:
            raise LabelTableError(
                f"{paths[name]}: none of its slides has a feature file in {bank.features_dir}; check features_dir"
            )
    bank.check_scales()
    if all_missing:
        logger.warning(
            "%d slide(s) have no feature file in %s and are dropped: %s",
            len(all_missing),
            bank.features_dir,
            ", ".join(all_missing),
        )
    return kept


def subsample(frame: pd.DataFrame, pct: Optional[float], seed: int) -> pd.DataFrame:
    """A seeded random ``pct`` share of the rows (all rows when ``pct`` is None or 1), original order kept."""
    if pct is None or pct >= 1:
        return frame
    count = max(1, int(round(pct * len(frame))))
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=count, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def stratified_share(frame: pd.DataFrame, fraction: Optional[float], seed: int, strata: Sequence) -> pd.DataFrame:
    """A seeded ``fraction`` of the rows drawn within each stratum (at least one row each), original order kept:
    the paper's "25 % of the training data" keeps the label proportions of the fold."""
    if fraction is None or fraction >= 1:
        return frame
    rng = np.random.default_rng(seed)
    strata = np.asarray(strata)
    keep = []
    for stratum in sorted(set(strata.tolist()), key=str):
        rows = np.flatnonzero(strata == stratum)
        count = max(1, int(round(fraction * len(rows))))
        keep.append(rng.choice(rows, size=count, replace=False))
    return frame.iloc[np.sort(np.concatenate(keep))].reset_index(drop=True)


def unlabelled_split(
    name: str, path: str, bank: FeatureBank, target_names: list[str], by_patient: bool = False
) -> Split:
    """A split without labels, for prediction only: slides (or, ``by_patient``, the slides of each ``case_id``).

    The targets are zeros (they only fill the bag); metrics and losses of such a split are meaningless.
    """
    frame = read_table(path, ["slide_id", "case_id"] if by_patient else ["slide_id"])
    frame = drop_missing_features({name: frame}, {name: path}, bank)[name]
    if by_patient:
        grouped = frame.groupby("case_id", sort=False)
        slide_ids = [group.slide_id.tolist() for _, group in grouped]
        frame = grouped.agg(slide_id=("slide_id", ";".join)).reset_index()
    else:
        slide_ids = [[s] for s in frame.slide_id]
    targets = {target: np.zeros(len(frame), dtype=np.int64) for target in target_names}
    mode = "slides" if by_patient else "slide"
    return Split(name, BagDataset(slide_ids, targets, bank, mode), frame)
