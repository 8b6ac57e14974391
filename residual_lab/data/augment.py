"""Batched augmentation and normalization as tensor ops on the model's device.

Equivalent, image by image, to torchvision's ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()`` (He et al. 2015 sec. 4.2), ``ToTensor()``, ``Normalize(mean, std)``,
but one kernel per batch instead of four PIL calls per image. The normalisation is per-channel
standardisation (the torchvision/akamaster recipe), not He et al.'s per-pixel mean subtraction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels, crop back to the input size at ``offsets``, mirror where ``flips``.

    Args:
        images: (B, C, H, W) batch, any dtype (uint8 keeps the padding exactly 0).
        offsets: (B, 2) int64 top/left crop corners in the padded image, in [0, 2*pad].
        flips: (B,) bool, True mirrors the image left-right.
        pad: zero padding on each side, pixels (4 in the paper).
    """
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    # Gather (B, H, W, C) with advanced indexing, then back to NCHW.
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def random_crop_flip(images: torch.Tensor, pad: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw a crop corner and a coin flip per image, then apply :func:`crop_flip`."""
    b = images.shape[0]
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), device=images.device, generator=generator)
    flips = (torch.rand(b, device=images.device, generator=generator) < 0.5) if flip else \
        torch.zeros(b, dtype=torch.bool, device=images.device)
    return crop_flip(images, offsets, flips, pad)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 -> float in [0, 1] -> per-channel standardization, in ToTensor/Normalize's order."""
    x = images.to(dtype).div_(255)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-channel mean and std of uint8 images, in [0, 1] units, via 256-bin histograms.

    A histogram needs no float copy of the dataset (45k CIFAR images would be 550 MB).
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1).cpu(), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        means.append(mean)
        stds.append(var.sqrt())
    return torch.stack(means).float(), torch.stack(stds).float()
