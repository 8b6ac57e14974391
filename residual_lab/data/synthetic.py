"""A tiny generated dataset: offline, deterministic from its seed, and learnable."""

from __future__ import annotations

from typing import Annotated

import torch

from residual_lab.data.arrays import ImageArrays
from residual_lab.schema import at_least


class SyntheticSource:
    """Images whose class sets their mean colour and a stripe pattern, plus noise.

    The class signal survives random crops and flips (colour is position-free, stripes are
    periodic), so a small net beats chance within a few dozen steps: tests can check that
    training trains, not only that it runs.

    Args:
        num_train: training images (the val split is taken from these).
        num_test: test images.
        num_classes: classes, at most 10 distinct colours are guaranteed apart.
        image_size: side length in pixels.
        noise: std of the Gaussian pixel noise, in uint8 units.
        seed: the only source of randomness; equal seeds give identical data.
    """

    def __init__(self, num_train: Annotated[int, at_least(1)] = 2048, num_test: Annotated[int, at_least(1)] = 512,
                 num_classes: Annotated[int, at_least(2)] = 10, image_size: Annotated[int, at_least(1)] = 32,
                 noise: Annotated[float, at_least(0)] = 48.0, seed: int = 0) -> None:
        self.num_train, self.num_test = num_train, num_test
        self.num_classes, self.image_size = num_classes, image_size
        self.noise, self.seed = noise, seed

    def _make(self, n: int, gen: torch.Generator, colours, stripes) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % self.num_classes
        labels = labels[torch.randperm(n, generator=gen)]
        x = colours[labels][:, :, None, None] + stripes[labels]
        x = x + self.noise * torch.randn(n, 3, self.image_size, self.image_size, generator=gen)
        return x.round().clamp(0, 255).to(torch.uint8), labels

    def load(self) -> ImageArrays:
        gen = torch.Generator().manual_seed(self.seed)
        colours = 40 + 175 * torch.rand(self.num_classes, 3, generator=gen)
        coords = torch.arange(self.image_size, dtype=torch.float32)
        freq = 2 * torch.pi * (1 + torch.arange(self.num_classes)) / self.image_size
        horizontal = torch.arange(self.num_classes) % 2 == 0
        phase = torch.where(horizontal[:, None, None], coords[None, :, None], coords[None, None, :])
        stripes = 30 * torch.sin(freq[:, None, None] * phase)[:, None].expand(-1, 3, -1, -1)
        train = self._make(self.num_train, gen, colours, stripes)
        test = self._make(self.num_test, gen, colours, stripes)
        return ImageArrays(*train, *test, classes=[f"class{i}" for i in range(self.num_classes)])
