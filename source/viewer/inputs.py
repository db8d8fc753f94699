"""What a viewer job shows, read before any work: the slides, their files, their regions and values, predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from source.data.regions import BadInputError
from source.errors import ConfigError
from source.viewer.predictions import Prediction, read_predictions
from source.viewer.runs import (
    CONTRIBUTION,
    HEATMAP,
    RunFolder,
    SlideValues,
    contribution_values,
    heatmap_values,
    merge_values,
    read_run,
)
from source.viewer.slides import SlideFile, extraction_regions, slide_files
from source.wsi.slide_table import read_wsi_csv


@dataclass(frozen=True)
class ViewerSources:
    """The input keys of a viewer config (any combination; see ``config/viewer/default.yaml``)."""

    heatmap_run: Optional[str] = None
    contribution_run: Optional[str] = None
    predictions: Optional[str] = None
    wsi_csv: Optional[str] = None
    extraction_run: Optional[str] = None


@dataclass
class ViewerInputs:
    """The slides to view and where everything about them is.

    Attributes:
        slide_ids: in order: the contribution run's, then the heatmap run's others (or the extraction run's / wsi_csv's
            slides when no run is given).
        runs: the contribution and heatmap runs given (in that order).
        files: slide id -> its image file.
        regions: slide id -> the regions an ``extraction_run`` encoded.
        predictions: slide id -> its row of ``predictions``.
    """

    slide_ids: list[str]
    runs: list[RunFolder] = field(default_factory=list)
    files: dict[str, SlideFile] = field(default_factory=dict)
    regions: dict[str, SlideValues] = field(default_factory=dict)
    predictions: dict[str, Prediction] = field(default_factory=dict)

    def values(self, slide_id: str) -> Optional[SlideValues]:
        """The slide's regions and every run's values on them (None: no regions known, the whole slide is shown).

        Raises:
            BadInputError: a run's files of the slide are missing or disagree.
        """
        fallback = self.regions.get(slide_id)
        parts = [
            contribution_values(run, slide_id, fallback) if run.kind == CONTRIBUTION else heatmap_values(run, slide_id)
            for run in self.runs
            if slide_id in run.slide_ids
        ]
        if not parts:
            return fallback
        return merge_values(parts, slide_id)

    def file(self, slide_id: str) -> SlideFile:
        """The slide's image file.

        Raises:
            BadInputError: no input says where it is.
        """
        if slide_id not in self.files:
            raise BadInputError(
                f"slide '{slide_id}': no input says where its image file is (the runs read region images): give "
                "wsi_csv (slide_id, image_path) or extraction_run"
            )
        return self.files[slide_id]

    def model(self) -> str:
        """The slide model the values come from, as its file (the last folders of its path)."""
        for run in self.runs:
            path = run.config.get("checkpoint") or run.config.get("run_dir") or run.config.get("slide_weights")
            if path:
                return "/".join(Path(str(path)).parts[-3:])
        return ""


def read_viewer_inputs(sources: ViewerSources) -> ViewerInputs:
    """Read the runs, the slide files, the regions and the predictions.

    Raises:
        ConfigError: a run folder that is not a finished run or has no successful slide, an unusable
            ``extraction_run`` / ``wsi_csv``, or no slide at all.
        LabelTableError: an unusable ``predictions`` csv.
    """
    runs = [
        read_run(folder, kind)
        for folder, kind in ((sources.contribution_run, CONTRIBUTION), (sources.heatmap_run, HEATMAP))
        if folder
    ]
    regions = extraction_regions(sources.extraction_run) if sources.extraction_run else {}
    if runs:
        slide_ids = list(dict.fromkeys(slide_id for run in runs for slide_id in run.slide_ids))
    elif sources.extraction_run:
        slide_ids = list(regions)
    else:
        slide_ids = [slide.slide_id for slide in read_wsi_csv(sources.wsi_csv)] if sources.wsi_csv else []
    if not slide_ids:
        raise ConfigError("no slide to view: the extraction_run / wsi_csv given lists none")
    predictions = read_predictions(sources.predictions) if sources.predictions else {}
    files = slide_files(sources.extraction_run, sources.wsi_csv, runs)
    return ViewerInputs(slide_ids, runs, files, regions, predictions)
