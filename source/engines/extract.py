"""The feature-extraction loop: plan slides, shard them over ranks, encode regions, write, report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.profiler import record_function
from torch.utils.data import DataLoader
from tqdm import tqdm

from source.data.region_loader import RegionBatch, RegionDataset, RegionItem, collate_regions
from source.data.slides import SlidePlan
from source.devices import usable_workers
from source.distributed import DistributedContext, gather_objects
from source.engines.device_feed import DeviceFeed, PendingFeatures
from source.engines.feature_store import FeatureStore
from source.io import atomic_write_csv, json_record
from source.models.hipt import HIPTEncoder
from source.wsi.tissue import tissue_from_pixels
from source.wsi.tissue_tensor import tissue_fractions

logger = logging.getLogger(__name__)

SLIDE_COLUMNS = ["slide_id", "feature_path", "num_regions", "level", "region_size", "status", "error"]
REGION_COLUMNS = ["slide_id", "region_index", "x", "y", "feature_path"]
INTEGER_COLUMNS = {"read_level", "read_size", "tile_size_lv0"}


@dataclass
class SlideOutcome:
    """One row of ``slides.csv`` plus the slide's rows of ``regions.csv``."""

    slide_id: str
    status: str
    num_regions: int = 0
    feature_path: str = ""
    error: str = ""
    regions: list[tuple[int, int, int, str]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def outcome_record(outcome: SlideOutcome) -> dict:
    """``outcome`` as plain JSON values (a shared run's per-slide record)."""
    import dataclasses

    return json_record(dataclasses.asdict(outcome))


def outcome_from_record(record: dict) -> SlideOutcome:
    """The inverse of :func:`outcome_record` (extra keys such as ``recorded_by`` are ignored)."""
    fields = {name: record[name] for name in SlideOutcome.__dataclass_fields__ if name in record}
    fields["regions"] = [tuple(row) for row in fields.get("regions", [])]
    return SlideOutcome(**fields)


def _success(plan: SlidePlan, store: FeatureStore) -> SlideOutcome:
    slide_path = store.slide_path(plan.slide_id)
    rows = [
        (
            index,
            region.x,
            region.y,
            str(store.region_path(plan.slide_id, region) if store.save_region_features else slide_path),
        )
        for index, region in enumerate(plan.regions)
    ]
    return SlideOutcome(
        plan.slide_id, "success", len(plan.regions), str(slide_path), regions=rows, details=plan.details
    )


def _failure(plan: SlidePlan, error: str, num_regions: int = 0) -> SlideOutcome:
    return SlideOutcome(plan.slide_id, "failed", num_regions, error=error, details=plan.details)


@dataclass
class _Launched:
    """A batch whose encoding is enqueued: its region keys ``(slide, region)``, failures ``(slide, region, why)``, the
    rows of ``keys`` being encoded, and their tissue fractions ``(rows, n*n)`` and features on the way to the host."""

    keys: list[tuple[int, int]]
    failures: list[tuple[int, int, str]]
    rows: list[int]
    tissue: Optional[PendingFeatures] = None
    features: Optional[PendingFeatures] = None


class _SlideAssembly:
    """Gathers each pending slide's region features, batch by batch, and finishes a slide when its last region is in.

    Args:
        pending: the slides being encoded (``_Launched`` keys index them).
        finish: ``(plan, features, tissue, error) -> SlideOutcome``, called once per slide.
    """

    def __init__(self, pending: Sequence[SlidePlan], finish: Callable[..., SlideOutcome]) -> None:
        self.pending, self.finish = pending, finish
        self.remaining = [len(plan.regions) for plan in pending]
        self.features: list[list[Optional[torch.Tensor]]] = [[None] * len(plan.regions) for plan in pending]
        self.tissue: list[list[Optional[torch.Tensor]]] = [[None] * len(plan.regions) for plan in pending]
        self.errors: list[Optional[str]] = [None] * len(pending)
        self.encoded = self.done = self.failed = 0

    def collect(self, launched: _Launched, bar: tqdm):
        """Take in one batch's features (waiting for them) and yield the outcome of every slide it completes."""
        if launched.features is not None and launched.tissue is not None:
            features, tissue = launched.features.result(), launched.tissue.result()
            self.encoded += len(launched.rows)
            for row, feature, fractions in zip(launched.rows, features, tissue, strict=True):
                slide, region = launched.keys[row]
                self.features[slide][region], self.tissue[slide][region] = feature, fractions
        for slide, _ in [*launched.keys, *((s, r) for s, r, _ in launched.failures)]:
            self.remaining[slide] -= 1
            if self.remaining[slide] == 0:
                outcome = self.finish(self.pending[slide], self.features[slide], self.tissue[slide], self.errors[slide])
                self.features[slide], self.tissue[slide] = [], []
                self.done += outcome.status == "success"
                self.failed += outcome.status != "success"
                yield outcome
        bar.update(len(launched.keys) + len(launched.failures))
        bar.set_postfix(slides=self.done, failed=self.failed)


class Extractor:
    """Encode the regions of planned slides and write one feature file per slide.

    Args:
        encoder: the HIPT encoder, placed on its device(s).
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
    """

    def __init__(
        self,
        encoder: HIPTEncoder,
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
        self.encoder = encoder
        self.overlap = overlap
        self.decode_on_device = decode_on_device
        self._told_raw = False
        self.store = store
        self.level = level
        self.region_size = region_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.show_progress = show_progress
        self.mask_background = mask_background
        self.tissue_threshold = tissue_threshold
        self.grid = region_size // encoder.patch_size

    def run(self, plans: Sequence[SlidePlan], resume: bool = False) -> list[SlideOutcome]:
        """Process ``plans``; returns one outcome per slide, in the order of ``plans``."""
        outcomes: dict[str, SlideOutcome] = {}
        pending: list[SlidePlan] = []
        for plan in plans:
            if plan.error is not None:
                outcomes[plan.slide_id] = _failure(plan, plan.error)
                logger.debug("slide %s failed: %s", plan.slide_id, plan.error)  # summarised by reason at the end
            elif resume and self.store.is_complete(plan.slide_id, plan.regions):
                outcomes[plan.slide_id] = _success(plan, self.store)
            else:
                self.store.remove_stale_temporaries(plan.slide_id)
                pending.append(plan)
        skipped = sum(o.status == "success" for o in outcomes.values())
        if skipped:
            logger.info("resume: %d slide(s) already done, %d to process", skipped, len(pending))
        for outcome in self._encode(pending):
            outcomes[outcome.slide_id] = outcome
        return [outcomes[plan.slide_id] for plan in plans]

    def _loader(self, pending: Sequence[SlidePlan]) -> DataLoader:
        items = [RegionItem(s, r, region) for s, plan in enumerate(pending) for r, region in enumerate(plan.regions)]
        return DataLoader(
            RegionDataset(items, self.region_size, [plan.source for plan in pending], raw=self.decode_on_device),
            batch_size=self.batch_size,
            num_workers=usable_workers(self.num_workers),
            collate_fn=collate_regions,
            pin_memory=self.encoder.patch_device.type == "cuda",
            prefetch_factor=2 if self.num_workers else None,
        )

    @torch.inference_mode()
    def _features(self, pixels: torch.Tensor, tissue: torch.Tensor, feed: DeviceFeed) -> PendingFeatures:
        """``(b, 3, R, R)`` uint8 (on the device) -> ``(b, 192)`` (global) or ``(b, n*n, 384)`` (local), float32, on
        their way to the host (see :class:`DeviceFeed`); ``tissue`` ``(b, n*n)`` masks background patches in ViT_region
        with ``mask_background``."""
        if self.level == "global":
            token_mask = tissue >= self.tissue_threshold if self.mask_background else None
            features = self.encoder(pixels, token_mask).global_
        else:
            features = self.encoder.encode_patches(pixels)
        with record_function("hipt.d2h_copy"):
            return feed.to_host(features)

    def _tissue(
        self, keys: Sequence[tuple[int, int]], pending: Sequence[SlidePlan], pixels: torch.Tensor
    ) -> torch.Tensor:
        """``(b, n*n)`` float32 tissue fractions of the regions ``keys`` ``(slide, region)``: from the tiling's contours
        where the slide has them (on the host), else from the pixels by hs2p's HSV rule (on a GPU with
        :func:`~source.wsi.tissue_tensor.tissue_fractions`, on the device, which needs no read-back; on a CPU with
        OpenCV). Fractions known on the host stay there, so that an all-tissue mask is recognised without a wait."""
        if pixels.device.type == "cuda" and any(pending[slide].tissue is None for slide, _ in keys):
            return self._tissue_on_device(keys, pending, pixels)
        return torch.stack(
            [self._tissue_on_host(pending[slide], region, pixels[i]) for i, (slide, region) in enumerate(keys)]
        )

    def _tissue_on_device(
        self, keys: Sequence[tuple[int, int]], pending: Sequence[SlidePlan], pixels: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`_tissue` on the pixels' device: contour fractions copied there, the others measured there."""
        measured = [i for i, (slide, _) in enumerate(keys) if pending[slide].tissue is None]
        known = [i for i, (slide, _) in enumerate(keys) if pending[slide].tissue is not None]
        tissue = torch.empty(len(keys), self.grid * self.grid, device=pixels.device)
        if known:
            rows = [pending[keys[i][0]].tissue[keys[i][1]] for i in known]  # type: ignore[index]
            tissue[known] = torch.from_numpy(np.stack(rows).astype(np.float32)).to(pixels.device, non_blocking=True)
        if measured:
            tissue[measured] = tissue_fractions(pixels[measured], self.grid)
        return tissue

    def _tissue_on_host(self, plan: SlidePlan, region: int, pixels: torch.Tensor) -> torch.Tensor:
        """``(n*n,)`` tissue fraction of one region's patches: from the tiling's contours, else from its pixels."""
        if plan.tissue is not None:
            return torch.from_numpy(np.asarray(plan.tissue[region], dtype=np.float32))
        return torch.from_numpy(tissue_from_pixels(pixels.permute(1, 2, 0).cpu().numpy(), self.grid))

    def _decoded(self, batch: RegionBatch) -> tuple[torch.Tensor, list[tuple[int, int]], list[tuple[int, int, str]]]:
        """Every region of ``batch`` as pixels ``(b, 3, R, R)`` uint8, their keys, and the failures: the rows the
        workers decoded, then the compressed ones decoded in one batch on the encoder's device (a region whose
        tiles do not decode becomes a failure)."""
        if not batch.raw:
            return batch.pixels, batch.keys, batch.failures
        from source.wsi.raw_tiles import decode_regions

        device = self.encoder.patch_device
        if not self._told_raw:
            logger.info("decoding whole-slide JPEG tiles in batches on %s (jpeg_decode)", device)
            self._told_raw = True
        parts = [batch.pixels.to(device, non_blocking=True)] if batch.keys else []
        keys, failures = list(batch.keys), list(batch.failures)
        try:
            parts.append(decode_regions(batch.raw, device))
            keys += batch.raw_keys
        except RuntimeError:  # find the region whose tiles are corrupt; the others go on
            for key, raw in zip(batch.raw_keys, batch.raw, strict=True):
                try:
                    parts.append(decode_regions([raw], device))
                    keys.append(key)
                except RuntimeError as error:
                    failures.append((*key, f"its JPEG tiles do not decode ({str(error).splitlines()[0]})"))
        pixels = torch.cat(parts) if parts else batch.pixels
        return pixels, keys, failures

    def _launch(self, batch: RegionBatch, pending: Sequence[SlidePlan], feed: DeviceFeed, errors: list) -> _Launched:
        """Decode ``batch`` and enqueue its encoding, without waiting for the features; records the batch's failures
        in ``errors`` (slide index -> first error) and leaves out the regions of slides that already failed."""
        pixels, keys, failures = self._decoded(batch)
        for slide, _, message in failures:
            errors[slide] = errors[slide] or message
        rows = [i for i, (slide, _) in enumerate(keys) if errors[slide] is None]
        if not rows:
            return _Launched(keys, failures, rows)
        with record_function("hipt.h2d_copy"):
            pixels = feed.to_device(pixels[rows] if len(rows) < len(keys) else pixels)
        tissue = self._tissue([keys[i] for i in rows], pending, pixels)
        features = self._features(pixels, tissue, feed)
        return _Launched(keys, failures, rows, feed.to_host(tissue), features)

    def _encode(self, pending: Sequence[SlidePlan]):
        """Yield an outcome for each pending slide as soon as all its regions are processed.

        Batch i's features are collected after batch i+1 has been enqueued (:class:`DeviceFeed`), so that on a GPU
        the device computes while the host reads, copies and writes."""
        if not pending:
            return
        assembly = _SlideAssembly(pending, self._finish)
        total = sum(len(plan.regions) for plan in pending)
        bar = tqdm(total=total, unit="region", desc="extract", disable=not self.show_progress, dynamic_ncols=True)
        feed = DeviceFeed(self.encoder.patch_device, self.overlap)
        started, in_flight = time.perf_counter(), None
        for batch in self._loader(pending):
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

    def _finish(
        self,
        plan: SlidePlan,
        features: list[Optional[torch.Tensor]],
        tissue: list[Optional[torch.Tensor]],
        error: Optional[str],
    ) -> SlideOutcome:
        if error is not None:
            logger.error("slide %s failed: %s", plan.slide_id, error)
            return _failure(plan, error, len(plan.regions))
        footprint = plan.details.get("tile_size_lv0")
        stacked = torch.stack(features)  # type: ignore[arg-type]
        with record_function("hipt.feature_write"):
            self.store.write(plan.slide_id, plan.regions, stacked, footprint, torch.stack(tissue))  # type: ignore[arg-type]
        logger.info(
            "slide %s: %d regions -> %s", plan.slide_id, len(plan.regions), self.store.slide_path(plan.slide_id)
        )
        return _success(plan, self.store)


def write_reports(
    outcomes: Sequence[SlideOutcome], run_dir: Path, level: str, region_size: int, extra_columns: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``slides.csv`` (with ``extra_columns`` from each outcome's details) and ``regions.csv`` (atomically)."""
    slides = pd.DataFrame(
        [
            {
                "slide_id": o.slide_id,
                "feature_path": o.feature_path,
                "num_regions": o.num_regions,
                "level": level,
                "region_size": region_size,
                "status": o.status,
                "error": o.error,
            }
            | {column: o.details.get(column) for column in extra_columns}
            for o in outcomes
        ],
        columns=SLIDE_COLUMNS[:-2] + list(extra_columns) + SLIDE_COLUMNS[-2:],
    )
    for column in set(extra_columns) & INTEGER_COLUMNS:
        slides[column] = slides[column].astype("Int64")  # integers stay integers beside failed slides' blanks
    regions = pd.DataFrame(
        [(o.slide_id, *row) for o in outcomes for row in o.regions],
        columns=REGION_COLUMNS,
    )
    atomic_write_csv(slides, run_dir / "slides.csv")
    atomic_write_csv(regions, run_dir / "regions.csv")
    return run_dir / "slides.csv", run_dir / "regions.csv"


def merge_outcomes(
    local: list[SlideOutcome], plans: Sequence[SlidePlan], context: DistributedContext
) -> list[SlideOutcome]:
    """Every rank's outcomes, in plan order (all ranks get the merged list)."""
    by_id = {o.slide_id: o for part in gather_objects(local, context) for o in part}
    return [by_id[plan.slide_id] for plan in plans]


def _log_rate(encoded: int, total: int, elapsed: float) -> None:
    """Log how many regions were encoded and how fast (an error when none was)."""
    if encoded:
        rate = encoded / max(elapsed, 1e-9)
        logger.info("encoded %d of %d regions in %.1f s (%.2f regions/s)", encoded, total, elapsed, rate)
    else:
        logger.error("no region was encoded: every one of the %d regions failed or belongs to a failed slide", total)
