"""Vision transformers of HIPT: ViT_patch (pixels -> 384-d) and ViT_region (patch features -> 192-d).

One :class:`VisionTransformer` class; only its token embedding differs: :class:`PatchEmbed` turns
pixels into tokens (ViT-S/16), :class:`FeatureEmbed` turns a grid of patch features into tokens
(ViT4K-XS, called ``phi`` in the official code). The embedding is registered under the attribute name
of the official checkpoints (``patch_embed`` or ``phi``) so that those checkpoints load by name.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from source.models.layers import Block

PRETRAINED_POS_GRID = 14
"""Side of the learned pos-embed grid of the official models (224-px input, 14 x 14 tokens + CLS)."""


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution from pixels to tokens."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 384) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Args: x ``(B, C, H, W)``. Returns tokens ``(B, H/p * W/p, D)`` (row-major) and the grid ``(H/p, W/p)``."""
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[-2], x.shape[-1])


class FeatureEmbed(nn.Sequential):
    """``phi`` of ViT4K: Linear(in -> out) + GELU + Dropout applied to each patch feature."""

    def __init__(self, in_dim: int = 384, embed_dim: int = 192, drop: float = 0.0) -> None:
        super().__init__(nn.Linear(in_dim, embed_dim), nn.GELU(), nn.Dropout(drop))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:  # type: ignore[override]
        """Embed a feature grid.

        Args:
            x: a grid ``(B, C, h, w)`` (the official layout) or row-major tokens ``(B, h*w, C)`` of a
                square grid.

        Returns:
            tokens ``(B, h*w, D)`` and the grid ``(h, w)``.
        """
        if x.dim() == 4:
            grid = (x.shape[-2], x.shape[-1])
            x = x.flatten(2).transpose(1, 2)
        elif x.dim() == 3:
            side = math.isqrt(x.shape[1])
            if side * side != x.shape[1]:
                raise ValueError(f"{x.shape[1]} tokens do not form a square grid; pass (B, C, h, w)")
            grid = (side, side)
        else:
            raise ValueError(f"expected (B, C, h, w) or (B, N, C) features, got shape {tuple(x.shape)}")
        return super().forward(x), grid


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Adapt a learned pos-embed to a token grid the way DINO does (bicubic, scale ``(g + 0.1) / g0``).

    Args:
        pos_embed: ``(1, 1 + g0*g0, D)``, CLS first.
        grid: target ``(h, w)``.

    Returns:
        ``(1, 1 + h*w, D)``; the input itself when the grid already matches.
    """
    num_patches = pos_embed.shape[1] - 1
    height, width = grid
    if height == width and height * width == num_patches:
        return pos_embed
    side = math.isqrt(num_patches)
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    patch_pos = F.interpolate(
        patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2),
        scale_factor=((height + 0.1) / side, (width + 0.1) / side),
        mode="bicubic",
    )
    if patch_pos.shape[-2:] != (height, width):
        raise RuntimeError(f"pos-embed interpolation gave {tuple(patch_pos.shape[-2:])}, expected {grid}")
    return torch.cat((cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(1, height * width, dim)), dim=1)


def resize_pos_embed(pos_embed: torch.Tensor, side: int) -> torch.Tensor:
    """Resize a checkpoint's pos-embed to a model's ``side x side`` grid (bicubic, exact size).

    Args:
        pos_embed: ``(1, 1 + g*g, D)``.
        side: target grid side.

    Returns:
        ``(1, 1 + side*side, D)``.
    """
    num_patches = pos_embed.shape[1] - 1
    old_side = math.isqrt(num_patches)
    if old_side * old_side != num_patches:
        raise ValueError(f"pos_embed with {num_patches} patch tokens is not a square grid")
    if old_side == side:
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, old_side, old_side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(side, side), mode="bicubic", align_corners=False)
    grid = grid.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, side * side, dim)
    return torch.cat((pos_embed[:, :1], grid), dim=1)


class VisionTransformer(nn.Module):
    """ViT with an injectable token embedding, a CLS token and a DINO-style interpolated pos-embed.

    Args:
        token_embed: module mapping the input to ``(tokens (B, N, D), grid (h, w))``.
        embed_attr: attribute name of the embedding (``patch_embed`` or ``phi``, as in the checkpoints).
        embed_dim: token width D.
        depth: number of blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: bias in the qkv projection.
        drop_rate: dropout after the pos-embed, in MLPs and projections.
        attn_drop_rate: dropout on attention weights.
        drop_path_rate: stochastic-depth rate, linearly increasing over blocks.
        pos_grid: side of the learned pos-embed grid (14 for the official 224-px models).
    """

    def __init__(
        self,
        token_embed: nn.Module,
        embed_attr: str,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        pos_grid: int = PRETRAINED_POS_GRID,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.pos_grid = pos_grid
        self._embed_attr = embed_attr
        self.add_module(embed_attr, token_embed)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.tissue_threshold: Optional[float] = None
        """Grid inputs (ViT_region) only: when set, the input's last channel is each token's tissue fraction, and
        tokens below this threshold are masked as attention keys (``mask_background``); not a weight."""
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    @property
    def token_embed(self) -> nn.Module:
        """The input embedding (``patch_embed`` or ``phi``)."""
        return getattr(self, self._embed_attr)

    def prepare_tokens(self, x: torch.Tensor, embedded: bool = False) -> torch.Tensor:
        """Embed the input, prepend CLS and add the interpolated pos-embed. Returns ``(B, 1 + N, D)``.

        ``embedded``: ``x`` is already the token embedding ``(B, N, D)`` of a square grid (e.g. from
        :mod:`source.models.pixel_embedding`)."""
        if embedded:
            side = math.isqrt(x.shape[1])
            tokens, grid = x, (side, side)
        else:
            tokens, grid = self.token_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        return self.pos_drop(tokens + interpolate_pos_embed(self.pos_embed, grid).to(tokens.dtype))

    def forward_features(
        self, x: torch.Tensor, token_mask: Optional[torch.Tensor] = None, embedded: bool = False
    ) -> torch.Tensor:
        """All tokens after the final norm: ``(B, 1 + N, D)``, CLS first.

        Args:
            token_mask: ``(B, N)`` bool over the input tokens (row-major): False tokens are masked as attention keys
                in every block (no token attends to them; the CLS token is always kept). None, or all True: the
                plain forward, bit for bit.
            embedded: ``x`` is already token-embedded (see :meth:`prepare_tokens`).
        """
        x, token_mask = self.split_tissue(x, token_mask)
        tokens = self.prepare_tokens(x, embedded)
        key_mask = key_mask_of(token_mask)
        for block in self.blocks:
            tokens = block(tokens, key_mask)
        return self.norm(tokens)

    def split_tissue(
        self, x: torch.Tensor, token_mask: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """With :attr:`tissue_threshold`: ``(B, C + 1, h, w)`` -> the features ``(B, C, h, w)`` and ``token_mask``
        AND-ed with "tissue fraction >= threshold" ``(B, h*w)``; otherwise ``x`` and ``token_mask`` unchanged."""
        if self.tissue_threshold is None:
            return x, token_mask
        on_tissue = x[:, -1].flatten(1) >= self.tissue_threshold
        return x[:, :-1], on_tissue if token_mask is None else token_mask.bool() & on_tissue

    def forward(
        self, x: torch.Tensor, token_mask: Optional[torch.Tensor] = None, embedded: bool = False
    ) -> torch.Tensor:
        """The final-norm CLS embedding ``(B, D)`` (``token_mask``, ``embedded``: see :meth:`forward_features`)."""
        return self.forward_features(x, token_mask, embedded)[:, 0]

    def token_grid(self, side: int) -> int:
        """Tokens per side of the last block's attention for a ``side``-px input (pixel encoders)."""
        return side // self.token_embed.patch_size

    def forward_with_attention(
        self, x: torch.Tensor, token_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CLS embedding ``(B, D)`` and the last block's attention weights ``(B, H, 1 + N, 1 + N)``."""
        x, token_mask = self.split_tissue(x, token_mask)
        tokens = self.prepare_tokens(x)
        key_mask = key_mask_of(token_mask)
        for block in self.blocks[:-1]:
            tokens = block(tokens, key_mask)
        tokens, weights = self.blocks[-1].forward_with_weights(tokens, key_mask)
        return self.norm(tokens)[:, 0], weights


def key_mask_of(token_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The attention key mask ``(B, 1 + N)`` of an input-token mask ``(B, N)`` (CLS always kept); None when nothing
    is masked, so that an all-True mask takes the unmasked (bit-identical) path.

    A mask on a CUDA device, or inside ``torch.compile``, is not checked (reading it would wait for the device, or
    break the graph): an all-True one is applied, which equals the unmasked path within float rounding. Callers that
    want the check there make it on the host."""
    if token_mask is None:
        return None
    checkable = token_mask.device.type != "cuda" and not torch.compiler.is_compiling()
    if checkable and bool(token_mask.all()):
        return None
    keep_cls = torch.ones(token_mask.shape[0], 1, dtype=torch.bool, device=token_mask.device)
    return torch.cat([keep_cls, token_mask.bool()], dim=1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _patch_vit(embed_dim: int, num_heads: int, patch_size: int = 16, **kwargs) -> VisionTransformer:
    embed = PatchEmbed(patch_size=patch_size, embed_dim=embed_dim)
    return VisionTransformer(embed, "patch_embed", embed_dim, depth=12, num_heads=num_heads, **kwargs)


def vit_tiny(**kwargs) -> VisionTransformer:
    """ViT-Ti/16: 192-d, 12 blocks, 3 heads."""
    return _patch_vit(192, 3, **kwargs)


def vit_small(**kwargs) -> VisionTransformer:
    """ViT-S/16 (HIPT's ViT_patch): 384-d, 12 blocks, 6 heads."""
    return _patch_vit(384, 6, **kwargs)


def vit_base(**kwargs) -> VisionTransformer:
    """ViT-B/16: 768-d, 12 blocks, 12 heads."""
    return _patch_vit(768, 12, **kwargs)


def vit4k_xs(input_dim: int = 384, drop_rate: float = 0.0, **kwargs) -> VisionTransformer:
    """ViT4K-XS (HIPT's ViT_region): phi 384 -> 192, 6 blocks, 6 heads."""
    embed = FeatureEmbed(input_dim, 192, drop=drop_rate)
    return VisionTransformer(embed, "phi", 192, depth=6, num_heads=6, drop_rate=drop_rate, **kwargs)


def build_vit(arch: str, **kwargs) -> VisionTransformer:
    """Build a registered ViT by name (see :mod:`source.models.registry`)."""
    from source.models.registry import build_encoder

    return build_encoder(arch, **kwargs)
