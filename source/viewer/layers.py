"""The viewer's layers: what each shows and how its values become colours.

Attention (rank-normalised by the heatmap run, in (0, 1]) uses matplotlib's ``inferno``: black for the lowest, then
red and orange up to pale yellow for the highest, so higher is brighter and redder. Contributions use ``RdBu_r``, a
diverging map centred at 0: blue lowers the model's output, white changes nothing, red raises it; its range is
symmetric, +-the largest absolute value of the slide's layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ATTENTION_CMAP = "inferno"
CONTRIBUTION_CMAP = "RdBu_r"


@dataclass(frozen=True)
class LayerSpec:
    """One value layer: its colour map, whether the range is symmetric around 0, and its legend."""

    cmap: str
    diverging: bool
    title: str


VALUE_LAYERS = {
    "attention": LayerSpec(ATTENTION_CMAP, False, "slide-level attention: the slide model's, over the regions (rank)"),
    "contributions": LayerSpec(
        CONTRIBUTION_CMAP, True, "contribution: the model's output minus its output without the region"
    ),
    "region_attention": LayerSpec(
        ATTENTION_CMAP, False, "region-level attention: ViT_region's, over each region's patches (rank)"
    ),
    "patch_contributions": LayerSpec(
        CONTRIBUTION_CMAP, True, "patch contribution: the output minus the output with the patch masked"
    ),
}
"""Value layers in the order of the layer list (the first present is shown at first)."""
OUTLINE_LAYERS = {
    "grid": "the regions, each with its row and the value of the first layer",
    "tissue": "tissue outlines (hs2p's HSV rule on the slide's thumbnail)",
}


@dataclass(frozen=True)
class Scale:
    """Values -> colours: ``cmap`` over ``[vmin, vmax]``."""

    cmap: str
    vmin: float
    vmax: float

    def colours(self, values: np.ndarray) -> np.ndarray:
        """``values`` of any shape -> RGBA uint8 of shape ``(*values.shape, 4)``; NaN is transparent."""
        from matplotlib import colormaps

        span = self.vmax - self.vmin
        fractions = np.clip((np.nan_to_num(values, nan=self.vmin) - self.vmin) / span, 0.0, 1.0)
        rgba = colormaps[self.cmap](fractions, bytes=True)
        rgba[..., 3] = np.where(np.isnan(values), 0, 255)
        return rgba


def scale_of(name: str, values: np.ndarray) -> Scale:
    """The scale of a value layer: ``[0, 1]`` for attention (ranks), ``[-m, m]`` with ``m`` the largest absolute value
    for contributions (a layer of zeros gets ``[-1, 1]``)."""
    spec = VALUE_LAYERS[name]
    if not spec.diverging:
        return Scale(spec.cmap, 0.0, 1.0)
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return Scale(spec.cmap, -limit, limit)


def colorbar(cmap: str, width: int = 256) -> np.ndarray:
    """A horizontal colour bar of ``cmap``, low to high: ``(1, width, 3)`` uint8."""
    from matplotlib import colormaps

    return colormaps[cmap](np.linspace(0.0, 1.0, width)[None, :], bytes=True)[..., :3]
