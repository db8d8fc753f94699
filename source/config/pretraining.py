"""Schemas and checks of the DINO pretraining configs (``pretrain/dino_{patch,region}.py``,
``pretrain/eval_knn.py``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from source.config.checks import check_at_least, check_one_input, check_share, validate_whole_slide_keys
from source.config.common import KnnMetric, MinMax, Precision, WandbConfig
from source.config.run_block import RunBlock, check_run_block
from source.errors import ConfigError
from source.wsi.settings import TilingSettings


@dataclass
class DinoModelConfig:
    arch: str = "vit_small"
    out_dim: int = 65536
    norm_last_layer: bool = True
    use_bn_in_head: bool = False
    momentum_teacher: float = 0.996
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30
    drop_path_rate: float = 0.1
    pretrained_weights: Optional[str] = None
    checkpoint_key: str = "teacher"
    input_dim: Optional[int] = None
    mask_background: bool = False
    tissue_threshold: float = 0.1


@dataclass
class DinoTrainingConfig:
    nepochs: int = 100
    warmup_epochs: int = 10
    freeze_last_layer: int = 1
    batch_size_per_gpu: int = 64
    clip_grad: float = 3.0
    pct: Optional[float] = None
    max_bad_fraction: float = 0.01


@dataclass
class DinoOptimConfig:
    lr: float = 0.0005
    min_lr: float = 1e-6
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4


@dataclass
class AugConfig:
    global_crops_scale: list[float] = field(default_factory=lambda: [0.4, 1.0])
    local_crops_scale: list[float] = field(default_factory=lambda: [0.05, 0.4])
    local_crops_number: int = 8
    global_crops_size: int = 224
    local_crops_size: int = 96
    global_crop_fraction: float = 0.875
    local_crop_fraction: float = 0.375
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])


@dataclass
class SpeedConfig:
    precision: Precision = Precision.fp32
    num_workers: int = 4


@dataclass
class EarlyStoppingConfig:
    enable: bool = False
    tune_every: int = 1
    tracking: KnnMetric = KnnMetric.auc
    min_max: MinMax = MinMax.max
    patience: int = 20
    min_epoch: int = 30
    save_every: int = 10


@dataclass
class DownstreamConfig:
    train_csv: Optional[str] = None
    test_csv: Optional[str] = None
    label_name: str = "label"
    batch_size: int = 64


@dataclass
class KnnConfig:
    k: int = 20
    temperature: float = 0.07
    save_features: bool = False


@dataclass
class PretrainingConfig(RunBlock):
    """Every key of ``config/pretraining/{patch,region}.yaml``."""

    data_dir: str = MISSING
    experiment_name: str = "dino"
    seed: int = 0
    model: DinoModelConfig = field(default_factory=DinoModelConfig)
    training: DinoTrainingConfig = field(default_factory=DinoTrainingConfig)
    optim: DinoOptimConfig = field(default_factory=DinoOptimConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class SlidePatchesConfig:
    """The ``data`` block of the patch stage."""

    patch_size: int = 256
    patches_per_epoch: Optional[int] = None


@dataclass
class PatchPretrainingConfig(PretrainingConfig):
    """Every key of ``config/pretraining/patch.yaml``: the common keys, and whole-slide input."""

    data_dir: Optional[str] = None
    wsi_csv: Optional[str] = None
    coordinates_dir: Optional[str] = None
    tiling: TilingSettings = field(default_factory=TilingSettings)
    data: SlidePatchesConfig = field(default_factory=SlidePatchesConfig)


PRETRAINING_SCHEMAS = {"patch": PatchPretrainingConfig, "region": PretrainingConfig}
"""The config schema of each stage."""


@dataclass
class KnnEvalConfig(RunBlock):
    """Every key of ``config/pretraining/knn.yaml``."""

    checkpoint: Optional[str] = None
    checkpoint_key: str = "teacher"
    arch: str = "vit_small"
    stage: str = "patch"
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    experiment_name: str = "knn"


def validate_pretraining(cfg: DictConfig, stage: str) -> None:
    """Check values the schema's types cannot; raise :class:`ConfigError` naming the key."""
    if stage == "patch":
        _validate_patch_input(cfg)
    elif OmegaConf.is_missing(cfg, "data_dir") or not Path(cfg.data_dir).is_dir():
        raise ConfigError(
            "data_dir must be a folder of region tensors (.pt): the features/slide/ folder of a level-local extraction"
        )
    from source.models.registry import EncoderKind, encoder_names

    expected = encoder_names(EncoderKind.grid if stage == "region" else EncoderKind.pixels)
    if cfg.model.arch not in expected:
        raise ConfigError(
            f"model.arch '{cfg.model.arch}' is not a {stage}-stage architecture; use one of {list(expected)}"
        )
    check_at_least(
        {
            "training.nepochs": cfg.training.nepochs,
            "training.batch_size_per_gpu": cfg.training.batch_size_per_gpu,
            "early_stopping.tune_every": cfg.early_stopping.tune_every,
            "model.out_dim": cfg.model.out_dim,
        }
    )
    _clamp_warmups(cfg)
    if cfg.model.mask_background and stage != "region":
        raise ConfigError("model.mask_background applies to the region stage (ViT_region) only; set it to false")
    if not 0 <= cfg.model.tissue_threshold <= 1:
        raise ConfigError(f"model.tissue_threshold must be a fraction in [0, 1], got {cfg.model.tissue_threshold}")
    check_share("training.pct", cfg.training.pct)
    if bool(cfg.downstream.train_csv) != bool(cfg.downstream.test_csv):
        raise ConfigError(
            "downstream.train_csv and downstream.test_csv go together: set both (kNN monitoring) or neither"
        )
    if cfg.early_stopping.enable and not cfg.downstream.train_csv:
        raise ConfigError(
            "early_stopping.enable needs a labelled downstream set: set downstream.train_csv and downstream.test_csv"
        )
    check_run_block(cfg)


def _clamp_warmups(cfg: DictConfig) -> None:
    """Warm-ups longer than the run are clamped to ``training.nepochs`` (with a warning)."""
    for key in ("training.warmup_epochs", "model.warmup_teacher_temp_epochs"):
        if OmegaConf.select(cfg, key) > cfg.training.nepochs:
            logging.getLogger(__name__).warning(
                "%s (%d) exceeds training.nepochs (%d): clamped to %d",
                key,
                OmegaConf.select(cfg, key),
                cfg.training.nepochs,
                cfg.training.nepochs,
            )
            OmegaConf.update(cfg, key, cfg.training.nepochs)


def _validate_patch_input(cfg: DictConfig) -> None:
    check_one_input(cfg, "data_dir", "data_dir=/data/patches reads patch image files", "a folder of patch images")
    validate_whole_slide_keys(cfg)
    if cfg.data.patch_size < 16:
        raise ConfigError(f"data.patch_size must be at least 16 px, got {cfg.data.patch_size}")
    if cfg.data.patches_per_epoch is not None and cfg.data.patches_per_epoch < 1:
        raise ConfigError(
            f"data.patches_per_epoch must be >= 1 or blank (all patches), got {cfg.data.patches_per_epoch}"
        )
