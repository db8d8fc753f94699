import pytest
import torch
import torch.nn.functional as F

from source.models.vit import build_vit, interpolate_pos_embed, resize_pos_embed, vit4k_xs, vit_small
from tests.helpers import (
    double_state,
    reference_blocks,
    reference_pos_embed,
    reference_vit_patch,
    reference_vit_region,
)


@pytest.fixture(scope="module")
def vit_patch():
    torch.manual_seed(0)
    return vit_small().eval()


@pytest.fixture(scope="module")
def vit_region():
    torch.manual_seed(1)
    return vit4k_xs().eval()


def test_official_architectures_have_official_sizes_and_names():
    patch, region = vit_small(), vit4k_xs()
    assert sum(p.numel() for p in patch.parameters()) == 21_665_664
    assert sum(p.numel() for p in region.parameters()) == 2_781_504
    assert patch.pos_embed.shape == (1, 197, 384) and region.pos_embed.shape == (1, 197, 192)
    assert len(patch.blocks) == 12 and patch.blocks[0].attn.num_heads == 6
    assert len(region.blocks) == 6 and region.blocks[0].attn.num_heads == 6
    assert patch.blocks[0].norm1.eps == 1e-6 and patch.norm.eps == 1e-6
    assert {"patch_embed.proj.weight", "blocks.11.mlp.fc2.bias", "norm.weight"} <= set(patch.state_dict())
    assert {"phi.0.weight", "phi.0.bias", "blocks.5.attn.qkv.bias"} <= set(region.state_dict())
    assert build_vit("vit_tiny").embed_dim == 192 and build_vit("vit_tiny").num_heads == 3
    assert build_vit("vit_base").embed_dim == 768 and build_vit("vit_base").num_heads == 12


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="vit_huge"):
        build_vit("vit_huge")


@pytest.mark.parametrize("size", [224, 256])
def test_vit_patch_matches_eager_reference(vit_patch, size):
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.inference_mode():
        fast = vit_patch(images)
        cls, weights = vit_patch.forward_with_attention(images)
    expected_cls, expected_weights = reference_vit_patch(double_state(vit_patch), images.double(), heads=6)
    assert fast.shape == (2, 384)
    torch.testing.assert_close(fast.double(), expected_cls, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(cls, fast, atol=1e-5, rtol=1e-5)
    grid = size // 16
    assert weights.shape == (2, 6, grid * grid + 1, grid * grid + 1)
    torch.testing.assert_close(weights.double(), expected_weights, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("side", [4, 8, 16])
def test_vit_region_matches_eager_reference(vit_region, side):
    grid = torch.randn(3, 384, side, side, generator=torch.Generator().manual_seed(side))
    with torch.inference_mode():
        fast = vit_region(grid)
        tokens_input = vit_region(grid.flatten(2).transpose(1, 2))
        cls, weights = vit_region.forward_with_attention(grid)
    expected_cls, expected_weights = reference_vit_region(double_state(vit_region), grid.double(), heads=6)
    assert fast.shape == (3, 192)
    torch.testing.assert_close(fast.double(), expected_cls, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(tokens_input, fast)
    torch.testing.assert_close(cls, fast, atol=1e-5, rtol=1e-5)
    assert weights.shape == (3, 6, side * side + 1, side * side + 1)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6, side * side + 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(weights.double(), expected_weights, atol=1e-5, rtol=1e-4)


def test_pos_embed_interpolation_follows_dino():
    pos = torch.randn(1, 197, 8, generator=torch.Generator().manual_seed(3))
    assert interpolate_pos_embed(pos, (14, 14)) is pos
    for grid in [(16, 16), (8, 8), (4, 4), (14, 10)]:
        out = interpolate_pos_embed(pos, grid)
        assert out.shape == (1, 1 + grid[0] * grid[1], 8)
        torch.testing.assert_close(out, reference_pos_embed(pos, *grid))
        torch.testing.assert_close(out[:, 0], pos[:, 0])
    constant = torch.full((1, 197, 4), 0.25)
    torch.testing.assert_close(interpolate_pos_embed(constant, (16, 16)), torch.full((1, 257, 4), 0.25))


def test_resize_pos_embed_gives_exact_grid():
    pos = torch.randn(1, 257, 6)
    resized = resize_pos_embed(pos, 14)
    assert resized.shape == (1, 197, 6)
    torch.testing.assert_close(resized[:, 0], pos[:, 0])
    assert resize_pos_embed(pos, 16) is pos
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(torch.randn(1, 11, 6), 3)


def test_drop_path_and_dropout_only_act_in_training():
    torch.manual_seed(0)
    model = build_vit("vit_tiny", drop_path_rate=0.5, drop_rate=0.2)
    images = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(images))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(images), model(images))


def test_a_masked_token_is_as_if_removed_and_an_all_true_mask_changes_nothing():
    """Masking token j as an attention key in every block gives the CLS of the sequence without token j (the other
    tokens keep their positions): computed independently from the state dict."""
    torch.manual_seed(11)
    model = vit4k_xs(input_dim=32).eval()
    grid = torch.randn(2, 32, 4, 4)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 5] = False
    mask[1, [0, 15]] = False
    state = double_state(model)
    with torch.no_grad():
        masked = model(grid, mask)
        torch.testing.assert_close(model(grid, torch.ones(2, 16, dtype=torch.bool)), model(grid), rtol=0, atol=0)
        tokens = F.gelu(grid.double().flatten(2).transpose(1, 2) @ state["phi.0.weight"].T + state["phi.0.bias"])
        tokens = torch.cat((state["cls_token"].expand(2, -1, -1), tokens), dim=1)
        tokens = tokens + reference_pos_embed(state["pos_embed"], 4, 4)
        for row in range(2):
            kept = torch.cat([torch.tensor([True]), mask[row]])
            expected, _ = reference_blocks(state, tokens[row : row + 1, kept], heads=6)
            torch.testing.assert_close(masked[row].double(), expected[0, 0], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(masked[0], model(grid)[0])  # masking a patch changes the region feature
