"""Turn label csvs into training splits: validated tables, targets, bags of feature files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import pandas as pd

from source.data.features import BagDataset, FeatureBank, Split
from source.data.labels import (
    CLASS_TARGET as TARGET,
)
from source.data.labels import (
    LabelTableError,
    assign_bins,
    check_no_overlap,
    check_survival_columns,
    encode_classes,
    read_table,
    survival_bin_edges,
)

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


def classification_splits(
    paths: Mapping[str, str],
    bank: FeatureBank,
    label_name: str,
    num_classes: int,
    label_mapping: Optional[Mapping[str, int]] = None,
    pct: Optional[float] = None,
    seed: int = 0,
    allow_overlap: bool = False,
) -> dict[str, Split]:
    """Splits for classification; ``paths`` maps split names (``train`` first) to csvs.

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
        classes = np.unique(tables["train"][TARGET])
        if len(classes) < 2:
            raise LabelTableError(
                f"{paths['train']}: the training split has a single class ({classes.tolist()}); it needs at least two"
            )
    splits = {}
    for name, frame in tables.items():
        counts = frame[TARGET].value_counts()
        weights = (1.0 / frame[TARGET].map(counts)).to_numpy()
        dataset = BagDataset([[s] for s in frame.slide_id], {"label": frame[TARGET].to_numpy()}, bank, "slide")
        splits[name] = Split(name, dataset, frame, weights)
    return splits


@dataclass
class SurvivalTables:
    """Survival splits and the time bins learned from the training split."""

    splits: dict[str, Split]
    edges: np.ndarray


def survival_splits(
    paths: Mapping[str, str],
    bank: FeatureBank,
    time_column: str,
    nbins: int,
    agg_method: Optional[str] = None,
    max_regions: Optional[int] = None,
    pct: Optional[float] = None,
    seed: int = 0,
    edges: Optional[np.ndarray] = None,
    allow_overlap: bool = False,
) -> SurvivalTables:
    """Splits for survival. Bins come from the training split (``train`` in ``paths``) unless ``edges`` is given.

    Items are slides (``agg_method`` None) or patients (``concat``: one bag of all their regions;
    ``self_att``: the list of their slides).
    """
    tables = {}
    for name, path in paths.items():
        frame = read_table(path, ["case_id", "slide_id", "censorship", time_column])
        check_survival_columns(frame, time_column, path)
        tables[name] = frame
    check_no_overlap(tables, paths, allow_overlap)
    tables = drop_missing_features(tables, paths, bank)
    if "train" in tables:
        patients = tables["train"].case_id.drop_duplicates()
        kept = set(subsample(patients.to_frame(), pct, seed).case_id)
        tables["train"] = tables["train"][tables["train"].case_id.isin(kept)].reset_index(drop=True)
    if edges is None:
        if "train" not in tables:
            raise ValueError("survival bins need the training split or saved edges")
        edges = survival_bin_edges(tables["train"], time_column, nbins, list(tables.values()))
    splits = {}
    for name, frame in tables.items():
        frame = frame.assign(bin=assign_bins(frame[time_column], edges))
        if agg_method is None:
            items = frame
            slide_ids = [[s] for s in frame.slide_id]
        else:
            grouped = frame.groupby("case_id", sort=False)
            slide_ids = [group.slide_id.tolist() for _, group in grouped]
            items = grouped.agg(
                slide_id=("slide_id", ";".join),
                censorship=("censorship", "first"),
                **{time_column: (time_column, "first")},
                bin=("bin", "first"),
            ).reset_index()
        mode = {None: "slide", "concat": "concat", "self_att": "slides"}[agg_method]
        targets = {"bin": items["bin"].to_numpy(), "censorship": items["censorship"].to_numpy()}
        splits[name] = Split(name, BagDataset(slide_ids, targets, bank, mode, max_regions, seed), items)
    return SurvivalTables(splits, edges)


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
