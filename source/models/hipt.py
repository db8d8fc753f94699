"""HIPT region encoder: region pixels -> 256-px patches -> ViT_patch -> patch grid -> ViT_region.

Only the math lives here. Running it on accelerators (placement on one or two devices, moving inputs there, autocast to
the run's precision, ``torch.compile`` and CUDA-graph steps) is :class:`source.models.accelerator.Accelerated`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.profiler import record_function

from source.models.pixel_embedding import embed_region_patches, folded_embedding, input_coding
from source.models.vit import PatchEmbed, VisionTransformer

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

ViTCall = Callable[..., torch.Tensor]
"""How the encoder runs one ViT forward: ``call(vit, *inputs)`` -> features as float32 (see :func:`call_vit`)."""


def call_vit(vit: nn.Module, *inputs: Optional[torch.Tensor]) -> torch.Tensor:
    """The plain ViT forward: ``vit(*inputs)`` as float32 (an accelerator passes its own, e.g. one stepping CUDA
    graphs)."""
    return vit(*inputs).float()


@dataclass
class RegionFeatures:
    """Features of a batch of regions.

    Attributes:
        local: ViT_patch CLS of every patch, ``(B, n*n, D_patch)``, row-major (patch ``r*n + c``).
        global_: ViT_region CLS of every region, ``(B, D_region)``; None when no ViT_region is set.
    """

    local: torch.Tensor
    global_: Optional[torch.Tensor]


def patchify(regions: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut square regions into non-overlapping patches in row-major order.

    Args:
        regions: ``(B, C, R, R)`` with R a multiple of ``patch_size``.
        patch_size: patch side p.

    Returns:
        ``(B * n * n, C, p, p)`` with n = R / p; patch ``b*n*n + r*n + c`` is row r, column c of region b.
    """
    batch, channels, height, width = regions.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"region of {height}x{width} px is not a multiple of the {patch_size}-px patch size")
    rows, cols = height // patch_size, width // patch_size
    patches = regions.reshape(batch, channels, rows, patch_size, cols, patch_size)
    return patches.permute(0, 2, 4, 1, 3, 5).reshape(batch * rows * cols, channels, patch_size, patch_size)


def features_to_grid(local: torch.Tensor) -> torch.Tensor:
    """Row-major patch features ``(B, n*n, D)`` -> the grid ``(B, D, n, n)`` that ViT_region takes."""
    batch, tokens, dim = local.shape
    side = int(round(tokens**0.5))
    if side * side != tokens:
        raise ValueError(f"{tokens} patch features do not form a square grid")
    return local.transpose(1, 2).reshape(batch, dim, side, side)


