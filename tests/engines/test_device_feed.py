"""The extractor's pipelining: batch i's features are collected only after batch i+1 is enqueued, with the same results.

The CUDA streams of :class:`DeviceFeed` run only on a GPU (``make gpu-check`` runs the extraction tests there); on the
CPU the feed hands tensors through, and the one-batch lag of the extractor is the same code on both.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from source.data.regions import BadInputError, Region
from source.data.slides import SlidePlan
from source.engines.device_feed import DeviceFeed
from source.engines.extract import Extractor
from source.engines.extraction.assembly import SlideAssembly
from source.engines.feature_store import FeatureStore
from source.models.hipt import HIPTEncoder
from source.models.vit import vit_tiny

SIZE = 64


class SyntheticSlide:
    """Regions of seeded noise; the region at ``bad`` cannot be read."""

    def __init__(self, seed: int, bad: tuple[int, ...] = ()) -> None:
        self.seed, self.bad = seed, bad

    def read(self, region: Region) -> np.ndarray:
        if region.x in self.bad:
            raise BadInputError(f"region {region.x} is unreadable")
        rng = np.random.default_rng([self.seed, region.x])
        return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)

    def close(self) -> None:
        pass


def plans() -> list[SlidePlan]:
    return [
        SlidePlan("a", [Region(i, 0) for i in range(3)], source=SyntheticSlide(1)),
        SlidePlan("b", [Region(i, 0) for i in range(2)], source=SyntheticSlide(2, bad=(1,))),
        SlidePlan("c", [Region(i, 0) for i in range(4)], source=SyntheticSlide(3)),
    ]


@pytest.fixture(scope="module")
def encoder() -> HIPTEncoder:
    torch.manual_seed(0)
    return HIPTEncoder(vit_tiny().eval(), None, patch_size=32).place(torch.device("cpu"))


def test_on_the_cpu_the_feed_hands_tensors_through():
    feed = DeviceFeed(torch.device("cpu"))
    pixels = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 2, 2)
    assert not feed.overlap
    assert feed.to_device(pixels) is pixels
    pending = feed.to_host(pixels.float())
    assert pending.event is None and torch.equal(pending.result(), pixels.float())


def test_each_batch_is_collected_after_the_next_one_is_enqueued(tmp_path, encoder, monkeypatch):
    events: list[str] = []
    launch, collect = Extractor._launch, SlideAssembly.collect

    def spy_launch(self, batch, *args):
        events.append(f"launch {batch.keys[0]}" if batch.keys else "launch failures")
        return launch(self, batch, *args)

    def spy_collect(self, launched, bar):
        events.append(f"collect {launched.keys[0]}" if launched.keys else "collect failures")
        yield from collect(self, launched, bar)

    monkeypatch.setattr(Extractor, "_launch", spy_launch)
    monkeypatch.setattr(SlideAssembly, "collect", spy_collect)
    extractor = Extractor(encoder, FeatureStore(tmp_path), "local", SIZE, batch_size=3, num_workers=0)
    outcomes = extractor.run(plans())
    # batches of 3: (a0 a1 a2) (b0 [b1 fails] c0) (c1 c2 c3)
    assert events == [
        "launch (0, 0)",
        "launch (1, 0)",
        "collect (0, 0)",
        "launch (2, 1)",
        "collect (1, 0)",
        "collect (2, 1)",
    ]
    assert [o.status for o in outcomes] == ["success", "failed", "success"]
    assert "region 1 is unreadable" in outcomes[1].error


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_features_do_not_depend_on_the_batching_or_the_lag(tmp_path, encoder, batch_size):
    extractor = Extractor(encoder, FeatureStore(tmp_path / "out"), "local", SIZE, batch_size, num_workers=0)
    outcomes = extractor.run(plans())
    assert [o.status for o in outcomes] == ["success", "failed", "success"]
    for plan in (plans()[0], plans()[2]):
        pixels = torch.stack([torch.from_numpy(plan.source.read(r)).permute(2, 0, 1) for r in plan.regions])
        with torch.inference_mode():
            expected = encoder.encode_patches(pixels)
        written = torch.load(tmp_path / "out" / "features" / "slide" / f"{plan.slide_id}.pt", weights_only=True)
        assert written.shape == (len(plan.regions), 4, 192)
        torch.testing.assert_close(written, expected, rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "out" / "features" / "slide" / "b.pt").exists()


def test_tissue_measured_on_the_device_equals_the_host_computation(tmp_path, encoder):
    """The GPU branch (contour fractions copied over, the others measured with the tensor HSV rule) run on the CPU:
    the same fractions as the host branch, row for row."""
    contour_tissue = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    pending = [
        SlidePlan("contours", [Region(i, 0) for i in range(3)], source=SyntheticSlide(1), tissue=contour_tissue),
        SlidePlan("pixels", [Region(i, 0) for i in range(3)], source=SyntheticSlide(2)),
    ]
    he = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
    he[:, : SIZE // 2] = (180, 90, 170)  # left half stained: tissue by the HSV rule, right half glass
    keys = [(1, 0), (0, 2), (1, 1), (0, 0)]
    pixels = torch.stack(
        [torch.from_numpy(he).permute(2, 0, 1)] * 2 + [torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)] * 2
    )
    extractor = Extractor(encoder, FeatureStore(tmp_path), "local", SIZE, num_workers=0)
    on_device = extractor.tissue.on_device(keys, pending, pixels)
    on_host = extractor.tissue.measure(keys, pending, pixels)
    torch.testing.assert_close(on_device, on_host, rtol=0, atol=0)
    torch.testing.assert_close(on_device[0], torch.tensor([1.0, 0.0, 1.0, 0.0]))  # measured: the stained half
    torch.testing.assert_close(on_device[1], torch.from_numpy(contour_tissue[2]))  # from the contours
