"""The CIFAR ResNet family of He et al. 2015 sec. 4.2, plain and residual alike."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from residual_lab.models.blocks import BLOCKS
from residual_lab.models.init import INITS
from residual_lab.models.layers import ACT_LAYERS, NormFactory, check_choice, conv3x3, resolve_norm
from residual_lab.models.protocol import BlockNet
from residual_lab.models.shortcuts import SHORTCUTS
from residual_lab.models.variants import check_variant, fixup_parameter_groups, layout_net, variant_of

#: Strides of the three stages: 32x32, 16x16 and 8x8 feature maps.
STAGE_STRIDES = (1, 2, 2)


def blocks_per_stage(depth: int, block: str) -> int:
    """Return n such that depth = 3 * layers_per_block * n + 2, or raise a ValueError.

    The "+2" counts the stem conv and the classifier (He et al. 2015 sec. 4.2: 6n+2 for
    basic blocks; 9n+2 for bottlenecks, He et al. 2016).
    """
    check_choice("block", block, BLOCKS)
    per_stage = 3 * BLOCKS[block].layers_per_block
    if depth < per_stage + 2 or (depth - 2) % per_stage:
        below = max(per_stage + 2, (depth - 2) // per_stage * per_stage + 2)
        above = max(per_stage + 2, below + per_stage if below < depth else below)
        nearest = ", ".join(str(d) for d in sorted({below, above}))
        raise ValueError(
            f"depth {depth} is not {per_stage}n+2 for block={block}; nearest valid depths: {nearest}"
        )
    return (depth - 2) // per_stage


class Stage(nn.Module):
    """n blocks at one width; only the first may stride or change channels."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def make_stage(block_cls, in_channels: int, planes: int, n: int, stride: int, *,
               first_kwargs: dict | None = None, **block_kwargs) -> Stage:
    """The one stage factory: the first block strides/projects, the rest keep the shape.

    ``first_kwargs`` go to the first block only (``after_stem`` for pre-activation nets).
    """
    blocks = []
    for i in range(n):
        extra = (first_kwargs or {}) if i == 0 else {}
        blocks.append(block_cls(in_channels, planes, stride=stride if i == 0 else 1, **block_kwargs, **extra))
        in_channels = planes * block_cls.expansion
    return Stage(blocks)


class StagedNet(BlockNet):
    """stem -> stages of blocks -> head, the shape every ResNet here shares: a
    :class:`~residual_lab.models.protocol.BlockNet` whose blocks sit in ``self.stages``
    (Stages of blocks), named ``stages.<i>.blocks.<j>``."""

    #: With ``init=fixup``: the lr of the scalar biases, multipliers and biases, as a multiple of
    #: the lr (the authors' cifar_train.py: 1/10). Each net sets it from its constructor.
    fixup_scalar_lr_scale: float = 0.1

    @property
    def trunk(self) -> nn.Module:
        return self.stages

    def parameter_groups(self) -> list[dict]:
        """Optimizer parameter groups (the LightningModule scales a group's lr by its
        ``lr_scale``): Fixup's scalars at ``fixup_scalar_lr_scale`` times the lr as in the
        authors' code (:func:`residual_lab.models.variants.fixup_parameter_groups`); one group
        for every other init."""
        if getattr(self, "init", None) == "fixup":
            return fixup_parameter_groups(self, self.fixup_scalar_lr_scale)
        return [{"params": list(self.parameters())}]


