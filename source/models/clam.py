"""CLAM (Lu et al., 2021): gated attention pooling with one attention branch (``clam_sb``) or one per output
(``clam_mb``), and the optional instance-clustering loss on the most and least attended instances."""

from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from source.models.aggregators import masked_softmax
from source.models.mil import embedding_layer
from source.models.slide_model import SlideModel


class CLAM(SlideModel):
    """One bag ``(N, D)`` -> logits ``(C,)`` and attention ``(N,)``.

    Args:
        in_dim: instance width D.
        num_outputs: logits C (classes, or survival bins).
        hidden: width of the instance embedding h; the attention branches use ``hidden // 2``.
        dropout: after the embedding and inside the attention branches.
        multi_branch: one attention branch and one bag classifier per output (``clam_mb``), else one branch and a
            linear head (``clam_sb``).
        k_sample: instances taken from each end of the attention ranking for the instance loss (at most N // 2).
        instance_loss_weight: w of ``(1 - w) * bag loss + w * instance loss`` (classification; 0 = off).
        subtyping: the classes are mutually exclusive subtypes: the top instances of the other classes' branches are
            also taught to be negatives (off by default, as in CLAM's code).
    """

    masked_forward = True
    auxiliary_loss = True

    def __init__(
        self,
        in_dim: int,
        num_outputs: int,
        hidden: int = 256,
        dropout: float = 0.25,
        multi_branch: bool = False,
        k_sample: int = 8,
        instance_loss_weight: float = 0.3,
        subtyping: bool = False,
    ) -> None:
        super().__init__()
        attention_hidden = max(hidden // 2, 1)
        self.multi_branch = multi_branch
        self.k_sample = k_sample
        self.instance_loss_weight = instance_loss_weight
        self.subtyping = subtyping
        self.embed = embedding_layer(in_dim, hidden, dropout)
        self.attention_tanh = nn.Sequential(nn.Linear(hidden, attention_hidden), nn.Tanh(), nn.Dropout(dropout))
        self.attention_sigmoid = nn.Sequential(nn.Linear(hidden, attention_hidden), nn.Sigmoid(), nn.Dropout(dropout))
        self.attention_score = nn.Linear(attention_hidden, num_outputs if multi_branch else 1)
        if multi_branch:
            self.classifiers = nn.ModuleList(nn.Linear(hidden, 1) for _ in range(num_outputs))
        else:
            self.classifier = nn.Linear(hidden, num_outputs)
        self.instance_classifiers = nn.ModuleList(nn.Linear(hidden, 2) for _ in range(num_outputs))

    def attention(self, embedded: torch.Tensor) -> torch.Tensor:
        """Softmaxed attention ``(branches, N)`` of embedded instances ``(N, hidden)``."""
        scores = self.attention_score(self.attention_tanh(embedded) * self.attention_sigmoid(embedded))
        return torch.softmax(scores.T, dim=1)

    def _forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedded = self.embed(bag)
        attention = self.attention(embedded)
        pooled = attention @ embedded  # (branches, hidden)
        if self.multi_branch:
            logits = torch.cat([classifier(pooled[index]) for index, classifier in enumerate(self.classifiers)])
        else:
            logits = self.classifier(pooled[0])
        return logits, attention, embedded

    def forward_masked(self, bags: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(bags)  # (B, N, H)
        scores = self.attention_score(self.attention_tanh(embedded) * self.attention_sigmoid(embedded))  # (B, N, b)
        attention = masked_softmax(scores.transpose(1, 2), keep.unsqueeze(1).expand(-1, scores.shape[-1], -1))
        pooled = attention @ embedded  # (B, branches, H)
        if self.multi_branch:
            return torch.cat([clf(pooled[:, index]) for index, clf in enumerate(self.classifiers)], dim=1)
        return self.classifier(pooled[:, 0])

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Attention of the single branch, or (``clam_mb``) of the predicted output's branch."""
        logits, attention, _ = self._forward(bag)
        return logits, attention[int(logits.argmax()) if self.multi_branch else 0]

    def forward_train(
        self, bag: torch.Tensor, targets: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], float]:
        """Logits, the instance-clustering loss (None when off, or without a class ``label``) and its weight."""
        logits, attention, embedded = self._forward(bag)
        if self.instance_loss_weight <= 0 or "label" not in targets:
            return logits, None, 0.0
        return logits, self.instance_loss(attention, embedded, int(targets["label"])), self.instance_loss_weight

    def instance_loss(self, attention: torch.Tensor, embedded: torch.Tensor, label: int) -> torch.Tensor:
        """Cross-entropy of the instance classifiers: for the true class, its branch's k most attended instances are
        positives and its k least attended negatives; with ``subtyping``, the other classes' k most attended are
        negatives of their classifiers. Averaged over classes when subtyping (as CLAM does).

        Args:
            attention: ``(branches, N)``; embedded: ``(N, hidden)``; label: the true class.
        """
        k = min(self.k_sample, embedded.shape[0] // 2)
        if k == 0:
            return embedded.new_zeros(())
        total = embedded.new_zeros(())
        for index, classifier in enumerate(self.instance_classifiers):
            branch = attention[index if self.multi_branch else 0]
            if index == label:
                top, bottom = branch.topk(k).indices, (-branch).topk(k).indices
                instances = embedded[torch.cat([top, bottom])]
                targets = torch.cat([torch.ones(k), torch.zeros(k)]).long().to(embedded.device)
            elif self.subtyping:
                instances = embedded[branch.topk(k).indices]
                targets = torch.zeros(k, dtype=torch.long, device=embedded.device)
            else:
                continue
            total = total + F.cross_entropy(classifier(instances), targets)
        return total / len(self.instance_classifiers) if self.subtyping else total
