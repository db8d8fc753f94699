"""``attention_visualization.py`` end to end: config -> encoders -> single inputs and slides -> summary."""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from source.config.encoders import HEATMAP_KEYS, encoder_settings
from source.config.heatmaps import validate_heatmaps
from source.data.regions import BadInputError
from source.data.slides import shard_plans
from source.distributed import DistributedContext, gather_objects
from source.engines.job import run_job
from source.heatmaps.attention import AttentionReader
from source.heatmaps.inputs import HeatmapInputs, HeatmapSlides, plan_heatmap_slides, read_heatmap_slides
from source.heatmaps.settings import RenderSettings
from source.heatmaps.single import render_patch, render_region, stem
from source.heatmaps.slide_level import load_slide_model
from source.heatmaps.slide_render import SlideRenderer
from source.io import atomic_write_csv, json_record, safe_join
from source.log import log_failures
from source.models.factory import build_hipt_encoder
from source.runs.shared import SharedRun, work_through

logger = logging.getLogger(__name__)


def render_settings(cfg: DictConfig) -> RenderSettings:
    """The drawing settings of a heatmap config (the fields :class:`HeatmapConfig` inherits)."""
    values = {field.name: cfg[field.name] for field in dataclasses.fields(RenderSettings)}
    values["heads"] = OmegaConf.to_container(cfg.heads) if cfg.heads is not None else None
    return RenderSettings(**values)


def run_heatmap_job(cfg: DictConfig) -> int:
    """Draw every requested map; returns the exit code (1 if a slide failed)."""
    weights = ("patch_weights", "region_weights", "slide_weights")
    with run_job(
        cfg,
        check=_check_heatmaps,
        precision_key="precision",
        weight_keys=weights,
        seed_key="seed",
        shared=cfg.shared_run,
        adopt=_adopt_run_geometry,
    ) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        return _draw_all(cfg, job.run_dir, job.context, job.device, job.inputs)


def heatmap_inputs(cfg: DictConfig) -> HeatmapInputs:
    """Where the slides of a heatmap config come from, and their geometry."""
    keys = ("slide_id", "slide_csv", "region_dir", "extraction_run", "wsi_csv", "coordinates_dir")
    return HeatmapInputs(
        **{key: cfg[key] for key in keys},
        region_format=cfg.format,
        region_size=cfg.region_size,
        patch_size=cfg.patch_size,
        tiling=OmegaConf.to_object(cfg.tiling),
    )


def _check_heatmaps(cfg: DictConfig) -> HeatmapSlides:
    validate_heatmaps(cfg)
    slides = read_heatmap_slides(heatmap_inputs(cfg))
    if slides.run_geometry is not None:  # again with the run's region_size and patch_size
        adopted = copy.deepcopy(cfg)
        _adopt_run_geometry(adopted, slides)
        validate_heatmaps(adopted)
    return slides


def _adopt_run_geometry(running: DictConfig, slides: HeatmapSlides) -> None:
    """An ``extraction_run``'s region size, patch size and tiling replace the job's own (in its running copy)."""
    if slides.run_geometry is not None:
        geometry = slides.run_geometry
        running.region_size, running.patch_size, running.tiling = (
            geometry.region_size,
            geometry.patch_size,
            geometry.tiling,
        )


def _draw_all(
    cfg: DictConfig, run_dir: Path, context: DistributedContext, device: torch.device, slides: HeatmapSlides
) -> int:
    torch.manual_seed(cfg.seed)
    needs_region = bool(cfg.region_fp or slides.ids)  # patch maps alone need no ViT_region
    level = "global" if needs_region else "local"
    encoder = build_hipt_encoder(encoder_settings(cfg, HEATMAP_KEYS, level=level)).place(device)
    reader = AttentionReader(encoder, cfg.mask_background, cfg.tissue_threshold)
    settings = render_settings(cfg)
    slide_model = load_slide_model(cfg.slide_weights, device) if cfg.slide_weights else None
    renderer = SlideRenderer(reader, settings, slide_model) if needs_region else None  # patch_fp alone: no ViT_region
    if cfg.shared_run:
        return _draw_shared(cfg, run_dir, slides, renderer, reader)
    if context.is_main:
        _draw_single_images(cfg, run_dir, reader)
    plans = plan_heatmap_slides(heatmap_inputs(cfg), slides, run_dir, context, cfg.resume)
    outcomes = [
        _draw_slide(cfg, run_dir, plan, renderer, slides, context.is_main) for plan in shard_plans(plans, context)
    ]
    merged = [o for part in gather_objects(outcomes, context) for o in part]
    if context.is_main and plans:
        order = {plan.slide_id: i for i, plan in enumerate(plans)}
        _summarise(run_dir, sorted(merged, key=lambda o: order[o["slide_id"]]))
    return 1 if any(o["status"] != "success" for o in merged) else 0


