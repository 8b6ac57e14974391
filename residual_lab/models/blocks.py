"""The CIFAR ResNets' conv blocks. Plain and residual blocks are the same class: only ``shortcut`` differs.

Every block is a :class:`~residual_lab.models.protocol.ResidualBlock`: ``residual`` (the branch
F(x), a named ``nn.Sequential``) and ``shortcut`` (``None`` for a plain block), so diagnostics
can hook F(x) and x alike. ``variant`` (``skipinit``, ``rezero``, ``fixup`` or None) builds the
block in that variant's layout (:mod:`residual_lab.models.variants`).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from residual_lab.models.layers import NormFactory, conv1x1, conv3x3, conv_norm
from residual_lab.models.protocol import ResidualBlock
from residual_lab.models.shortcuts import ProjectionShortcut, make_shortcut


class BasicBlock(ResidualBlock):
    """Two 3x3 convs, norm after each, ReLU after the addition (He et al. 2015 fig. 2)."""

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shortcut: str,
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU, variant: str | None = None) -> None:
        layers = [
            *conv_norm(conv3x3(in_channels, planes, stride), norm, "1"),
            ("relu1", act(inplace=True)),
            *conv_norm(conv3x3(planes, planes), norm, "2"),
        ]
        super().__init__(make_shortcut(shortcut, in_channels, planes, stride, norm),
                         nn.Sequential(OrderedDict(layers)), act(inplace=True), variant=variant)


class BottleneckBlock(ResidualBlock):
    """1x1-3x3-1x1 with 4x expansion (He et al. 2015 fig. 5; the 164-layer CIFAR nets)."""

    expansion = 4
    layers_per_block = 3

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shortcut: str,
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU, variant: str | None = None) -> None:
        out_channels = planes * self.expansion
        layers = [
            *conv_norm(conv1x1(in_channels, planes), norm, "1"),
            ("relu1", act(inplace=True)),
            *conv_norm(conv3x3(planes, planes, stride), norm, "2"),
            ("relu2", act(inplace=True)),
            *conv_norm(conv1x1(planes, out_channels), norm, "3"),
        ]
        super().__init__(make_shortcut(shortcut, in_channels, out_channels, stride, norm),
                         nn.Sequential(OrderedDict(layers)), act(inplace=True), variant=variant)


def _preact(norm: NormFactory, channels: int, act: type[nn.Module], i: str) -> list:
    """Norm-ReLU that precedes a conv in a pre-activation block (norm omitted if None)."""
    if norm is None:
        # Not in-place: without a norm the ReLU would overwrite x, which the shortcut reads.
        return [(f"relu{i}", act(inplace=False))]
    return [(f"bn{i}", norm(channels)), (f"relu{i}", act(inplace=True))]


def _split_preact(shortcut: nn.Module | None, after_stem: bool, norm: NormFactory, channels: int,
                  act: type[nn.Module]) -> tuple[nn.Sequential | None, list]:
    """Where a pre-activation unit puts its first BN-ReLU: ``(shared, on_branch)``.

    He et al. 2016 appendix and the authors' resnet-pre-act.lua: the unit that follows the
    stand-alone conv1 (``after_stem``) and every unit with a projection shortcut apply it
    once, before the split, so the shortcut reads the activated signal; every other unit
    keeps it on the residual branch and its shortcut stays a pure identity.
    """
    layers = _preact(norm, channels, act, "1")
    if after_stem or isinstance(shortcut, ProjectionShortcut):
        return nn.Sequential(OrderedDict(layers)), []
    return None, layers


class PreActBlock(ResidualBlock):
    """Pre-activation basic block: BN-ReLU-conv twice, pure identity after the addition.

    He et al. 2016, "Identity Mappings in Deep Residual Networks" (arXiv:1603.05027), fig. 4e.
    Projection shortcuts are plain 1x1 convs (no BN) on the shared pre-activation (appendix).

    Args:
        after_stem: this is the net's first unit, right after the stand-alone conv1.
    """

    post_activation = False

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shortcut: str,
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU, after_stem: bool = False,
                 variant: str | None = None) -> None:
        skip = make_shortcut(shortcut, in_channels, planes, stride, None)
        preact, first = _split_preact(skip, after_stem, norm, in_channels, act)
        layers = [
            *first,
            ("conv1", conv3x3(in_channels, planes, stride)),
            *_preact(norm, planes, act, "2"),
            ("conv2", conv3x3(planes, planes)),
        ]
        super().__init__(skip, nn.Sequential(OrderedDict(layers)), None, preact, variant=variant)


class PreActBottleneckBlock(ResidualBlock):
    """Pre-activation bottleneck (He et al. 2016; ResNet-164/1001 on CIFAR).

    As in the authors' resnet-pre-act.lua, a unit that subsamples strides its first 1x1
    conv, and projection shortcuts are plain 1x1 convs on the shared pre-activation.

    Args:
        after_stem: this is the net's first unit, right after the stand-alone conv1.
    """

    expansion = 4
    layers_per_block = 3
    post_activation = False

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shortcut: str,
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU, after_stem: bool = False,
                 variant: str | None = None) -> None:
        out_channels = planes * self.expansion
        skip = make_shortcut(shortcut, in_channels, out_channels, stride, None)
        preact, first = _split_preact(skip, after_stem, norm, in_channels, act)
        layers = [
            *first,
            ("conv1", conv1x1(in_channels, planes, stride)),
            *_preact(norm, planes, act, "2"),
            ("conv2", conv3x3(planes, planes)),
            *_preact(norm, planes, act, "3"),
            ("conv3", conv1x1(planes, out_channels)),
        ]
        super().__init__(skip, nn.Sequential(OrderedDict(layers)), None, preact, variant=variant)


#: The valid ``block`` values.
BLOCKS: dict[str, type[ResidualBlock]] = {
    "basic": BasicBlock,
    "bottleneck": BottleneckBlock,
    "preact": PreActBlock,
    "preact_bottleneck": PreActBottleneckBlock,
}
