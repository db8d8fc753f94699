"""One trained slide model's exact contributions, slide by slide: the bag as the model reads it, leave-one-out of
each region (and each patch at level local), the table, plots, GeoJSON, canvases and top regions."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import torch

from source.data.bags import SlideBag
from source.data.features import FeatureFileError, check_features
from source.data.regions import BadInputError
from source.explain.contributions import leave_one_out, patch_contributions
from source.explain.outputs import canvas_figure, distribution_figure, top_regions, write_geojson
from source.explain.pixels import SlidePixels
from source.explain.settings import ExplainSettings
from source.io import UnsafePathError, atomic_write_csv, safe_join
from source.wsi.extraction_run import EncodedSlide

if TYPE_CHECKING:
    from source.tasks.trained import TrainedSlideModel

logger = logging.getLogger(__name__)
TABLE = "contributions.csv"
"""A slide's table, written last: its presence marks the slide explained."""


class SlideExplainer:
    """Contributions of one trained model, slide by slide.

    Args:
        settings: what the job asks for.
        trained: the trained slide model (its task says what a contribution explains).
        features_dir: the slides' feature files.
    """

    def __init__(self, settings: ExplainSettings, trained: TrainedSlideModel, features_dir: str) -> None:
        self.settings, self.trained = settings, trained
        model = trained.settings
        self.layout = SlideBag.of(model)
        self.bank = self.layout.bank(features_dir, cache=False)
        self.pixels = SlidePixels(settings.pixels, self.bank.path)
        self.draw = self.pixels.given if settings.canvases is None else bool(settings.canvases)
        self._slide: tuple[str, Optional[EncodedSlide]] = ("", None)
        self.device = next(trained.model.parameters()).device
        self.explains_patches = settings.patch_contributions and model.level == "local" and not model.patch_bags
        self.target: Optional[int] = None
        self.style = settings.style

    def run(self, slide_id: str, run_dir: Path) -> dict:
        """Explain one slide into ``run_dir/<slide_id>/``; a bad slide is recorded, never raised."""
        outcome = {"slide_id": slide_id, "status": "success", "error": "", "num_regions": 0, "output": float("nan")}
        try:
            folder = safe_join(run_dir, slide_id)
            if self.settings.resume and (folder / TABLE).is_file():
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
        return self.layout.flatten(features)

    def contributions(self, slide_id: str) -> pd.DataFrame:
        """One row per region: its contribution, the output without it, and the slide's output."""
        bag, groups = self.bag(slide_id)
        bag = bag.to(self.device)
        task = self.trained.task
        with torch.inference_mode():
            target = task.explanation_target(self.trained.model(bag).reshape(-1), self.settings.target_class)
        self.target = target
        result = leave_one_out(
            self.trained.model, bag, lambda logits: task.explained(logits, target), groups, self.settings.batch_size
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
            self.trained.model, grids, lambda logits: task.explained(logits, self.target), self.settings.batch_size
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
            top_regions(slide, table, self.settings.top_k, folder / "top_regions")
            slide.source.close()
        atomic_write_csv(table, folder / TABLE)
        logger.info("slide %s: %s %.4g, %d regions -> %s", slide_id, name, table.output.iloc[0], len(table), folder)
