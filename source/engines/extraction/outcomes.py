"""What became of each slide: :class:`SlideOutcome`, its JSON record, and the ``slides.csv`` / ``regions.csv``
tables of a run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from source.data.slides import SlidePlan
from source.distributed import DistributedContext, gather_objects
from source.engines.feature_store import FeatureStore
from source.io import atomic_write_csv, json_record

SLIDE_COLUMNS = ["slide_id", "feature_path", "num_regions", "level", "region_size", "status", "error"]
REGION_COLUMNS = ["slide_id", "region_index", "x", "y", "feature_path"]
INTEGER_COLUMNS = {"read_level", "read_size", "tile_size_lv0"}


@dataclass
class SlideOutcome:
    """One row of ``slides.csv`` plus the slide's rows of ``regions.csv``."""

    slide_id: str
    status: str
    num_regions: int = 0
    feature_path: str = ""
    error: str = ""
    regions: list[tuple[int, int, int, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def outcome_record(outcome: SlideOutcome) -> dict:
    """``outcome`` as plain JSON values (a shared run's per-slide record)."""
    return json_record(dataclasses.asdict(outcome))


def outcome_from_record(record: dict) -> SlideOutcome:
    """The inverse of :func:`outcome_record` (extra keys such as ``recorded_by`` are ignored)."""
    fields = {name: record[name] for name in SlideOutcome.__dataclass_fields__ if name in record}
    fields["regions"] = [tuple(row) for row in fields.get("regions", [])]
    return SlideOutcome(**fields)


def success(plan: SlidePlan, store: FeatureStore) -> SlideOutcome:
    """The outcome of a slide whose features are in ``store``."""
    slide_path = store.slide_path(plan.slide_id)
    rows = [
        (
            index,
            region.x,
            region.y,
            str(store.region_path(plan.slide_id, region) if store.save_region_features else slide_path),
        )
        for index, region in enumerate(plan.regions)
    ]
    return SlideOutcome(
        plan.slide_id, "success", len(plan.regions), str(slide_path), regions=rows, details=plan.details
    )


def failure(plan: SlidePlan, error: str, num_regions: int = 0) -> SlideOutcome:
    """The outcome of a slide that failed with ``error``."""
    return SlideOutcome(plan.slide_id, "failed", num_regions, error=error, details=plan.details)


def write_reports(
    outcomes: Sequence[SlideOutcome], run_dir: Path, level: str, region_size: int, extra_columns: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``slides.csv`` (with ``extra_columns`` from each outcome's details) and ``regions.csv`` (atomically)."""
    slides = pd.DataFrame(
        [
            {
                "slide_id": o.slide_id,
                "feature_path": o.feature_path,
                "num_regions": o.num_regions,
                "level": level,
                "region_size": region_size,
                "status": o.status,
                "error": o.error,
            }
            | {column: o.details.get(column) for column in extra_columns}
            for o in outcomes
        ],
        columns=SLIDE_COLUMNS[:-2] + list(extra_columns) + SLIDE_COLUMNS[-2:],
    )
    for column in set(extra_columns) & INTEGER_COLUMNS:
        slides[column] = slides[column].astype("Int64")  # integers stay integers beside failed slides' blanks
    regions = pd.DataFrame(
        [(o.slide_id, *row) for o in outcomes for row in o.regions],
        columns=REGION_COLUMNS,
    )
    atomic_write_csv(slides, run_dir / "slides.csv")
    atomic_write_csv(regions, run_dir / "regions.csv")
    return run_dir / "slides.csv", run_dir / "regions.csv"


def merge_outcomes(
    local: list[SlideOutcome], plans: Sequence[SlidePlan], context: DistributedContext
) -> list[SlideOutcome]:
    """Every rank's outcomes, in plan order (all ranks get the merged list)."""
    by_id = {o.slide_id: o for part in gather_objects(local, context) for o in part}
    return [by_id[plan.slide_id] for plan in plans]
