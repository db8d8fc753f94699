"""ViT_patch's token embedding from raw pixels with folded normalisation equals patchify -> normalise -> embed."""

from __future__ import annotations

import pytest
import torch

from source.models.accelerator import Accelerated
from source.models.hipt import HIPTEncoder, patchify
from source.models.pixel_embedding import embed_region_patches, folded_embedding, input_coding
from source.models.vit import vit4k_xs, vit_tiny

MEAN, STD = (0.7, 0.55, 0.6), (0.2, 0.25, 0.15)


def regions_of(batch: int, side: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("as_float", [False, True])
def test_folded_tokens_equal_the_convolution_of_normalised_patches(as_float):
    torch.manual_seed(0)
    proj = torch.nn.Conv2d(3, 24, kernel_size=8, stride=8)
    regions = regions_of(2, 64)
    pixels = regions.double() / 255 if as_float else regions
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    pixels = pixels.float() if as_float else pixels
    weight, bias = folded_embedding(proj, mean, std, input_coding(pixels.dtype))
    tokens = embed_region_patches(pixels, weight, bias, patch_size=32, token_size=8)
    # independently: cut 32-px patches, normalise in float64, convolve, tokens row-major
    patches = (patchify(regions.double() / 255, 32) - mean.double()) / std.double()
    expected = torch.nn.functional.conv2d(patches, proj.weight.double(), proj.bias.double(), stride=8)
    expected = expected.flatten(2).transpose(1, 2)
    assert tokens.shape == (2 * 4, 16, 24)
    torch.testing.assert_close(tokens.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("patch_batch_size", [3, 8, 256])
def test_encoder_features_equal_the_reference_path(patch_batch_size):
    """Groups of regions (patch_batch_size 8 = two 4-patch regions), chunks within one region (3), one chunk (256)."""
    torch.manual_seed(0)
    encoder = HIPTEncoder(vit_tiny().eval(), vit4k_xs(input_dim=192).eval(), 32, patch_batch_size, MEAN, STD).eval()
    regions = regions_of(3, 64)
    assert encoder.embeds_pixels
    with torch.inference_mode():
        fused = encoder(regions)
        fused_float = encoder(regions.float() / 255)
        encoder.fused_embedding = False
        assert not encoder.embeds_pixels
        reference = encoder(regions)
    assert fused.local.shape == (3, 4, 192) and fused.global_.shape == (3, 192)
    torch.testing.assert_close(fused.local, reference.local, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.global_, reference.global_, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_float.global_, reference.global_, rtol=1e-5, atol=1e-5)
    assert not torch.equal(fused.global_[0], fused.global_[1])


def test_bf16_fused_features_stay_within_bf16_rounding_of_fp32():
    torch.manual_seed(0)
    encoder = Accelerated(HIPTEncoder(vit_tiny().eval(), vit4k_xs(input_dim=192).eval(), 32, precision="bf16").eval())
    regions = regions_of(2, 64, seed=3)
    with torch.inference_mode():
        bf16 = encoder(regions).global_
        encoder.precision, encoder.model.fused_embedding = "fp32", False
        fp32_reference = encoder(regions).global_
    assert torch.nn.functional.cosine_similarity(bf16, fp32_reference).min() > 0.999


def test_encoders_the_folding_does_not_fit_keep_the_reference_path():
    from source.models.timm_encoders import build_timm_encoder

    timm_vit = build_timm_encoder("timm:vit_tiny_patch16_224", img_size=64)
    assert not HIPTEncoder(timm_vit, None, patch_size=64).embeds_pixels
    assert not HIPTEncoder(vit_tiny(), None, patch_size=40).embeds_pixels  # 16-px tokens do not tile 40-px patches


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_the_folded_tokens_are_at_least_as_precise_as_the_reference(dtype):
    """Against float64 tokens, the mean error of the folded embedding (centred uint8 pixels, exact in 16 bits) is no
    larger than that of patchify -> normalise -> convolution under the same autocast."""
    torch.manual_seed(0)
    proj = torch.nn.Conv2d(3, 96, kernel_size=16, stride=16)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    regions = regions_of(1, 128, seed=5)
    normalised = (patchify(regions.double() / 255, 64) - mean.double()) / std.double()
    with torch.inference_mode():
        exact = torch.nn.functional.conv2d(normalised, proj.weight.double(), proj.bias.double(), stride=16)
    exact = exact.flatten(2).transpose(1, 2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        reference = proj((patchify(regions, 64).float() / 255 - mean) / std).flatten(2).transpose(1, 2)
        weight, bias = folded_embedding(proj, mean, std, input_coding(regions.dtype))
        folded = embed_region_patches(regions, weight, bias, 64, 16)
    assert folded.dtype == dtype

    def error(tokens: torch.Tensor) -> float:
        return float((tokens.double() - exact).abs().mean())

    assert error(folded) <= error(reference)


def test_regions_that_do_not_tile_are_refused_with_their_size():
    proj = torch.nn.Conv2d(3, 8, kernel_size=16, stride=16)
    weight, bias = folded_embedding(proj, torch.zeros(3), torch.ones(3), input_coding(torch.uint8))
    with pytest.raises(ValueError, match="regions of 100x100 px do not tile into 64-px patches"):
        embed_region_patches(torch.zeros(1, 3, 100, 100, dtype=torch.uint8), weight, bias, 64, 16)
