"""mask_background beyond extraction: ViT_region reads a tissue channel, and level-local training, contributions and
region pretraining mask the background patches it marks (all-tissue regions: bit for bit the unmasked model)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from source.config.contribution import ContributionConfig
from source.data.features import FeatureFileError
from source.engines.contribution_job import run_contribution_job
from source.engines.pretraining_job import run_pretraining_job
from source.engines.training_job import run_training_job
from source.errors import ConfigError
from source.models.factory import build_vit_region
from source.models.hipt import features_to_grid
from source.models.settings import EncoderSettings
from source.pretraining.data import PretrainingDataError
from source.tasks.trained import load_trained_slide_model
from tests.helpers import pretraining_config
from tests.pretraining.dino_runs import log
from tests.training_data import classification_data, job_config

LOCAL = {"level": "local", "model.embed_dim_patch": 32, "model.pretrain_vit_region": None}


def tissue_like(features_dir: Path, background: float = 0.3, seed: int = 0) -> None:
    """``features/../tissue/<slide>.pt``: ``(M, n*n)`` fractions, a share ``background`` of them 0 (glass)."""
    generator = torch.Generator().manual_seed(seed)
    (features_dir.parent / "tissue").mkdir(exist_ok=True)
    for path in sorted(features_dir.glob("*.pt")):
        shape = torch.load(path, weights_only=True).shape[:2]
        fractions = torch.rand(shape, generator=generator) * 0.5 + 0.5
        fractions[torch.rand(shape, generator=generator) < background] = 0.0
        torch.save(fractions, features_dir.parent / "tissue" / path.name)


def test_vit_region_reads_a_tissue_channel_as_a_key_mask():
    torch.manual_seed(0)
    vit = build_vit_region(EncoderSettings(warn_random=False), input_dim=32).eval()
    grid = torch.randn(2, 32, 4, 4)
    tissue = torch.ones(2, 1, 4, 4)
    with torch.no_grad():
        plain = vit(grid)
        vit.tissue_threshold = 0.5
        assert torch.equal(vit(torch.cat([grid, tissue], dim=1)), plain)  # all tissue: bit for bit
        tissue[0, 0, 1, 2] = tissue[1, 0, 3, 3] = 0.2
        masked = vit(torch.cat([grid, tissue], dim=1))
        vit.tissue_threshold = None
        keep = tissue.flatten(1) >= 0.5
        torch.testing.assert_close(masked, vit(grid, keep))
    assert not torch.allclose(masked, plain)


def test_level_local_training_and_contributions_mask_background_patches(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3, dim=32, local_grid=4, seed=5)
    cfg = job_config("classification", tmp_path, paths, nepochs=1, **LOCAL, **{"model.mask_background": True})
    with pytest.raises(FeatureFileError, match=r"tissue.slide_\d+\.pt is missing: mask_background needs"):
        run_training_job(cfg, "classification", multi=False)
    tissue_like(paths["features_dir"])
    cfg = job_config("classification", tmp_path, paths, nepochs=1, **LOCAL, **{"model.mask_background": True})
    run_training_job(cfg, "classification", multi=False)
    checkpoint = tmp_path / "out" / "classification" / "run" / "best.pt"
    trained = load_trained_slide_model(checkpoint)
    model = trained.model.eval()
    assert model.vit_region.tissue_threshold == pytest.approx(0.1)  # rebuilt from the checkpoint's config
    features = torch.load(paths["features_dir"] / "slide_000.pt", weights_only=True)
    tissue = torch.load(paths["features_dir"].parent / "tissue" / "slide_000.pt", weights_only=True)
    with torch.no_grad():
        through_the_channel = model(torch.cat([features, tissue.unsqueeze(-1)], dim=-1))
        model.vit_region.tissue_threshold = None
        regions = model.vit_region(features_to_grid(features), tissue >= 0.1)  # the independent computation
        independent = model.classifier(model.aggregator(regions)[0])
        unmasked = model(features)
    torch.testing.assert_close(through_the_channel, independent)
    assert not torch.allclose(through_the_channel, unmasked)
    config = {"checkpoint": str(checkpoint), "slide_id": "slide_000", "output_dir": str(tmp_path), "run_id": "c"}
    assert run_contribution_job(OmegaConf.merge(OmegaConf.structured(ContributionConfig), config)) == 0
    patches = pd.read_csv(tmp_path / "contributions" / "c" / "slide_000" / "patch_contributions.csv")
    glass = (tissue < 0.1).flatten().numpy()
    values = patches.contribution.abs()
    assert glass.any() and values[glass].max() < 1e-6  # already masked: masking it again changes nothing
    assert values[~glass].max() > 1e-4


def test_mask_background_is_refused_where_it_has_no_meaning(tmp_path):
    paths = classification_data(tmp_path / "data", n_slides=20, regions=3)
    for values, message in (
        ({"model.mask_background": True}, "needs level: local"),
        ({**LOCAL, "model.mask_background": True, "model.aggregator": "abmil"}, "applies to the hipt aggregator only"),
    ):
        with pytest.raises(ConfigError, match=message):
            run_training_job(
                job_config("classification", tmp_path, paths, nepochs=1, **values), "classification", False
            )


FAST = {
    "model.out_dim": 64,
    "model.teacher_temp": 0.04,
    "model.warmup_teacher_temp_epochs": 1,
    "model.drop_path_rate": 0.0,
    "training.nepochs": 2,
    "training.warmup_epochs": 1,
    "training.batch_size_per_gpu": 3,
    "aug.local_crops_number": 2,
    "speed.num_workers": 0,
    "device": "cpu",
}


def test_region_pretraining_masks_background_and_all_tissue_changes_nothing(tmp_path):
    torch.manual_seed(0)
    slides = tmp_path / "features" / "slide"
    slides.mkdir(parents=True)
    for name in ("a", "b"):
        torch.save(torch.randn(3, 16, 384), slides / f"{name}.pt")

    def losses(run_id: str, **values) -> list[float]:
        cfg = pretraining_config("region", data_dir=str(slides), output_dir=str(tmp_path), run_id=run_id, **FAST)
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)
        assert run_pretraining_job(cfg, "region") == 0
        return [record["loss"] for record in log(tmp_path / "dino_region" / run_id)]

    with pytest.raises(PretrainingDataError, match=r"tissue.a\.pt' is missing"):
        losses("missing", **{"model.mask_background": True})
    tissue_like(slides, background=0.0)  # every patch on tissue
    plain = losses("plain")
    assert losses("all_tissue", **{"model.mask_background": True}) == plain
    tissue_like(slides, background=0.4)
    masked = losses("masked", **{"model.mask_background": True})
    assert all(torch.isfinite(torch.tensor(masked))) and masked != plain
    with pytest.raises(ConfigError, match="applies to the region stage"):
        cfg = pretraining_config("patch", data_dir=str(tmp_path), output_dir=str(tmp_path), **FAST)
        OmegaConf.update(cfg, "model.mask_background", True)
        run_pretraining_job(cfg, "patch")


def test_heatmaps_give_a_masked_level_local_model_the_tissue_of_each_patch(tmp_path, region_dir):
    from source.engines.heatmap_job import run_heatmap_job
    from tests.heatmaps.test_heatmap_job import slide_checkpoint, subset_config

    model = {"level": "local", "model.embed_dim_patch": 192, "model.mask_background": True}
    weights = slide_checkpoint(tmp_path / "best.pt", **model)
    cfg = subset_config(tmp_path, region_dir, weights, run_id="r", heads=[0], save_region_maps=False)
    assert run_heatmap_job(cfg) == 0
    table = pd.read_csv(tmp_path / "heatmaps" / "r" / "subset" / "attention.csv")
    slide_rows = table[table.level == "slide"]
    assert len(slide_rows) == 3 and slide_rows.score.between(0, 1).all()
