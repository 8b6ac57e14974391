"""Weight initialisations of the released CIFAR ResNet codes, selectable as ``model.init``.

The papers say "we initialize the weights as in [He et al. 2015b]" and nothing more; the
codes people reproduce from differ, and the difference shows in the first steps of a deep
net at lr 0.1 (experiments/init/README.md measures it):

- ``kaiming_fan_in`` (akamaster/pytorch_resnet_cifar10): Kaiming-normal, ``fan_in`` mode, on
  every conv *and* on the final linear layer. ``fan_in`` keeps the forward signal's scale
  (He et al. 2015b, "Delving Deep into Rectifiers", eq. 10).
- ``kaiming_fan_out`` (Kaiming He's fb.resnet.torch, which the 2016 paper's CIFAR code
  builds on, and torchvision's resnet.py): Kaiming-normal, ``fan_out`` mode, on convs (it
  keeps the backward signal's scale, eq. 14) and PyTorch's default init on the final linear
  layer (uniform in +-1/sqrt(fan_in)), bias 0 as fb.resnet.torch sets it.

Both set BatchNorm scale 1 and shift 0 and zero every conv/linear bias they init.

Three more let a residual net train without normalization (``norm=none``), each starting
every residual block at (or near) its shortcut; they refuse plain nets, where a zeroed
branch is a zeroed signal path:

- ``skipinit`` (De and Smith 2020, "Batch Normalization Biases Residual Blocks Towards the
  Identity Function in Deep Networks", arXiv:2002.10444, sec. 4): a learnable scalar
  ``gate`` at the end of every residual branch, initialised at 0. As in the reference
  SkipInit ResNet (google-deepmind/deepmind-research, ``nfnets/skipinit_resnet.py``, a
  pre-activation net), nothing follows the sum: the block's ReLU moves from after the
  addition to the start of the branch (``x + gate * F(relu(x))``; a projection shortcut
  reads ``relu(x)`` as there), the head applies a ReLU before pooling, and the classifier
  starts at 0 (``fc_init=jnp.zeros``, zero bias). Our structure otherwise (the CIFAR stem,
  two 3x3 convs per basic block, option A); the convs keep ``kaiming_fan_in`` where the
  reference uses haiku's default (truncated normal, variance 1/fan_in). Changed on
  2026-12-03: until then the ReLU stayed after the sum and the classifier was He-normal.
- ``rezero`` (Bachlechner et al. 2020, "ReZero is All You Need", arXiv:2003.04887,
  eq. 5 and table 1): ``x + alpha * F(x)`` with alpha = 0 and the skip path a pure identity.
  As in the authors' CIFAR ResNet (tbachlechner/ReZero-examples, the ReZNet notebook:
  ``resweight * relu(bn2(conv2(...))) + shortcut(x)``), the block's ReLU moves from after
  the addition to the end of the branch ("the skip connection is implemented after the
  nonlinearity"), so F(x) >= 0 and only alpha's sign lets a block subtract. Their ResNets
  keep BatchNorm; ``norm=none`` with it is this project's experiment, not theirs.
- ``fixup`` (Zhang, Dauphin, Ma 2019, "Fixup Initialization", arXiv:1901.09321, sec. 3),
  as the authors' CIFAR code (hongyi-zhang/Fixup, ``cifar/models/fixup_resnet_cifar.py``
  and ``cifar/cifar_train.py``): zero the classifier and the last conv of every branch;
  draw the branch's other convs He-normal by their *output* channels (``fan_out``, as
  their ``weight.shape[0]``) times L^(-1/(2m-2)) (L residual branches, m convs per
  branch); a scalar bias (init 0) before every conv, ReLU and the classifier, the stem's
  ReLU included, and a scalar multiplier (init 1) after each branch; the shortcut of a
  block that reshapes reads ``x + bias1a`` (the branch's first bias, shared). Every other
  layer (the stem conv, a projection shortcut's conv) keeps PyTorch's default init, which
  their code never overwrites. Their optimizer trains the scalar biases, the multipliers
  and the classifier's bias (``'bias' in name or 'scale' in name``) at lr / 10:
  :func:`fixup_parameter_groups` makes that group, ``model.fixup_scalar_lr_scale``
  sets the factor. Needs ``norm=none``. Changed on 2026-12-03: until then the stem conv
  was He-normal (6x the default's variance), the stem had no bias, the reshaping block's
  conv1 was scaled by its input channels and its shortcut read x, and every parameter
  trained at the same lr.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from residual_lab.models.shortcuts import ProjectionShortcut


def _batch_norm_identity(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def kaiming_fan_in(module: nn.Module) -> None:
    """Kaiming-normal ``fan_in`` on convs and linear layers (akamaster's CIFAR code)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _batch_norm_identity(module)


def kaiming_fan_out(module: nn.Module) -> None:
    """Kaiming-normal ``fan_out`` on convs, PyTorch's default on linear layers (He's
    fb.resnet.torch and torchvision)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            m.reset_parameters()  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    _batch_norm_identity(module)


def _residual_blocks(module: nn.Module, init: str) -> list[nn.Module]:
    """The net's blocks, all residual, or a ValueError naming ``init``."""
    blocks = [blk for _, blk in module.named_blocks()]
    if any(blk.shortcut is None for blk in blocks):
        raise ValueError(f"model.init={init} zeroes residual branches: a plain net (shortcut=none) "
                         f"would start with a zero signal path")
    return blocks


def _gate_at_zero(module: nn.Module, init: str) -> list[nn.Module]:
    kaiming_fan_in(module)
    blocks = _residual_blocks(module, init)
    for blk in blocks:
        blk.gate = nn.Parameter(torch.zeros(()))
    return blocks


def _classifier(module: nn.Module) -> nn.Linear | None:
    """The net's last linear layer (the classifier in ``module.head``), or None."""
    head = getattr(module, "head", None)
    fcs = [] if head is None else [m for m in head.modules() if isinstance(m, nn.Linear)]
    return fcs[-1] if fcs else None


def skipinit(module: nn.Module) -> None:
    """SkipInit (De and Smith 2020) as the reference SkipInit ResNet: a scalar gate, init 0, on
    every residual branch, no ReLU after the sum, a zero classifier (module docstring).

    A post-activation block's ReLU moves (once: a second call, as ``reset_parameters`` makes,
    finds ``act`` gone) to the start of the branch, or before the split where a projection
    shortcut reads ``relu(x)``; not in place, since the shortcut reads x."""
    moved = False
    for blk in _gate_at_zero(module, "skipinit"):
        if blk.act is None:  # pre-activation blocks: already the reference's order
            continue
        act, blk.act = blk.act, None
        if hasattr(act, "inplace"):
            act.inplace = False
        if isinstance(blk.shortcut, ProjectionShortcut) and blk.preact is None:
            blk.preact = nn.Sequential(OrderedDict(relu0=act))
        else:
            blk.residual = nn.Sequential(OrderedDict([("relu0", act), *blk.residual.named_children()]))
        moved = True
    head = getattr(module, "head", None)
    if moved and head is not None:  # the reference's head: fc(mean(relu(out)))
        module.head = nn.Sequential(OrderedDict([("relu", nn.ReLU()), *head.named_children()]))
    fc = _classifier(module)
    if fc is not None:
        nn.init.zeros_(fc.weight)
        if fc.bias is not None:
            nn.init.zeros_(fc.bias)


def rezero(module: nn.Module) -> None:
    """ReZero (Bachlechner et al. 2020): ``x + alpha act(F(x))``, alpha = 0, nothing after the sum.

    The activation is appended to the branch once (a second call, as ``reset_parameters``
    makes, finds ``act`` already gone) and not in place, so hooks on the branch's last layer
    read its output before the ReLU, as they do in every other block."""
    for blk in _gate_at_zero(module, "rezero"):
        if blk.act is not None:
            act, blk.act = blk.act, None
            if hasattr(act, "inplace"):
                act.inplace = False
            blk.residual.add_module("act_out", act)


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


def _with_biases(seq: nn.Sequential, last: bool,
                 before: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear, nn.ReLU)) -> nn.Sequential:
    """``seq`` with a ScalarBias before every layer of a ``before`` type (and a scale + bias after
    its end if ``last``); existing layers keep their names, so their state_dict keys do not move."""
    if any(isinstance(m, ScalarBias) for m in seq):  # already built: reset_parameters() again
        return seq
    layers = []
    for name, m in seq.named_children():
        if isinstance(m, before) and not (layers and isinstance(layers[-1][1], ScalarBias)):
            layers.append((f"bias_{name}", ScalarBias()))
        layers.append((name, m))
    if last:
        layers += [("scale", ScalarScale()), ("bias_out", ScalarBias())]
    return nn.Sequential(OrderedDict(layers))


