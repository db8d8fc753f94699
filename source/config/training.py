"""Schemas and checks of the slide-level training configs (``train/*.py``) and of inference."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from source.config.checks import check_architectures, check_at_least, check_share
from source.config.common import (
    CheckpointChoice,
    Level,
    MinMax,
    Optimizer,
    PosEmbed,
    Scheduler,
    WandbConfig,
)
from source.config.run_block import RunBlock, check_run_block
from source.errors import ConfigError
from source.models.slide_registry import SLIDE_HEADS, option_blocks


@dataclass
class DataConfig:
    train_csv: Optional[str] = None
    tune_csv: Optional[str] = None
    test_csv: Optional[str] = None
    fold_dir: Optional[str] = None
    allow_overlap: bool = False
    train_fraction: Optional[float] = None


@dataclass
class TrainingSection:
    batch_size: int = 1
    pct: Optional[float] = None
    weighted_sampling: bool = False
    gradient_accumulation: int = 32


@dataclass
class TuningSection:
    tune_every: int = 1


@dataclass
class TestingSection:
    retrieve_checkpoint: CheckpointChoice = CheckpointChoice.best


@dataclass
class EarlyStoppingConfig:
    enable: bool = False
    tracking: Optional[str] = None
    min_max: Optional[MinMax] = None
    patience: int = 10
    min_epoch: int = 30


@dataclass
class SchedulerConfig:
    name: Optional[Scheduler] = None
    step_size: int = 20
    gamma: float = 0.5
    eta_min: float = 0.0
    factor: float = 0.5
    patience: int = 5


@dataclass
class OptimConfig:
    name: Optimizer = Optimizer.adam
    lr: float = 0.0002
    wd: float = 1e-5
    momentum: float = 0.9
    lr_scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class SlidePosEmbedConfig:
    use: bool = False
    type: PosEmbed = PosEmbed.sinusoidal
    max_len: int = 512


@dataclass
class _ModelKeys:
    """The ``model`` keys of every training config but the aggregators' option blocks (see :data:`ModelConfig`)."""

    aggregator: str = "hipt"
    hidden_dim: int = 256
    max_bag_size: Optional[int] = None
    dropout: float = 0.25
    embed_dim_region: int = 192
    embed_dim_patch: int = 384
    slide_pos_embed: SlidePosEmbedConfig = field(default_factory=SlidePosEmbedConfig)
    pretrain_vit_region: Optional[str] = None
    vit_region_arch: str = "vit4k_xs"
    checkpoint_key: str = "teacher"
    img_size_pretrained: Optional[int] = None
    freeze_vit_region: bool = True
    freeze_vit_region_pos_embed: bool = True
    mask_background: bool = False
    tissue_threshold: float = 0.1


def _with_option_blocks(keys: type, after: str) -> type:
    """``keys`` with one field per option block of the aggregator registry (``model.clam``, ...), inserted after the
    field ``after``: an aggregator that declares options gets its keys in every training schema."""
    hints = typing.get_type_hints(keys)
    fields: list = []
    for known in dataclasses.fields(keys):
        default = (
            field(default_factory=known.default_factory)
            if known.default_factory is not dataclasses.MISSING
            else field(default=known.default)
        )
        fields.append((known.name, hints[known.name], default))
        if known.name == after:
            fields += [(key, block, field(default_factory=block)) for key, block in option_blocks().items()]
    namespace = {"__module__": __name__, "__doc__": "Every ``model`` key of a training config."}
    return dataclasses.make_dataclass("ModelConfig", fields, namespace=namespace)


ModelConfig = _with_option_blocks(_ModelKeys, after="max_bag_size")
"""Every ``model`` key: :class:`_ModelKeys` and each registered aggregator's option block (e.g. ``clam``)."""


@dataclass
class TrainingConfig(RunBlock):
    """Keys every training config has; each task adds its own (:func:`source.tasks.registry.training_schema`)."""

    data: DataConfig = field(default_factory=DataConfig)
    features_dir: str = MISSING
    experiment_name: str = "training"
    seed: int = 0
    level: Level = Level["global"]
    nepochs: int = 50
    label_name: str = "label"
    training: TrainingSection = field(default_factory=TrainingSection)
    tuning: TuningSection = field(default_factory=TuningSection)
    testing: TestingSection = field(default_factory=TestingSection)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class InferenceConfig(RunBlock):
    """Keys of ``inference/*.py``."""

    checkpoints: list[str] = field(default_factory=list)
    run_dir: Optional[str] = None
    checkpoint_name: str = "best"
    test_csvs: Any = None
    features_dir: Optional[str] = None
    experiment_name: str = "inference"


TRAINING_BASE = "training_base"
"""The name ``config/training/base.yaml`` is registered under (every task's ``single.yaml`` composes it)."""
TASK_GROUP = "task"
"""The Hydra group of ``config/training/task/<task>.yaml``: one task's keys, merged at the root over the base."""


def register_training_configs(config_dir: Path) -> None:
    """Register ``config_dir/training/base.yaml`` as :data:`TRAINING_BASE` and every ``task/<task>.yaml`` in the
    :data:`TASK_GROUP` group (at the root), so that ``config/training/<task>/single.yaml`` composes schema, base and
    task."""
    from source.config.core import register_yaml

    training = Path(config_dir) / "training"
    register_yaml(TRAINING_BASE, training / "base.yaml")
    for path in sorted((training / TASK_GROUP).glob("*.yaml")):
        register_yaml(path.stem, path, group=TASK_GROUP, package="_global_")


