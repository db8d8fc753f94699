"""DINO's self-distillation loss with a centred, sharpened teacher and the centre's EMA update."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from source.pretraining.schedules import teacher_temperature_schedule


class DINOLoss(nn.Module):
    """Cross-entropy between teacher and student crop distributions over all pairs of different crops.

    Args:
        out_dim: head output width.
        crops: total crops per image (2 global + local ones); the teacher sees the 2 global crops.
        warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, epochs: teacher temperature schedule.
        student_temp: student temperature (0.1).
        center_momentum: EMA momentum of the centre (0.9).
    """

    def __init__(
        self,
        out_dim: int,
        crops: int,
        warmup_teacher_temp: float,
        teacher_temp: float,
        warmup_teacher_temp_epochs: int,
        epochs: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        self.crops = crops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temps = teacher_temperature_schedule(
            warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, epochs
        )

    def teacher_temp(self, epoch: int) -> float:
        """Teacher temperature at ``epoch``."""
        return float(self.teacher_temps[min(epoch, len(self.teacher_temps) - 1)])

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, epoch: int) -> torch.Tensor:
        """Loss of a batch.

        Args:
            student: ``(crops * B, out_dim)``, crop-major (all images' crop 0, then crop 1, ...).
            teacher: ``(2 * B, out_dim)``, the two global crops, crop-major.
            epoch: for the teacher temperature.

        Returns:
            the mean over pairs (teacher crop t, student crop s != t) and images of ``-sum q_t log p_s``.
        """
        student_log = F.log_softmax(student.float() / self.student_temp, dim=-1).chunk(self.crops)
        teacher_probs = F.softmax((teacher.float() - self.center) / self.teacher_temp(epoch), dim=-1).detach().chunk(2)
        total, pairs = 0.0, 0
        for t, q in enumerate(teacher_probs):
            for s, log_p in enumerate(student_log):
                if s == t:
                    continue
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                pairs += 1
        self.update_center(teacher)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """``center = m * center + (1 - m) * mean of the teacher outputs of every rank``."""
        total = teacher.float().sum(dim=0, keepdim=True)
        count = torch.tensor([teacher.shape[0]], dtype=torch.float32, device=teacher.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(total / count, alpha=1 - self.center_momentum)