class HIPTEncoder(nn.Module):
    """Encode regions with ViT_patch and (optionally) ViT_region, normalising pixels on the patch device.

    The model computes where its inputs are, in whatever autocast its caller sets, calling each ViT through ``call``
    (:data:`ViTCall`); :class:`source.models.accelerator.Accelerated` runs it on its device(s), at :attr:`precision`,
    optionally compiled.

    Args:
        vit_patch: the patch encoder (ViT-S/16 in HIPT).
        vit_region: the region encoder (ViT4K-XS); None to compute local features only.
        patch_size: side of the patches ViT_patch sees (256).
        patch_batch_size: patches per ViT_patch forward; bounds activation memory.
        mean: per-channel normalisation mean for pixels in [0, 1].
        std: per-channel normalisation std.
        precision: the precision the encoder's settings ask for, ``fp32``, ``bf16`` or ``fp16``: the autocast that
            :class:`~source.models.accelerator.Accelerated` (and the heatmaps' attention reader) applies by default;
            features are float32 either way.
        fused_embedding: compute ViT_patch's token embedding from the region's raw pixels with the normalisation folded
            into its weights (this project's ViTs; timm encoders keep their own path). False: patchify, normalise,
            embed, the reference path (features equal within float rounding).
    """

    def __init__(
        self,
        vit_patch: VisionTransformer,
        vit_region: Optional[VisionTransformer] = None,
        patch_size: int = 256,
        patch_batch_size: int = 256,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        precision: str = "fp32",
        fused_embedding: bool = True,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got '{precision}'")
        self.vit_patch = vit_patch
        self.vit_region = vit_region
        self.patch_size = patch_size
        self.patch_batch_size = patch_batch_size
        self.precision = precision
        self.fused_embedding = fused_embedding
        """Embed this project's ViT_patch from raw pixels with normalisation folded in (:attr:`embeds_pixels`)."""
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    @property
    def patch_device(self) -> torch.device:
        """Device holding ViT_patch (and the normalisation)."""
        return self.vit_patch.cls_token.device

    @property
    def region_device(self) -> torch.device:
        """Device holding ViT_region (ViT_patch's when there is none)."""
        return self.vit_region.cls_token.device if self.vit_region is not None else self.patch_device

    def place(self, patch_device: torch.device, region_device: Optional[torch.device] = None) -> "HIPTEncoder":
        """Put ViT_patch and the normalisation on ``patch_device``, ViT_region on ``region_device`` (default: the
        same); the model's parts that belong together move together.

        :class:`~source.models.accelerator.Accelerated` decides the devices and calls this. It stays a method of the
        model because the heatmaps place the bare model (``heatmap_job``): their :class:`AttentionReader` reads the
        ViTs' last-block attention (``forward_with_attention``), which no accelerated forward returns.
        """
        self.vit_patch.to(patch_device)
        self.mean, self.std = self.mean.to(patch_device), self.std.to(patch_device)
        if self.vit_region is not None:
            self.vit_region.to(region_device or patch_device)
        return self

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, 3, H, W)`` in [0, 255] (or float in [0, 1]) -> normalised float32."""
        pixels = pixels.float().div_(255.0) if pixels.dtype == torch.uint8 else pixels.float()
        return (pixels - self.mean) / self.std

    def encode_patches(self, regions: torch.Tensor, call: ViTCall = call_vit) -> torch.Tensor:
        """Local features of regions.

        Args:
            regions: ``(B, 3, R, R)``, uint8 in [0, 255] or float in [0, 1], on the patch device.
            call: how ViT_patch runs (:data:`ViTCall`).

        Returns:
            ``(B, n*n, D_patch)`` float32 on the patch device, n = R / patch_size.
        """
        if self.embeds_pixels:
            return self._encode_patches_from_pixels(regions, call)
        with record_function("hipt.patchify"):
            patches = patchify(regions, self.patch_size)
        per_region = patches.shape[0] // regions.shape[0]
        outputs = []
        for start in range(0, patches.shape[0], self.patch_batch_size):
            with record_function("hipt.normalise"):
                chunk = self.normalize(patches[start : start + self.patch_batch_size])
            with record_function("hipt.vit_patch"):
                outputs.append(call(self.vit_patch, chunk))
        return torch.cat(outputs).reshape(regions.shape[0], per_region, -1)

    @property
    def embeds_pixels(self) -> bool:
        """True when ViT_patch's token embedding runs on the region's raw pixels (:mod:`source.models.pixel_embedding`):
        ``fused_embedding`` is on and ViT_patch is this project's ViT, whose token side divides ``patch_size``."""
        embed = getattr(self.vit_patch, "token_embed", None)
        return (
            self.fused_embedding
            and isinstance(self.vit_patch, VisionTransformer)
            and isinstance(embed, PatchEmbed)
            and self.patch_size % embed.patch_size == 0
        )

    def _encode_patches_from_pixels(self, regions: torch.Tensor, call: ViTCall) -> torch.Tensor:
        """:meth:`encode_patches` with the folded embedding: ``(B, 3, R, R)`` on the device -> ``(B, n*n, D)``.

        Regions are embedded in groups of ``patch_batch_size // (n*n)`` (at least one), then ViT_patch runs on chunks
        of ``patch_batch_size`` patches, as on the reference path."""
        proj = self.vit_patch.token_embed.proj
        per_region = (regions.shape[-1] // self.patch_size) ** 2
        group = max(1, self.patch_batch_size // per_region)
        outputs = []
        weight, bias = folded_embedding(proj, self.mean, self.std, input_coding(regions.dtype))
        for first in range(0, regions.shape[0], group):
            with record_function("hipt.embed_pixels"):
                tokens = embed_region_patches(
                    regions[first : first + group], weight, bias, self.patch_size, proj.kernel_size[0]
                )
            for start in range(0, tokens.shape[0], self.patch_batch_size):
                with record_function("hipt.vit_patch"):
                    chunk = tokens[start : start + self.patch_batch_size]
                    outputs.append(call(self.vit_patch, chunk, None, True))
        return torch.cat(outputs).reshape(regions.shape[0], per_region, -1)

    def encode_regions(
        self, local: torch.Tensor, token_mask: Optional[torch.Tensor] = None, call: ViTCall = call_vit
    ) -> torch.Tensor:
        """Global features from local ones: ``(B, n*n, D_patch)`` -> ``(B, D_region)`` float32, both on the region
        device.

        ``token_mask`` ``(B, n*n)`` bool: False patches (background) are masked as attention keys in ViT_region;
        None or all True gives the unmasked features bit for bit. ``call``: how ViT_region runs (:data:`ViTCall`).
        """
        if self.vit_region is None:
            raise RuntimeError("this encoder has no ViT_region; build it with level 'global'")
        return call(self.vit_region, features_to_grid(local), token_mask)

    def forward(
        self, regions: torch.Tensor, token_mask: Optional[torch.Tensor] = None, call: ViTCall = call_vit
    ) -> RegionFeatures:
        """Args: regions ``(B, 3, R, R)``; token_mask ``(B, n*n)`` (see :meth:`encode_regions`); call (see
        :data:`ViTCall`). Returns :class:`RegionFeatures` (local and global). Both ViTs on the inputs' device (an
        encoder split over two devices runs through :class:`~source.models.accelerator.Accelerated`)."""
        local = self.encode_patches(regions, call)
        global_ = self.encode_regions(local, token_mask, call) if self.vit_region is not None else None
        return RegionFeatures(local=local, global_=global_)
