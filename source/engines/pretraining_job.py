"""``pretrain/dino_{patch,region}.py`` and ``pretrain/eval_knn.py`` end to end."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, DistributedSampler
from torchvision import transforms

from source.config.checks import check_architectures
from source.config.core import plain_config
from source.config.encoders import DINO_KEYS, KNN_KEYS, encoder_settings
from source.config.pretraining import validate_pretraining
from source.config.run_block import check_run_block
from source.devices import usable_workers
from source.distributed import DistributedContext
from source.engines.callbacks import EarlyStopping
from source.engines.job import run_job
from source.engines.pretrain import DinoSettings, DinoTrainer, build_schedules
from source.errors import ConfigError
from source.io import atomic_write_text
from source.models.checkpoints import read_checkpoint
from source.models.factory import build_stage_encoder
from source.pretraining.augment import PatchMultiCrop, RegionMultiCrop
from source.pretraining.data import (
    SeededMultiCropDataset,
    check_tissue_files,
    find_images,
    find_region_tensors,
    load_grid,
    load_grid_with_tissue,
    load_rgb,
    read_downstream,
    seeded_share,
    with_full_tissue,
)
from source.pretraining.dino import DINO
from source.pretraining.loss import DINOLoss
from source.pretraining.monitor import KnnMonitor
from source.pretraining.sampling import BalancedEpochSampler
from source.tracking import Tracker

logger = logging.getLogger(__name__)
RESUME_KEYS = ("data_dir", "wsi_csv", "tiling", "data", "seed", "model", "training", "optim", "aug")


def training_dataset(
    cfg: DictConfig, stage: str, run_dir: Path, context: DistributedContext
) -> tuple[SeededMultiCropDataset, list[int]]:
    """Multi-crop views of the patches (stage ``patch``: image files or whole slides) or region tensors
    (stage ``region``), and the group (slide) of each sample for balanced epochs."""
    aug, bad = cfg.aug, cfg.training.max_bad_fraction
    if stage == "region":
        files, grid, width = find_region_tensors(cfg.data_dir)
        cfg.model.input_dim = width
        augment = RegionMultiCrop(grid, aug.global_crop_fraction, aug.local_crop_fraction, aug.local_crops_number)
        if cfg.model.mask_background:  # the tissue fraction rides along as a last channel through every crop
            check_tissue_files(files)
            return SeededMultiCropDataset(files, load_grid_with_tissue, augment, cfg.seed), [0] * len(files)
        return SeededMultiCropDataset(files, load_grid, augment, cfg.seed), [0] * len(files)
    augment = PatchMultiCrop(
        aug.global_crops_scale,
        aug.local_crops_scale,
        aug.local_crops_number,
        aug.global_crops_size,
        aug.local_crops_size,
        aug.mean,
        aug.std,
    )
    if not cfg.wsi_csv:
        files = find_images(cfg.data_dir, cfg.training.pct, cfg.seed, bad)
        return SeededMultiCropDataset(files, load_rgb, augment, cfg.seed, bad), [0] * len(files)
    from source.pretraining.slide_patches import slide_patches

    tiling = OmegaConf.to_object(cfg.tiling)
    refs, groups, reader = slide_patches(
        cfg.wsi_csv, tiling, cfg.data.patch_size, run_dir, context, cfg.coordinates_dir, cfg.resume
    )
    keep = seeded_share(len(refs), cfg.training.pct, cfg.seed)
    refs, groups = [refs[i] for i in keep], [groups[i] for i in keep]
    return SeededMultiCropDataset(refs, reader, augment, cfg.seed, bad, describe=reader.describe), groups


def epoch_sampler(cfg: DictConfig, stage: str, groups: list[int], context: DistributedContext):
    """All samples each epoch, shuffled (``DistributedSampler``), or ``data.patches_per_epoch`` balanced across
    slides."""
    per_epoch = cfg.data.patches_per_epoch if stage == "patch" else None
    if per_epoch is None:
        return DistributedSampler(
            range(len(groups)),
            num_replicas=context.world_size,
            rank=context.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=True,
        )
    if per_epoch > len(groups) and context.is_main:
        logger.warning(
            "data.patches_per_epoch=%d exceeds the %d patches: every patch is used each epoch", per_epoch, len(groups)
        )
    return BalancedEpochSampler(groups, per_epoch, cfg.seed, context.world_size, context.rank)


def downstream_loader(stage: str, mean, std, tissue_channel: bool = False):
    """File -> backbone input for kNN embedding: a normalised image ``(3, H, W)`` or a feature grid ``(C, n, n)``
    (``tissue_channel``: with an all-tissue last channel, for a backbone that masks background)."""
    if stage == "region":
        return (lambda path: with_full_tissue(load_grid(path))) if tissue_channel else load_grid
    normalise = transforms.Compose([transforms.ToTensor(), transforms.Normalize(list(mean), list(std))])
    return lambda path: normalise(load_rgb(path))


def knn_monitor(cfg: DictConfig, stage: str, run_dir: Path, mean, std) -> KnnMonitor | None:
    """The kNN monitor of ``downstream.*``, or None without a downstream set."""
    if not cfg.downstream.train_csv:
        return None
    train_files, train_labels, classes = read_downstream(cfg.downstream.train_csv, cfg.downstream.label_name)
    test_files, test_labels, test_classes = read_downstream(cfg.downstream.test_csv, cfg.downstream.label_name)
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise ConfigError(f"downstream.test_csv has labels {unknown} absent from downstream.train_csv")
    test_labels = torch.as_tensor([classes.index(test_classes[i]) for i in test_labels]).numpy()
    save_dir = run_dir / "knn_features" if cfg.knn.save_features else None
    return KnnMonitor(
        (train_files, train_labels),
        (test_files, test_labels),
        len(classes),
        downstream_loader(stage, mean, std, bool(OmegaConf.select(cfg, "model.mask_background", default=False))),
        cfg.knn.k,
        cfg.knn.temperature,
        cfg.downstream.batch_size,
        save_dir,
    )


def build_dino(cfg: DictConfig, stage: str, crops: int) -> DINO:
    """Student (with drop-path, optionally from ``model.pretrained_weights``), teacher, heads and loss."""
    model = cfg.model
    settings = encoder_settings(cfg, DINO_KEYS[stage], warn_random=False, adopt_pos_grid=False)
    student = build_stage_encoder(settings, stage, model.input_dim)
    teacher_settings = dataclasses.replace(settings, patch_weights=None, region_weights=None, drop_path_rate=0.0)
    teacher = build_stage_encoder(teacher_settings, stage, model.input_dim)  # the student's weights are copied in
    if model.mask_background:
        student.tissue_threshold = teacher.tissue_threshold = model.tissue_threshold
    loss = DINOLoss(
        model.out_dim,
        crops,
        model.warmup_teacher_temp,
        model.teacher_temp,
        model.warmup_teacher_temp_epochs,
        cfg.training.nepochs,
    )
    head = {"out_dim": model.out_dim, "use_bn": model.use_bn_in_head, "norm_last_layer": model.norm_last_layer}
    return DINO(student, teacher, head, loss)


def _check_pretraining(cfg: DictConfig, stage: str) -> None:
    """The config, and weights that must load before whole slides are tiled (the model is built after the data)."""
    validate_pretraining(cfg, stage)
    if cfg.get("wsi_csv") and cfg.model.pretrained_weights:
        read_checkpoint(cfg.model.pretrained_weights, "model.pretrained_weights")


def run_pretraining_job(cfg: DictConfig, stage: str) -> int:
    """Pretrain one stage with DINO; returns the exit code."""
    check = functools.partial(_check_pretraining, stage=stage)
    weights = {"weight_keys": ("model.pretrained_weights",)}
    with run_job(cfg, check=check, resume_keys=RESUME_KEYS, precision_key="speed.precision", **weights) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        _pretrain(cfg, stage, job.run_dir, job.context, job.device)
    return 0


def _pretrain(cfg: DictConfig, stage: str, run_dir: Path, context: DistributedContext, device: torch.device) -> None:
    torch.manual_seed(cfg.seed)
    dataset, groups = training_dataset(cfg, stage, run_dir, context)
    sampler = epoch_sampler(cfg, stage, groups, context)
    batch, global_batch = cfg.training.batch_size_per_gpu, cfg.training.batch_size_per_gpu * context.world_size
    if global_batch > len(sampler) * context.world_size:
        raise ConfigError(
            f"training.batch_size_per_gpu={batch} x {context.world_size} process(es) = {global_batch} exceeds the "
            f"{len(sampler) * context.world_size} samples of an epoch ({cfg.get('wsi_csv') or cfg.data_dir}); lower "
            "training.batch_size_per_gpu"
            + (" or raise data.patches_per_epoch" if stage == "patch" and cfg.data.patches_per_epoch else "")
        )
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=usable_workers(cfg.speed.num_workers),
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    dino = build_dino(cfg, stage, 2 + cfg.aug.local_crops_number).to(device)
    if context.enabled:
        dino.distribute(device)
    optimizer = torch.optim.AdamW(dino.parameter_groups())
    schedules = build_schedules(cfg, len(loader), global_batch)
    stopping = cfg.early_stopping
    stopper = EarlyStopping(stopping.min_max == "max", stopping.patience, stopping.min_epoch, stopping.enable)
    settings = DinoSettings(
        cfg.training.nepochs,
        cfg.training.freeze_last_layer,
        cfg.training.clip_grad,
        cfg.speed.precision.value,
        stopping.tune_every,
        stopping.tracking,
        stopping.save_every,
        show_progress=context.is_main,
    )
    monitor = knn_monitor(cfg, stage, run_dir, cfg.aug.mean, cfg.aug.std)
    tracker = Tracker(
        OmegaConf.to_object(cfg.wandb), run_dir, cfg.experiment_name, plain_config(cfg), active=context.is_main
    )
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    trainer = DinoTrainer(
        dino, optimizer, schedules, loader, settings, run_dir, context, device, stopper, monitor, tracker, config
    )
    logger.info(
        "%s stage: %d samples (%d per epoch), global batch %d, %d iterations per epoch, %d epochs",
        stage,
        len(dataset),
        len(sampler) * context.world_size,
        global_batch,
        len(loader),
        cfg.training.nepochs,
    )
    if cfg.resume:
        trainer.resume()
    try:
        trainer.fit()
    finally:
        tracker.finish()
    snapshot = run_dir / ("best.pt" if (run_dir / "best.pt").exists() else "latest.pt")
    logger.info("teacher snapshot: %s (load it with pretrain_vit_%s=%s)", snapshot, stage, snapshot)


def _check_knn(cfg: DictConfig) -> None:
    check_run_block(cfg)
    if not cfg.checkpoint:
        raise ConfigError("checkpoint is not set: give a DINO snapshot, an official checkpoint or a backbone file")
    if not (cfg.downstream.train_csv and cfg.downstream.test_csv):
        raise ConfigError("downstream.train_csv and downstream.test_csv are needed")
    if cfg.stage not in KNN_KEYS:
        raise ConfigError(f"stage must be one of {list(KNN_KEYS)} (what the checkpoint encodes), got '{cfg.stage}'")
    patch_arch, region_arch = (cfg.arch, None) if cfg.stage == "patch" else (None, cfg.arch)
    check_architectures(patch_arch, region_arch, keys=("arch", "arch"))


def run_knn_job(cfg: DictConfig) -> int:
    """Embed a labelled set with a checkpoint and score the kNN classifier; writes ``metrics.json``."""
    with run_job(cfg, check=_check_knn, distributed=False) as job:
        cfg = job.config  # as it runs: run_id, precision and resume resolved
        run_dir, device = job.run_dir, job.device
        settings = encoder_settings(cfg, KNN_KEYS[cfg.stage], warn_random=False, adopt_pos_grid=False)
        backbone = build_stage_encoder(settings, cfg.stage)
        backbone.to(device)
        stage_cfg = OmegaConf.create({"downstream": cfg.downstream, "knn": cfg.knn})
        monitor = knn_monitor(stage_cfg, cfg.stage, run_dir, cfg.mean, cfg.std)
        metrics = monitor.evaluate(backbone, "backbone", device, DistributedContext())
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        logger.info("kNN (k=%d): %s", cfg.knn.k, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0
