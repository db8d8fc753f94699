"""One EncoderSettings from every entry point's config, and encoders built from it alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from source.config.encoders import DINO_KEYS, EXTRACTION_KEYS, HEATMAP_KEYS, KNN_KEYS, TRAINING_KEYS, encoder_settings
from source.config.heatmaps import HeatmapConfig
from source.config.pretraining import KnnEvalConfig
from source.config.slide_model import slide_model_settings
from source.models.factory import build_hipt_encoder, build_slide_model, build_stage_encoder
from source.models.registry import ENCODERS, EncoderKind, EncoderSpec, register
from source.models.settings import EncoderSettings
from source.models.vit import FeatureEmbed, VisionTransformer
from tests.helpers import extraction_config, pretraining_config, training_config


def tiny_region(input_dim: int = 384, **kwargs) -> VisionTransformer:
    """A grid encoder of another shape than ViT4K-XS: 48-d, one block, 2 heads."""
    return VisionTransformer(FeatureEmbed(input_dim, 48), "phi", 48, depth=1, num_heads=2, **kwargs)


@pytest.fixture
def tiny_region_registered():
    """``tiny_region`` in the registry for one test (adding an encoder is one registry entry)."""
    register(EncoderSpec("tiny_region", EncoderKind.grid, f"{__name__}:tiny_region", 48, "test grid encoder"))
    yield "tiny_region"
    del ENCODERS["tiny_region"]


def heatmap_config(**overrides):
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(HeatmapConfig)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_extraction_and_heatmap_keys_give_the_same_settings():
    """The two entry points name the weights differently; the settings differ only in those names."""
    common = {"vit_patch_arch": "vit_tiny", "checkpoint_key": "student", "img_size_pretrained": 256}
    common |= {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6], "patch_batch_size": 7, "precision": "bf16"}
    extraction = encoder_settings(
        extraction_config(**common, pretrain_vit_patch="p.pth", pretrain_vit_region="r.pth"), EXTRACTION_KEYS
    )
    heatmaps = encoder_settings(
        heatmap_config(**common, patch_weights="p.pth", region_weights="r.pth"), HEATMAP_KEYS, level="global"
    )
    assert extraction == EncoderSettings(
        level="global",
        patch_arch="vit_tiny",
        patch_weights="p.pth",
        region_weights="r.pth",
        checkpoint_key="student",
        img_size_pretrained=256,
        mean=(0.1, 0.2, 0.3),
        std=(0.4, 0.5, 0.6),
        patch_batch_size=7,
        precision="bf16",
    )
    renamed = {"patch_weights_key": "patch_weights", "region_weights_key": "region_weights"}
    assert heatmaps == dataclasses.replace(extraction, **renamed)


def test_training_and_pretraining_keys(tmp_path):
    training = encoder_settings(
        training_config("survival", level="local", **{"model.pretrain_vit_region": "r.pth"}), TRAINING_KEYS
    )
    assert (training.level, training.region_weights, training.region_weights_key) == (
        "local",
        "r.pth",
        "model.pretrain_vit_region",
    )
    cfg = pretraining_config("region", data_dir=str(tmp_path), **{"model.pretrained_weights": "w.pth"})
    student = encoder_settings(cfg, DINO_KEYS["region"])
    assert (student.region_arch, student.region_weights, student.region_weights_key) == (
        "vit4k_xs",
        "w.pth",
        "model.pretrained_weights",
    )
    assert student.drop_path_rate == cfg.model.drop_path_rate and student.patch_weights is None
    from omegaconf import OmegaConf

    knn = encoder_settings(OmegaConf.structured(KnnEvalConfig(checkpoint="c.pt", arch="vit_tiny")), KNN_KEYS["patch"])
    assert (knn.patch_arch, knn.patch_weights, knn.patch_weights_key) == ("vit_tiny", "c.pt", "checkpoint")


def test_heatmaps_and_level_local_training_honour_the_region_architecture(tiny_region_registered):
    """Both used to build ViT4K-XS whatever the config said; now the registry's grid encoder is built."""
    cfg = heatmap_config(vit_patch_arch="vit_tiny", patch_weights=None, region_weights=None, patch_size=32)
    cfg.vit_region_arch = tiny_region_registered
    encoder = build_hipt_encoder(encoder_settings(cfg, HEATMAP_KEYS, level="global")).eval()
    assert encoder.vit_region.embed_dim == 48 and len(encoder.vit_region.blocks) == 1
    with torch.inference_mode():
        out = encoder(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    assert out.global_.shape == (1, 48) and out.local.shape == (1, 4, 192)  # vit_tiny: 192-d patches
    training = training_config(
        "classification",
        level="local",
        **{"model.vit_region_arch": tiny_region_registered, "model.pretrain_vit_region": None},
    )
    training.model.embed_dim_region = 48
    model = build_slide_model(slide_model_settings(training), 2)
    assert model.vit_region.embed_dim == 48
    assert model(torch.randn(3, 16, 384)).shape == (2,)


def test_dino_student_and_teacher_are_built_from_one_settings_object():
    settings = EncoderSettings(region_arch="vit4k_xs", drop_path_rate=0.2, warn_random=False)
    student = build_stage_encoder(settings, "region", input_dim=96)
    assert student.phi[0].in_features == 96
    assert student.blocks[-1].drop_path.drop_prob == pytest.approx(0.2)  # linearly rising to the last block
    patch = build_stage_encoder(dataclasses.replace(settings, patch_arch="vit_tiny", drop_path_rate=0.0), "patch")
    assert patch.embed_dim == 192
