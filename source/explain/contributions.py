"""Exact contributions of a bag's instances to a slide model's output: ``c_i = f(bag) - f(bag without i)``.

``f`` is the scalar the task reports: the probability of the target class (classification), the risk (survival),
the prediction (regression). Removals are batched: a model with ``forward_masked(bags (B, N, ...), keep (B, N))``
scores many occluded copies of the bag in one forward, each equal to the model on the bag without the removed
items (tested against one-by-one forwards); any other model (TransMIL, whose square token layout changes with the
bag size, HIPT with a positional encoding of the region order, patient-level models) is run once per removal.
Nothing is approximated either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch

from source.models.slide_model import SlideModel

if TYPE_CHECKING:
    from source.models.slide import LocalGlobalHIPT

Output = Callable[[torch.Tensor], torch.Tensor]
"""Logits ``(B, C)`` -> the explained scalar per bag ``(B,)``."""


@dataclass
class Contributions:
    """One bag's explanation.

    Attributes:
        output: ``f(bag)``.
        contributions: ``(M,)``: ``f(bag) - f(bag without group i)``; NaN for a bag of one group (nothing is left).
        without: ``(M,)``: ``f(bag without group i)``.
    """

    output: float
    contributions: torch.Tensor
    without: torch.Tensor


def supports_masking(model: SlideModel) -> bool:
    """Whether ``model`` scores occluded bags in one batched forward (it declares a masked forward, and that it is
    exact)."""
    return model.masked_forward and model.masking_is_exact


@torch.inference_mode()
def leave_one_out(
    model: SlideModel, bag: torch.Tensor, output: Output, groups: Optional[torch.Tensor] = None, batch_size: int = 64
) -> Contributions:
    """Contributions of the M groups of ``bag``'s instances (a group per region; one instance each by default).

    Args:
        model: a slide model in eval mode: bag ``(N, ...)`` -> logits ``(C,)``.
        bag: ``(N, ...)`` instances on the model's device.
        output: logits ``(B, C)`` -> explained values ``(B,)``.
        groups: ``(N,)`` group index 0..M-1 of each instance (e.g. the region of each patch of a flat bag).
        batch_size: occluded bags per forward (masked models).

    Returns:
        :class:`Contributions` with M values.
    """
    count = len(bag)
    groups = torch.arange(count, device=bag.device) if groups is None else groups.to(bag.device)
    members = int(groups.max()) + 1
    full = float(output(model(bag).float().unsqueeze(0))[0])
    if members == 1:
        nan = torch.full((1,), float("nan"))
        return Contributions(full, nan, nan)
    without = torch.empty(members)
    if supports_masking(model):
        for start in range(0, members, batch_size):
            removed = torch.arange(start, min(start + batch_size, members), device=bag.device)
            keep = groups.unsqueeze(0) != removed.unsqueeze(1)  # (b, N)
            logits = model.forward_masked(bag.unsqueeze(0).expand(len(removed), *bag.shape), keep)
            without[start : start + len(removed)] = output(logits.float()).cpu()
    else:
        for member in range(members):
            without[member] = float(output(model(bag[groups != member]).float().unsqueeze(0))[0])
    return Contributions(full, full - without, without)


@torch.inference_mode()
def patch_contributions(
    model: "LocalGlobalHIPT", grids: torch.Tensor, output: Output, batch_size: int = 64
) -> torch.Tensor:
    """Contribution of every patch inside ViT_region: ``f(slide) - f(slide with patch j of region i masked)``, where
    masking hides the patch as an attention key in every ViT_region block (the region is encoded as if the patch
    were not there; the other regions are unchanged).

    Args:
        model: a level-local HIPT model (``vit_region``, ``aggregator``, ``classifier``; LocalGlobalHIPT).
        grids: ``(M, n*n, D)`` patch features on the model's device.
        output: logits ``(B, C)`` -> explained values ``(B,)``.
        batch_size: masked copies per ViT_region forward and per aggregator forward.

    Returns:
        ``(M, n*n)`` contributions.
    """
    from source.models.hipt import features_to_grid

    regions = model.region_features(grids)  # (M, 192)
    full = float(output(model.classifier(model.aggregator(regions)[0]).float().unsqueeze(0))[0])
    count, patches = grids.shape[:2]
    batched = model.aggregator.masking_is_exact
    result = torch.empty(count, patches)
    for region in range(count):
        for start in range(0, patches, batch_size):
            chosen = torch.arange(start, min(start + batch_size, patches), device=grids.device)
            token_mask = torch.ones(len(chosen), patches, dtype=torch.bool, device=grids.device)
            token_mask[torch.arange(len(chosen)), chosen] = False
            copies = features_to_grid(grids[region].unsqueeze(0).expand(len(chosen), -1, -1))
            encoded = model.vit_region(copies, token_mask)  # (b, 192): region i without patch j
            bags = regions.unsqueeze(0).repeat(len(chosen), 1, 1)
            bags[:, region] = encoded
            if batched:
                keep = torch.ones(bags.shape[:2], dtype=torch.bool, device=grids.device)
                logits = model.classifier(model.aggregator.forward_masked(bags, keep)[0])
            else:  # a positional encoding reads one bag at a time
                logits = torch.stack([model.classifier(model.aggregator(bag)[0]) for bag in bags])
            result[region, start : start + len(chosen)] = full - output(logits.float()).cpu()
    return result
