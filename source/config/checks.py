"""Value checks shared by several config schemas; each raises :class:`~source.errors.ConfigError` naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig

from source.errors import ConfigError
from source.wsi.settings import validate_tiling


def check_at_least(values: dict[str, Any], minimum: int = 1) -> None:
    """Raise :class:`ConfigError` naming the first key whose value is below ``minimum``."""
    for key, value in values.items():
        if value < minimum:
            raise ConfigError(f"{key} must be >= {minimum}, got {value}")


def check_share(key: str, value: Any) -> None:
    """A share of the data in (0, 1] (or null: all)."""
    if value is not None and not 0 < value <= 1:
        raise ConfigError(f"{key} must be in (0, 1], got {value}")


def check_normalisation(mean: Sequence[float], std: Sequence[float]) -> None:
    """Three positive-std values per channel in ``mean`` / ``std``."""
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ConfigError(f"{key} needs one value per RGB channel (3 values), got {list(values)}")
    if any(value <= 0 for value in std):
        raise ConfigError(f"std values must be positive, got {list(std)}")


def check_architectures(
    patch_arch: Optional[str], region_arch: Optional[str] = None, keys=("vit_patch_arch", "vit_region_arch")
) -> None:
    """Registered ViT_patch (pixels, or ``timm:<model>``) / ViT_region (grid) names (:mod:`source.models.registry`);
    ``keys`` are the config keys named in the message, None names are not checked."""
    from source.models.registry import EncoderKind, encoder_spec

    for key, name, kind in ((keys[0], patch_arch, EncoderKind.pixels), (keys[1], region_arch, EncoderKind.grid)):
        if name is not None:
            try:
                encoder_spec(name, kind)
            except ValueError as error:
                raise ConfigError(f"{key}: {error}") from error


WSI_CSV_USE = (
    "wsi_csv=slides.csv reads whole-slide images (columns slide_id, image_path[, mask_path][, spacing_at_level_0])"
)


def check_one_input(cfg: DictConfig, folder_key: str, folder_use: str, folder_meaning: str) -> None:
    """Exactly one of ``folder_key`` (an existing folder) and ``wsi_csv`` is set.

    Args:
        folder_use: how the folder input is used, for the message (e.g. ``region_dir=... reads ...``).
        folder_meaning: what the folder must be, for the message when it is not one.
    """
    if bool(cfg[folder_key]) == bool(cfg.wsi_csv):
        given = "both are set" if cfg.wsi_csv else "neither is set"
        raise ConfigError(f"give exactly one input, {folder_key} or wsi_csv ({given}): {WSI_CSV_USE}; {folder_use}")
    if cfg[folder_key] and not Path(cfg[folder_key]).is_dir():
        raise ConfigError(f"{folder_key} '{cfg[folder_key]}' is not {folder_meaning}")


def validate_whole_slide_keys(cfg: DictConfig) -> None:
    """``wsi_csv`` a file, ``coordinates_dir`` a folder and only with ``wsi_csv``, and the ``tiling`` block
    (the whole-slide keys shared by extraction, heatmaps and patch pretraining)."""
    if cfg.wsi_csv and not Path(cfg.wsi_csv).is_file():
        raise ConfigError(
            f"wsi_csv '{cfg.wsi_csv}' is not a file: give a csv with columns slide_id, image_path[, mask_path][, "
            "spacing_at_level_0]"
        )
    if cfg.coordinates_dir and not cfg.wsi_csv:
        raise ConfigError("coordinates_dir needs wsi_csv: reused coordinates are read from the whole-slide images")
    if cfg.coordinates_dir and not Path(cfg.coordinates_dir).is_dir():
        raise ConfigError(
            f"coordinates_dir '{cfg.coordinates_dir}' is not a folder of <slide_id>.coordinates.npz / "
            ".coordinates.meta.json files"
        )
    validate_tiling(cfg.tiling)


def check_shared_run(cfg: DictConfig) -> None:
    """``shared_run: true`` needs the ``run_id`` every job of the run shares."""
    if cfg.shared_run and not cfg.run_id:
        raise ConfigError(
            "shared_run: true needs run_id: every job of a shared run must name the same run folder, e.g. "
            "run_id=cohort1 (a timestamp would give each job its own folder)"
        )
