"""The skip paths of He et al. 2015 sec. 4.1/4.2 (options A, B, C).

A shortcut is a real ``nn.Module`` (never a lambda): lambdas cannot be pickled, which
breaks checkpoints and multiprocess launchers.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from residual_lab.models.layers import NormFactory, check_choice, conv1x1, conv_norm


class ZeroPadShortcut(nn.Module):
    """Option A: identity, with stride-2 subsampling and zero-padded new channels.

    Parameter-free, so a residual net has exactly the parameters of its plain twin
    (He et al. 2015 sec. 4.2: "all shortcuts are identity", 0.27M for ResNet-20).

    Args:
        in_channels: channels of the block input.
        out_channels: channels of the block output (>= in_channels).
        stride: spatial subsampling factor (1 or 2).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.pad_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # New channels are zeros: pad the channel dimension at its end.
        return F.pad(x, (0, 0, 0, 0, 0, self.pad_channels))

    def extra_repr(self) -> str:
        return f"pad_channels={self.pad_channels}, stride={self.stride}"


class ProjectionShortcut(nn.Sequential):
    """Options B/C: a strided 1x1 conv followed by the block's norm (He et al. 2015 eq. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: NormFactory) -> None:
        super().__init__(OrderedDict(conv_norm(conv1x1(in_channels, out_channels, stride), norm)))


def make_shortcut(
    kind: str, in_channels: int, out_channels: int, stride: int, norm: NormFactory
) -> nn.Module | None:
    """Build the skip path for one block.

    Args:
        kind: ``none`` (plain net: no skip), ``identity`` (option A), ``projection``
            (option B: projection only where the shape changes), ``full_projection``
            (option C: projection on every block).
        in_channels, out_channels, stride: shape change of the block.
        norm: norm layer class of the network (or None).

    Returns:
        The shortcut module, or ``None`` for a plain block.
    """
    check_choice("shortcut", kind, SHORTCUTS)
    reshapes = stride != 1 or in_channels != out_channels
    if kind == "none":
        return None
    if kind == "full_projection" or (kind == "projection" and reshapes):
        return ProjectionShortcut(in_channels, out_channels, stride, norm)
    if reshapes:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Identity()


#: The valid ``shortcut`` values and what each means (for docs and error messages).
SHORTCUTS: dict[str, str] = {
    "none": "plain network, no skip connection",
    "identity": "option A: identity, zero-padding where the shape changes",
    "projection": "option B: 1x1 conv+norm where the shape changes, identity elsewhere",
    "full_projection": "option C: 1x1 conv+norm on every block",
}
