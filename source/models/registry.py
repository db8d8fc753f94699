"""The one registry of encoder architectures: every name a config, a factory or pretraining accepts.

An encoder is of one of two kinds: it encodes **pixels** (a ViT_patch: ``(B, 3, H, W)`` images ->
``(B, D)``) or a **grid** of patch features (a ViT_region: ``(B, C, n, n)`` -> ``(B, D)``). Each entry
names its builder as ``module:function`` so that the names are known without importing torch (config
checks run before any model is built); :func:`build_encoder` imports and calls it.

Adding an encoder is one entry here (and its builder); configs, the factory, pretraining and the
registry test pick it up.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional


class EncoderKind(str, Enum):
    """What an encoder reads: images (ViT_patch) or grids of patch features (ViT_region)."""

    pixels = "pixels"
    grid = "grid"


@dataclass(frozen=True)
class EncoderSpec:
    """One registered architecture.

    Attributes:
        name: the name configs use (``vit_patch_arch``, ``vit_region_arch``, ``model.arch``).
        kind: pixels or grid.
        builder: ``module:function`` returning the ``nn.Module`` (keyword arguments passed through).
        embed_dim: width of its output features (None: known once built, e.g. ``timm:<model>``).
        description: one line for listings and errors.
    """

    name: str
    kind: EncoderKind
    builder: str
    embed_dim: Optional[int]
    description: str
    options: tuple[tuple[str, Any], ...] = ()
    """Fixed keyword arguments of the builder (e.g. the preset name)."""


ENCODERS: dict[str, EncoderSpec] = {}


def register(spec: EncoderSpec) -> EncoderSpec:
    """Add ``spec`` to the registry (a name can be registered once)."""
    if spec.name in ENCODERS:
        raise ValueError(f"encoder '{spec.name}' is already registered")
    ENCODERS[spec.name] = spec
    return spec


for _spec in (
    EncoderSpec("vit_tiny", EncoderKind.pixels, "source.models.vit:vit_tiny", 192, "ViT-Ti/16: 12 blocks, 3 heads"),
    EncoderSpec(
        "vit_small", EncoderKind.pixels, "source.models.vit:vit_small", 384, "ViT-S/16 (HIPT's ViT_patch): 6 heads"
    ),
    EncoderSpec("vit_base", EncoderKind.pixels, "source.models.vit:vit_base", 768, "ViT-B/16: 12 blocks, 12 heads"),
    EncoderSpec(
        "vit4k_xs", EncoderKind.grid, "source.models.vit:vit4k_xs", 192, "ViT4K-XS (HIPT's ViT_region): 6 blocks"
    ),
):
    register(_spec)

TIMM_BUILDER = "source.models.timm_encoders:build_timm_encoder"
PRESET_WIDTHS = {"uni": 1024, "uni2": 1536, "virchow2": 2560, "h_optimus_0": 1536, "prov_gigapath": 1536}
"""Pathology foundation models (:data:`source.models.timm_encoders.PRESETS`) and their output widths."""
for _name, _width in PRESET_WIDTHS.items():
    register(EncoderSpec(_name, EncoderKind.pixels, TIMM_BUILDER, _width, f"{_name} (timm preset)", (("name", _name),)))

DYNAMIC_PREFIXES = ("timm:", "hf-hub:")
"""Pixel encoders named by timm (``timm:<model>``) or by a Hugging Face Hub id (``hf-hub:<org>/<model>``)."""

DEFAULT_PATCH_ENCODER = "vit_small"
DEFAULT_REGION_ENCODER = "vit4k_xs"


def encoder_names(kind: EncoderKind | str) -> tuple[str, ...]:
    """The registered names of one kind, in registration order."""
    return tuple(name for name, spec in ENCODERS.items() if spec.kind == EncoderKind(kind))


def encoder_spec(name: str, kind: EncoderKind | str | None = None) -> EncoderSpec:
    """The entry of ``name``.

    Raises:
        ValueError: an unknown name, or one of the other kind; the message lists the valid names.
    """
    spec = ENCODERS.get(name)
    if spec is None and name.startswith(DYNAMIC_PREFIXES):
        spec = EncoderSpec(name, EncoderKind.pixels, TIMM_BUILDER, None, f"{name} (timm)", (("name", name),))
    if spec is None or (kind is not None and spec.kind != EncoderKind(kind)):
        valid = encoder_names(kind) if kind is not None else tuple(ENCODERS)
        what = f"{EncoderKind(kind).value} encoder" if kind is not None else "encoder"
        also = " or timm:<model name>" if kind is None or EncoderKind(kind) == EncoderKind.pixels else ""
        raise ValueError(f"unknown {what} '{name}'; choose one of {list(valid)}{also}")
    return spec


def build_encoder(name: str, kind: EncoderKind | str | None = None, **kwargs: Any):
    """Build the registered architecture ``name`` (an ``nn.Module``) with ``kwargs``."""
    spec = encoder_spec(name, kind)
    module_name, function = spec.builder.split(":")
    return getattr(importlib.import_module(module_name), function)(**dict(spec.options), **kwargs)
