"""A deep fully connected net on flattened pixels, plain or residual.

The CIFAR ResNet's basic block with every 3x3 conv replaced by a linear layer:
``out = relu(F(x) + x)`` with ``F = Linear-Norm-ReLU-Linear-Norm``, and ``relu(F(x))`` for the
plain twin, which is then an ordinary MLP. Two layers per branch because a one-layer branch
``W x + x`` is close to a linear layer and He et al. 2015 (sec. 3.1) saw no advantage in it.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from residual_lab.models.init import INITS
from residual_lab.models.layers import ACT_LAYERS, check_choice
from residual_lab.models.protocol import BlockNet, ResidualBlock
from residual_lab.models.variants import check_variant, layout_net, variant_of

#: ``norm`` choices: a 1-d feature norm after each linear layer (or none).
MLP_NORMS: dict[str, type[nn.Module] | None] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "none": None}
#: The MLP's skip paths: all its blocks keep the width, so only identity or nothing.
MLP_SHORTCUTS = ("none", "identity")
#: The inits of :data:`residual_lab.models.init.INITS` that apply to linear layers (fixup is conv-only).
MLP_INITS = ("kaiming_fan_in", "kaiming_fan_out", "skipinit", "rezero")


def linear_norm(in_features: int, out_features: int, norm: type[nn.Module] | None, i: str) -> list:
    """Named ``(fc, norm)`` layers; the linear layer has a bias only when no norm follows."""
    layers = [(f"fc{i}", nn.Linear(in_features, out_features, bias=norm is None))]
    return layers + ([] if norm is None else [(f"norm{i}", norm(out_features))])


class MLPBlock(ResidualBlock):
    """Two linear layers, norm after each, ReLU after the addition (or after F(x) when plain)."""

    def __init__(self, width: int, *, shortcut: str, norm: type[nn.Module] | None,
                 act: type[nn.Module] = nn.ReLU, variant: str | None = None) -> None:
        check_choice("shortcut", shortcut, MLP_SHORTCUTS)
        layers = [*linear_norm(width, width, norm, "1"), ("relu1", act(inplace=True)),
                  *linear_norm(width, width, norm, "2")]
        super().__init__(None if shortcut == "none" else nn.Identity(),
                         nn.Sequential(OrderedDict(layers)), act(inplace=True), variant=variant)


class MLP(BlockNet):
    """Plain or residual MLP of any depth on 3x32x32 images.

    Args:
        depth: linear layers, 2n+2: the input layer, n blocks of 2, the classifier.
        shortcut: ``none`` (plain MLP) or ``identity``.
        block: ``basic`` only (two linear layers per block).
        width: hidden units of every layer.
        norm: ``batch``, ``layer`` or ``none``.
        num_classes: classifier outputs.
        in_features: inputs per image (3 * 32 * 32 = 3072).
        init: one of :data:`MLP_INITS` (keys of :data:`residual_lab.models.init.INITS`).
    """

    def __init__(self, *, depth: int, shortcut: str, block: str, width: int, norm: str,
                 num_classes: int = 10, in_features: int = 3 * 32 * 32, init: str = "kaiming_fan_in") -> None:
        super().__init__()
        check_choice("shortcut", shortcut, MLP_SHORTCUTS)
        check_choice("block", block, {"basic"})
        check_choice("norm", norm, MLP_NORMS)
        check_choice("init", init, [i for i in MLP_INITS if i in INITS])
        if depth < 4 or depth % 2:
            raise ValueError(f"depth {depth} is not 2n+2 with n >= 1 for model=mlp; try {max(4, depth + depth % 2)}")
        check_variant(init, shortcut=shortcut, norm=norm)
        norm_layer, act, variant = MLP_NORMS[norm], ACT_LAYERS["relu"], variant_of(init)
        self.depth, self.shortcut, self.block, self.norm, self.init = depth, shortcut, block, norm, init

        # Flattened in NCHW order whatever the memory format.
        self.stem = nn.Sequential(OrderedDict([("flatten", nn.Flatten()),
                                               *linear_norm(in_features, width, norm_layer, ""),
                                               ("relu", act(inplace=True))]))
        self.blocks = nn.Sequential(*[MLPBlock(width, shortcut=shortcut, norm=norm_layer, act=act, variant=variant)
                                      for _ in range((depth - 2) // 2)])
        self.head = nn.Sequential(OrderedDict(fc=nn.Linear(width, num_classes)))
        self.num_features = width
        layout_net(self, variant)
        INITS[init](self)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, shortcut={self.shortcut}, norm={self.norm}, init={self.init}"
