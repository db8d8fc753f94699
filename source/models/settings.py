"""What builds HIPT's encoders and the slide models, whichever entry point asks: plain, frozen settings objects.

Extraction, heatmaps, level-local training and DINO pretraining each name these settings differently in
their configs (``pretrain_vit_patch`` / ``patch_weights`` / ``model.pretrained_weights`` ...);
:func:`source.config.encoders.encoder_settings` reads any of them into an :class:`EncoderSettings`, and
:mod:`source.models.factory` builds from it alone. No config, torch or model import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from source.models.registry import DEFAULT_PATCH_ENCODER, DEFAULT_REGION_ENCODER
from source.models.slide_registry import HIPT_AGGREGATOR, aggregator_spec

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes of the extraction encoders; ``reduce-overhead`` and ``max-autotune`` replay CUDA graphs on a
GPU."""
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")

TOKEN_SIZE = 16
"""Pixels per ViT_patch token; ViT_region's ``img_size_pretrained`` is counted in the same unit."""


@dataclass(frozen=True)
class EncoderSettings:
    """The architectures, weights and input handling of ViT_patch and ViT_region.

    Attributes:
        level: ``global`` (ViT_patch + ViT_region: ``(B, D_region)`` per region) or ``local`` (ViT_patch only:
            ``(B, n*n, D_patch)``).
        patch_arch / region_arch: registered names (:mod:`source.models.registry`; ``timm:<model>`` for ViT_patch).
        patch_weights / region_weights: checkpoint files; None = random weights (warned when ``warn_random``).
        checkpoint_key: the entry of a DINO training dict to load (``teacher``).
        img_size_pretrained: ViT_region pos-embed size to build, in 16-px units (224 = 14 x 14); None = the
            checkpoint's own grid.
        patch_kwargs: extra keyword arguments of the ViT_patch builder (timm: ``create_model``).
        patch_size: side of the patches ViT_patch reads (256); ``mini_patch_size`` its token size (16).
        patch_batch_size: patches per ViT_patch forward.
        mean / std: pixel normalisation (a timm / foundation-model encoder brings its own).
        precision: autocast of the encoders (``fp32``, ``bf16``, ``fp16``).
        drop_path_rate: stochastic depth of the built encoders (DINO students); 0 everywhere else.
        warn_random: warn when a weights file is None (off where random initialisation is the point).
        adopt_pos_grid: a checkpoint's pos-embed of another grid is taken as is (True; ViT_region only while
            ``img_size_pretrained`` is None) or resized once to the built grid (False: DINO's student and teacher
            must share one shape).
        patch_weights_key / region_weights_key: the config keys of the two weights, named in messages.
    """

    level: str = "global"
    patch_arch: str = DEFAULT_PATCH_ENCODER
    region_arch: str = DEFAULT_REGION_ENCODER
    patch_weights: Optional[str] = None
    region_weights: Optional[str] = None
    checkpoint_key: str = "teacher"
    img_size_pretrained: Optional[int] = None
    patch_kwargs: Optional[Mapping[str, Any]] = None
    patch_size: int = 256
    mini_patch_size: int = TOKEN_SIZE
    patch_batch_size: int = 256
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    precision: str = "fp32"
    drop_path_rate: float = 0.0
    warn_random: bool = True
    adopt_pos_grid: bool = True
    patch_weights_key: str = "pretrain_vit_patch"
    region_weights_key: str = "pretrain_vit_region"

    @property
    def has_region_encoder(self) -> bool:
        """Whether a ViT_region is built (level ``global``)."""
        return self.level == "global"


@dataclass(frozen=True)
class HiptOptions:
    """The options of HIPT's own slide models (``model.*`` keys of a training config that only ``hipt`` reads).

    Attributes:
        pos_embed / max_len: the optional encoding of the region order (None, ``sinusoidal``, ``learned``).
        patient_pooling: slides embedded, then attention over a patient's slides (survival ``self_att``).
        freeze_vit_region / freeze_pos_embed: level local: ViT_region (and its pos-embed) kept fixed.
        vit_region: the ViT_region of level-local HIPT.
        mask_background / tissue_threshold: level local: patches whose tissue fraction (extraction's
            ``features/tissue/``) is below the threshold are masked as ViT_region attention keys; the bags then carry
            the fraction as a last channel ``(M, n*n, patch_dim + 1)``.
    """

    pos_embed: Optional[str] = None
    max_len: int = 512
    patient_pooling: bool = False
    freeze_vit_region: bool = True
    freeze_pos_embed: bool = True
    vit_region: EncoderSettings = field(default_factory=lambda: EncoderSettings(level="local"))
    mask_background: bool = False
    tissue_threshold: float = 0.1


@dataclass(frozen=True)
class SlideModelSettings:
    """What builds a slide-level model (``model.*`` of a training config).

    Attributes:
        aggregator: a name of :mod:`source.models.slide_registry` (``hipt``, ``abmil``, ``clam_sb``, ...).
        level: the features it reads: ``global`` region features ``(M, region_dim)``, or ``local`` grids
            ``(M, n*n, patch_dim)`` (HIPT: through ViT_region; any other aggregator: as a flat bag of patches).
        region_dim / patch_dim: feature widths of the two levels.
        dropout: dropout of the aggregator.
        hidden_dim: instance embedding width of the MIL aggregators (HIPT keeps ``region_dim``).
        options: the aggregator's own options: :class:`HiptOptions` for ``hipt``, the dataclass its registry entry
            declares (e.g. ``ClamOptions``), or None; None is replaced by that class's defaults.
    """

    aggregator: str = HIPT_AGGREGATOR
    level: str = "global"
    region_dim: int = 192
    patch_dim: int = 384
    dropout: float = 0.25
    hidden_dim: int = 256
    options: Any = None

    def __post_init__(self) -> None:
        if self.options is None:
            kind = HiptOptions if self.aggregator == HIPT_AGGREGATOR else aggregator_spec(self.aggregator).options
            object.__setattr__(self, "options", kind() if kind is not None else None)

    @property
    def hipt(self) -> Optional[HiptOptions]:
        """HIPT's options when the aggregator is ``hipt``, else None."""
        return self.options if isinstance(self.options, HiptOptions) else None

    def without_region_weights(self) -> "SlideModelSettings":
        """The same model with ViT_region left unloaded (and unwarned): a trained checkpoint provides all weights."""
        if self.hipt is None:
            return self
        vit_region = replace(self.hipt.vit_region, region_weights=None, warn_random=False)
        return replace(self, options=replace(self.hipt, vit_region=vit_region))

    @property
    def patch_bags(self) -> bool:
        """Whether bags are flat patch features ``(M * n * n, patch_dim)`` (a MIL aggregator at level local)."""
        return self.level == "local" and self.aggregator != HIPT_AGGREGATOR

    @property
    def tissue_channel(self) -> bool:
        """Whether bags carry each patch's tissue fraction as a last channel (level-local HIPT masking background)."""
        return self.hipt is not None and self.hipt.mask_background

    @property
    def patient_bags(self) -> bool:
        """Whether a bag is a patient's list of slides (HIPT pooling slides with attention)."""
        return self.hipt is not None and self.hipt.patient_pooling

    @property
    def instance_dim(self) -> int:
        """Width of one instance of the bags a MIL aggregator reads."""
        return self.patch_dim if self.level == "local" else self.region_dim
