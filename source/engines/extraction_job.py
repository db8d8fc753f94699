"""``extract_features.py`` end to end: config -> devices -> run folder -> encoder -> extraction -> reports."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from source.config.core import plain_config
from source.config.encoders import EXTRACTION_KEYS, encoder_settings
from source.config.extraction import RESUME_KEYS, compile_mode, validate_extraction
from source.data.h5_features import Geometry
from source.data.regions import discover_slide_ids, read_slide_list
from source.data.slides import SlidePlan, plan_slides, shard_plans
from source.devices import resolve_device, resolve_split_devices
from source.distributed import DistributedContext
from source.engines.extract import Extractor, merge_outcomes, outcome_from_record, outcome_record, write_reports
from source.engines.feature_store import FeatureStore
from source.engines.job import run_job
from source.errors import ConfigError
from source.io import atomic_write_json
from source.log import log_failures
from source.models.accelerator import Accelerated
from source.models.factory import build_hipt_encoder
from source.runs.shared import SharedRun, work_through
from source.tracking import Tracker

logger = logging.getLogger(__name__)


def build_encoder_from_config(cfg: DictConfig, local_rank: int = 0) -> Accelerated:
    """The HIPT encoder of an extraction config, accelerated: on its device(s) (two with ``split_across_gpus``), at
    its precision, optionally compiled."""
    torch.manual_seed(cfg.seed)
    model = build_hipt_encoder(encoder_settings(cfg, EXTRACTION_KEYS))
    if cfg.split_across_gpus:
        devices = resolve_split_devices(cfg.device, local_rank)
    else:
        devices = (resolve_device(cfg.device, local_rank),)
    return Accelerated(model, *devices, compile=compile_mode(cfg.compile))


def h5_geometry(cfg: DictConfig) -> Optional[Geometry]:
    """The geometry of the h5 files (``save_h5``): regions of ``region_size`` px at ``tiling.spacing`` (whole
    slides; each slide's own level-0 footprint replaces ``region_size``), or of unknown spacing (region images)."""
    if not cfg.save_h5:
        return None
    spacing = float(cfg.tiling.spacing) if cfg.wsi_csv else None
    return Geometry(cfg.region_size, cfg.region_size, cfg.patch_size, spacing)


def record_patch_transform(vit_patch, run_dir: Path, resume: bool) -> None:
    """Write the patch encoder's transform to ``patch_transform.json``; on resume, refuse one that changed.

    Raises:
        ConfigError: a resumed run whose encoder resizes or normalises patches differently.
    """
    transform = getattr(vit_patch, "transform", None)
    if transform is None:
        return
    path = run_dir / "patch_transform.json"
    current = transform.as_dict()
    if resume and path.exists():
        saved = json.loads(path.read_text())
        if saved != current:
            raise ConfigError(
                f"resume: the patch encoder's transform was {saved} ({path}) but is {current} now; features of the "
                "two would not match. Use the same encoder or another run_id"
            )
    atomic_write_json(path, current)


def run_extraction_job(cfg: DictConfig) -> int:
    """Run a whole extraction; returns the process exit code (0: every slide succeeded, 1: some failed).

    Raises:
        ConfigError: an invalid config (before any work).
        CheckpointError: unusable weights (before any work).
    """
    with run_job(
        cfg,
        check=_check_extraction,
        resume_keys=RESUME_KEYS,
        precision_key="precision",
        device_of=_extraction_device,
        weight_keys=("pretrain_vit_patch", "pretrain_vit_region"),
        seed_key="seed",
        shared=cfg.shared_run,
    ) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        if cfg.shared_run:
            return _extract_shared(cfg, job.run_dir, job.device, job.inputs)
        return _extract(cfg, job.run_dir, job.context, job.device, job.inputs)


def _check_extraction(cfg: DictConfig) -> list:
    validate_extraction(cfg)
    return read_inputs(cfg)


def _extraction_device(cfg: DictConfig, local_rank: int) -> torch.device:
    """This process's device; with ``split_across_gpus`` the first of its two (ViT_patch's)."""
    if cfg.split_across_gpus:
        return resolve_split_devices(cfg.device, local_rank)[0]
    return resolve_device(cfg.device, local_rank)


def read_inputs(cfg: DictConfig) -> list:
    """The slides to process, before any work: ``wsi_csv`` rows (``WholeSlide``) or ``region_dir`` slide ids.

    Both are restricted by ``slide_list``.

    Raises:
        ConfigError: a bad ``wsi_csv``, or no slide at all (with the expected layout, and a hint when
            ``region_dir`` is one slide's folder or its ``imgs/`` folder).
    """
    only = read_slide_list(cfg.slide_list) if cfg.slide_list else None
    if cfg.wsi_csv:
        from source.wsi.slide_table import read_wsi_csv

        slides = read_wsi_csv(cfg.wsi_csv, only)
        if not slides:
            raise ConfigError(
                f"no slide to process: none of the slide ids of slide_list '{cfg.slide_list}' is in wsi_csv "
                f"'{cfg.wsi_csv}'"
            )
        return slides
    region_dir = Path(cfg.region_dir)
    if (region_dir / "imgs").is_dir():
        raise ConfigError(
            f"region_dir '{region_dir}' holds imgs/ itself: it looks like one slide's folder. region_dir must be the "
            f"folder that contains <slide_id>/imgs/, here region_dir={region_dir.absolute().parent}"
        )
    slide_ids = discover_slide_ids(region_dir, cfg.slide_list)
    if not slide_ids:
        images = [p for p in region_dir.iterdir() if p.suffix.lower().lstrip(".") == str(cfg.format).lower()]
        hint = (
            f" It holds .{cfg.format} images itself: it looks like a slide's imgs/ folder; region_dir must be the "
            f"folder that contains <slide_id>/imgs/, here region_dir={region_dir.absolute().parent.parent}"
            if images
            else ""
        )
        raise ConfigError(
            f"no slide folder in region_dir '{region_dir}': expected <slide_id>/imgs/<x>_<y>.{cfg.format}.{hint}"
        )
    return slide_ids


def slide_planner(cfg: DictConfig, run_dir: Path) -> tuple[Callable[[Any], SlidePlan], list[str]]:
    """``slide -> SlidePlan`` for one input slide (a ``WholeSlide`` row or a ``region_dir`` slide id) and the extra
    ``slides.csv`` columns of that input (a shared run plans each slide when it claims it)."""
    if cfg.wsi_csv:
        from source.wsi.planning import WSI_COLUMNS

        return _whole_slide_planner(cfg, run_dir).plan_one, WSI_COLUMNS
    return (lambda slide_id: plan_slides(cfg.region_dir, [slide_id], cfg.format)[0]), []


def _whole_slide_planner(cfg: DictConfig, run_dir: Path):
    from source.wsi.planning import WholeSlidePlanner

    return WholeSlidePlanner(
        OmegaConf.to_object(cfg.tiling),
        cfg.region_size,
        cfg.patch_size,
        run_dir,
        coordinates_dir=cfg.coordinates_dir,
        resume=cfg.resume,
        save_region_images=cfg.save_region_images,
    )


def plan_from_config(
    cfg: DictConfig, run_dir: Path, context: DistributedContext, slides: list
) -> tuple[list[SlidePlan], list[str]]:
    """The plans of the slides of :func:`read_inputs` and the extra ``slides.csv`` columns of that input.

    Whole-slide input: each rank tiles its share (or reads ``coordinates_dir``) and writes coordinates
    and previews; ``region_dir``: the region image files.
    """
    if cfg.wsi_csv:
        from source.wsi.planning import WSI_COLUMNS

        return _whole_slide_planner(cfg, run_dir).plan(slides, context), WSI_COLUMNS
    return plan_slides(cfg.region_dir, slides, cfg.format), []


def _extractor(cfg: DictConfig, encoder: Accelerated, run_dir: Path, show_progress: bool) -> Extractor:
    return Extractor(
        encoder,
        FeatureStore(run_dir, cfg.save_region_features, h5_geometry(cfg)),
        cfg.level.value,
        cfg.region_size,
        cfg.batch_size,
        cfg.num_workers,
        show_progress=show_progress,
        mask_background=cfg.mask_background,
        tissue_threshold=cfg.tissue_threshold,
        decode_on_device=decodes_on_device(cfg.jpeg_decode, encoder.patch_device),
    )


def decodes_on_device(jpeg_decode: str, device: torch.device) -> bool:
    """``jpeg_decode`` resolved: ``device`` always, ``cpu`` never, ``auto`` on a GPU."""
    return jpeg_decode == "device" or (jpeg_decode == "auto" and device.type == "cuda")


def _extract(cfg: DictConfig, run_dir: Path, context: DistributedContext, device: torch.device, slides: list) -> int:
    encoder = build_encoder_from_config(cfg, context.local_rank)  # weights load before any slide is tiled
    plans, extra_columns = plan_from_config(cfg, run_dir, context, slides)
    mine = shard_plans(plans, context)
    logger.info(
        "%d slide(s), %d region(s) from %s; rank %d/%d takes %d slide(s); device %s, %s, level %s",
        len(plans),
        sum(len(p.regions) for p in plans),
        cfg.wsi_csv or cfg.region_dir,
        context.rank,
        context.world_size,
        len(mine),
        device,
        cfg.precision.value,
        cfg.level.value,
    )
    if context.is_main:
        record_patch_transform(encoder.model.vit_patch, run_dir, cfg.resume)
    started = time.perf_counter()
    extractor = _extractor(cfg, encoder, run_dir, show_progress=context.is_main)
    outcomes = merge_outcomes(extractor.run(mine, resume=cfg.resume), plans, context)
    if context.is_main:
        _report(cfg, run_dir, outcomes, extra_columns, started)
    return 1 if any(o.status != "success" for o in outcomes) else 0


def _extract_shared(cfg: DictConfig, run_dir: Path, device: torch.device, slides: list) -> int:
    """One job of a shared run: claim, plan and encode slides one at a time until none is left; the job that finds
    every slide done writes the tables. Exit code 1 when a slide of this job failed, or (for the job that writes the
    tables) any slide of the run."""
    by_id = {getattr(slide, "slide_id", slide): slide for slide in slides}
    logger.info(
        "shared run %s: %d slide(s) from %s; device %s, %s, level %s",
        run_dir,
        len(by_id),
        cfg.wsi_csv or cfg.region_dir,
        device,
        cfg.precision.value,
        cfg.level.value,
    )
    encoder = build_encoder_from_config(cfg)
    record_patch_transform(encoder.model.vit_patch, run_dir, resume=True)
    extractor = _extractor(cfg, encoder, run_dir, show_progress=True)
    plan_one, extra_columns = slide_planner(cfg, run_dir)
    started = time.perf_counter()

    plans: dict[str, SlidePlan] = {}

    def process(slide_id: str) -> dict:
        plans[slide_id] = plan_one(by_id[slide_id])
        return outcome_record(extractor.run([plans[slide_id]], resume=True)[0])

    def outputs_of(slide_id: str, outcome: dict) -> list[Path]:
        plan = plans.pop(slide_id)
        return extractor.store.files(slide_id, plan.regions) if outcome["status"] == "success" else []

    shared = SharedRun(run_dir)
    mine, progress = work_through(shared, list(by_id), process, outputs_of=outputs_of)
    mine_failed = any(record["status"] != "success" for record in mine)
    if progress.in_progress or progress.waiting:
        logger.info(
            "%d slide(s) are still being processed by other jobs; the last of them writes slides.csv and regions.csv",
            len(progress.in_progress) + len(progress.waiting),
        )
        return 1 if mine_failed else 0
    outcomes = [outcome_from_record(record) for record in shared.records(list(by_id))]
    _report(cfg, run_dir, outcomes, extra_columns, started)
    return 1 if mine_failed or any(o.status != "success" for o in outcomes) else 0


def _report(cfg: DictConfig, run_dir: Path, outcomes: list, extra_columns: list[str], started: float) -> None:
    """Write the tables, log the failures and a summary, and send the counts to wandb (when on)."""
    failed = [o for o in outcomes if o.status != "success"]
    slides_csv, regions_csv = write_reports(outcomes, run_dir, cfg.level.value, cfg.region_size, extra_columns)
    tracker = Tracker(OmegaConf.to_object(cfg.wandb), run_dir, cfg.experiment_name, plain_config(cfg), active=True)
    minutes = (time.perf_counter() - started) / 60
    tracker.log({"slides": len(outcomes), "failed_slides": len(failed), "minutes": minutes})
    tracker.finish()
    log_failures(logger, [(o.slide_id, o.error) for o in failed], slides_csv)
    logger.info(
        "done: %d/%d slide(s) succeeded, %d failed. Features: %s; tables: %s, %s",
        len(outcomes) - len(failed),
        len(outcomes),
        len(failed),
        run_dir / "features",
        slides_csv,
        regions_csv,
    )
    if cfg.wsi_csv:
        logger.info("coordinates: %s; previews: %s", run_dir / "coordinates", run_dir / "previews")
