"""``attention_visualization.py`` end to end: config -> encoders -> single inputs and slides -> summary."""

from __future__ import annotations

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
from source.heatmaps.inputs import HeatmapSlides, plan_heatmap_slides, read_heatmap_slides
from source.heatmaps.settings import RenderSettings
from source.heatmaps.single import render_patch, render_region, stem
from source.heatmaps.slide_level import load_slide_model
from source.heatmaps.slide_render import SlideRenderer
from source.io import atomic_write_csv, safe_join
from source.log import log_failures
from source.models.factory import build_hipt_encoder

logger = logging.getLogger(__name__)


def render_settings(cfg: DictConfig) -> RenderSettings:
    """The drawing settings of a heatmap config (the fields :class:`HeatmapConfig` inherits)."""
    values = {field.name: cfg[field.name] for field in dataclasses.fields(RenderSettings)}
    values["heads"] = OmegaConf.to_container(cfg.heads) if cfg.heads is not None else None
    return RenderSettings(**values)


def run_heatmap_job(cfg: DictConfig) -> int:
    """Draw every requested map; returns the exit code (1 if a slide failed)."""
    weights = ("patch_weights", "region_weights", "slide_weights")
    with run_job(cfg, check=_check_heatmaps, precision_key="precision", weight_keys=weights, seed_key="seed") as job:
        return _draw_all(cfg, job.run_dir, job.context, job.device, job.inputs)


def _check_heatmaps(cfg: DictConfig) -> HeatmapSlides:
    validate_heatmaps(cfg)
    slides = read_heatmap_slides(cfg)
    if cfg.extraction_run:
        validate_heatmaps(cfg)  # again with the run's region_size and patch_size
    return slides


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
    if context.is_main and cfg.patch_fp:
        render_patch(reader, Path(cfg.patch_fp), run_dir / stem(cfg.patch_fp), settings)
        logger.info("patch maps: %s", run_dir / stem(cfg.patch_fp))
    if context.is_main and cfg.region_fp:
        render_region(reader, Path(cfg.region_fp), run_dir / stem(cfg.region_fp), settings)
        logger.info("region maps: %s", run_dir / stem(cfg.region_fp))
    plans = plan_heatmap_slides(cfg, slides, run_dir, context)
    outcomes = []
    for plan in shard_plans(plans, context):
        outcome = {
            "slide_id": plan.slide_id,
            "num_regions": len(plan.regions),
            "status": "success",
            "error": "",
            "output_dir": "",
        }
        outcome |= {
            key: plan.details.get(key) for key in ("image_path", "tile_size_lv0") if slides.whole_slides is not None
        }
        try:
            if plan.error:
                raise BadInputError(plan.error)
            out_dir = safe_join(run_dir, plan.slide_id)
            outcome["output_dir"] = str(out_dir)
            if cfg.resume and (out_dir / "attention.csv").exists():
                logger.info("slide %s already drawn", plan.slide_id)
            else:
                renderer.render(plan.slide_id, plan.regions, out_dir, show_progress=context.is_main, source=plan.source)
                logger.info("slide %s: %d regions -> %s", plan.slide_id, len(plan.regions), out_dir)
        except (BadInputError, ValueError) as error:
            outcome.update(status="failed", error=str(error))
            logger.warning("slide %s failed: %s", plan.slide_id, error)
        finally:
            if plan.source is not None:
                plan.source.close()
        outcomes.append(outcome)
    merged = [o for part in gather_objects(outcomes, context) for o in part]
    failed = [o for o in merged if o["status"] != "success"]
    if context.is_main and plans:
        order = {plan.slide_id: i for i, plan in enumerate(plans)}
        table = pd.DataFrame(sorted(merged, key=lambda o: order[o["slide_id"]]))
        atomic_write_csv(table, run_dir / "slides.csv")
        log_failures(logger, [(o["slide_id"], o["error"]) for o in failed], run_dir / "slides.csv")
        logger.info(
            "done: %d/%d slide(s) drawn, %d failed; outputs in %s",
            len(merged) - len(failed),
            len(merged),
            len(failed),
            run_dir,
        )
    return 1 if failed else 0
