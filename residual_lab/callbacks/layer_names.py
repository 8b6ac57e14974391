"""The one place that turns module names into the short tags every diagnostic logs.

``stages.0.blocks.3.residual.conv1`` -> ``s1.b3.conv1``; ``stages.1.blocks.0.shortcut.conv``
-> ``s2.b0.shortcut.conv``; ``stem.conv`` and ``head.fc`` keep their names. Stages are
1-based (He et al. 2015 number the 32x32, 16x16 and 8x8 stages 1-3), blocks 0-based
(their index in ``net.stages[i].blocks``). Families without stages (MLP, ViT, LSTM) name
their blocks ``blocks.<j>``: ``blocks.3.residual.fc1`` -> ``b3.fc1``,
``blocks.3.attn.residual.qkv`` -> ``b3.attn.qkv`` (a ViT layer holds two blocks, ``attn``
and ``mlp``). Tags must stay stable: TensorBoard runs,
summary.json and reports across a sweep are joined on them.
"""

from __future__ import annotations

import re

import lightning as L
from torch import nn

_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)(?:\.(.*))?$")
_FLAT_BLOCK = re.compile(r"^blocks\.(\d+)(?:\.(.*))?$")
#: The residual branch is the block's body: its name is dropped from tags; "shortcut" stays.
_RESIDUAL = re.compile(r"(^|\.)residual\.")
#: Layers whose weight gradients and updates are tracked.
WEIGHTED = (nn.Conv2d, nn.Linear)


def short_name(module_name: str) -> str:
    """Short tag of a module of any model family (see module doc)."""
    if m := _BLOCK.match(module_name):
        tag, rest = f"s{int(m.group(1)) + 1}.b{int(m.group(2))}", m.group(3)
    elif m := _FLAT_BLOCK.match(module_name):
        tag, rest = f"b{int(m.group(1))}", m.group(2)
    else:
        return module_name
    return tag + "." + _RESIDUAL.sub(r"\1", rest) if rest else tag


def group_of(tag: str) -> str:
    """Group of a tag: ``stem``, a stage ``s1``..``s4``, a block ``b<j>`` (stage-less families) or ``head``."""
    return tag.split(".", 1)[0]


def network(pl_module: L.LightningModule | nn.Module) -> nn.Module:
    """The network inside a LightningModule (``module.net``), or the module itself."""
    return getattr(pl_module, "net", pl_module)


def compiled(net: nn.Module) -> bool:
    """True if ``net.compile()`` was called: its submodules' hooks are then not run.

    torch.compile traces the forward once and, by default
    (``torch._dynamo.config.skip_nnmodule_hook_guards``), does not re-trace when hooks
    are added later, so hook-based diagnostics would silently measure nothing.
    """
    return getattr(net, "_compiled_call_impl", None) is not None


def weighted_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(tag, module)`` for every conv and linear layer, in network order.

    Network order is registration order: stem, then per block its residual branch and
    then its shortcut projection (they run in parallel), then the classifier.
    """
    return [(short_name(name), m) for name, m in net.named_modules() if isinstance(m, WEIGHTED)]


def blocks(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(tag, block)`` for every residual or plain block, input to output."""
    return [(short_name(name), blk) for name, blk in net.named_blocks()]
