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

Three more, ``skipinit``, ``rezero`` and ``fixup``, let a residual net train without
normalization; each also builds its own layout of the net (gates, moved ReLUs, scalar biases:
:mod:`residual_lab.models.variants`), and draws its weights here:

- ``skipinit`` (De and Smith 2020, sec. 4): gates at 0 and, as the reference SkipInit ResNet
  (``fc_init=jnp.zeros``, zero bias), a zero classifier; the convs keep ``kaiming_fan_in``
  where the reference uses haiku's default (truncated normal, variance 1/fan_in). Changed on
  2026-12-03: until then the classifier was He-normal.
- ``rezero`` (Bachlechner et al. 2020): gates (alpha) at 0, ``kaiming_fan_in`` elsewhere.
- ``fixup`` (Zhang, Dauphin, Ma 2019, sec. 3), as the authors' CIFAR code (hongyi-zhang/Fixup,
  ``cifar/models/fixup_resnet_cifar.py``): zero the classifier and the last conv of every
  branch; draw the branch's other convs He-normal by their *output* channels (``fan_out``, as
  their ``weight.shape[0]``) times L^(-1/(2m-2)) (L residual branches, m convs per branch);
  scalar biases at 0, multipliers at 1. Every other layer (the stem conv, a projection
  shortcut's conv) keeps PyTorch's default init, which their code never overwrites.
  ``model.fixup_scalar_lr_scale`` sets the lr of the scalars
  (:func:`residual_lab.models.variants.fixup_parameter_groups`). Changed on 2026-12-03: until
  then the stem conv was He-normal (6x the default's variance), the reshaping block's conv1 was
  scaled by its input channels, and every parameter trained at the same lr.
"""

from __future__ import annotations

import math
from typing import Callable

from torch import nn

from residual_lab.models.variants import ScalarBias, ScalarScale


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


def _zero_gates(module: nn.Module) -> list[nn.Module]:
    """Every block's gate at 0 (the net was built with them: :mod:`residual_lab.models.variants`)."""
    blocks = [blk for _, blk in module.named_blocks()]
    for blk in blocks:
        nn.init.zeros_(blk.gate)
    return blocks


def _classifier(module: nn.Module) -> nn.Linear:
    """The net's last linear layer (the classifier in ``module.head``)."""
    return [m for m in module.head.modules() if isinstance(m, nn.Linear)][-1]


def skipinit(module: nn.Module) -> None:
    """SkipInit (De and Smith 2020) as the reference SkipInit ResNet: ``kaiming_fan_in``, every
    gate at 0, a zero classifier (module docstring)."""
    kaiming_fan_in(module)
    _zero_gates(module)
    fc = _classifier(module)
    nn.init.zeros_(fc.weight)
    if fc.bias is not None:
        nn.init.zeros_(fc.bias)


def rezero(module: nn.Module) -> None:
    """ReZero (Bachlechner et al. 2020): ``kaiming_fan_in``, every alpha at 0."""
    kaiming_fan_in(module)
    _zero_gates(module)


def fixup(module: nn.Module) -> None:
    """Fixup (Zhang, Dauphin, Ma 2019, sec. 3) as the authors' CIFAR code (module docstring).

    The draws follow their order (each branch's convs but the last, block by block), and
    no other layer is redrawn, so a net built after ``torch.manual_seed(s)`` has the
    authors' ``fixup_resnet*`` weights for the same seed (tests/models/test_reference_inits.py).
    """
    blocks = [blk for _, blk in module.named_blocks()]
    for blk in blocks:
        convs = [m for m in blk.residual if isinstance(m, nn.Conv2d)]
        m = len(convs)
        for conv in convs[:-1]:  # rule 2, their expression: sqrt(2 / (out * k * k)) * L^(-1/(2m-2))
            fan_out = conv.weight.shape[0] * math.prod(conv.weight.shape[2:])
            nn.init.normal_(conv.weight, mean=0, std=math.sqrt(2 / fan_out) * len(blocks) ** (-1 / (2 * m - 2)))
        nn.init.zeros_(convs[-1].weight)  # rule 1
    fc = _classifier(module)
    nn.init.zeros_(fc.weight)  # rule 1: the classification layer
    nn.init.zeros_(fc.bias)
    for m in module.modules():  # rule 3's scalars
        if isinstance(m, ScalarBias):
            nn.init.zeros_(m.bias)
        elif isinstance(m, ScalarScale):
            nn.init.ones_(m.weight)


#: The valid ``model.init`` values.
INITS: dict[str, Callable[[nn.Module], None]] = {
    "kaiming_fan_in": kaiming_fan_in,
    "kaiming_fan_out": kaiming_fan_out,
    "skipinit": skipinit,
    "rezero": rezero,
    "fixup": fixup,
}
