"""Assembly stage: batches of region features -> whole slides, each finished when its last region is in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from tqdm import tqdm

from source.data.slides import SlidePlan
from source.engines.device_feed import PendingFeatures
from source.engines.extraction.outcomes import SlideOutcome


@dataclass
class Launched:
    """A batch whose encoding is enqueued: its region keys ``(slide, region)``, failures ``(slide, region, why)``, the
    rows of ``keys`` being encoded, and their tissue fractions ``(rows, n*n)`` and features on the way to the host."""

    keys: list[tuple[int, int]]
    failures: list[tuple[int, int, str]]
    rows: list[int]
    tissue: Optional[PendingFeatures] = None
    features: Optional[PendingFeatures] = None


class SlideAssembly:
    """Gathers each pending slide's region features, batch by batch, and finishes a slide when its last region is in.

    Args:
        pending: the slides being encoded (:class:`Launched` keys index them).
        finish: ``(plan, features, tissue, error) -> SlideOutcome``, called once per slide.

    Attributes:
        errors: the first error of each pending slide (None while it has none); its later regions are not encoded.
    """

    def __init__(self, pending: Sequence[SlidePlan], finish: Callable[..., SlideOutcome]) -> None:
        self.pending, self.finish = pending, finish
        self.remaining = [len(plan.regions) for plan in pending]
        self.features: list[list[Optional[torch.Tensor]]] = [[None] * len(plan.regions) for plan in pending]
        self.tissue: list[list[Optional[torch.Tensor]]] = [[None] * len(plan.regions) for plan in pending]
        self.errors: list[Optional[str]] = [None] * len(pending)
        self.encoded = self.done = self.failed = 0

    def collect(self, launched: Launched, bar: tqdm):
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
