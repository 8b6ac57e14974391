"""Small layer helpers shared by every block, so blocks never import a norm class directly."""

from __future__ import annotations

from typing import Callable

from torch import nn

#: Map from the ``norm`` config string to the layer class; ``None`` means no normalization.
#: ``norm="none"`` lets users separate vanishing gradients from degradation (He et al. 2015
#: sec. 4.1 argue BN keeps plain nets' gradients healthy, yet they still degrade).
NORM_LAYERS: dict[str, type[nn.Module] | None] = {"batch": nn.BatchNorm2d, "none": None}

#: Map from an activation name to its class (only ReLU is used by the paper).
ACT_LAYERS: dict[str, type[nn.Module]] = {"relu": nn.ReLU}

NormFactory = Callable[[int], nn.Module] | None


def check_choice(kind: str, value: str, choices) -> None:
    """Raise a ValueError that names the valid choices for ``kind``."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; valid choices: {', '.join(sorted(choices))}")


def resolve_norm(name: str) -> NormFactory:
    """Return the norm layer class for ``name`` (``None`` for ``"none"``)."""
    check_choice("norm", name, NORM_LAYERS)
    return NORM_LAYERS[name]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1; bias-free because a norm (or nothing) follows."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, bias-free (used by projections and bottlenecks)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def conv_norm(conv: nn.Conv2d, norm: NormFactory, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Named ``(conv, norm)`` layers; the norm is skipped when ``norm`` is None."""
    layers: list[tuple[str, nn.Module]] = [(f"conv{prefix}", conv)]
    if norm is not None:
        layers.append((f"bn{prefix}", norm(conv.out_channels)))
    return layers
