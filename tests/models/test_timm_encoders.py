"""timm patch encoders under HIPT: loading by name, presets and their transforms, any feature width, clear errors."""

import json

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from source.engines.extraction_job import run_extraction_job
from source.engines.pretraining_job import run_pretraining_job
from source.errors import ConfigError
from source.models.checkpoints import CheckpointError
from source.models.factory import build_hipt_encoder, build_vit_patch
from source.models.registry import encoder_spec
from source.models.settings import EncoderSettings
from source.models.timm_encoders import PRESETS, build_timm_encoder
from tests.helpers import TEST_DEVICE, extraction_config, pretraining_config

TINY_TIMM = {"depth": 2}
"""vit_tiny_patch16_224 with 2 blocks: a small timm ViT (192-d, 3 heads) standing in for the large ones."""


def timm_weights(tmp_path, suffix=".safetensors"):
    """A state dict of timm's own vit_tiny_patch16_224 (2 blocks), saved like a foundation model's weight file."""
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **TINY_TIMM).eval()
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    return reference, path


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_a_timm_vit_loaded_by_name_equals_timms_own_forward(tmp_path, suffix):
    reference, path = timm_weights(tmp_path, suffix)
    encoder = build_vit_patch(
        EncoderSettings(patch_arch="timm:vit_tiny_patch16_224", patch_weights=path, patch_kwargs=TINY_TIMM)
    ).eval()
    assert encoder.embed_dim == 192 and encoder.transform.input_size == 224
    torch.manual_seed(1)
    patches = torch.rand(2, 3, 256, 256)
    normalised = (patches - 0.5) / 0.5  # timm's own config for this model: mean = std = 0.5
    resized = F.interpolate(normalised, size=(224, 224), mode="bicubic", antialias=True, align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(encoder(normalised), reference.forward_features(resized)[:, 0])


def test_presets_resolve_their_architecture_transform_and_width():
    assert set(PRESETS) == {"uni", "uni2", "virchow2", "h_optimus_0", "prov_gigapath"}
    assert PRESETS["h_optimus_0"].transform.mean == (0.707223, 0.578729, 0.703617)
    assert PRESETS["uni"].transform.std == (0.229, 0.224, 0.225) and PRESETS["virchow2"].transform.output == "cls+mean"
    torch.manual_seed(0)
    for name, heads in (("uni", 16), ("virchow2", 16), ("uni2", 24)):  # one block each: the real widths, cheaply
        encoder = build_timm_encoder(name, depth=1).eval()
        assert (
            encoder.embed_dim == PRESETS[name].embed_dim == encoder_spec(name).embed_dim and encoder.num_heads == heads
        )
        with torch.no_grad():
            assert encoder(torch.randn(1, 3, 256, 256)).shape == (1, PRESETS[name].embed_dim)
    virchow = build_timm_encoder("virchow2", depth=1)
    assert virchow.num_prefix_tokens == 5, "CLS + 4 registers are left out of the patch-token mean"


def test_the_encoder_brings_its_normalisation_and_vit_region_takes_its_width(tmp_path):
    _, path = timm_weights(tmp_path)
    encoder = build_hipt_encoder(EncoderSettings(
        patch_arch="timm:vit_tiny_patch16_224", patch_weights=path, patch_kwargs=TINY_TIMM, patch_size=256,
        mean=(0.1, 0.2, 0.3), std=(0.9, 0.9, 0.9),
    ))  # fmt: skip
    assert encoder.mean.flatten().tolist() == [0.5, 0.5, 0.5] and encoder.vit_region.phi[0].in_features == 192
    with torch.no_grad():
        features = encoder(torch.randint(0, 256, (1, 3, 512, 512), dtype=torch.uint8))
    assert features.local.shape == (1, 4, 192) and features.global_.shape == (1, 192)


def test_extraction_at_both_levels_then_region_pretraining_on_192_wide_grids(tmp_path, demo_regions_1024):
    _, path = timm_weights(tmp_path)
    common = dict(region_dir=str(demo_regions_1024), region_size=1024, vit_patch_arch="timm:vit_tiny_patch16_224",
                  vit_patch_kwargs=TINY_TIMM, pretrain_vit_patch=str(path), pretrain_vit_region=None, num_workers=0,
                  output_dir=str(tmp_path / "out"), device=TEST_DEVICE)  # fmt: skip
    for level, shape in (("local", (6, 16, 192)), ("global", (6, 192))):
        cfg = extraction_config(level=level, run_id=level, **common)
        assert run_extraction_job(cfg) == 0
        run_dir = tmp_path / "out" / cfg.experiment_name / level
        assert torch.load(run_dir / "features" / "slide" / "CMU-1-Small-Region.pt", weights_only=True).shape == shape
        transform = json.loads((run_dir / "patch_transform.json").read_text())
        assert transform == {
            "input_size": 224,
            "interpolation": "bicubic",
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "output": "cls",
        }
    changed = extraction_config(
        level="local", run_id="local", resume=True, **(common | {"vit_patch_kwargs": {"depth": 2, "img_size": 256}})
    )
    with pytest.raises(ConfigError, match="resume: vit_patch_kwargs was"):
        run_extraction_job(changed)
    fast = {
        "model.out_dim": 64,
        "training.nepochs": 1,
        "training.warmup_epochs": 1,
        "model.warmup_teacher_temp_epochs": 1,
        "training.batch_size_per_gpu": 3,
        "aug.local_crops_number": 2,
        "speed.num_workers": 0,
        "device": TEST_DEVICE,
    }
    slides = tmp_path / "out" / "feature_extraction" / "local" / "features" / "slide"
    cfg = pretraining_config("region", data_dir=str(slides), output_dir=str(tmp_path), run_id="r", **fast)
    assert run_pretraining_job(cfg, "region") == 0
    teacher = torch.load(tmp_path / "dino_region" / "r" / "latest.pt", weights_only=True)["teacher"]
    assert teacher["backbone.phi.0.weight"].shape == (192, 192), "ViT_region's input layer takes the 192-d grids"


def test_clear_errors_for_missing_files_wrong_architectures_and_hub_ids_offline(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_vit_patch(
            EncoderSettings(patch_arch="uni", patch_weights=tmp_path / "pytorch_model.bin", patch_kwargs={"depth": 1})
        )
    _, path = timm_weights(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit vit_patch"):
        build_vit_patch(
            EncoderSettings(patch_arch="timm:vit_small_patch16_224", patch_weights=path, patch_kwargs=TINY_TIMM)
        )
    with pytest.raises(ValueError, match="timm has no model 'vit_nonexistent'"):
        build_timm_encoder("timm:vit_nonexistent")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="cannot be fetched from the Hugging Face Hub.*needs network access"):
        build_timm_encoder("hf-hub:MahmoodLab/UNI")


@pytest.mark.parametrize("arch, kwargs", [("timm:vit_tiny_patch16_224", TINY_TIMM), ("virchow2", {"depth": 2})])
def test_attention_of_a_timm_vit_equals_what_its_last_block_computes(arch, kwargs):
    torch.manual_seed(0)
    encoder = build_timm_encoder(arch, **kwargs).eval()
    block = encoder.model.blocks[-1]
    block.attn.fused_attn = False  # timm's explicit path: its attn_drop receives the softmax weights
    captured = []
    block.attn.attn_drop.register_forward_hook(lambda module, inputs, output: captured.append(output))
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        features, weights = encoder.forward_with_attention(x)
        expected = encoder(x)
    grid = encoder.token_grid(256)
    prefix = encoder.num_prefix_tokens
    keep = [0, *range(prefix, prefix + grid * grid)]
    torch.testing.assert_close(features, expected)
    assert weights.shape == (2, encoder.num_heads, 1 + grid * grid, 1 + grid * grid)
    torch.testing.assert_close(weights, captured[-1][:, :, keep][:, :, :, keep])
    if prefix > 1:  # register tokens take part of the attention but are not drawn
        assert (weights[:, :, 0].sum(-1) < 1).all()


def test_patch_heatmaps_from_a_timm_vit(tmp_path, demo_regions_1024):
    from PIL import Image

    from source.engines.heatmap_job import run_heatmap_job
    from tests.heatmaps.test_heatmap_job import heatmap_config

    region = sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())[0]
    Image.open(region).crop((256, 256, 512, 512)).save(tmp_path / "patch.png")
    cfg = heatmap_config(
        patch_fp=str(tmp_path / "patch.png"),
        region_fp=str(region),
        region_size=1024,
        vit_patch_arch="timm:vit_tiny_patch16_224",
        vit_patch_kwargs=TINY_TIMM,
        patch_weights=None,
        region_weights=None,
        output_dir=str(tmp_path),
        run_id="r",
        device=TEST_DEVICE,
    )
    assert run_heatmap_job(cfg) == 0
    maps = sorted(p.name for p in (tmp_path / "heatmaps" / "r" / "patch" / "patch").glob("head_*.png"))
    assert maps == ["head_0.png", "head_1.png", "head_2.png"]
    hierarchical = tmp_path / "heatmaps" / "r" / region.stem / "hierarchical"
    assert len(list(hierarchical.glob("rhead_*_phead_*.png"))) == 6 * 3, "ViT_region's 6 heads over the 192-d grid"
