"""A Vision Transformer encoder on 4x4 patches: pre-norm, post-norm, or no residuals at all.

Each Transformer layer is two residual units (attention, then MLP), each a block of the
shared protocol (``residual`` = the branch F, ``shortcut`` = ``nn.Identity`` or ``None``):

- ``block=preln``: ``x + F(LN(x))`` (GPT-2, ViT; Xiong et al. 2020): the LN sits on the branch.
- ``block=postln``: ``LN(x + F(x))`` (Vaswani et al. 2017, BERT): the LN follows the sum.
- ``shortcut=none``: the same layers without the sum (``F(LN(x))`` or ``LN(F(x))``), the
  net Dong et al. 2021 show collapsing towards rank one with depth.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from residual_lab.models.layers import check_choice
from residual_lab.models.protocol import BlockNet, ResidualBlock
from residual_lab.schema import PositiveInt

#: ``block`` choices: where the LayerNorm of each residual unit sits.
VIT_BLOCKS = ("preln", "postln")
VIT_SHORTCUTS = ("none", "identity")
VIT_POOLS = ("cls", "mean")


class SelfAttention(nn.Module):
    """Multi-head self-attention, its projections ``nn.Linear`` (tracked per layer by the
    diagnostics, unlike ``nn.MultiheadAttention``'s packed ``in_proj_weight``).

    Args:
        norm: applied to the input first (the pre-LN of ``block=preln``), or None.
    """

    def __init__(self, width: int, heads: int, norm: nn.Module | None) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.norm = norm if norm is not None else nn.Identity()
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, c))


class TransformerLayer(nn.Module):
    """Attention unit, then MLP unit (GELU, ``mlp_ratio`` x wider in the middle); each unit
    normalises its branch input (preln) or its sum (postln). Tags: ``b<j>.attn.qkv``,
    ``b<j>.attn.proj``, ``b<j>.mlp.fc1``, ``b<j>.mlp.fc2``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, *, block: str, shortcut: str) -> None:
        super().__init__()
        pre = block == "preln"

        def unit(branch: nn.Module) -> ResidualBlock:
            return ResidualBlock(None if shortcut == "none" else nn.Identity(), branch,
                          None if pre else nn.LayerNorm(width))

        hidden = width * mlp_ratio
        self.attn = unit(SelfAttention(width, heads, nn.LayerNorm(width) if pre else None))
        self.mlp = unit(nn.Sequential(OrderedDict([*([("norm", nn.LayerNorm(width))] if pre else []),
                                                   ("fc1", nn.Linear(width, hidden)), ("act", nn.GELU()),
                                                   ("fc2", nn.Linear(hidden, width))])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, a class token (``pool=cls``), learned positions."""

    def __init__(self, width: int, patch: int, image_size: int, cls_token: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + int(cls_token), width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # (batch, tokens, width)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        return x + self.pos_embed


class TokenPool(nn.Module):
    """(batch, tokens, width) -> (batch, width): the class token (``cls``, ViT/BERT) or the mean over tokens."""

    def __init__(self, pool: str) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.pool == "cls" else x.mean(1)

    def extra_repr(self) -> str:
        return self.pool


class VisionTransformer(BlockNet):
    """ViT encoder (Dosovitskiy et al. 2021) on 32x32 images; plain when ``shortcut="none"``.

    Args:
        depth: Transformer layers (each two blocks: ``blocks.<j>.attn`` and ``blocks.<j>.mlp``).
        shortcut: ``none`` (no residual around attention or MLP) or ``identity``.
        block: ``preln`` or ``postln``.
        width: token dimension.
        norm: ``layer`` only (LayerNorm, as every Transformer).
        num_classes: classifier outputs.
        heads: attention heads (width must divide).
        mlp_ratio: hidden units of the MLP per token dimension.
        patch: patch side in pixels (4: 64 tokens from 32x32).
        pool: ``cls`` (class token, ViT/BERT) or ``mean`` (mean over tokens).
        image_size: input side in pixels.
    """

    #: Blocks carry a (batch, tokens, width) matrix: TokenStats measures this net.
    tokens = True

    def __init__(self, *, depth: int, shortcut: str, block: str, width: int, norm: str, num_classes: int = 10,
                 heads: PositiveInt = 4, mlp_ratio: PositiveInt = 4, patch: PositiveInt = 4, pool: str = "cls",
                 image_size: PositiveInt = 32) -> None:
        super().__init__()
        check_choice("shortcut", shortcut, VIT_SHORTCUTS)
        check_choice("block", block, VIT_BLOCKS)
        check_choice("norm", norm, {"layer"})
        check_choice("pool", pool, VIT_POOLS)
        if depth < 1:
            raise ValueError(f"depth {depth} must be >= 1 Transformer layer")
        self.depth, self.shortcut, self.block, self.norm, self.pool = depth, shortcut, block, norm, pool
        self.stem = PatchEmbed(width, patch, image_size, cls_token=pool == "cls")
        self.blocks = nn.Sequential(*[TransformerLayer(width, heads, mlp_ratio, block=block, shortcut=shortcut)
                                      for _ in range(depth)])
        # Pre-norm stacks end un-normalised; post-norm blocks already end in LN.
        self.norm_out = nn.LayerNorm(width) if block == "preln" else nn.Identity()
        self.head = nn.Sequential(OrderedDict(pool=TokenPool(pool), fc=nn.Linear(width, num_classes)))
        self.num_features = width
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated normal, std 0.02, on every weight and position (BERT, timm's ViT); zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.stem.pos_embed, std=0.02)
        if self.stem.cls_token is not None:
            nn.init.trunc_normal_(self.stem.cls_token, std=0.02)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, shortcut={self.shortcut}, block={self.block}, pool={self.pool}"