class CifarResNet(StagedNet):
    """Plain or residual CIFAR network of any depth (He et al. 2015 sec. 4.2).

    A plain and a residual net of equal depth have the same layers, built by the same
    code; they differ only in each block's ``shortcut`` submodule.

    Args:
        depth: weighted layers, 6n+2 (basic/preact) or 9n+2 (bottleneck blocks).
        shortcut: ``none`` (plain), ``identity`` (option A), ``projection`` (B),
            ``full_projection`` (C).
        block: ``basic``, ``bottleneck``, ``preact`` or ``preact_bottleneck``.
        width: channels of the first stage (16 in the paper); stages use width, 2x, 4x.
        norm: ``batch`` or ``none`` (no normalization anywhere).
        num_classes: classifier outputs.
        zero_init_residual: zero the last norm scale (or last conv without norm) of every
            residual branch so each block starts as the identity (Goyal et al. 2017).
        init: weight initialisation, a key of :data:`residual_lab.models.init.INITS`
            (``kaiming_fan_in`` or ``kaiming_fan_out``; experiments/init/README.md compares them),
            or a norm-free variant, ``skipinit``, ``rezero`` or ``fixup``, which also builds
            its own layout of the blocks, stem and head (:mod:`residual_lab.models.variants`).
        fixup_scalar_lr_scale: with ``init=fixup``, the lr of the scalar biases, multipliers and
            the classifier's bias as a fraction of the optimizer's lr (0.1 in the Fixup
            authors' cifar_train.py); see :meth:`parameter_groups`. Unused by other inits.
    """

    def __init__(
        self,
        *,
        depth: int,
        shortcut: str,
        block: str = "basic",
        width: int = 16,
        norm: str = "batch",
        num_classes: int = 10,
        zero_init_residual: bool = False,
        init: str = "kaiming_fan_in",
        fixup_scalar_lr_scale: float = 0.1,
    ) -> None:
        super().__init__()
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("init", init, INITS)
        norm_layer: NormFactory = resolve_norm(norm)
        n = blocks_per_stage(depth, block)
        if width < 1 or num_classes < 1:
            raise ValueError(f"width ({width}) and num_classes ({num_classes}) must be >= 1")
        check_variant(init, shortcut=shortcut, norm=norm)
        variant = variant_of(init)
        block_cls = BLOCKS[block]
        act = ACT_LAYERS["relu"]
        self.depth, self.shortcut, self.block, self.norm, self.init = depth, shortcut, block, norm, init
        self.fixup_scalar_lr_scale = fixup_scalar_lr_scale

        # Pre-activation nets start with a bare conv: the first block normalizes it.
        stem = [("conv", conv3x3(3, width))]
        if block_cls.post_activation:
            stem += [] if norm_layer is None else [("bn", norm_layer(width))]
            stem += [("relu", act(inplace=True))]
        self.stem = nn.Sequential(OrderedDict(stem))

        stages, in_channels = [], width
        for i, stride in enumerate(STAGE_STRIDES):
            planes = width * 2**i
            # He et al. 2016 appendix: the unit after the stand-alone conv1 activates it
            # before its split (post-activation nets' stem already ends in BN-ReLU).
            first = {"after_stem": True} if i == 0 and not block_cls.post_activation else None
            stages.append(make_stage(block_cls, in_channels, planes, n, stride, first_kwargs=first,
                                     shortcut=shortcut, norm=norm_layer, act=act, variant=variant))
            in_channels = planes * block_cls.expansion
        self.stages = nn.Sequential(*stages)

        head = []
        if not block_cls.post_activation:  # He et al. 2016: final BN-ReLU before pooling
            head += [] if norm_layer is None else [("bn", norm_layer(in_channels))]
            head += [("relu", act(inplace=True))]
        head += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                 ("fc", nn.Linear(in_channels, num_classes))]
        self.head = nn.Sequential(OrderedDict(head))
        self.num_features = in_channels
        layout_net(self, variant)

        self.reset_parameters(zero_init_residual)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        """Apply ``self.init`` (see :mod:`residual_lab.models.init`), then optionally start
        every residual block as its shortcut."""
        INITS[self.init](self)
        if zero_init_residual:
            for _, blk in self.named_blocks():
                if blk.shortcut is not None:
                    blk.zero_init_last()

    def extra_repr(self) -> str:
        return (f"depth={self.depth}, shortcut={self.shortcut}, block={self.block}, norm={self.norm}, "
                f"init={self.init}")
