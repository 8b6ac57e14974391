"""The block protocol every family shares: a :class:`ResidualBlock` and a :class:`BlockNet` of them.

A CIFAR ResNet block, an MLP block, a Transformer's attention or MLP unit and an LSTM layer are
all ``act(F(x) + shortcut(x))`` with ``shortcut=None`` for the plain twin (He et al. 2015
sec. 3.2), so diagnostics, probes and the report hook F(x) and x the same way in any family.
A family says how to build its stem, its blocks and its head; this module runs them.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from residual_lab.models.variants import layout_block


class ResidualBlock(nn.Module):
    """``out = act(F(x) + shortcut(x))``; a plain block (``shortcut=None``) drops the sum.

    Args:
        shortcut: the skip path (``nn.Identity``, a zero-pad or projection), or None in a
            plain net.
        residual: the branch F.
        act: applied after the sum (post-activation ResNets, post-LN Transformers), or None.
        preact: applied to x before the split, so both paths read it (pre-activation nets,
            He et al. 2016 appendix), or None.
        variant: ``skipinit``, ``rezero`` or ``fixup`` to rearrange these layers into that
            variant's layout (:func:`residual_lab.models.variants.layout_block`), or None.

    ``gate`` is None unless a SkipInit or ReZero block sets a learnable scalar that multiplies
    F(x); a None parameter adds no state_dict key, so other nets' checkpoints do not carry one.
    """

    #: Output channels = planes * expansion (conv blocks).
    expansion: int = 1
    #: Weighted layers on the residual branch (depth = layers_per_block * 3n + 2 in a CIFAR ResNet).
    layers_per_block: int = 2
    #: Post-activation blocks apply ReLU after the addition; pre-activation blocks do not.
    post_activation: bool = True

    def __init__(self, shortcut: nn.Module | None, residual: nn.Module, act: nn.Module | None = None,
                 preact: nn.Module | None = None, *, variant: str | None = None) -> None:
        super().__init__()
        self.preact = preact
        self.residual = residual
        self.shortcut = shortcut
        self.act = act
        self.register_parameter("gate", None)
        layout_block(self, variant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preact is not None:
            x = self.preact(x)
        out = self.branch(x) if self.shortcut is None else self.branch(x) + self.shortcut(x)
        return out if self.act is None else self.act(out)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the residual branch, times the scalar ``gate`` where the net has one."""
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


class BlockNet(nn.Module):
    """``head(norm_out(trunk(stem(x))))``: the shape of every family, and its block names.

    A family builds ``self.stem``, its blocks in ``self.blocks`` (an ``nn.Sequential``; staged
    nets override :attr:`trunk`), ``self.head`` and, where its blocks end un-normalised (a
    pre-LN Transformer), ``self.norm_out``. Input reshaping (an MLP's flatten) belongs to the
    stem and pooling to the head, so ``forward_features`` is the last block's output (timm's
    ``forward_features``/``forward_head`` split).
    """

    def __init__(self) -> None:
        super().__init__()
        self.norm_out: nn.Module | None = None

    @property
    def trunk(self) -> nn.Module:
        """The module that runs the blocks in order."""
        return self.blocks

    def named_blocks(self) -> Iterator[tuple[str, ResidualBlock]]:
        """Blocks in network order with their module names, stable for logging and checkpoints:
        ``stages.<i>.blocks.<j>`` (ResNets), ``blocks.<j>`` (MLP, LSTM), ``blocks.<j>.attn`` and
        ``blocks.<j>.mlp`` (ViT)."""
        for name, module in self.named_modules():
            if isinstance(module, ResidualBlock):
                yield name, module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(self.stem(x))
        return x if self.norm_out is None else self.norm_out(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
