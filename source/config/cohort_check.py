"""The settings of ``python3 -m source.doctor``: the extraction's keys (``config/default.yaml``) given as
``key=value`` arguments, checked as the extraction checks them, read once into :class:`CohortCheckSettings`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from source.config.checks import validate_whole_slide_keys
from source.config.core import compose_base
from source.config.extraction import ExtractionConfig
from source.errors import ConfigError
from source.wsi.settings import TilingSettings


@dataclass(frozen=True)
class CohortCheckSettings:
    """What the pre-flight check of a cohort reads: the slides, their tiling and the features' size and place."""

    wsi_csv: str
    level: str
    region_size: int
    patch_size: int
    tiling: TilingSettings
    vit_patch_arch: str
    device: str
    output_dir: str


def cohort_check_settings(argv: Sequence[str], default_yaml: Path) -> CohortCheckSettings:
    """The extraction config of ``default_yaml`` with the ``key=value`` arguments of ``argv``.

    Raises:
        ConfigError: an unknown key or a bad value (the extraction's checks), or no ``wsi_csv``.
    """
    cfg = compose_base(ExtractionConfig, default_yaml)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([arg for arg in argv if "=" in arg]))
    except OmegaConfBaseException as error:
        raise ConfigError(str(error).splitlines()[0]) from error
    if not cfg.wsi_csv:
        raise ConfigError("give the cohort: python3 -m source.doctor wsi_csv=slides.csv [key=value ...]")
    validate_whole_slide_keys(cfg)
    return CohortCheckSettings(
        wsi_csv=str(cfg.wsi_csv),
        level=cfg.level.value,
        region_size=int(cfg.region_size),
        patch_size=int(cfg.patch_size),
        tiling=OmegaConf.to_object(cfg.tiling),
        vit_patch_arch=str(cfg.vit_patch_arch),
        device=str(cfg.device),
        output_dir=str(cfg.output_dir),
    )
