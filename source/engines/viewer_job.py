"""``view_slides.py`` end to end: the runs and slides read and checked -> each slide's pyramid, overlays and page ->
the index (-> served on localhost with ``serve: true``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from source.config.viewer import validate_viewer
from source.engines.job import run_job
from source.log import log_failures
from source.runs.shared import SharedRun, work_through
from source.viewer.assets import check_assets, copy_assets
from source.viewer.deepzoom import TileSettings
from source.viewer.inputs import ViewerInputs, ViewerSources, read_viewer_inputs
from source.viewer.serve import serve
from source.viewer.site import PAGE, SiteSettings, build_slide, slide_folder, write_index

logger = logging.getLogger(__name__)


def _check(cfg: DictConfig) -> ViewerInputs:
    validate_viewer(cfg)
    check_assets()
    keys = ("heatmap_run", "contribution_run", "predictions", "wsi_csv", "extraction_run")
    return read_viewer_inputs(ViewerSources(**{key: cfg[key] for key in keys}))


def _on_cpu(cfg: DictConfig, local_rank: int) -> torch.device:
    return torch.device("cpu")


def run_viewer_job(cfg: DictConfig) -> int:
    """Build the site of every slide; returns the exit code (1 if a slide failed)."""
    with run_job(cfg, check=_check, distributed=False, device_of=_on_cpu, shared=cfg.shared_run) as job:
        cfg = job.config  # as it runs: run_id and resume resolved
        inputs: ViewerInputs = job.inputs
        settings = SiteSettings(TileSettings(cfg.tile_size, cfg.tile_overlap, cfg.jpeg_quality), cfg.tissue_bbox_only)
        copy_assets(job.run_dir)

        def build(slide_id: str) -> dict:
            return build_slide(inputs, slide_id, job.run_dir, settings, bool(cfg.resume), progress=True)

        if cfg.shared_run:
            mine, outcomes = _build_shared(job.run_dir, inputs, build)
        else:
            mine = outcomes = [build(slide_id) for slide_id in inputs.slide_ids]
        if outcomes is not None:
            index = write_index(job.run_dir, inputs, outcomes)
            failed = [o for o in outcomes if o["status"] != "success"]
            log_failures(logger, [(o["slide_id"], o["error"]) for o in failed], job.run_dir / "slides.csv")
            logger.info("%d/%d slide(s) built: open %s", len(outcomes) - len(failed), len(outcomes), index)
    if cfg.serve and outcomes is not None:
        serve(job.run_dir)
    return 1 if any(o["status"] != "success" for o in (mine if outcomes is None else outcomes)) else 0


def _build_shared(run_dir: Path, inputs: ViewerInputs, build) -> tuple[list[dict], list[dict] | None]:
    """One job of a shared run: the slides no other job built or is building; the job that finds every slide done
    returns all the outcomes (it writes the index), the others None."""

    def outputs_of(slide_id: str, outcome: dict) -> list[Path]:
        if outcome["status"] != "success":
            return []
        folder = slide_folder(run_dir, slide_id)
        return [folder / PAGE, *sorted((folder / "overlays").glob("*.png"))]

    shared = SharedRun(run_dir)
    mine, progress = work_through(shared, inputs.slide_ids, build, outputs_of=outputs_of)
    if progress.in_progress or progress.waiting:
        logger.info("other jobs are still building slides; the last of them writes the index")
        return mine, None
    return mine, shared.records(inputs.slide_ids)
