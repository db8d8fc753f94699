"""Store stage: what a run has done already, and the feature file of each finished slide."""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
from torch.profiler import record_function

from source.data.slides import SlidePlan
from source.engines.extraction.outcomes import SlideOutcome, failure, success
from source.engines.feature_store import FeatureStore

logger = logging.getLogger(__name__)


class SlideWriter:
    """Slides in and out of ``store``."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    def triage(self, plans: Sequence[SlidePlan], resume: bool) -> tuple[dict[str, SlideOutcome], list[SlidePlan]]:
        """The outcomes known before any encoding (slides that failed planning; with ``resume``, slides whose features
        are complete) and the slides to encode, whose stale temporaries are removed."""
        outcomes: dict[str, SlideOutcome] = {}
        pending: list[SlidePlan] = []
        for plan in plans:
            if plan.error is not None:
                outcomes[plan.slide_id] = failure(plan, plan.error)
                logger.debug("slide %s failed: %s", plan.slide_id, plan.error)  # summarised by reason at the end
            elif resume and self.store.is_complete(plan.slide_id, plan.regions):
                outcomes[plan.slide_id] = success(plan, self.store)
            else:
                self.store.remove_stale_temporaries(plan.slide_id)
                pending.append(plan)
        skipped = sum(o.status == "success" for o in outcomes.values())
        if skipped:
            logger.info("resume: %d slide(s) already done, %d to process", skipped, len(pending))
        return outcomes, pending

    def finish(
        self,
        plan: SlidePlan,
        features: list[Optional[torch.Tensor]],
        tissue: list[Optional[torch.Tensor]],
        error: Optional[str],
    ) -> SlideOutcome:
        """Write a slide whose regions are all encoded (``features`` and ``tissue`` of each, in order); a slide with an
        ``error`` fails instead."""
        if error is not None:
            logger.error("slide %s failed: %s", plan.slide_id, error)
            return failure(plan, error, len(plan.regions))
        footprint = plan.details.get("tile_size_lv0")
        stacked = torch.stack(features)  # type: ignore[arg-type]
        with record_function("hipt.feature_write"):
            self.store.write(plan.slide_id, plan.regions, stacked, footprint, torch.stack(tissue))  # type: ignore[arg-type]
        logger.info(
            "slide %s: %d regions -> %s", plan.slide_id, len(plan.regions), self.store.slide_path(plan.slide_id)
        )
        return success(plan, self.store)
