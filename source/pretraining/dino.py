"""The DINO meta-architecture: student and EMA teacher (backbone + head), the loss, the teacher update."""

from __future__ import annotations

import torch
from torch import nn

from source.pretraining.head import DINOHead
from source.pretraining.loss import DINOLoss


def parameter_groups(model: nn.Module) -> list[dict]:
    """Weight decay on weights; none on biases and norm parameters (1-D tensors)."""
    decayed, plain = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (plain if name.endswith(".bias") or parameter.ndim == 1 else decayed).append(parameter)
    return [{"params": decayed}, {"params": plain, "weight_decay": 0.0}]


def clip_gradients(model: nn.Module, clip: float) -> None:
    """DINO's per-parameter clipping: scale each gradient whose norm exceeds ``clip`` down to it."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            norm = parameter.grad.detach().norm(2)
            factor = clip / (norm + 1e-6)
            if factor < 1:
                parameter.grad.mul_(factor)


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

    # -- optimisation set-up (owned here, not by the training loop) -----------------------------------
    def parameter_groups(self) -> list[dict]:
        """The student's AdamW groups: weight decay on weights (its value set per iteration on group 0),
        none on biases and norms."""
        return parameter_groups(self.student)

    def distribute(self, device: torch.device) -> None:
        """Under ``torch.distributed``: the student's forward goes through DDP (gradients all-reduced)."""
        from torch.nn.parallel import DistributedDataParallel

        self.student_forward = DistributedDataParallel(
            self.student, device_ids=[device] if device.type == "cuda" else None
        )

    def clip_student_gradients(self, clip: float) -> None:
        """DINO's per-parameter clipping of the student's gradients at norm ``clip``."""
        clip_gradients(self.student, clip)

    def cancel_last_layer_gradients(self) -> None:
        """Drop the gradients of the head's last layer (frozen in the first ``freeze_last_layer`` epochs)."""
        for parameter in self.student.head.last_layer.parameters():
            parameter.grad = None

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter."""
        for student, teacher in zip(self.student.parameters(), self.teacher.parameters(), strict=True):
            teacher.mul_(momentum).add_(student.detach(), alpha=1 - momentum)
