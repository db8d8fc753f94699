"""Survival labels: time and censorship checks, discrete time bins from the training split, and the splits of a
survival run (items are slides, or patients pooling their slides)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from source.data.features import BagDataset, FeatureBank, Split
from source.data.labels import LabelTableError, check_no_overlap, read_table, row_numbers
from source.data.splits import drop_missing_features, stratified_share, subsample


def check_survival_columns(frame: pd.DataFrame, time_column: str, path: str | Path) -> None:
    """Times must be numbers > 0, censorship 0 or 1 (1 = censored), one time and status per patient.

    Raises:
        LabelTableError: naming the rows.
    """
    times = pd.to_numeric(frame[time_column], errors="coerce")
    bad_time = times.isna() | (times <= 0) | ~np.isfinite(times.fillna(0).to_numpy(dtype=float))
    if bad_time.any():
        raise LabelTableError(
            f"{path}: {time_column} must be a finite number > 0; row(s) {row_numbers(frame, bad_time)} are not"
        )
    censorship = pd.to_numeric(frame["censorship"], errors="coerce")
    bad_status = ~censorship.isin([0, 1])
    if bad_status.any():
        raise LabelTableError(
            f"{path}: censorship must be 0 (event) or 1 (censored); row(s) {row_numbers(frame, bad_status)} are not"
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
    train_fraction: Optional[float] = None,
) -> SurvivalTables:
    """Splits for survival. Bins come from the training split (``train`` in ``paths``) unless ``edges`` is given.

    ``train_fraction`` keeps a seeded share of the training patients, stratified by censorship.
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
        first = tables["train"].drop_duplicates("case_id")
        first = first[first.case_id.isin(kept)]
        kept = set(stratified_share(first, train_fraction, seed, first.censorship).case_id)
        tables["train"] = tables["train"][tables["train"].case_id.isin(kept)].reset_index(drop=True)
    if "tune" in tables and not (tables["tune"].censorship == 0).any():
        raise LabelTableError(
            f"{paths['tune']}: every patient of the tune split is censored: no c-index, no best.pt. Give a tune split "
            "with events (python3 -m source.data.make_folds ... --stratify censorship)"
        )
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
