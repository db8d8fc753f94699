import pytest
import torch

from source.models.accelerator import Accelerated
from source.models.hipt import HIPTEncoder, features_to_grid, patchify
from source.models.vit import build_vit, vit4k_xs, vit_small
from tests.helpers import double_state, reference_vit_patch, reference_vit_region


def test_patchify_is_row_major():
    regions = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    patches = patchify(regions, 4)
    assert patches.shape == (8, 3, 4, 4)
    for b in range(2):
        for r in range(2):
            for c in range(2):
                torch.testing.assert_close(
                    patches[b * 4 + r * 2 + c], regions[b, :, r * 4 : r * 4 + 4, c * 4 : c * 4 + 4]
                )
    with pytest.raises(ValueError, match="multiple"):
        patchify(torch.zeros(1, 3, 10, 10), 4)


def test_features_to_grid_places_patch_r_c_at_row_r_column_c():
    local = torch.randn(2, 9, 5)
    grid = features_to_grid(local)
    assert grid.shape == (2, 5, 3, 3)
    torch.testing.assert_close(grid[1, :, 2, 0], local[1, 6])
    torch.testing.assert_close(grid[0, :, 0, 2], local[0, 2])


def test_hipt_encoder_matches_patch_by_patch_reference():
    torch.manual_seed(0)
    encoder = HIPTEncoder(vit_small().eval(), vit4k_xs().eval(), patch_batch_size=5).eval()
    regions = torch.randint(0, 256, (2, 3, 512, 512), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = encoder(regions)
    assert out.local.shape == (2, 4, 384) and out.global_.shape == (2, 192)
    patch_state, region_state = double_state(encoder.vit_patch), double_state(encoder.vit_region)
    for b in range(2):
        local = []
        for r in range(2):
            for c in range(2):
                patch = regions[b : b + 1, :, r * 256 : (r + 1) * 256, c * 256 : (c + 1) * 256].double() / 255
                local.append(reference_vit_patch(patch_state, (patch - 0.5) / 0.5, heads=6)[0][0])
        local = torch.stack(local)
        torch.testing.assert_close(out.local[b].double(), local, atol=3e-4, rtol=1e-4)
        grid = local.T.reshape(1, 384, 2, 2)
        expected_global = reference_vit_region(region_state, grid, heads=6)[0][0]
        torch.testing.assert_close(out.global_[b].double(), expected_global, atol=3e-4, rtol=1e-4)


def test_patch_batch_size_and_input_dtype_do_not_change_features():
    torch.manual_seed(0)
    vit_patch, vit_region = build_vit("vit_tiny").eval(), vit4k_xs(input_dim=192).eval()
    regions = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    small = HIPTEncoder(vit_patch, vit_region, patch_size=64, patch_batch_size=3)
    large = HIPTEncoder(vit_patch, vit_region, patch_size=64, patch_batch_size=64)
    with torch.inference_mode():
        a, b = small(regions), large(regions)
        c = large(regions.float() / 255)
    torch.testing.assert_close(a.global_, b.global_, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c.global_, b.global_, atol=1e-5, rtol=1e-5)


def test_normalisation_is_configurable():
    torch.manual_seed(0)
    vit_patch = build_vit("vit_tiny").eval()
    regions = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    imagenet = HIPTEncoder(vit_patch, patch_size=64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with torch.inference_mode():
        expected = vit_patch(
            ((regions.float() / 255) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        )
        torch.testing.assert_close(imagenet.encode_patches(regions)[:, 0], expected)


def test_local_only_encoder_and_bf16():
    torch.manual_seed(0)
    encoder = Accelerated(HIPTEncoder(build_vit("vit_tiny").eval(), None, patch_size=64, precision="bf16"))
    regions = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    with torch.inference_mode():
        out = encoder(regions)
        reference = HIPTEncoder(encoder.model.vit_patch, None, patch_size=64).encode_patches(regions)
    assert out.global_ is None and out.local.shape == (2, 4, 192) and out.local.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(out.local.flatten(0, 1), reference.flatten(0, 1)).min() > 0.99
    with pytest.raises(RuntimeError, match="no ViT_region"):
        encoder.encode_regions(out.local)
    with pytest.raises(ValueError, match="precision"):
        HIPTEncoder(encoder.model.vit_patch, precision="fp8")


@pytest.mark.parametrize("mode", ["reduce-overhead"])
def test_compiled_encoder_gives_the_eager_features_and_keeps_each_output(mode):
    """With a CUDA-graph mode every forward's features are copied out (the next replay would overwrite them); on the
    CPU inductor compiles without graphs, and the features equal the eager ones."""
    from source.models.vit import vit_tiny

    torch.manual_seed(0)
    encoder = HIPTEncoder(vit_tiny().eval(), vit4k_xs(input_dim=192).eval(), patch_size=32).eval()
    first = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    second = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        eager = [encoder(first).global_, encoder(second).global_]
        encoder = Accelerated(encoder).compile(mode)
        assert encoder.cuda_graphs
        compiled_first = encoder(first).global_
        compiled_second = encoder(second).global_
    torch.testing.assert_close(compiled_first, eager[0], rtol=1e-4, atol=1e-4)  # still intact after the 2nd call
    torch.testing.assert_close(compiled_second, eager[1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="compile mode must be one of"):
        Accelerated(HIPTEncoder(vit_tiny(), None)).compile("fastest")


def test_the_compile_key_takes_a_switch_or_a_mode():
    from source.config.extraction import compile_mode
    from source.errors import ConfigError

    assert compile_mode(False) is None and compile_mode(None) is None
    assert compile_mode(True) == "default"
    assert compile_mode("max-autotune") == "max-autotune"
    with pytest.raises(ConfigError, match="compile must be false, true or a torch.compile mode"):
        compile_mode("cuda-graphs")
