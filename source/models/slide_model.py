"""What every slide-level model is: one bag in, logits out (and attention where the model has it), with its optional
abilities declared, never probed.

Implemented by HIPT's models (:mod:`source.models.slide`) and every MIL aggregator (:mod:`source.models.mil`,
:mod:`source.models.clam`, :mod:`source.models.transmil`).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import ClassVar, Optional

import torch
from torch import nn


class SlideModel(nn.Module, metaclass=ABCMeta):
    """One bag (``(N, D)`` instances, ``(M, n*n, D)`` grids, or a patient's list of slides) -> logits ``(C,)``.

    Optional abilities, declared by a subclass that has them:

    - :attr:`masked_forward`: it defines ``forward_masked(bags (B, N, ...), keep (B, N)) -> logits (B, C)``, equal
      to :meth:`forward` on each ``bags[b][keep[b]]`` when :attr:`masking_is_exact`; exact leave-one-out
      explanations batch their removals through it (:mod:`source.explain.contributions`).
    - :attr:`auxiliary_loss`: it defines ``forward_train(bag, targets) -> (logits (C,), auxiliary loss or None,
      weight w)``; training then minimises ``(1 - w) * task loss + w * auxiliary`` (e.g. CLAM's instance loss).
    """

    masked_forward: ClassVar[bool] = False
    auxiliary_loss: ClassVar[bool] = False

    @abstractmethod
    def forward_with_attention(self, bag) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Logits ``(C,)`` and one attention score per item of the bag (None for a model without attention)."""

    def forward(self, bag) -> torch.Tensor:
        """Logits ``(C,)``."""
        return self.forward_with_attention(bag)[0]

    @property
    def masking_is_exact(self) -> bool:
        """Whether :meth:`forward_masked` equals removing the masked items (True unless a model says otherwise)."""
        return True
