"""Keep the accelerator busy: pixels go to the device on a side stream, features come back one batch later.

Without this, every batch ends with ``features.cpu()``, which waits for the device to finish; the device then idles
while the host fetches the next batch, copies its pixels (50 MB of uint8 per 4096-px region) and writes a slide's
features. With it, on a CUDA device:

- the pixels of batch i+1 are copied from pinned memory on a side stream while batch i computes; the compute stream
  waits for that copy only (an event), and the copied tensor is tied to the compute stream for the caching allocator;
- the features of batch i are copied into pinned host memory asynchronously; the host reads them (an event wait)
  only after it has enqueued batch i+1, so the device always has queued work.

On a CPU every step is synchronous and these helpers hand tensors through unchanged: the extractor runs the same
code on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class PendingFeatures:
    """Features on their way to the host: read them with :meth:`result`."""

    tensor: torch.Tensor
    event: Optional["torch.cuda.Event"] = None

    def result(self) -> torch.Tensor:
        """The features on the host (waits for their copy, and only for it), in ordinary memory: the pinned buffer
        goes back to the allocator's cache at once, so page-locked memory stays at a few batches, not whole slides."""
        if self.event is None:
            return self.tensor
        self.event.synchronize()
        return self.tensor.clone()


class DeviceFeed:
    """Host <-> device copies for the extractor.

    Args:
        device: where the encoder's first stage runs.
        overlap: on a CUDA device, copy on a side stream and return features asynchronously (False: plain blocking
            copies, the reference the GPU check compares against).
    """

    def __init__(self, device: torch.device, overlap: bool = True) -> None:
        self.device = device
        self.overlap = overlap and device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(device) if self.overlap else None

    def to_device(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels`` (any shape) on the device; on CUDA with overlap the copy runs on the side stream and the current
        stream waits for it before its next kernel."""
        if pixels.device == self.device or self._copy_stream is None:
            return pixels.to(self.device, non_blocking=True)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            moved = pixels.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._copy_stream)
        compute.wait_event(copied)
        moved.record_stream(compute)  # freed only once the compute stream is done with it
        return moved

    def to_host(self, features: torch.Tensor) -> PendingFeatures:
        """Start copying ``features`` to the host; on CUDA with overlap into pinned memory, without waiting."""
        if features.device.type != "cuda" or not self.overlap:
            return PendingFeatures(features.cpu())
        host = torch.empty(features.shape, dtype=features.dtype, pin_memory=True)
        host.copy_(features, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(features.device))
        return PendingFeatures(host, done)
