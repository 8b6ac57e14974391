"""The one place that turns module names into the short tags every diagnostic logs.

``stages.0.blocks.3.residual.conv1`` -> ``s1.b3.conv1``; ``stages.1.blocks.0.shortcut.conv``
-> ``s2.b0.shortcut.conv``; ``stem.conv`` and ``head.fc`` keep their names. Stages are
1-based (He et al. 2015 number the 32x32, 16x16 and 8x8 stages 1-3), blocks 0-based
(their index in ``net.stages[i].blocks``). Families without stages (MLP, ViT, LSTM) name
their blocks ``blocks.<j>``: ``blocks.3.residual.fc1`` -> ``b3.fc1``,
``blocks.3.attn.residual.qkv`` -> ``b3.attn.qkv`` (a ViT layer holds two blocks, ``attn``
and ``mlp``). Tags must stay stable: TensorBoard runs,
summary.json and reports across a sweep are joined on them.

TensorBoard sorts tags by name, which would put ``s1.b10`` before ``s1.b2`` and the stem after
the stages; its tags are therefore the :func:`sortable` form, ``1_s1.b02.conv1``: a group rank
(``0`` stem, ``1``-``8`` stage, ``1`` the blocks of a stage-less family, ``9`` head) and block
numbers padded to equal width (and, where a block's layer names do not sort in the order they
run, their index in the block: ViT's ``1_b00.0_attn.qkv``). They depend only on names, so the
same layer of two nets of one family carries the same tag (plain-56 and resnet-56 overlay).
summary.json keeps the short tags, as ordered lists.

Any other module (``model=external``, or the callbacks in someone's own Lightning project)
keeps its own names (``layer1.0.conv1``; ``blocks.3.attn.qkv`` of a timm ViT reads
``b3.attn.qkv``), grouped by their first component (``layer1``, ``fc``).
"""

from __future__ import annotations

import re

from torch import nn

from residual_lab.models.external import named_blocks

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


_IN_BLOCK = re.compile(r"^(\d_(?:s\d\.)?b\d+)\.(.+)$")
_BLOCK_NUMBER = re.compile(r"(?:^|(?<=\.))b(\d+)(?=\.|$)")


def sortable(tags: list[str]) -> list[str]:
    """TensorBoard's form of ``tags`` (module doc): ``stem.conv`` -> ``0_stem.conv``,
    ``s1.b2.conv1`` -> ``1_s1.b02.conv1``, ``b3.attn.qkv`` -> ``1_b03.attn.qkv``,
    ``head.fc`` -> ``9_head.fc``. Block numbers are padded to 2 digits (3 for a net with 100 or
    more blocks in a stage, e.g. ResNet-1001)."""
    numbers = [int(n) for t in tags for n in _BLOCK_NUMBER.findall(t)]
    width = max(2, len(str(max(numbers, default=0))))

    def rank(group: str) -> int:
        if group == "stem":
            return 0
        if group == "head":
            return 9
        m = re.fullmatch(r"s(\d)", group)
        return int(m.group(1)) if m else 1

    out = [f"{rank(group_of(t))}_" + _BLOCK_NUMBER.sub(lambda m: f"b{int(m.group(1)):0{width}d}", t) for t in tags]
    # Within a block, layers whose names do not sort in network order (a ViT block's attn.qkv
    # runs before attn.proj) get their index in the block: b00.0_attn.qkv, b00.1_attn.proj.
    by_block: dict[str, list[int]] = {}
    for i, t in enumerate(out):
        if m := _IN_BLOCK.match(t):
            by_block.setdefault(m.group(1), []).append(i)
    for prefix, idx in by_block.items():
        rest = [out[i][len(prefix) + 1:] for i in idx]
        if rest != sorted(rest):
            for k, i in enumerate(idx):
                out[i] = f"{prefix}.{k}_{rest[k]}"
    return out


def group_of(tag: str) -> str:
    """Group of a tag: ``stem``, a stage ``s1``..``s4``, a block ``b<j>`` (stage-less families) or ``head``."""
    return tag.split(".", 1)[0]


def network(pl_module: nn.Module) -> nn.Module:
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
    """``(tag, block)`` for every residual or plain block, input to output: a built-in family's
    ``named_blocks()``, or for any other module the ones the fx pass finds
    (:func:`residual_lab.models.external.named_blocks`; their names, e.g. ``layer1.0``, are
    their tags)."""
    return [(short_name(name), blk) for name, blk in named_blocks(net)]
