"""TransMIL (Shao et al., 2021): instances as tokens of a transformer with Nystrom attention (Xiong et al., 2021)
and a pyramid position encoding generator (PPEG) over the bag laid out as a square grid."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from source.models.slide_model import SlideModel


def iterative_pinv(matrix: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of square ``(..., m, m)`` matrices by the iterative scheme of the Nystromformer
    paper: ``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4``, started at ``A^T / (max row sum * max col sum)``."""
    absolute = matrix.abs()
    scale = absolute.sum(-1).amax(-1) * absolute.sum(-2).amax(-1)
    inverse = matrix.transpose(-1, -2) / scale[..., None, None]
    identity = torch.eye(matrix.shape[-1], device=matrix.device, dtype=matrix.dtype)
    for _ in range(iterations):
        product = matrix @ inverse
        inverse = 0.25 * inverse @ (13 * identity - product @ (15 * identity - product @ (7 * identity - product)))
    return inverse


class NystromAttention(nn.Module):
    """Multi-head self-attention approximated with ``landmarks`` Nystrom landmarks (segment means of the queries
    and keys), plus a depthwise convolution of the values along the sequence (the residual of the paper).

    The sequence is padded at the front with zeros to a multiple of ``landmarks`` and cut back afterwards.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        landmarks: int = 256,
        pinv_iterations: int = 6,
        residual_kernel: int = 33,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.landmarks, self.pinv_iterations = heads, landmarks, pinv_iterations
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))
        self.residual = nn.Conv2d(
            heads, heads, (residual_kernel, 1), padding=(residual_kernel // 2, 0), groups=heads, bias=False
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Args: tokens ``(B, n, dim)``. Returns ``(B, n, dim)``."""
        batch, length, dim = tokens.shape
        padding = (-length) % self.landmarks
        padded = F.pad(tokens, (0, 0, padding, 0))
        total = padded.shape[1]
        q, k, v = self.qkv(padded).reshape(batch, total, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q = q * self.head_dim**-0.5
        segment = total // self.landmarks
        q_landmarks = q.reshape(batch, self.heads, self.landmarks, segment, self.head_dim).mean(3)
        k_landmarks = k.reshape(batch, self.heads, self.landmarks, segment, self.head_dim).mean(3)
        kernel_1 = torch.softmax(q @ k_landmarks.transpose(-1, -2), dim=-1)
        kernel_2 = torch.softmax(q_landmarks @ k_landmarks.transpose(-1, -2), dim=-1)
        kernel_3 = torch.softmax(q_landmarks @ k.transpose(-1, -2), dim=-1)
        attended = (kernel_1 @ iterative_pinv(kernel_2, self.pinv_iterations)) @ (kernel_3 @ v)
        attended = attended + self.residual(v)
        merged = attended.transpose(1, 2).reshape(batch, total, dim)
        return self.out(merged)[:, -length:]


class TransLayer(nn.Module):
    """Pre-norm residual Nystrom attention: ``x + attention(norm(x))``."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = NystromAttention(dim, heads=8, landmarks=max(dim // 2, 1), dropout=dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.attention(self.norm(tokens))


class PPEG(nn.Module):
    """Pyramid position encoding: the instance tokens as a ``side x side`` grid, plus depthwise 7x7, 5x5 and 3x3
    convolutions of it; the class token passes unchanged."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(dim, dim, size, padding=size // 2, groups=dim) for size in (7, 5, 3))

    def forward(self, tokens: torch.Tensor, side: int) -> torch.Tensor:
        """Args: tokens ``(B, 1 + side * side, dim)`` (class token first). Returns the same shape."""
        batch, _, dim = tokens.shape
        cls_token, grid = tokens[:, :1], tokens[:, 1:].transpose(1, 2).reshape(batch, dim, side, side)
        grid = grid + sum(conv(grid) for conv in self.convs)
        return torch.cat([cls_token, grid.flatten(2).transpose(1, 2)], dim=1)


class TransMIL(SlideModel):
    """One bag ``(N, D)`` -> logits ``(C,)``; no per-instance attention (its Nystrom attention is approximate and
    spread over heads and landmarks), and no masked forward (removing an instance changes the square token layout
    PPEG reads: explanations run one forward per removal).

    The N embedded instances are completed to a square of ``ceil(sqrt(N))^2`` tokens by repeating the first ones
    (any N >= 1), a class token is prepended, then attention, PPEG, attention, and the class token's layer norm.
    """

    def __init__(self, in_dim: int, num_outputs: int, hidden: int = 256, dropout: float = 0.25) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden) * 0.02)
        self.layer_1 = TransLayer(hidden, 0.1)
        self.position = PPEG(hidden)
        self.layer_2 = TransLayer(hidden, 0.1)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_outputs)

    def forward_with_attention(self, bag: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        embedded = self.embed(bag)
        count = embedded.shape[0]
        side = math.isqrt(count - 1) + 1
        filled = embedded[torch.arange(side * side, device=bag.device) % count]
        tokens = torch.cat([self.cls_token, filled.unsqueeze(0)], dim=1)
        tokens = self.layer_2(self.position(self.layer_1(tokens), side))
        return self.classifier(self.dropout(self.norm(tokens[0, 0]))), None
