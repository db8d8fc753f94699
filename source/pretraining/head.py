"""The DINO projection head: MLP -> bottleneck -> L2 normalisation -> weight-normalised linear layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """``in_dim`` -> MLP (``hidden``, GELU, optional BN, ``layers`` layers) -> ``bottleneck`` -> L2 norm -> ``out_dim``.

    Args:
        in_dim: backbone width.
        out_dim: prototypes (65536 in DINO).
        use_bn: BatchNorm in the MLP.
        norm_last_layer: fix the weight-norm magnitude of the last layer to 1 (more stable).
        layers: MLP layers (3).
        hidden: MLP width (2048).
        bottleneck: width before the last layer (256).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        layers: int = 3,
        hidden: int = 2048,
        bottleneck: int = 256,
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        width = in_dim
        for _ in range(layers - 1):
            modules.append(nn.Linear(width, hidden))
            if use_bn:
                modules.append(nn.BatchNorm1d(hidden))
            modules.append(nn.GELU())
            width = hidden
        modules.append(nn.Linear(width, bottleneck))
        self.mlp = nn.Sequential(*modules)
        self.apply(self._init)
        self.last_layer = weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad = not norm_last_layer

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: ``(B, in_dim)``. Returns ``(B, out_dim)`` logits."""
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))
