"""The block and net layouts of SkipInit, ReZero and Fixup, built with the net.

Three ways to let a residual net train without normalization (``norm=none``), each starting
every residual block at (or near) its shortcut. They are selected as ``model.init`` because
their papers name them initialisations, but each also changes the layers, so the net is built
in its variant's layout (this module) and then drawn (:mod:`residual_lab.models.init`). They
refuse plain nets, where a zeroed branch is a zeroed signal path:

- ``skipinit`` (De and Smith 2020, "Batch Normalization Biases Residual Blocks Towards the
  Identity Function in Deep Networks", arXiv:2002.10444, sec. 4): a learnable scalar ``gate``
  at the end of every residual branch. As in the reference SkipInit ResNet
  (google-deepmind/deepmind-research, ``nfnets/skipinit_resnet.py``, a pre-activation net),
  nothing follows the sum: the block's ReLU moves from after the addition to the start of the
  branch (``x + gate * F(relu(x))``; a projection shortcut reads ``relu(x)`` as there) and the
  head applies a ReLU before pooling. Our structure otherwise (the CIFAR stem, two 3x3 convs per
  basic block, option A). Changed on 2026-12-03: until then the ReLU stayed after the sum.
- ``rezero`` (Bachlechner et al. 2020, "ReZero is All You Need", arXiv:2003.04887, eq. 5 and
  table 1): ``x + alpha * F(x)`` with the skip path a pure identity. As in the authors' CIFAR
  ResNet (tbachlechner/ReZero-examples, the ReZNet notebook:
  ``resweight * relu(bn2(conv2(...))) + shortcut(x)``), the block's ReLU moves from after the
  addition to the end of the branch ("the skip connection is implemented after the
  nonlinearity"), so F(x) >= 0 and only alpha's sign lets a block subtract. Their ResNets keep
  BatchNorm; ``norm=none`` with it is this project's experiment, not theirs.
- ``fixup`` (Zhang, Dauphin, Ma 2019, "Fixup Initialization", arXiv:1901.09321, sec. 3), as
  the authors' CIFAR code (hongyi-zhang/Fixup, ``cifar/models/fixup_resnet_cifar.py``): a
  scalar bias before every conv, ReLU and the classifier, the stem's ReLU included, and a scalar
  multiplier after each branch; the shortcut of a block that reshapes reads ``x + bias1a`` (the
  branch's first bias, shared). Their optimizer trains the scalars and the classifier's bias at
  lr / 10 (:func:`fixup_parameter_groups`). Needs ``norm=none``. Changed on 2026-12-03: until
  then the stem had no bias and the reshaping block's shortcut read x.

A block is rearranged right after its standard layers are built, by :func:`layout_block`
(called from :class:`~residual_lab.models.protocol.ResidualBlock`), and the net's stem and head
by :func:`layout_net`: existing layers keep their names and their order, so a variant's
state_dict is the standard net's plus the variant's scalars (and its checkpoints and optimizer
states keep their layout).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from residual_lab.models.shortcuts import ProjectionShortcut

#: The ``model.init`` values that build a variant layout (the other inits only draw weights).
VARIANTS = ("skipinit", "rezero", "fixup")


def variant_of(init: str) -> str | None:
    """The layout ``init`` builds, or None for the standard one."""
    return init if init in VARIANTS else None


def check_variant(init: str, *, shortcut: str, norm: str) -> None:
    """Refuse, before anything is built, the nets a variant cannot start: a ValueError naming why."""
    if init == "fixup" and norm != "none":
        raise ValueError("model.init=fixup replaces normalization: use it with norm=none")
    if init in VARIANTS and shortcut == "none":
        raise ValueError(f"model.init={init} zeroes residual branches: a plain net (shortcut=none) "
                         f"would start with a zero signal path")


class ScalarBias(nn.Module):
    """``x + b`` with one learnable scalar b, init 0 (Fixup's bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class ScalarScale(nn.Module):
    """``w * x`` with one learnable scalar w, init 1 (Fixup's multiplier)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x


def _detach_act(blk: nn.Module) -> nn.Module:
    """The block's after-the-sum activation, removed from there and no longer in place (the
    shortcut, or a hook on the branch's last layer, still reads its input)."""
    act, blk.act = blk.act, None
    if hasattr(act, "inplace"):
        act.inplace = False
    return act


def _skipinit_block(blk: nn.Module) -> None:
    blk.gate = nn.Parameter(torch.zeros(()))
    if blk.act is None:  # pre-activation blocks: already the reference's order
        return
    act = _detach_act(blk)
    if isinstance(blk.shortcut, ProjectionShortcut) and blk.preact is None:
        blk.preact = nn.Sequential(OrderedDict(relu0=act))
    else:
        blk.residual = nn.Sequential(OrderedDict([("relu0", act), *blk.residual.named_children()]))


def _rezero_block(blk: nn.Module) -> None:
    blk.gate = nn.Parameter(torch.zeros(()))
    if blk.act is not None:
        blk.residual.add_module("act_out", _detach_act(blk))


def _with_biases(seq: nn.Sequential, last: bool,
                 before: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear, nn.ReLU)) -> nn.Sequential:
    """``seq`` with a ScalarBias before every layer of a ``before`` type (and a scale + bias after
    its end if ``last``); existing layers keep their names, so their state_dict keys do not move."""
    layers = []
    for name, m in seq.named_children():
        if isinstance(m, before) and not (layers and isinstance(layers[-1][1], ScalarBias)):
            layers.append((f"bias_{name}", ScalarBias()))
        layers.append((name, m))
    if last:
        layers += [("scale", ScalarScale()), ("bias_out", ScalarBias())]
    return nn.Sequential(OrderedDict(layers))


