"""The in-memory form every data source produces: uint8 images and integer labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageArrays:
    """A whole dataset held in memory as uint8 NCHW tensors.

    CIFAR-10 train+test is 60,000 x 3 x 32 x 32 bytes = 184 MB, so holding it whole is
    cheaper than any per-sample loader (He et al. 2015's 64k steps re-read it 164 times).
    """

    train_images: torch.Tensor  # uint8, (N, 3, H, W)
    train_labels: torch.Tensor  # int64, (N,)
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            x, y = getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")
            if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"{name} images must be uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
            if len(x) != len(y):
                raise ValueError(f"{name}: {len(x)} images but {len(y)} labels")

    @property
    def num_classes(self) -> int:
        return len(self.classes)