def _draw_single_images(cfg: DictConfig, run_dir: Path, reader: AttentionReader) -> None:
    """The maps of ``patch_fp`` and ``region_fp``."""
    settings = render_settings(cfg)
    if cfg.patch_fp:
        render_patch(reader, Path(cfg.patch_fp), run_dir / stem(cfg.patch_fp), settings)
        logger.info("patch maps: %s", run_dir / stem(cfg.patch_fp))
    if cfg.region_fp:
        render_region(reader, Path(cfg.region_fp), run_dir / stem(cfg.region_fp), settings)
        logger.info("region maps: %s", run_dir / stem(cfg.region_fp))


def _draw_slide(
    cfg: DictConfig, run_dir: Path, plan, renderer: SlideRenderer, slides: HeatmapSlides, show_progress: bool
) -> dict:
    """Draw one planned slide; returns its row of ``slides.csv`` (a failure is a row, not an exception)."""
    outcome = {
        "slide_id": plan.slide_id,
        "num_regions": len(plan.regions),
        "status": "success",
        "error": "",
        "output_dir": "",
    }
    if slides.whole_slides is not None:
        outcome |= {key: plan.details.get(key) for key in ("image_path", "tile_size_lv0")}
    try:
        if plan.error:
            raise BadInputError(plan.error)
        out_dir = safe_join(run_dir, plan.slide_id)
        outcome["output_dir"] = str(out_dir)
        if cfg.resume and (out_dir / "attention.csv").exists():
            logger.info("slide %s already drawn", plan.slide_id)
        else:
            renderer.render(plan.slide_id, plan.regions, out_dir, show_progress=show_progress, source=plan.source)
            logger.info("slide %s: %d regions -> %s", plan.slide_id, len(plan.regions), out_dir)
    except (BadInputError, ValueError) as error:
        outcome.update(status="failed", error=str(error))
        logger.warning("slide %s failed: %s", plan.slide_id, error)
    finally:
        if plan.source is not None:
            plan.source.close()
    return outcome


def _draw_shared(
    cfg: DictConfig, run_dir: Path, slides: HeatmapSlides, renderer: SlideRenderer, reader: AttentionReader
) -> int:
    """One job of a shared run (see :mod:`source.runs.shared`); the job that finds every slide drawn also
    draws ``patch_fp`` / ``region_fp`` and writes ``slides.csv``."""

    def process(slide_id: str) -> dict:
        plan = plan_heatmap_slides(heatmap_inputs(cfg), slides.only(slide_id), run_dir, DistributedContext(), True)[0]
        return json_record(_draw_slide(cfg, run_dir, plan, renderer, slides, show_progress=True))

    def outputs_of(slide_id: str, outcome: dict) -> list[Path]:
        if outcome["status"] != "success":
            return []
        return sorted(path for path in Path(outcome["output_dir"]).rglob("*") if path.is_file())

    shared = SharedRun(run_dir)
    mine, progress = work_through(shared, slides.ids, process, outputs_of=outputs_of)
    mine_failed = any(o["status"] != "success" for o in mine)
    if progress.in_progress or progress.waiting:
        logger.info("other jobs are still drawing; the last of them writes slides.csv")
        return 1 if mine_failed else 0
    _draw_single_images(cfg, run_dir, reader)
    records = shared.records(slides.ids)
    if records:
        _summarise(run_dir, records)
    return 1 if mine_failed or any(o["status"] != "success" for o in records) else 0


def _summarise(run_dir: Path, outcomes: list[dict]) -> None:
    """Write ``slides.csv`` and log the failures and a summary."""
    failed = [o for o in outcomes if o["status"] != "success"]
    atomic_write_csv(pd.DataFrame(outcomes), run_dir / "slides.csv")
    log_failures(logger, [(o["slide_id"], o["error"]) for o in failed], run_dir / "slides.csv")
    logger.info(
        "done: %d/%d slide(s) drawn, %d failed; outputs in %s",
        len(outcomes) - len(failed),
        len(outcomes),
        len(failed),
        run_dir,
    )
