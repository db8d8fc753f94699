"""Patch encoders from timm under HIPT's ViT_region: any timm ViT by name, and pathology foundation-model presets.

``vit_patch_arch=timm:<model name>`` builds that timm model (``vit_patch_kwargs`` are passed to
``timm.create_model``; ``num_classes=0``); ``vit_patch_arch=<preset>`` builds a foundation model's
architecture as its model card specifies. Weights come from a local file (``pretrain_vit_patch``:
.pth / .bin / .safetensors) through the project's one loader; ``hf-hub:<org>/<name>`` asks timm to
download them, which needs network access (and, for gated models, a Hugging Face token).

Each encoder carries its transform: a 256-px patch is resized to the model's input size (bicubic,
antialiased) and normalised with the model's mean / std; the output is the CLS token or, for models
whose card says so, the CLS token concatenated with the mean of the patch tokens (register tokens
excluded).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_PREFIX = "timm:"
HUB_PREFIX = "hf-hub:"


@dataclass(frozen=True)
class PatchTransform:
    """How a patch reaches an encoder and what comes out.

    Attributes:
        input_size: side the 256-px patch is resized to (the model's training size).
        interpolation: resize mode (``bicubic``, ``bilinear``).
        mean, std: per-channel normalisation of pixels in [0, 1].
        output: ``cls`` (the CLS token) or ``cls+mean`` (CLS and the mean of the patch tokens, concatenated).
    """

    input_size: int = 224
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    output: str = "cls"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy (saved in the run folder, compared on resume)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Preset:
    """A pathology foundation model: its timm architecture, transform, width and where its weights come from."""

    name: str
    timm_name: str
    kwargs: dict[str, Any]
    transform: PatchTransform
    embed_dim: int
    weight_file: str
    source: str
    layers: dict[str, str] = field(default_factory=dict)
    """timm layer classes passed by name (``mlp_layer``: ``SwiGLUPacked``, ``act_layer``: ``SiLU``)."""


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "uni",
            "vit_large_patch16_224",
            {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "dynamic_img_size": True},
            PatchTransform(),
            1024,
            "pytorch_model.bin",
            "https://huggingface.co/MahmoodLab/UNI (gated: accept the terms, then download pytorch_model.bin)",
        ),
        Preset(
            "uni2",
            "vit_giant_patch14_224",
            {
                "img_size": 224,
                "patch_size": 14,
                "depth": 24,
                "num_heads": 24,
                "init_values": 1e-5,
                "embed_dim": 1536,
                "mlp_ratio": 2.66667 * 2,
                "no_embed_class": True,
                "reg_tokens": 8,
                "dynamic_img_size": True,
            },
            PatchTransform(),
            1536,
            "pytorch_model.bin",
            "https://huggingface.co/MahmoodLab/UNI2-h (gated)",
            {"mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"},
        ),  # fmt: skip
        Preset(
            "virchow2",
            "vit_huge_patch14_224",
            {"img_size": 224, "init_values": 1e-5, "mlp_ratio": 5.3375, "reg_tokens": 4, "dynamic_img_size": True},
            PatchTransform(output="cls+mean"),
            2560,
            "pytorch_model.bin",
            "https://huggingface.co/paige-ai/Virchow2 (gated)",
            {"mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"},
        ),
        Preset(
            "h_optimus_0",
            "vit_giant_patch14_reg4_dinov2",
            {"img_size": 224, "init_values": 1e-5, "dynamic_img_size": False},
            PatchTransform(mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517)),
            1536,
            "pytorch_model.bin",
            "https://huggingface.co/bioptimus/H-optimus-0",
        ),
        Preset(
            "prov_gigapath",
            "vit_giant_patch14_dinov2",
            {
                "img_size": 224,
                "patch_size": 16,
                "embed_dim": 1536,
                "depth": 40,
                "num_heads": 24,
                "init_values": 1e-5,
                "mlp_ratio": 5.33334,
            },
            PatchTransform(),
            1536,
            "pytorch_model.bin",
            "https://huggingface.co/prov-gigapath/prov-gigapath (gated)",
        ),  # fmt: skip
    )
}
"""Foundation-model presets (architecture and transform as their model cards give them)."""


class TimmPatchEncoder(nn.Module):
    """A timm ViT as ViT_patch: normalised ``(B, 3, 256, 256)`` patches -> ``(B, D)`` features.

    Args:
        model: a timm VisionTransformer built with ``num_classes=0``.
        transform: its input size, interpolation, normalisation and output.
        name: the architecture name (messages).
    """

    def __init__(self, model: nn.Module, transform: PatchTransform, name: str) -> None:
        super().__init__()
        self.model, self.transform, self.name = model, transform, name
        width = int(model.num_features)
        self.embed_dim = 2 * width if transform.output == "cls+mean" else width
        self.num_heads = int(model.blocks[-1].attn.num_heads)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 1))

    @property
    def cls_token(self) -> torch.Tensor:
        """The CLS token (its device is the encoder's)."""
        return self.model.cls_token

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, 3, S, S)`` at the model's input size (antialiased; commutes with normalisation)."""
        size = self.transform.input_size
        if x.shape[-1] == size and x.shape[-2] == size:
            return x
        return F.interpolate(
            x, size=(size, size), mode=self.transform.interpolation, antialias=True, align_corners=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised patches ``(B, 3, H, W)`` -> ``(B, embed_dim)``."""
        return self.pool(self.model.forward_features(self.resize(x)))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final-norm tokens ``(B, N, D)`` -> CLS ``(B, D)`` or CLS + mean of the patch tokens ``(B, 2D)``."""
        cls = tokens[:, 0]
        if self.transform.output == "cls+mean":
            return torch.cat([cls, tokens[:, self.num_prefix_tokens :].mean(dim=1)], dim=-1)
        return cls

    def token_grid(self, side: int) -> int:
        """Patch tokens per side of the model's input (after the resize), whatever ``side`` the patch has."""
        return self.transform.input_size // int(self.model.patch_embed.patch_size[0])

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output ``(B, embed_dim)`` and the last block's attention ``(B, H, 1 + N, 1 + N)`` over the CLS and patch
        tokens (register tokens left out), computed from the block's own query / key projections.

        Raises:
            ValueError: a timm model whose last block has no ``qkv`` attention (e.g. rotary-embedding models).
        """
        model = self.model
        block = model.blocks[-1]
        attn = block.attn
        if not hasattr(attn, "qkv"):
            raise ValueError(f"{self.name}: attention maps need a timm ViT whose blocks use a qkv projection")
        tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(self.resize(x)))))
        for earlier in model.blocks[:-1]:
            tokens = earlier(tokens)
        batch, count, width = tokens.shape
        qkv = attn.qkv(block.norm1(tokens)).reshape(batch, count, 3, attn.num_heads, width // attn.num_heads)
        q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        keep = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(self.num_prefix_tokens, count)]).to(x.device)
        weights = weights.index_select(2, keep).index_select(3, keep)
        return self.pool(model.norm(block(tokens))), weights


def _layers(names: dict[str, str]) -> dict[str, Any]:
    import timm.layers

    found = {}
    for key, name in names.items():
        found[key] = getattr(torch.nn, name, None) or getattr(timm.layers, name)
    return found


def build_timm_encoder(name: str, patch_size: Optional[int] = None, **kwargs: Any) -> TimmPatchEncoder:
    """ViT_patch ``name``: a preset, ``timm:<model>`` or ``hf-hub:<org>/<model>`` (downloads: needs network).

    Args:
        patch_size: HIPT's token size (ignored here: a timm model keeps its own).
        kwargs: extra ``timm.create_model`` arguments (``vit_patch_kwargs``), over the preset's.

    Raises:
        ValueError: an unknown preset, or a timm name timm does not know.
        CheckpointError: ``hf-hub:`` weights that cannot be downloaded.
    """
    import timm

    del patch_size
    preset = PRESETS.get(name)
    if preset is not None:
        arguments = preset.kwargs | _layers(preset.layers) | kwargs | {"num_classes": 0}
        return TimmPatchEncoder(
            timm.create_model(preset.timm_name, pretrained=False, **arguments), preset.transform, name
        )
    if name.startswith(HUB_PREFIX):
        return _from_hub(name, kwargs)
    model_name = name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(model_name):
        raise ValueError(f"timm has no model '{model_name}' (see timm.list_models('vit_*'))")
    model = timm.create_model(model_name, pretrained=False, **(kwargs | {"num_classes": 0}))
    config = model.pretrained_cfg
    size = int(kwargs.get("img_size") or config.get("input_size", (3, 224, 224))[-1])
    transform = PatchTransform(
        size,
        config.get("interpolation", "bicubic"),
        tuple(config.get("mean", IMAGENET_MEAN)),
        tuple(config.get("std", IMAGENET_STD)),
    )
    return TimmPatchEncoder(model, transform, name)


def _from_hub(name: str, kwargs: dict[str, Any]) -> TimmPatchEncoder:
    import timm

    from source.models.checkpoints import CheckpointError

    try:
        model = timm.create_model(name, pretrained=True, **(kwargs | {"num_classes": 0}))
    except Exception as error:  # offline, gated without a token, unknown repository
        raise CheckpointError(
            f"vit_patch_arch '{name}' cannot be fetched from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "This needs network access and, for gated models, an accepted licence and a token (huggingface-cli "
            "login). Without network, download the weight file elsewhere and use a preset or timm:<model> with "
            "pretrain_vit_patch=<file>"
        ) from error
    config = model.pretrained_cfg
    transform = PatchTransform(
        int(config.get("input_size", (3, 224, 224))[-1]),
        config.get("interpolation", "bicubic"),
        tuple(config.get("mean", IMAGENET_MEAN)),
        tuple(config.get("std", IMAGENET_STD)),
    )
    return TimmPatchEncoder(model, transform, name)
