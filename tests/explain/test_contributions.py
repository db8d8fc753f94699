"""Exact contributions: masked forwards equal forwards on the smaller bag, and leave-one-out equals an independent
one-removal-at-a-time computation with the same model."""

from __future__ import annotations

import pytest
import torch

from source.explain.contributions import leave_one_out, supports_masking
from source.models.factory import build_slide_model
from source.models.settings import EncoderSettings, HiptOptions, SlideModelSettings
from source.models.slide_registry import AGGREGATORS


def model_and_bag(name: str, level: str = "global", seed: int = 0, **values):
    vit_region = EncoderSettings(level="local", warn_random=False)
    hipt = HiptOptions(vit_region=vit_region, **values) if name == "hipt" else None
    settings = SlideModelSettings(aggregator=name, level=level, hidden_dim=16, patch_dim=24, options=hipt)
    torch.manual_seed(seed)
    model = build_slide_model(settings, 3).eval()
    shape = (7, 4, 24) if level == "local" and name == "hipt" else (7 * 4, 24) if level == "local" else (7, 192)
    return model, torch.randn(*shape)


@pytest.mark.parametrize("level", ["global", "local"])
@pytest.mark.parametrize("name", sorted(set(AGGREGATORS) - {"transmil"}))
def test_masked_forward_equals_the_forward_of_the_smaller_bag(name, level):
    model, bag = model_and_bag(name, level)
    assert supports_masking(model)
    keep = torch.rand(5, len(bag)) > 0.4
    keep[:, 0] = True  # never an empty bag
    with torch.no_grad():
        masked = model.forward_masked(bag.unsqueeze(0).expand(5, *bag.shape), keep)
        expected = torch.stack([model(bag[row]) for row in keep])
    torch.testing.assert_close(masked, expected, atol=1e-5, rtol=1e-5)


def softmax_of(target: int):
    return lambda logits: torch.softmax(logits, dim=-1)[:, target]


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_leave_one_out_equals_one_removal_at_a_time(name):
    model, bag = model_and_bag(name, seed=1)
    result = leave_one_out(model, bag, softmax_of(2), batch_size=3)
    with torch.no_grad():
        full = torch.softmax(model(bag), dim=-1)[2]
        without = torch.stack([torch.softmax(model(bag[torch.arange(7) != i]), -1)[2] for i in range(7)])
    assert result.output == pytest.approx(float(full), abs=1e-6)
    torch.testing.assert_close(result.contributions, full - without, atol=1e-5, rtol=1e-5)


def test_groups_remove_every_patch_of_a_region_and_positions_force_one_forward_per_removal():
    model, bag = model_and_bag("abmil", "local", seed=2)
    groups = torch.arange(7).repeat_interleave(4)
    result = leave_one_out(model, bag, softmax_of(0), groups=groups, batch_size=2)
    with torch.no_grad():
        full = torch.softmax(model(bag), -1)[0]
        expected = torch.stack([full - torch.softmax(model(bag[groups != g]), -1)[0] for g in range(7)])
    torch.testing.assert_close(result.contributions, expected, atol=1e-5, rtol=1e-5)
    positioned, regions = model_and_bag("hipt", seed=3, pos_embed="sinusoidal")
    assert not supports_masking(positioned)  # masking would keep the later regions' positions: not a removal
    result = leave_one_out(positioned, regions, softmax_of(1))
    with torch.no_grad():
        first = torch.softmax(positioned(regions), -1)[1] - torch.softmax(positioned(regions[1:]), -1)[1]
    assert float(result.contributions[0]) == pytest.approx(float(first), abs=1e-6)
    single = leave_one_out(*model_and_bag("mean"), softmax_of(0), groups=torch.zeros(7, dtype=torch.long))
    assert torch.isnan(single.contributions).all()  # nothing is left without the only region


@pytest.mark.parametrize("pos_embed", [None, "learned"])
def test_patch_contributions_equal_the_masked_forward(pos_embed):
    from source.explain.contributions import patch_contributions
    from source.models.hipt import features_to_grid

    model, grids = model_and_bag("hipt", "local", seed=4, pos_embed=pos_embed)  # 7 regions of 2 x 2 patches
    result = patch_contributions(model, grids, softmax_of(1), batch_size=3)
    assert result.shape == (7, 4)
    with torch.no_grad():
        regions = model.region_features(grids)
        full = torch.softmax(model(grids), -1)[1]
        for region, patch in [(0, 0), (3, 2), (6, 3)]:
            mask = torch.ones(1, 4, dtype=torch.bool)
            mask[0, patch] = False
            changed = regions.clone()
            changed[region] = model.vit_region(features_to_grid(grids[region : region + 1]), mask)[0]
            masked = torch.softmax(model.classifier(model.aggregator(changed)[0]), -1)[1]
            assert float(result[region, patch]) == pytest.approx(float(full - masked), abs=1e-5)
