"""ResNet-18 (and -10/-34) adapted to 32x32 inputs, as the widely used CIFAR repositories do.

He et al. 2015 Table 1's ImageNet nets with the CIFAR changes of kuangliu/pytorch-cifar and
its many copies: a 3x3 stride-1 stem conv, no max-pool, four stages of 64/128/256/512
channels at 32/16/8/4 pixels. ResNet-18 with projection shortcuts where the shape changes
(option B) has exactly 11,173,962 parameters for 10 classes. Blocks, shortcuts, stages and
init are the ones :class:`~residual_lab.models.CifarResNet` uses; only the layout differs.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from residual_lab.models.blocks import BasicBlock
from residual_lab.models.init import INITS
from residual_lab.models.layers import ACT_LAYERS, check_choice, conv3x3, resolve_norm
from residual_lab.models.resnet import StagedNet, make_stage
from residual_lab.models.shortcuts import SHORTCUTS
from residual_lab.models.variants import check_variant, layout_net, variant_of

#: Basic blocks per stage for each depth (He et al. 2015 Table 1; 10 is the common small variant).
LAYOUTS: dict[int, tuple[int, int, int, int]] = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
#: Strides of the four stages: 32x32, 16x16, 8x8 and 4x4 feature maps.
STAGE_STRIDES = (1, 2, 2, 2)


class ResNet18(StagedNet):
    """ImageNet-style ResNet on 32x32 images; plain when ``shortcut="none"``.

    Args:
        depth: 10, 18 or 34 (weighted layers; :data:`LAYOUTS`).
        shortcut: ``none`` (plain twin), ``identity`` (option A), ``projection`` (option B,
            the usual ResNet-18), ``full_projection`` (option C).
        block: ``basic`` only (He et al. 2015 Table 1 uses bottlenecks from 50 layers on).
        width: channels of the first stage (64); stages use width, 2x, 4x, 8x.
        norm: ``batch`` or ``none``.
        num_classes: classifier outputs.
        dropout: probability of zeroing a pooled feature before the classifier.
        init: a key of :data:`residual_lab.models.init.INITS` (``skipinit``, ``rezero`` and
            ``fixup`` also build their layout: :mod:`residual_lab.models.variants`).
        fixup_scalar_lr_scale: with ``init=fixup``, the lr of the scalar biases and multipliers
            as a multiple of the lr (the Fixup authors': 0.1); unused by other inits.
    """

    def __init__(self, *, depth: int, shortcut: str, block: str = "basic", width: int = 64,
                 norm: str = "batch", num_classes: int = 10, dropout: float = 0.0,
                 init: str = "kaiming_fan_out", fixup_scalar_lr_scale: float = 0.1) -> None:
        super().__init__()
        self.fixup_scalar_lr_scale = fixup_scalar_lr_scale
        if depth not in LAYOUTS:
            raise ValueError(f"depth {depth} is not a ResNet layout; valid depths: {', '.join(map(str, LAYOUTS))}")
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("block", block, {"basic"})
        check_choice("init", init, INITS)
        norm_layer = resolve_norm(norm)
        check_variant(init, shortcut=shortcut, norm=norm)
        variant = variant_of(init)
        act = ACT_LAYERS["relu"]
        self.depth, self.shortcut, self.block, self.norm, self.init = depth, shortcut, block, norm, init

        stem = [("conv", conv3x3(3, width))]
        stem += [] if norm_layer is None else [("bn", norm_layer(width))]
        self.stem = nn.Sequential(OrderedDict(stem + [("relu", act(inplace=True))]))
        stages, in_channels = [], width
        for i, (n, stride) in enumerate(zip(LAYOUTS[depth], STAGE_STRIDES)):
            stages.append(make_stage(BasicBlock, in_channels, width * 2**i, n, stride,
                                     shortcut=shortcut, norm=norm_layer, act=act, variant=variant))
            in_channels = width * 2**i
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(OrderedDict([
            ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
            ("dropout", nn.Dropout(dropout)), ("fc", nn.Linear(in_channels, num_classes))]))
        self.num_features = in_channels
        layout_net(self, variant)
        INITS[init](self)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, shortcut={self.shortcut}, norm={self.norm}, init={self.init}"
