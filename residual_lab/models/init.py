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
  ``gate`` at the end of every residual branch, initialised at 0; the rest is
  ``kaiming_fan_in``.
- ``rezero`` (Bachlechner et al. 2020, "ReZero is All You Need", arXiv:2003.04887,
  eq. 5 and table 1): ``x + alpha * F(x)`` with alpha = 0 and the skip path a pure identity.
  As in the authors' CIFAR ResNet (tbachlechner/ReZero-examples, the ReZNet notebook:
  ``resweight * relu(bn2(conv2(...))) + shortcut(x)``), the block's ReLU moves from after
  the addition to the end of the branch ("the skip connection is implemented after the
  nonlinearity"), so F(x) >= 0 and only alpha's sign lets a block subtract. Their ResNets
  keep BatchNorm; ``norm=none`` with it is this project's experiment, not theirs.
- ``fixup`` (Zhang, Dauphin, Ma 2019, "Fixup Initialization", arXiv:1901.09321, sec. 3):
  zero the classifier and the last conv of every branch, scale the branch's other convs by
  L^(-1/(2m-2)) (L residual branches, m convs per branch), add a scalar bias (init 0) before
  every conv, ReLU and the classifier and a scalar multiplier (init 1) after each branch.
  Needs ``norm=none``. One difference from the authors' code: the option A shortcut of a
  downsampling block reads x, not x + bias1a.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn


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


def skipinit(module: nn.Module) -> None:
    """SkipInit (De and Smith 2020): a scalar gate, init 0, on every residual branch."""
    _gate_at_zero(module, "skipinit")


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


def _with_biases(seq: nn.Sequential, last: bool) -> nn.Sequential:
    """``seq`` with a ScalarBias before every conv/linear/ReLU (and a scale + bias after its
    end if ``last``); existing layers keep their names, so their state_dict keys do not move."""
    if any(isinstance(m, ScalarBias) for m in seq):  # already built: reset_parameters() again
        return seq
    layers = []
    for name, m in seq.named_children():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.ReLU)) and not (layers and isinstance(layers[-1][1], ScalarBias)):
            layers.append((f"bias_{name}", ScalarBias()))
        layers.append((name, m))
    if last:
        layers += [("scale", ScalarScale()), ("bias_out", ScalarBias())]
    return nn.Sequential(OrderedDict(layers))


def fixup(module: nn.Module) -> None:
    """Fixup (Zhang, Dauphin, Ma 2019, sec. 3): the three rules, see the module docstring."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        raise ValueError("model.init=fixup replaces normalization: use it with norm=none")
    kaiming_fan_in(module)  # rule 2: a standard init everywhere ...
    blocks = _residual_blocks(module, "fixup")
    for blk in blocks:
        blk.residual = _with_biases(blk.residual, last=True)  # rule 3
        convs = [m for m in blk.residual if isinstance(m, nn.Conv2d)]
        m = len(convs)
        for conv in convs[:-1]:
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            conv.weight.data.mul_(len(blocks) ** (-1 / (2 * m - 2)))  # ... scaled in branches
        nn.init.zeros_(convs[-1].weight)  # rule 1
        for p in blk.residual.parameters():
            if p.dim() == 0:
                nn.init.constant_(p, 1.0 if p is getattr(blk.residual, "scale").weight else 0.0)
    head = getattr(module, "head", None)
    if head is not None:
        module.head = _with_biases(head, last=False)
        fc = [m for m in module.head if isinstance(m, nn.Linear)][-1]
        nn.init.zeros_(fc.weight)  # rule 1: the classification layer
        nn.init.zeros_(fc.bias)
        for m in module.head:
            if isinstance(m, ScalarBias):
                nn.init.zeros_(m.bias)


#: The valid ``model.init`` values.
INITS: dict[str, Callable[[nn.Module], None]] = {
    "kaiming_fan_in": kaiming_fan_in,
    "kaiming_fan_out": kaiming_fan_out,
    "skipinit": skipinit,
    "rezero": rezero,
    "fixup": fixup,
}
