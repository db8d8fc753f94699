"""The feature-extraction loop: a short orchestrator over the stages of :mod:`source.engines.extraction`.

Read and decode a batch, measure its tissue, enqueue its encoding, then collect the previous batch's features and
write every slide they complete (:class:`DeviceFeed`: on a GPU the device computes while the host reads and writes).
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

from torch.profiler import record_function
from tqdm import tqdm

from source.data.region_loader import RegionBatch
from source.data.slides import SlidePlan
from source.engines.device_feed import DeviceFeed
from source.engines.extraction.assembly import Launched, SlideAssembly
from source.engines.extraction.encoding import FeatureEncoder
from source.engines.extraction.outcomes import (
    SlideOutcome,
    merge_outcomes,
    outcome_from_record,
    outcome_record,
    write_reports,
)
from source.engines.extraction.reading import RegionReader
from source.engines.extraction.storing import SlideWriter
from source.engines.extraction.tissue import TissueMeter
from source.engines.feature_store import FeatureStore
from source.models.accelerator import Accelerated
from source.models.hipt import HIPTEncoder

__all__ = ["Extractor", "SlideOutcome", "merge_outcomes", "outcome_from_record", "outcome_record", "write_reports"]

logger = logging.getLogger(__name__)


class Extractor:
    """Encode the regions of planned slides and write one feature file per slide.

    Args:
        encoder: the accelerated HIPT encoder (:class:`Accelerated`); a bare :class:`HIPTEncoder` runs where it is, at
            its own precision, eager.
        store: where features go.
        level: ``global`` (ViT_region CLS, ``(M, 192)``) or ``local`` (``(M, n*n, 384)``).
        region_size: expected region side in pixels.
        batch_size: regions per forward.
        num_workers: DataLoader decoding processes.
        show_progress: draw a tqdm bar (rank 0).
        mask_background: mask the patches whose tissue fraction is below ``tissue_threshold`` as attention keys
            of ViT_region (level global; the CLS token is always kept).
        tissue_threshold: the tissue fraction a patch needs to count as tissue.
        decode_on_device: leave whole-slide regions of tiled JPEG pyramids compressed in the workers and decode each
            batch's tiles on the encoder's device (nvJPEG on a GPU); other regions are decoded in the workers.
        overlap: on a CUDA device, copy pixels on a side stream and collect each batch's features one batch later, so
            that the device computes while the host reads and writes (:class:`DeviceFeed`); False: blocking copies.

    Attributes:
        read, tissue, encode, write: the stages (:class:`RegionReader`, :class:`TissueMeter`, :class:`FeatureEncoder`,
            :class:`SlideWriter`).
    """

    def __init__(
        self,
        encoder: Accelerated | HIPTEncoder,
        store: FeatureStore,
        level: str,
        region_size: int,
        batch_size: int = 1,
        num_workers: int = 2,
        show_progress: bool = True,
        mask_background: bool = False,
        tissue_threshold: float = 0.1,
        decode_on_device: bool = False,
        overlap: bool = True,
    ) -> None:
        encoder = Accelerated.of(encoder)
        self.store, self.show_progress, self.overlap = store, show_progress, overlap
        self.read = RegionReader(region_size, batch_size, num_workers, encoder.patch_device, decode_on_device)
        self.tissue = TissueMeter(region_size // encoder.patch_size)
        self.encode = FeatureEncoder(encoder, level, mask_background, tissue_threshold)
        self.write = SlideWriter(store)

    def run(self, plans: Sequence[SlidePlan], resume: bool = False) -> list[SlideOutcome]:
        """Process ``plans``; returns one outcome per slide, in the order of ``plans``."""
        outcomes, pending = self.write.triage(plans, resume)
        for outcome in self._encode(pending):
            outcomes[outcome.slide_id] = outcome
        return [outcomes[plan.slide_id] for plan in plans]

    def _encode(self, pending: Sequence[SlidePlan]):
        """Yield an outcome for each pending slide as soon as all its regions are processed.

        Batch i's features are collected after batch i+1 has been enqueued (:class:`DeviceFeed`), so that on a GPU
        the device computes while the host reads, copies and writes."""
        if not pending:
            return
        assembly = SlideAssembly(pending, self.write.finish)
        total = sum(len(plan.regions) for plan in pending)
        bar = tqdm(total=total, unit="region", desc="extract", disable=not self.show_progress, dynamic_ncols=True)
        feed = DeviceFeed(self.read.device, self.overlap)
        started, in_flight = time.perf_counter(), None
        for batch in self.read.batches(pending):
            launched = self._launch(batch, pending, feed, assembly.errors)
            if in_flight is not None:
                yield from assembly.collect(in_flight, bar)
            in_flight = launched
        if in_flight is not None:
            yield from assembly.collect(in_flight, bar)
        bar.close()
        for plan in pending:
            if plan.source is not None:
                plan.source.close()
        _log_rate(assembly.encoded, total, time.perf_counter() - started)

    def _launch(
        self, batch: RegionBatch, pending: Sequence[SlidePlan], feed: DeviceFeed, errors: list[Optional[str]]
    ) -> Launched:
        """Decode ``batch`` and enqueue its encoding, without waiting for the features; records the batch's failures
        in ``errors`` (slide index -> first error) and leaves out the regions of slides that already failed."""
        pixels, keys, failures = self.read.decode(batch)
        for slide, _, message in failures:
            errors[slide] = errors[slide] or message
        rows = [i for i, (slide, _) in enumerate(keys) if errors[slide] is None]
        if not rows:
            return Launched(keys, failures, rows)
        with record_function("hipt.h2d_copy"):
            pixels = feed.to_device(pixels[rows] if len(rows) < len(keys) else pixels)
        tissue = self.tissue.measure([keys[i] for i in rows], pending, pixels)
        features = self.encode.encode(pixels, tissue, feed)
        return Launched(keys, failures, rows, feed.to_host(tissue), features)


def _log_rate(encoded: int, total: int, elapsed: float) -> None:
    """Log how many regions were encoded and how fast (an error when none was)."""
    if encoded:
        rate = encoded / max(elapsed, 1e-9)
        logger.info("encoded %d of %d regions in %.1f s (%.2f regions/s)", encoded, total, elapsed, rate)
    else:
        logger.error("no region was encoded: every one of the %d regions failed or belongs to a failed slide", total)