def _shortcut_reads_first_bias(blk: nn.Module) -> None:
    """The authors' ``identity = self.downsample(x + self.bias1a)``: where the shortcut reshapes
    (anything but ``nn.Identity``), the branch's first bias moves before the split, so both
    paths read ``x + bias1a``; an identity shortcut reads x (their ``identity = x``)."""
    first_name, first = next(iter(blk.residual.named_children()))
    if isinstance(blk.shortcut, nn.Identity) or blk.preact is not None or not isinstance(first, ScalarBias):
        return
    blk.preact = nn.Sequential(OrderedDict([(first_name, first)]))
    blk.residual = nn.Sequential(OrderedDict(list(blk.residual.named_children())[1:]))


def fixup(module: nn.Module) -> None:
    """Fixup (Zhang, Dauphin, Ma 2019, sec. 3) as the authors' CIFAR code (module docstring).

    The draws follow their order (each branch's convs but the last, block by block), and
    no other layer is redrawn, so a net built after ``torch.manual_seed(s)`` has the
    authors' ``fixup_resnet*`` weights for the same seed (tests/models/test_reference_inits.py).
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        raise ValueError("model.init=fixup replaces normalization: use it with norm=none")
    blocks = _residual_blocks(module, "fixup")
    for blk in blocks:
        blk.residual = _with_biases(blk.residual, last=True)  # rule 3
        _shortcut_reads_first_bias(blk)
        convs = [m for m in blk.residual if isinstance(m, nn.Conv2d)]
        m = len(convs)
        for conv in convs[:-1]:  # rule 2, their expression: sqrt(2 / (out * k * k)) * L^(-1/(2m-2))
            fan_out = conv.weight.shape[0] * math.prod(conv.weight.shape[2:])
            nn.init.normal_(conv.weight, mean=0, std=math.sqrt(2 / fan_out) * len(blocks) ** (-1 / (2 * m - 2)))
        nn.init.zeros_(convs[-1].weight)  # rule 1
    stem = getattr(module, "stem", None)
    if stem is not None:  # their relu(conv1(x) + bias1); the stem conv keeps its default init
        module.stem = _with_biases(stem, last=False, before=(nn.ReLU,))
    head = getattr(module, "head", None)
    if head is not None:
        module.head = _with_biases(head, last=False)
        fc = _classifier(module)
        nn.init.zeros_(fc.weight)  # rule 1: the classification layer
        nn.init.zeros_(fc.bias)
    for m in module.modules():  # rule 3's scalars, also on a second call
        if isinstance(m, ScalarBias):
            nn.init.zeros_(m.bias)
        elif isinstance(m, ScalarScale):
            nn.init.ones_(m.weight)


def fixup_parameter_groups(module: nn.Module, scalar_lr_scale: float) -> list[dict]:
    """Optimizer parameter groups of the authors' ``cifar_train.py``: every parameter whose name
    holds ``bias`` or ``scale`` (the scalar biases and multipliers, and the classifier's bias)
    at ``scalar_lr_scale`` times the lr (they use 1/10), the rest (conv and linear weights) at
    the lr. The LightningModule multiplies a group's lr by its ``lr_scale`` once, before the
    schedule records it, so the ratio holds through the schedule as in their code."""
    scalars = {id(p) for m in module.modules() if isinstance(m, (ScalarBias, ScalarScale)) for p in m.parameters()}
    scalars |= {id(m.bias) for m in module.modules()
                if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None}
    params = list(module.parameters())
    return [{"name": "fixup_scalars", "params": [p for p in params if id(p) in scalars], "lr_scale": scalar_lr_scale},
            {"name": "weights", "params": [p for p in params if id(p) not in scalars]}]


#: The valid ``model.init`` values.
INITS: dict[str, Callable[[nn.Module], None]] = {
    "kaiming_fan_in": kaiming_fan_in,
    "kaiming_fan_out": kaiming_fan_out,
    "skipinit": skipinit,
    "rezero": rezero,
    "fixup": fixup,
}
