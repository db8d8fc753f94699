"""Transformer building blocks shared by every ViT in the project.

Parameter names (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``, ``norm1``, ``norm2``) match the
official DINO / HIPT checkpoints so that they load by name.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with a fused fast path and a path that returns the weights.

    Args:
        dim: token width D.
        num_heads: number of heads H (D must be divisible by H).
        qkv_bias: learn a bias for the joint query/key/value projection.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, d)
        return q, k, v

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fused attention (torch SDPA).

        Args:
            x: tokens ``(B, N, D)``.
            key_mask: ``(B, N)`` bool, True for the tokens others may attend to (None: all).

        Returns:
            ``(B, N, D)``.
        """
        q, k, v = self._split_heads(x)
        dropout = self.attn_drop if self.training else 0.0
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))

    def forward_with_weights(
        self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention that materialises the weight matrix (for heatmaps).

        Args:
            x: tokens ``(B, N, D)``.
            key_mask: ``(B, N)`` bool, True for the tokens others may attend to (None: all).

        Returns:
            output ``(B, N, D)`` and the softmaxed weights ``(B, H, N, N)`` (0 on masked keys).
        """
        q, k, v = self._split_heads(x)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        dropped = F.dropout(weights, self.attn_drop, self.training)
        out = (dropped @ v).transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(out)), weights


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Args: x ``(B, N, D)``; key_mask ``(B, N)`` (see :class:`Attention`). Returns ``(B, N, D)``."""
        x = x + self.drop_path(self.attn(self.norm1(x), key_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward_with_weights(
        self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, also returning the attention weights ``(B, H, N, N)``."""
        attended, weights = self.attn.forward_with_weights(self.norm1(x), key_mask)
        x = x + self.drop_path(attended)
        return x + self.drop_path(self.mlp(self.norm2(x))), weights
