"""The DINO meta-architecture: student and EMA teacher (backbone + head), the loss, the teacher update."""

from __future__ import annotations

import torch
from torch import nn

from source.pretraining.head import DINOHead
from source.pretraining.loss import DINOLoss


class MultiCropWrapper(nn.Module):
    """Backbone + head over a list of crops; consecutive crops of the same size share one backbone pass.

    Parameter names are ``backbone.*`` and ``head.*``, the layout of HIPT's released checkpoints.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """Args: crops, each ``(B, ...)``. Returns ``(len(crops) * B, out_dim)``, crop-major."""
        outputs, start = [], 0
        while start < len(crops):
            end = start + 1
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            outputs.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(outputs))


class DINO(nn.Module):
    """Student (trained) and teacher (EMA of the student, never trained) with the DINO loss.

    Args:
        student_backbone: the backbone to train (with drop-path).
        teacher_backbone: the same architecture (without drop-path); its weights are copied from the student.
        head_kwargs: :class:`DINOHead` arguments beyond the input width.
        loss: the DINO loss.
    """

    def __init__(
        self, student_backbone: nn.Module, teacher_backbone: nn.Module, head_kwargs: dict, loss: DINOLoss
    ) -> None:
        super().__init__()
        dim = student_backbone.embed_dim
        self.student = MultiCropWrapper(student_backbone, DINOHead(dim, **head_kwargs))
        self.teacher = MultiCropWrapper(teacher_backbone, DINOHead(dim, **head_kwargs))
        self.teacher.load_state_dict(self.student.state_dict())
        for parameter in self.teacher.parameters():
            parameter.requires_grad = False
        self.loss = loss
        self.student_forward: nn.Module = self.student  # replaced by a DDP wrapper when distributed

    def forward(self, crops: list[torch.Tensor], epoch: int) -> torch.Tensor:
        """Loss of a batch of multi-crop views (the first two crops are the global ones)."""
        with torch.no_grad():
            teacher = self.teacher(crops[:2])
        return self.loss(self.student_forward(crops), teacher, epoch)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter."""
        for student, teacher in zip(self.student.parameters(), self.teacher.parameters(), strict=True):
            teacher.mul_(momentum).add_(student.detach(), alpha=1 - momentum)