def _fixup_block(blk: nn.Module) -> None:
    """Rule 3's scalars on the branch; then the authors' ``identity = self.downsample(x + self.bias1a)``:
    where the shortcut reshapes (anything but ``nn.Identity``), the branch's first bias moves
    before the split, so both paths read ``x + bias1a``; an identity shortcut reads x."""
    blk.residual = _with_biases(blk.residual, last=True)
    first_name, first = next(iter(blk.residual.named_children()))
    if isinstance(blk.shortcut, nn.Identity) or blk.preact is not None or not isinstance(first, ScalarBias):
        return
    blk.preact = nn.Sequential(OrderedDict([(first_name, first)]))
    blk.residual = nn.Sequential(OrderedDict(list(blk.residual.named_children())[1:]))


_BLOCK_LAYOUTS = {"skipinit": _skipinit_block, "rezero": _rezero_block, "fixup": _fixup_block}


def layout_block(blk: nn.Module, variant: str | None) -> None:
    """Rearrange a block just built in the standard layout into ``variant``'s (None: keep it)."""
    if variant is not None:
        _BLOCK_LAYOUTS[variant](blk)


def layout_net(net: nn.Module, variant: str | None) -> None:
    """The variant's stem and head, once the net's blocks are built in its layout.

    SkipInit: the reference's head ``fc(mean(relu(out)))`` where the blocks' ReLU moved onto
    the branch (post-activation blocks; a pre-activation head already has it). Fixup: the
    authors' ``relu(conv1(x) + bias1)`` stem and ``fc(x + bias2)`` head.
    """
    if variant == "skipinit" and any(blk.post_activation for _, blk in net.named_blocks()):
        net.head = nn.Sequential(OrderedDict([("relu", nn.ReLU()), *net.head.named_children()]))
    elif variant == "fixup":
        net.stem = _with_biases(net.stem, last=False, before=(nn.ReLU,))
        net.head = _with_biases(net.head, last=False)


def fixup_parameter_groups(module: nn.Module, scalar_lr_scale: float) -> list[dict]:
    """Optimizer parameter groups of the Fixup authors' ``cifar_train.py`` (lines 113-122): every
    parameter whose name holds ``bias`` or ``scale`` (the scalar biases and multipliers, and the
    classifier's bias) at ``scalar_lr_scale`` times the lr (they use 1/10), the rest (conv and
    linear weights) at the lr. The LightningModule multiplies a group's lr by its ``lr_scale``
    once, before the schedule records it, so the ratio holds through the schedule as in their code."""
    scalars = {id(p) for m in module.modules() if isinstance(m, (ScalarBias, ScalarScale)) for p in m.parameters()}
    scalars |= {id(m.bias) for m in module.modules()
                if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None}
    params = list(module.parameters())
    return [{"name": "fixup_scalars", "params": [p for p in params if id(p) in scalars], "lr_scale": scalar_lr_scale},
            {"name": "weights", "params": [p for p in params if id(p) not in scalars]}]