SHARED_RESUME_KEYS = ("level", "features_dir", "label_name", "seed", "data", "model", "optim", "training")
"""Keys of every task that must not change when a training run is resumed (``nepochs`` may grow: training continues);
each task adds its own (``Task.resume_keys``)."""


def saved_training_config(schema: type, saved: dict) -> DictConfig:
    """The config a checkpoint saved (plain containers), typed by its task's ``schema`` (keys it predates take their
    defaults)."""
    return OmegaConf.merge(OmegaConf.structured(schema), saved)


def validate_training(cfg: DictConfig, multi: bool) -> None:
    """Check the shared values the schema's types cannot; raise :class:`ConfigError` naming the key (the task's own
    keys: ``Task.config_problems``)."""
    _check_training_inputs(cfg, multi)
    check_at_least(
        {
            "nepochs": cfg.nepochs,
            "training.gradient_accumulation": cfg.training.gradient_accumulation,
            "tuning.tune_every": cfg.tuning.tune_every,
            "early_stopping.patience": cfg.early_stopping.patience,
        }
    )
    if cfg.training.batch_size != 1:
        raise ConfigError(
            "training.batch_size must be 1 (slides have different numbers of regions); use "
            f"training.gradient_accumulation, got {cfg.training.batch_size}"
        )
    check_share("training.pct", cfg.training.pct)
    check_share("data.train_fraction", cfg.data.train_fraction)
    if cfg.training.pct is not None and cfg.data.train_fraction is not None:
        raise ConfigError(
            "set one of training.pct (a random share) and data.train_fraction (a label-stratified share), not both"
        )
    if not 0 <= cfg.model.dropout < 1:
        raise ConfigError(f"model.dropout must be in [0, 1), got {cfg.model.dropout}")
    check_run_block(cfg)
    check_architectures(None, cfg.model.vit_region_arch, keys=("", "model.vit_region_arch"))
    check_slide_model(cfg)


def _check_training_inputs(cfg: DictConfig, multi: bool) -> None:
    if OmegaConf.is_missing(cfg, "features_dir") or not cfg.features_dir:
        raise ConfigError("features_dir is not set: give the features/slide/ folder written by extract_features.py")
    if not Path(cfg.features_dir).is_dir():
        raise ConfigError(f"features_dir '{cfg.features_dir}' is not a folder")
    if multi and not cfg.data.fold_dir:
        raise ConfigError("data.fold_dir is not set: give the folder holding fold_<i>/{train,tune,test}.csv")
    for key in () if multi else ("train_csv", "tune_csv"):
        if not cfg.data[key]:
            raise ConfigError(f"data.{key} is not set: give the csv of the {key.split('_')[0]} split")


def check_slide_model(cfg: DictConfig) -> None:
    """``model.aggregator`` registered, its keys in range, and the HIPT-only keys used with HIPT only."""
    from source.models.slide_registry import AGGREGATORS, HIPT_AGGREGATOR

    model = cfg.model
    if model.aggregator not in AGGREGATORS:
        raise ConfigError(f"model.aggregator '{model.aggregator}' is unknown; choose one of {list(AGGREGATORS)}")
    check_at_least({"model.hidden_dim": model.hidden_dim}, 2)
    if model.max_bag_size is not None:
        check_at_least({"model.max_bag_size": model.max_bag_size})
    for key, block in option_blocks().items():  # each block is checked, whichever aggregator is chosen
        options = block(**OmegaConf.to_container(model[key]))
        for name, problem in options.problems(has_classes="num_classes" in cfg):
            raise ConfigError(f"model.{key}.{name} {problem}")
    hipt_only = {"model.agg_method=self_att": model.get("agg_method") == "self_att"}
    hipt_only["model.slide_pos_embed.use=true"] = model.slide_pos_embed.use
    hipt_only["model.mask_background=true"] = model.mask_background
    for key, used in hipt_only.items():
        if used and model.aggregator != HIPT_AGGREGATOR:
            raise ConfigError(f"{key} applies to the hipt aggregator only, not to '{model.aggregator}'")
    if model.aggregator == HIPT_AGGREGATOR and cfg.level.value == "global":
        _check_hipt_width(model.embed_dim_region, [name for name in AGGREGATORS if name != HIPT_AGGREGATOR])
    if model.mask_background and cfg.level.value != "local":
        raise ConfigError(
            "model.mask_background=true masks patches inside ViT_region: it needs level: local (global features were "
            "masked, or not, when they were extracted: extract_features.py mask_background=true)"
        )
    if not 0 <= model.tissue_threshold <= 1:
        raise ConfigError(f"model.tissue_threshold must be a fraction in [0, 1], got {model.tissue_threshold}")


def _check_hipt_width(width: int, projecting: list[str]) -> None:
    """The hipt slide transformer splits its ``width`` over :data:`SLIDE_HEADS` heads; other aggregators
    (``projecting``) first project their input to ``model.hidden_dim`` and take any width."""
    if width % SLIDE_HEADS == 0:
        return
    below = width - width % SLIDE_HEADS
    examples = f"{below} or {below + SLIDE_HEADS}" if below > 0 else str(below + SLIDE_HEADS)
    raise ConfigError(
        f"model.embed_dim_region={width} does not fit the hipt aggregator: its slide transformer has {SLIDE_HEADS} "
        f"heads, so it takes widths that are multiples of {SLIDE_HEADS} (e.g. {examples}). Choose an aggregator "
        f"that projects its input to model.hidden_dim (model.aggregator={', '.join(projecting)}), or features of "
        "another width"
    )
