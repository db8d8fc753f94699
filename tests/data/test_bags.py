"""SlideBag: the bag a slide model reads, built once from its settings for training, inference, heatmaps and
contributions."""

from __future__ import annotations

import pytest
import torch

from source.data.bags import SlideBag
from source.models.settings import HiptOptions, SlideModelSettings


def test_each_model_reads_its_level_width_tissue_channel_and_layout():
    assert SlideBag.of(SlideModelSettings()) == SlideBag("global", 192, False, False)
    masked = SlideModelSettings(level="local", patch_dim=24, options=HiptOptions(mask_background=True))
    assert SlideBag.of(masked) == SlideBag("local", 24, True, False)
    assert SlideBag.of(SlideModelSettings(aggregator="abmil", level="local")) == SlideBag("local", 384, False, True)
    wide = SlideModelSettings(aggregator="abmil", region_dim=1024)
    assert SlideBag.of(wide) == SlideBag("global", 1024, False, False)


def test_a_bag_from_the_encoder_is_the_one_the_feature_files_give():
    torch.manual_seed(0)
    local, global_, tissue = torch.randn(3, 4, 6), torch.randn(3, 5), torch.rand(3, 4)
    assert torch.equal(SlideBag("global", 5, False, False).from_encoder(local, global_), global_)
    masked = SlideBag("local", 6, True, False).from_encoder(local, global_, tissue)
    assert masked.shape == (3, 4, 7) and torch.equal(masked[..., :6], local) and torch.equal(masked[..., 6], tissue)
    with pytest.raises(ValueError, match="tissue fraction of every patch"):
        SlideBag("local", 6, True, False).from_encoder(local, global_)
    flat = SlideBag("local", 6, False, True)
    assert torch.equal(flat.from_encoder(local, global_), local.reshape(12, 6))
    bag, regions = flat.flatten(local)
    assert torch.equal(bag[5], local[1, 1]) and regions.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert SlideBag("global", 5, False, False).flatten(global_)[1] is None


def test_the_bank_reads_at_the_bag_s_level_and_width(tmp_path):
    bank = SlideBag("local", 6, True, False).bank(tmp_path)
    assert (bank.level, bank.dim, bank.tissue, bank.cache) == ("local", 6, True, False)
    regions = SlideBag("global", 5, False, False).bank(tmp_path)
    assert (regions.dim, regions.cache) == (5, True)  # global features are kept in memory
    assert not SlideBag("global", 5, False, False).bank(tmp_path, cache=False).cache
