"""Run a HIPT encoder on accelerators: its device(s), its precision, optionally compiled with CUDA graphs.

:class:`~source.models.hipt.HIPTEncoder` holds the math only; :class:`Accelerated` decides where and how it runs:

- placement: ViT_patch (and the normalisation) on one device, ViT_region on the same or a second one
  (``split_across_gpus``); inputs and the local features between the two are moved there;
- precision: each stage runs under autocast to ``fp32`` (none), ``bf16`` or ``fp16`` on its device; features are
  float32;
- compilation: ``torch.compile`` of both ViTs with a mode of :data:`~source.models.settings.COMPILE_MODES`; with CUDA
  graphs (``reduce-overhead``, ``max-autotune``) every ViT forward starts a new graph step and its output is copied out
  of the graph's memory, which the next replay overwrites.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import nn
from torch.profiler import record_function

from source.models.hipt import PRECISIONS, HIPTEncoder, RegionFeatures, call_vit
from source.models.settings import COMPILE_MODES, CUDA_GRAPH_MODES


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on ``device``'s type (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got '{precision}'")
    return precision


class Accelerated:
    """A HIPT encoder on its device(s), at a precision, optionally compiled; called like the encoder.

    Args:
        model: the encoder (the math).
        device: where ViT_patch and the normalisation go; None leaves the model where it is.
        region_device: where ViT_region goes (default: ``device``); ``split_across_gpus`` gives a second GPU.
        precision: ``fp32``, ``bf16`` or ``fp16``; None: the model's own setting (:attr:`HIPTEncoder.precision`).
        compile: a ``torch.compile`` mode of :data:`~source.models.settings.COMPILE_MODES` for both ViTs; None: eager.

    Raises:
        ValueError: an unknown precision or compile mode.
    """

    def __init__(
        self,
        model: HIPTEncoder,
        device: Optional[torch.device] = None,
        region_device: Optional[torch.device] = None,
        precision: Optional[str] = None,
        compile: Optional[str] = None,
    ) -> None:
        self.model = model
        self.precision = model.precision if precision is None else precision
        self.compile_mode: Optional[str] = None
        self.cuda_graphs = False
        """True once compiled with a mode that replays CUDA graphs."""
        if device is not None:
            model.place(device, region_device)
        if compile is not None:
            self.compile(compile)

    @classmethod
    def of(cls, encoder: "HIPTEncoder | Accelerated") -> "Accelerated":
        """``encoder`` itself when accelerated already; a bare model runs where it is, at its own precision, eager."""
        return encoder if isinstance(encoder, Accelerated) else cls(encoder)

    @property
    def precision(self) -> str:
        """The autocast precision of every forward (settable)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = _check_precision(value)

    @property
    def patch_device(self) -> torch.device:
        """Device of ViT_patch: where pixels go."""
        return self.model.patch_device

    @property
    def region_device(self) -> torch.device:
        """Device of ViT_region (ViT_patch's when there is none)."""
        return self.model.region_device

    @property
    def patch_size(self) -> int:
        """Side of the patches ViT_patch sees."""
        return self.model.patch_size

    def compile(self, mode: str = "default") -> "Accelerated":
        """``torch.compile`` ViT_patch and ViT_region (in place) with ``mode``, one of :data:`COMPILE_MODES`."""
        if mode not in COMPILE_MODES:
            raise ValueError(f"compile mode must be one of {list(COMPILE_MODES)}, got '{mode}'")
        self.model.vit_patch.compile(mode=mode)
        if self.model.vit_region is not None:
            self.model.vit_region.compile(mode=mode)
        self.compile_mode, self.cuda_graphs = mode, mode in CUDA_GRAPH_MODES
        return self

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast to :attr:`precision` on ``device`` (a no-op for fp32)."""
        return autocast(self.precision, device)

    def _call_vit(self, vit: nn.Module, *inputs: Optional[torch.Tensor]) -> torch.Tensor:
        """``vit(*inputs)`` as float32, owned by the caller (copied out of CUDA-graph memory when graphs replay)."""
        if not self.cuda_graphs:
            return call_vit(vit, *inputs)
        torch.compiler.cudagraph_mark_step_begin()
        return vit(*inputs).float().clone()

    def encode_patches(self, regions: torch.Tensor) -> torch.Tensor:
        """Local features ``(B, n*n, D_patch)`` float32 on the patch device of regions ``(B, 3, R, R)`` (uint8 in
        [0, 255] or float in [0, 1]) on any device."""
        device = self.patch_device
        with record_function("hipt.h2d_copy"):
            regions = regions.to(device, non_blocking=True)
        with self.autocast(device):
            return self.model.encode_patches(regions, self._call_vit)

    def encode_regions(self, local: torch.Tensor, token_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Global features ``(B, D_region)`` float32 on the region device from local ones ``(B, n*n, D_patch)``.

        ``token_mask`` ``(B, n*n)`` bool masks background patches as ViT_region keys; an all-True mask on the host is
        dropped there (the unmasked forward), as checking it on the device would wait for the device.

        Raises:
            RuntimeError: the model has no ViT_region.
        """
        device = self.region_device
        if token_mask is not None and token_mask.device.type == "cpu" and bool(token_mask.all()):
            token_mask = None
        mask = token_mask.to(device, non_blocking=True) if token_mask is not None else None
        with self.autocast(device), record_function("hipt.vit_region"):
            return self.model.encode_regions(local.to(device, non_blocking=True), mask, self._call_vit)

    def __call__(self, regions: torch.Tensor, token_mask: Optional[torch.Tensor] = None) -> RegionFeatures:
        """Local and global features of regions ``(B, 3, R, R)``; ``token_mask``: see :meth:`encode_regions`."""
        local = self.encode_patches(regions)
        global_ = self.encode_regions(local, token_mask) if self.model.vit_region is not None else None
        return RegionFeatures(local=local, global_=global_)
