"""Residual blocks. Plain and residual blocks are the same class: only ``shortcut`` differs.

Every block exposes ``residual`` (the branch F(x), a named ``nn.Sequential``) and
``shortcut`` (``None`` for a plain block), so diagnostics can hook F(x) and x alike.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from residual_lab.models.layers import NormFactory, conv1x1, conv3x3, conv_norm
from residual_lab.models.shortcuts import ProjectionShortcut, make_shortcut


class _Block(nn.Module):
    """Shared logic: ``out = act(F(x) + shortcut(x))``; a plain block drops the sum.

    ``preact`` (pre-activation nets only) is a BN-ReLU applied to x before the split, so
    both paths read the activated signal (He et al. 2016 appendix); None everywhere else.
    ``gate`` is None unless a norm-free init (``skipinit`` or ``rezero`` in
    :mod:`residual_lab.models.init`) sets a learnable scalar that multiplies F(x); being a
    None parameter it adds no state_dict key, so other nets' checkpoints are unchanged.
    """

    #: Output channels = planes * expansion.
    expansion: int = 1
    #: Weighted layers on the residual branch (depth = layers_per_block * 3n + 2).
    layers_per_block: int = 2
    #: Post-activation blocks apply ReLU after the addition; pre-activation blocks do not.
    post_activation: bool = True

    def __init__(self, shortcut: nn.Module | None, residual: nn.Sequential, act: nn.Module | None,
                 preact: nn.Sequential | None = None):
        super().__init__()
        self.preact = preact
        self.residual = residual
        self.shortcut = shortcut
        self.act = act
        self.register_parameter("gate", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact is not None:
            x = self.preact(x)
        out = self.branch(x) if self.shortcut is None else self.branch(x) + self.shortcut(x)
        return out if self.act is None else self.act(out)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the residual branch, times the scalar ``gate`` where an init added one."""
        return self.residual(x) if self.gate is None else self.gate * self.residual(x)

    def zero_init_last(self) -> None:
        """Zero the last scale of the residual branch so the block starts as identity.

        Only for residual blocks (Goyal et al. 2017, "Accurate, Large Minibatch SGD",
        sec. 5.1): in a plain block the same init multiplies the signal by zero and
        kills the network, so plain blocks refuse it.
        """
        if self.shortcut is None:
            raise RuntimeError("zero_init_last() on a plain block would zero the signal path")
        last = [m for m in self.residual if isinstance(m, (nn.BatchNorm2d, nn.Conv2d))][-1]
        nn.init.zeros_(last.weight)


class BasicBlock(_Block):
    """Two 3x3 convs, norm after each, ReLU after the addition (He et al. 2015 fig. 2)."""

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shortcut: str,
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU) -> None:
        layers = [
            *conv_norm(conv3x3(in_channels, planes, stride), norm, "1"),
            ("relu1", act(inplace=True)),
            *conv_norm(conv3x3(planes, planes), norm, "2"),
        ]
        super().__init__(make_shortcut(shortcut, in_channels, planes, stride, norm),
                         nn.Sequential(OrderedDict(layers)), act(inplace=True))


class BottleneckBlock(_Block):
    """1x1-3x3-1x1 with 4x expansion (He et al. 2015 fig. 5; the 164-layer CIFAR nets)."""

    expansion = 4
    layers_per_block = 3

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shortcut: str,
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU) -> None:
        out_channels = planes * self.expansion
        layers = [
            *conv_norm(conv1x1(in_channels, planes), norm, "1"),
            ("relu1", act(inplace=True)),
            *conv_norm(conv3x3(planes, planes, stride), norm, "2"),
            ("relu2", act(inplace=True)),
            *conv_norm(conv1x1(planes, out_channels), norm, "3"),
        ]
        super().__init__(make_shortcut(shortcut, in_channels, out_channels, stride, norm),
                         nn.Sequential(OrderedDict(layers)), act(inplace=True))


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


class PreActBlock(_Block):
    """Pre-activation basic block: BN-ReLU-conv twice, pure identity after the addition.

    He et al. 2016, "Identity Mappings in Deep Residual Networks" (arXiv:1603.05027), fig. 4e.
    Projection shortcuts are plain 1x1 convs (no BN) on the shared pre-activation (appendix).

    Args:
        after_stem: this is the net's first unit, right after the stand-alone conv1.
    """

    post_activation = False

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shortcut: str,
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU, after_stem: bool = False) -> None:
        skip = make_shortcut(shortcut, in_channels, planes, stride, None)
        preact, first = _split_preact(skip, after_stem, norm, in_channels, act)
        layers = [
            *first,
            ("conv1", conv3x3(in_channels, planes, stride)),
            *_preact(norm, planes, act, "2"),
            ("conv2", conv3x3(planes, planes)),
        ]
        super().__init__(skip, nn.Sequential(OrderedDict(layers)), None, preact)


class PreActBottleneckBlock(_Block):
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
                 norm: NormFactory, act: type[nn.Module] = nn.ReLU, after_stem: bool = False) -> None:
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
        super().__init__(skip, nn.Sequential(OrderedDict(layers)), None, preact)


#: The valid ``block`` values.
BLOCKS: dict[str, type[_Block]] = {
    "basic": BasicBlock,
    "bottleneck": BottleneckBlock,
    "preact": PreActBlock,
    "preact_bottleneck": PreActBottleneckBlock,
}
