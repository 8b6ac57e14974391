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
"""

from __future__ import annotations

from typing import Callable

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


#: The valid ``model.init`` values.
INITS: dict[str, Callable[[nn.Module], None]] = {
    "kaiming_fan_in": kaiming_fan_in,
    "kaiming_fan_out": kaiming_fan_out,
}
