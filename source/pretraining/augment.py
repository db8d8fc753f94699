"""Multi-crop augmentations: DINO's recipe for patch images, HIPT's crops of feature grids for regions."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torchvision import transforms


class PatchMultiCrop:
    """DINO's multi-crop for patch images: 2 global crops (``global_size`` px) and ``local_number`` local ones.

    Global crop 1: resized crop, flip, colour jitter (p 0.8), grayscale (p 0.2), Gaussian blur (p 1).
    Global crop 2: the same with blur p 0.1 and solarisation p 0.2. Local crops: blur p 0.5.
    Every crop is normalised as in extraction: ``(x - mean) / std`` on [0, 1] pixels.
    """

    def __init__(
        self,
        global_scale: Sequence[float] = (0.4, 1.0),
        local_scale: Sequence[float] = (0.05, 0.4),
        local_number: int = 8,
        global_size: int = 224,
        local_size: int = 96,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
    ) -> None:
        flip_and_jitter = transforms.Compose(
            [
                transforms.RandomHorizontalFlip(p=0.5),
                transforms.RandomApply(
                    [transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8
                ),
                transforms.RandomGrayscale(p=0.2),
            ]
        )
        normalise = transforms.Compose([transforms.ToTensor(), transforms.Normalize(list(mean), list(std))])

        def blur(p: float) -> transforms.RandomApply:
            return transforms.RandomApply([transforms.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0))], p=p)

        bicubic = transforms.InterpolationMode.BICUBIC
        self.global_first = transforms.Compose(
            [
                transforms.RandomResizedCrop(global_size, scale=tuple(global_scale), interpolation=bicubic),
                flip_and_jitter,
                blur(1.0),
                normalise,
            ]
        )
        self.global_second = transforms.Compose(
            [
                transforms.RandomResizedCrop(global_size, scale=tuple(global_scale), interpolation=bicubic),
                flip_and_jitter,
                blur(0.1),
                transforms.RandomSolarize(threshold=128, p=0.2),
                normalise,
            ]
        )
        self.local = transforms.Compose(
            [
                transforms.RandomResizedCrop(local_size, scale=tuple(local_scale), interpolation=bicubic),
                flip_and_jitter,
                blur(0.5),
                normalise,
            ]
        )
        self.local_number = local_number

    def __call__(self, image: Image.Image) -> list[torch.Tensor]:
        """An RGB image -> ``[global (3, G, G), global, local (3, L, L) x local_number]``."""
        return [
            self.global_first(image),
            self.global_second(image),
            *(self.local(image) for _ in range(self.local_number)),
        ]


class RegionMultiCrop:
    """HIPT's multi-crop of a patch-feature grid ``(C, n, n)``: 2 global crops of ``round(0.875 n)`` tokens and
    ``local_number`` local crops of ``round(0.375 n)`` tokens (14 and 6 for a 16 x 16 grid), each flipped
    horizontally with probability 0.5.
    """

    def __init__(
        self, grid: int, global_fraction: float = 0.875, local_fraction: float = 0.375, local_number: int = 8
    ) -> None:
        self.global_side = max(1, round(global_fraction * grid))
        self.local_side = max(1, round(local_fraction * grid))
        self.local_number = local_number

    @staticmethod
    def crop(grid: torch.Tensor, side: int) -> torch.Tensor:
        """A random ``side x side`` crop, flipped left-right with probability 0.5 (torch's RNG)."""
        height, width = grid.shape[-2:]
        top = int(torch.randint(0, height - side + 1, (1,)))
        left = int(torch.randint(0, width - side + 1, (1,)))
        crop = grid[:, top : top + side, left : left + side]
        return crop.flip(-1) if torch.rand(1).item() < 0.5 else crop

    def __call__(self, grid: torch.Tensor) -> list[torch.Tensor]:
        """``(C, n, n)`` -> ``[global (C, g, g) x 2, local (C, l, l) x local_number]``."""
        return [self.crop(grid, self.global_side) for _ in range(2)] + [
            self.crop(grid, self.local_side) for _ in range(self.local_number)
        ]
