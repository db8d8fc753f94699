"""Attention read from the models equals a direct computation; granular and factorized maps behave as documented."""

import numpy as np
import torch
from PIL import Image

from source.data.regions import read_region
from source.heatmaps.attention import AttentionReader, patch_maps, region_maps
from source.heatmaps.render import blend
from source.heatmaps.scores import factorized
from source.heatmaps.settings import RenderSettings
from source.heatmaps.single import render_region
from source.heatmaps.slide_render import resize
from source.models.hipt import HIPTEncoder
from source.models.vit import build_vit, vit4k_xs, vit_small
from tests.helpers import double_state, reference_vit_patch, reference_vit_region


def reader(small=True, seed=0):
    torch.manual_seed(seed)
    vit_patch = vit_small().eval() if small else build_vit("vit_tiny").eval()
    return AttentionReader(HIPTEncoder(vit_patch, vit4k_xs(input_dim=vit_patch.embed_dim).eval(), patch_batch_size=3))


def test_scores_equal_the_cls_rows_of_directly_computed_attention():
    attention = reader()
    pixels = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    tokens = attention.region(pixels)
    assert tokens.patch.shape == (4, 6, 16, 16) and tokens.region.shape == (6, 2, 2)
    patch_state = double_state(attention.encoder.vit_patch)
    for r in range(2):
        for c in range(2):
            patch = pixels[:, r * 256 : (r + 1) * 256, c * 256 : (c + 1) * 256].double().unsqueeze(0) / 255
            _, weights = reference_vit_patch(patch_state, (patch - 0.5) / 0.5, heads=6)
            expected = weights[0, :, 0, 1:].reshape(6, 16, 16)
            torch.testing.assert_close(tokens.patch[r * 2 + c].double(), expected, atol=1e-5, rtol=1e-4)
    grid = tokens.local.T.reshape(1, 384, 2, 2).double()
    _, weights = reference_vit_region(double_state(attention.encoder.vit_region), grid, heads=6)
    torch.testing.assert_close(tokens.region.double(), weights[0, :, 0, 1:].reshape(6, 2, 2), atol=1e-5, rtol=1e-4)


def test_granular_maps_differ_on_tissue(demo_regions_1024):
    attention = reader(small=False)
    path = sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())[3]
    pixels = torch.from_numpy(read_region(path, 1024)).permute(2, 0, 1)
    plain = region_maps(attention, pixels, 256, granular=False)
    granular = region_maps(attention, pixels, 256, granular=True)
    assert plain.patch.shape == granular.patch.shape == (3, 256, 256)
    assert plain.region.shape == granular.region.shape == (6, 256, 256)
    assert not np.allclose(plain.patch, granular.patch) and not np.allclose(plain.region, granular.region)
    # the unshifted maps are made of whole tokens (4x4 px blocks), the granular ones are finer
    assert (plain.patch[:, ::4, ::4].repeat(4, 1).repeat(4, 2) == plain.patch).all()
    assert not (granular.patch[:, ::4, ::4].repeat(4, 1).repeat(4, 2) == granular.patch).all()


def test_a_shift_invariant_attention_gives_the_same_map_with_granular():
    attention = reader(small=False)
    for vit in (attention.encoder.vit_patch, attention.encoder.vit_region):
        with torch.no_grad():
            vit.blocks[-1].attn.qkv.weight.zero_()
            vit.blocks[-1].attn.qkv.bias.zero_()  # uniform attention: every token and every shift look alike
    pixels = torch.randint(0, 256, (3, 512, 512), dtype=torch.uint8)
    plain, granular = region_maps(attention, pixels, 128), region_maps(attention, pixels, 128, granular=True)
    np.testing.assert_allclose(plain.patch, granular.patch)
    np.testing.assert_allclose(plain.region, granular.region)
    np.testing.assert_allclose(
        patch_maps(attention, pixels[:, :256, :256]), patch_maps(attention, pixels[:, :256, :256], granular=True)
    )


def test_factorized_pngs_follow_the_formula(tmp_path, demo_regions_1024):
    attention = reader(small=False)
    path = sorted((demo_regions_1024 / "CMU-1-Small-Region" / "imgs").iterdir())[0]
    settings = RenderSettings(region_size=1024, heads=[1, 2])
    render_region(attention, path, tmp_path, settings)
    pixels = torch.from_numpy(read_region(path, 1024)).permute(2, 0, 1)
    maps = region_maps(attention, pixels, 256, patch_heads=[1, 2], region_heads=[1, 2])
    expected = blend(resize(pixels, 256), factorized(maps.region[1], maps.patch[0]), "jet", 0.5)
    with Image.open(tmp_path / "hierarchical" / "rhead_2_phead_1.png") as drawn:
        np.testing.assert_array_equal(np.asarray(drawn)[:, :256], expected)  # the map, left of its colorbar
        assert drawn.size == (256 + 90, 256)
    for name in [
        "patch/head_1.png",
        "patch/head_2.png",
        "region/head_1.png",
        "region/head_2.png",
        "patch.png",
        "region.png",
    ]:
        assert (tmp_path / name).exists(), name
