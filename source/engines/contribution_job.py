"""``contribution_maps.py`` end to end: trained model -> each slide's exact leave-one-out contributions -> tables,
plots, GeoJSON and canvases."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from source.config.contribution import validate_contribution
from source.data.features import FeatureBank, FeatureFileError, check_features
from source.data.regions import BadInputError
from source.engines.job import run_job
from source.errors import ConfigError
from source.explain.contributions import leave_one_out, patch_contributions
from source.explain.outputs import CanvasStyle, canvas_figure, distribution_figure, top_regions, write_geojson
from source.explain.pixels import SlidePixels
from source.io import UnsafePathError, atomic_write_csv, safe_join
from source.tasks.trained import TrainedSlideModel, load_trained_slide_model
from source.wsi.extraction_run import EncodedSlide

logger = logging.getLogger(__name__)
TABLE = "contributions.csv"


def checkpoint_of(cfg: DictConfig) -> Path:
    """``checkpoint``, or ``run_dir/<checkpoint_name>.pt``.

    Raises:
        ConfigError: a multi-fold run folder (explain one fold's model), or a run folder without that checkpoint.
    """
    if cfg.checkpoint:
        return Path(cfg.checkpoint)
    path = Path(cfg.run_dir) / f"{cfg.checkpoint_name}.pt"
    if not path.is_file():
        folds = sorted(p.name for p in Path(cfg.run_dir).glob("fold_*") if p.is_dir())
        hint = (
            f": a multi-fold run, give one fold's folder, e.g. run_dir={Path(cfg.run_dir) / folds[0]}" if folds else ""
        )
        raise ConfigError(f"run_dir '{cfg.run_dir}' has no {path.name}{hint}")
    return path


def slide_ids_of(cfg: DictConfig) -> list[str]:
    """``slide_id``, or the ``slide_id`` column of ``slide_csv``."""
    if cfg.slide_id:
        return [str(cfg.slide_id)]
    frame = pd.read_csv(cfg.slide_csv, dtype={"slide_id": str})
    if "slide_id" not in frame.columns or frame.slide_id.isna().all():
        raise ConfigError(f"slide_csv '{cfg.slide_csv}' needs a slide_id column (columns: {list(frame.columns)})")
    return list(dict.fromkeys(frame.slide_id.dropna().str.strip()))


def _check(cfg: DictConfig) -> list[str]:
    validate_contribution(cfg)
    checkpoint_of(cfg)
    return slide_ids_of(cfg)


def run_contribution_job(cfg: DictConfig) -> int:
    """Explain every requested slide; returns the exit code (1 if a slide failed)."""
    with run_job(cfg, check=_check, distributed=False) as job:
        trained = load_trained_slide_model(checkpoint_of(cfg), job.device, key="checkpoint")
        if trained.settings.patient_pooling:
            raise ConfigError("the model pools a patient's slides (agg_method=self_att): explain slide-level models")
        explainer = SlideExplainer(cfg, trained)
        outcomes = [explainer.run(slide_id, job.run_dir) for slide_id in job.inputs]
        atomic_write_csv(pd.DataFrame(outcomes), job.run_dir / "slides.csv")
        failed = [o for o in outcomes if o["status"] != "success"]
        logger.info("%d slide(s) explained, %d failed: %s", len(outcomes) - len(failed), len(failed), job.run_dir)
    return 1 if failed else 0


class SlideExplainer:
    """Contributions of one trained model, slide by slide."""

    def __init__(self, cfg: DictConfig, trained: TrainedSlideModel) -> None:
        self.cfg, self.trained = cfg, trained
        settings = trained.settings
        dim = settings.region_dim if settings.level == "global" else settings.patch_dim
        features_dir = cfg.features_dir or trained.config.features_dir
        self.bank = FeatureBank(features_dir, settings.level, dim, cache=False, tissue=settings.mask_background)
        self.pixels = SlidePixels(cfg, self.bank.path)
        self.draw = self.pixels.given if cfg.canvases is None else bool(cfg.canvases)
        self._slide: tuple[str, Optional[EncodedSlide]] = ("", None)
        self.device = next(trained.model.parameters()).device
        self.explains_patches = bool(cfg.patch_contributions) and settings.level == "local" and not settings.patch_bags
        self.target: Optional[int] = None
        self.style = CanvasStyle(cfg.cmap, cfg.opacity, cfg.canvas_width, cfg.restrict_to_tissue)

    def run(self, slide_id: str, run_dir: Path) -> dict:
        """Explain one slide into ``run_dir/<slide_id>/``; a bad slide is recorded, never raised."""
        outcome = {"slide_id": slide_id, "status": "success", "error": "", "num_regions": 0, "output": float("nan")}
        try:
            folder = safe_join(run_dir, slide_id)
            if self.cfg.resume and (folder / TABLE).is_file():
                return outcome | {"num_regions": len(pd.read_csv(folder / TABLE)), "status": "success"}
            table = self.contributions(slide_id)
            if self.explains_patches:
                self.write_patches(slide_id, folder)
            self.write(slide_id, table, folder)
            return outcome | {"num_regions": len(table), "output": float(table.output.iloc[0])}
        except (FeatureFileError, BadInputError, UnsafePathError, ValueError) as error:
            logger.error("slide %s failed: %s", slide_id, error)
            return outcome | {"status": "failed", "error": str(error)}

    def slide(self, slide_id: str) -> Optional[EncodedSlide]:
        """The slide's corners and pixels (looked up once per slide), or None without them."""
        if self._slide[0] != slide_id:
            self._slide = (slide_id, self.pixels.find(slide_id))
        return self._slide[1]

    def bag(self, slide_id: str) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The slide's bag as the model reads it, and the region of each instance of a flat patch bag."""
        path = self.bank.path(slide_id)
        if not path.is_file():
            raise BadInputError(
                f"slide '{slide_id}' has no feature file in {self.bank.features_dir} (<slide_id>.pt or .h5): check "
                "slide_id / slide_csv and features_dir"
            )
        features = self.bank.load(slide_id)
        check_features(features[..., :-1] if self.bank.tissue else features, self.bank.level, self.bank.dim, path)
        if not self.trained.settings.patch_bags:
            return features, None
        regions, patches = features.shape[:2]
        return features.reshape(-1, features.shape[-1]), torch.arange(regions).repeat_interleave(patches)

    def contributions(self, slide_id: str) -> pd.DataFrame:
        """One row per region: its contribution, the output without it, and the slide's output."""
        bag, groups = self.bag(slide_id)
        bag = bag.to(self.device)
        task = self.trained.task
        target = self.cfg.target_class
        if task.kind == "classification" and target is None:
            with torch.inference_mode():
                target = int(self.trained.model(bag).argmax())
        self.target = target
        result = leave_one_out(
            self.trained.model, bag, lambda logits: task.explained(logits, target), groups, self.cfg.batch_size
        )
        count = len(result.contributions)
        table = pd.DataFrame(
            {
                "slide_id": slide_id,
                "region": range(count),
                "contribution": result.contributions.numpy(),
                "without": result.without.numpy(),
                "output": result.output,
                "explained": task.explained_name,
                "target_class": target if target is not None else "",
            }
        )
        slide = self.slide(slide_id)
        if slide is not None:
            if len(slide.corners) != count:
                raise BadInputError(
                    f"slide '{slide_id}': {self.pixels.source_name} gives {len(slide.corners)} region corners but its "
                    f"features have {count} rows: give the {self.pixels.source_name} these features were extracted from"
                )
            table.insert(2, "x", slide.corners[:, 0])
            table.insert(3, "y", slide.corners[:, 1])
        return table

    def write_patches(self, slide_id: str, folder: Path) -> None:
        """``patch_contributions.csv`` (and with pixels ``patch_canvas.png``): each patch masked inside ViT_region."""
        grids = self.bag(slide_id)[0].to(self.device)
        task = self.trained.task
        values = patch_contributions(
            self.trained.model, grids, lambda logits: task.explained(logits, self.target), self.cfg.batch_size
        )
        count, patches = values.shape
        side = math.isqrt(patches)
        rows, cols = np.divmod(np.tile(np.arange(patches), count), side)
        table = pd.DataFrame(
            {
                "slide_id": slide_id,
                "region": torch.arange(count).repeat_interleave(patches).numpy(),
                "patch": torch.arange(patches).repeat(count).numpy(),
                "row": rows,
                "col": cols,
                "contribution": values.flatten().numpy(),
            }
        )
        slide = self.slide(slide_id)
        if slide is not None:
            step = slide.source.footprint_lv0 // side
            corners = np.repeat(slide.corners, patches, axis=0)
            table.insert(5, "x", corners[:, 0] + table.col.to_numpy() * step)
            table.insert(6, "y", corners[:, 1] + table.row.to_numpy() * step)
            if self.draw:
                name = task.explained_name
                canvas_figure(slide, table, name, self.style, folder / "patch_canvas.png", size_lv0=step)
        atomic_write_csv(table, folder / "patch_contributions.csv")

    def write(self, slide_id: str, table: pd.DataFrame, folder: Path) -> None:
        """The table last (it marks the slide done); the plot, and with the slide's pixels the pictures."""
        name = self.trained.task.explained_name
        distribution_figure(table, name, folder / "distribution.png")
        slide = self.slide(slide_id)
        if slide is not None:
            write_geojson(table, slide.source.footprint_lv0, name, folder / "contributions.geojson")
        if self.draw:
            if slide is None:
                source = self.pixels.source_name
                raise BadInputError(f"slide '{slide_id}' is not a slide of {source}: no pixels to draw")
            canvas_figure(slide, table, name, self.style, folder / "canvas.png")
            top_regions(slide, table, self.cfg.top_k, folder / "top_regions")
            slide.source.close()
        atomic_write_csv(table, folder / TABLE)
        logger.info("slide %s: %s %.4g, %d regions -> %s", slide_id, name, table.output.iloc[0], len(table), folder)
