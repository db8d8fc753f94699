"""What a contribution job is asked for, as plain settings (no torch): read from its config once, at the edge
(:func:`source.config.contribution.explain_settings`), and taken by :mod:`source.explain`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class CanvasStyle:
    """How canvases are drawn: the diverging colormap, colour strength, width in pixels, tissue only or not."""

    cmap: str = "RdBu_r"
    opacity: float = 0.6
    width: int = 2000
    restrict_to_tissue: bool = True


@dataclass(frozen=True)
class PixelSources:
    """Where the pictures get each slide's pixels and region corners (at most one of the three inputs).

    Attributes:
        extraction_run: a whole-slide extraction run (its coordinates and slides).
        wsi_csv: the slides; corners from ``coordinates_dir`` or from h5 feature files' ``coords``.
        coordinates_dir: hs2p coordinates of the slides of ``wsi_csv``.
        region_dir: ``<slide_id>/imgs/<x>_<y>.<format>`` region images.
        format: the region images' extension.
    """

    extraction_run: Optional[str] = None
    wsi_csv: Optional[str] = None
    coordinates_dir: Optional[str] = None
    region_dir: Optional[str] = None
    format: str = "jpg"

    @property
    def given(self) -> bool:
        """Whether any pixel input is named."""
        return bool(self.extraction_run or self.wsi_csv or self.region_dir)

    @property
    def source_name(self) -> str:
        """The key of the pixel input (named in errors)."""
        return "extraction_run" if self.extraction_run else "wsi_csv" if self.wsi_csv else "region_dir"


@dataclass(frozen=True)
class ExplainSettings:
    """One contribution job's choices.

    Attributes:
        features_dir: the feature files (None: the trained model's own ``features_dir``).
        target_class: the class whose probability is explained (None: the predicted class).
        patch_contributions: also explain each patch (level local, region bags).
        batch_size: masked copies of a bag per forward.
        canvases: draw the canvases (None: when a pixel input is given).
        top_k: how many of the most positive and most negative regions to save as images.
        resume: keep slides whose table is written.
        style: how canvases are drawn.
        pixels: where the pictures get the slides' pixels.
    """

    features_dir: Optional[str] = None
    target_class: Optional[int] = None
    patch_contributions: bool = True
    batch_size: int = 64
    canvases: Optional[bool] = None
    top_k: int = 4
    resume: bool = False
    style: CanvasStyle = field(default_factory=CanvasStyle)
    pixels: PixelSources = field(default_factory=PixelSources)
